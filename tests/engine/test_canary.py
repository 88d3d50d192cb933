"""PHI canary tests: plant a sentinel everywhere, de-identify, search the output bytes."""

from __future__ import annotations

from io import BytesIO

import pydicom
import pytest
from pydicom.filewriter import dcmwrite

from dicomveil.engine.deidentify import deidentify
from dicomveil.engine.keys import PseudonymKeys
from dicomveil.profile.options import Option
from dicomveil.profile.policy import Policy
from tests.canary import PATIENT_WORD, Canary, as_file_dataset, build_canary_dataset

KEYS = PseudonymKeys(b"canary-test-secret-0123456789")
ALL_OPTIONS = [
    o.value
    for o in Option
    if o not in (Option.RETAIN_LONGITUDINAL_FULL_DATES, Option.CLEAN_PIXEL_DATA)
]
OPTION_SETS = [[], *[[o.value] for o in Option if o is not Option.CLEAN_PIXEL_DATA], ALL_OPTIONS]


def may_remain(canary: Canary, options: set[str]) -> bool:
    """The test's own oracle: may this planted value legitimately survive?"""
    if canary.where == "SR TextValue":
        return bool(options & {"clean-structured-content", "clean-descriptors"})
    if canary.row is None:  # private and nested SR person names never survive
        return False
    codes = {code for name, code in canary.row.options if name in options}
    if canary.nested:
        # the nested PN, UID and date follow their own rows wherever the sequence survives
        if canary.vr == "UI":
            return "retain-uids" in options
        if canary.vr == "DT":
            return "retain-longitudinal-full-dates" in options
        return False
    if canary.vr in ("DA", "DT"):
        return "K" in codes  # shifted dates (C) must not keep their original value
    if canary.vr == "TM":
        return bool(codes & {"K", "C"})  # a whole-day shift keeps times of day
    return bool(codes & {"K", "C"})


def serialize(ds: pydicom.Dataset) -> bytes:
    buffer = BytesIO()
    dcmwrite(buffer, as_file_dataset(ds), enforce_file_format=True)
    return buffer.getvalue()


@pytest.mark.parametrize("options", OPTION_SETS, ids=lambda o: "+".join(o) or "basic")
def test_no_canary_survives(options: list[str]) -> None:
    ds, canaries = build_canary_dataset()
    policy = Policy.from_names(options)
    result = deidentify(ds, policy, KEYS, has_pixels=False)
    data = serialize(result.dataset)
    chosen = set(options)
    leaked = [c.where for c in canaries if not may_remain(c, chosen) and c.data in data]
    assert leaked == []
    # the patient's family name is planted in free text too: it never survives
    assert PATIENT_WORD.encode() not in data
    # and the output is readable DICOM again
    again = pydicom.dcmread(BytesIO(data))
    assert again.PatientIdentityRemoved == "YES"


def test_canaries_are_really_planted() -> None:
    """Guard the guard: without de-identification every canary is found."""
    ds, canaries = build_canary_dataset()
    data = serialize(ds)
    assert len(canaries) > 400
    assert [c.where for c in canaries if c.data not in data] == []


def test_retained_values_do_survive() -> None:
    """An option that retains must really retain (the oracle is not vacuous)."""
    ds, canaries = build_canary_dataset()
    options = {"retain-device-identity", "retain-institution-identity"}
    result = deidentify(ds, Policy.from_names(options), KEYS, has_pixels=False)
    data = serialize(result.dataset)
    retained = [c for c in canaries if may_remain(c, options) and c.vr in ("LO", "SH")]
    assert retained
    assert all(c.data in data for c in retained)
