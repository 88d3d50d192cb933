"""A seeded mutation run over the demo study: VR codes, length fields and name bytes.

Each mutant is de-identified by the reference path and the byte-level fast path. Whatever
the mutation, no exception escapes, the two paths give the same outcome (status, reason,
counts, flags, identity, bytes), an output holds no part of the patient's name, and a
failure reason quotes none. (A longer run found the private creator read as FD that the two
paths judged differently.)
"""

from __future__ import annotations

import random
from pathlib import Path

import pydicom
import pytest

from dicomveil.demo import write_demo_study
from dicomveil.dicomio._window import VR_NAMES
from dicomveil.profile.policy import Policy
from tests.pipeline.test_fast_path import _both, _same

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

POLICIES = (
    Policy(allow_burned_in_annotation=True),
    Policy.from_names(["clean-descriptors"], allow_burned_in_annotation=True),
    Policy.from_names(
        ["retain-institution-identity", "retain-device-identity", "retain-safe-private"],
        allow_burned_in_annotation=True,
    ),
)
VRS = sorted(VR_NAMES)


def _headers(data: bytes) -> list[int]:
    """Offsets that look like explicit VR element headers, after the File Meta Information."""
    return [
        at
        for at in range(140, min(len(data) - 8, 8000))
        if bytes(data[at + 4 : at + 6]) in VR_NAMES and data[at] != 0xFE
    ]


def _mutant(rng: random.Random, data: bytearray, name: bytes) -> str:
    kind = rng.choice(["vr", "vr", "length", "name"])
    if kind == "name" and name in data:
        at = data.index(name) + rng.randrange(len(name))
        data[at] = rng.choice([0x00, 0x1B, 0xFF, 0x07, 0x5C, 0x3D])
        return kind
    at = rng.choice(_headers(data))
    if kind == "vr":
        data[at + 4 : at + 6] = rng.choice(VRS)
    else:
        data[at + 6] = (data[at + 6] + rng.choice([1, 255, 2])) % 256
    return kind


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("demo")
    return write_demo_study(folder, patients=1, series_per_study=1, images_per_series=2)


@pytest.mark.parametrize("seed", range(4))
def test_mutants_are_judged_alike_and_leak_nothing(
    seed: int, sources: list[Path], tmp_path: Path
) -> None:
    rng = random.Random(seed)
    statuses = set()
    for index in range(20):
        source = rng.choice(sources)
        name = str(pydicom.dcmread(source, stop_before_pixels=True).PatientName)
        family = name.split("^", maxsplit=1)[0].encode()
        data = bytearray(source.read_bytes())
        kind = _mutant(rng, data, family)
        path = tmp_path / f"m{index}.dcm"
        path.write_bytes(bytes(data))
        root = tmp_path / f"out{index}"
        reference, quick, _ = _both(path, root, rng.choice(POLICIES))
        try:
            _same(reference, quick, root)
        except AssertionError as exc:
            raise AssertionError(f"mutant {index} ({kind}): {exc}") from exc
        statuses.add(reference.status)
        assert family.decode() not in reference.reason
        if reference.status == "ok":
            assert family not in (root / "reference" / str(reference.output)).read_bytes()
    assert "ok" in statuses
