"""HIPAA Safe Harbor (45 CFR 164.514(b)(2)) on top of the PS3.15 Basic Profile.

The ``safe-harbor`` option runs :func:`apply_safe_harbor` on the de-identified data set, after
the profile and every other option. What the profile *kept* (by an option such as
``retain-longitudinal-full-dates`` or ``retain-patient-characteristics``, or by an override)
is then reduced to what Safe Harbor allows:

- ages (every AS element) over 89 become ``090Y`` (the single "90 or older" category);
- dates (every DA, DT element, at any depth) keep their year only: ``YYYY0101`` for DA,
  ``YYYY`` for DT; a date of birth whose year shows an age over 89 (at the study's year, else
  the current year) is emptied;
- the patient's address keeps only the first three digits of a US ZIP code, ``000`` for the
  three-digit areas of 20,000 people or fewer (per the Census data HHS points to), and is
  emptied when it holds no ZIP code; the region of residence is emptied (a state may stay,
  but dicomveil cannot tell a state from a county).

:func:`safe_harbor_findings` checks an output against the 18 identifier categories (what a
program can check: see ``docs/safe-harbor.md`` for the full table, and what needs a person).
``dicomveil verify --safe-harbor`` runs it on every output.

References
----------
45 CFR 164.514(b)(2)(i)(A)-(R); HHS, "Guidance Regarding Methods for De-identification of
Protected Health Information" (2012), section 3.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Final

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset

__all__ = [
    "RESTRICTED_ZIP3",
    "apply_safe_harbor",
    "cap_age",
    "safe_harbor_findings",
    "year_of_da",
    "year_of_dt",
    "zip3",
]

RESTRICTED_ZIP3: Final = frozenset(
    {
        "036", "059", "063", "102", "203", "556", "692", "790", "821",
        "823", "830", "831", "878", "879", "884", "890", "893",
    }
)  # fmt: skip
"""Three-digit ZIP areas of 20,000 people or fewer (2000 Census, HHS guidance): ``000``."""

_AGE: Final = re.compile(r"(\d{3})([DWMY])")
_DAYS_PER_UNIT: Final = {"D": 1.0, "W": 7.0, "M": 365.25 / 12, "Y": 365.25}
_OVER_89_DAYS: Final = 90 * 365.25
_ZIP: Final = re.compile(r"(?<!\d)(\d{5})(?:-\d{4})?(?!\d)")
_GEOGRAPHY: Final = ("RegionOfResidence",)
_DIRECT: Final[dict[str, tuple[str, ...]]] = {
    "1 names": ("OtherPatientNames", "PatientBirthName", "PatientMotherBirthName"),
    "4-6 telephone, fax, email": ("PatientTelephoneNumbers", "PatientTelecomInformation"),
    "7 social security numbers": ("OtherPatientIDs", "OtherPatientIDsSequence"),
    "9 health plan beneficiary numbers": ("InsurancePlanIdentification",),
    "10 account numbers": ("AdmissionID", "ServiceEpisodeID"),
    "11 certificate and license numbers": ("MilitaryRank", "BranchOfService"),
    "13 device identifiers and serial numbers": ("DeviceSerialNumber", "DeviceUID"),
}
"""Attributes of a Safe Harbor category that must be absent or empty in an output."""
_INSTANCE_UIDS: Final = (
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "SOPInstanceUID",
    "FrameOfReferenceUID",
)
"""UIDs dicomveil remaps (to ``2.25.`` UUID-derived UIDs) unless ``retain-uids``."""
_PSEUDONYM: Final = re.compile(r"([A-Za-z0-9_-]{1,32}-)?[PSAH][A-Z2-7]{15}")


def cap_age(value: str) -> str:
    """An Age String over 89 years becomes ``090Y``; any other value is returned as it is."""
    match = _AGE.fullmatch(value.strip())
    if match is None:
        return value
    days = int(match.group(1)) * _DAYS_PER_UNIT[match.group(2)]
    return "090Y" if days >= _OVER_89_DAYS else value


def year_of_da(value: str) -> str:
    """A DA value reduced to its year (``YYYY0101``); empty when it has no readable year."""
    digits = value.strip().replace(".", "")
    return f"{digits[:4]}0101" if re.fullmatch(r"\d{4}(\d{4})?", digits) else ""


def year_of_dt(value: str) -> str:
    """A DT value reduced to its year (``YYYY``); empty when it has no readable year."""
    digits = value.strip()
    return digits[:4] if re.match(r"\d{4}", digits) else ""


def zip3(address: str) -> str:
    """The Safe Harbor form of an address: the first three digits of its (last) US ZIP code,
    ``000`` for a restricted area, or empty when it has none."""
    found = _ZIP.findall(address)
    if not found:
        return ""
    first = found[-1][:3]
    return "000" if first in RESTRICTED_ZIP3 else first


def _elements(ds: Dataset) -> Iterator[tuple[Dataset, DataElement]]:
    for elem in list(ds):
        if elem.VR == "SQ":
            for item in elem.value or ():
                yield from _elements(item)
        else:
            yield ds, elem


def _map(elem: DataElement, change: Callable[[str], str]) -> bool:
    """Apply ``change`` to each value of a text element; return whether anything changed."""
    value = elem.value
    if value is None or value == "":
        return False
    values = (
        [str(v) for v in value]
        if isinstance(value, list | tuple) or (type(value).__name__ == "MultiValue")
        else [str(value)]
    )
    new = [change(v) for v in values]
    if new == values:
        return False
    elem.value = new if len(new) > 1 else new[0]
    return True


def _reference_year(ds: Dataset) -> int:
    for keyword in ("StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate"):
        text = str(ds.get(keyword, "") or "")
        if re.match(r"\d{4}", text):
            return int(text[:4])
    return datetime.now(UTC).year


def apply_safe_harbor(ds: Dataset) -> list[str]:
    """Reduce ``ds`` (de-identified already) to what Safe Harbor allows (see the module).

    Returns
    -------
    list of str
        PHI-free notes (attribute keywords and what was done), for the report.
    """
    notes: list[str] = []
    birth = ds["PatientBirthDate"] if "PatientBirthDate" in ds else None
    year = _reference_year(ds)
    if birth is not None and birth.value and re.match(r"\d{4}", str(birth.value)):
        if year - int(str(birth.value)[:4]) > 89:
            birth.value = ""
            notes.append("PatientBirthDate: over 89 years before the study: emptied")
    changed: dict[str, int] = {}
    for _, elem in _elements(ds):
        done = False
        if elem.VR == "AS":
            done = _map(elem, cap_age)
        elif elem.VR == "DA":
            done = _map(elem, year_of_da)
        elif elem.VR == "DT":
            done = _map(elem, year_of_dt)
        elif elem.keyword == "PatientAddress":
            done = _map(elem, zip3)
        elif elem.keyword in _GEOGRAPHY:
            done = _map(elem, lambda _: "")
        if done:
            label = elem.keyword or f"({elem.tag.group:04X},{elem.tag.element:04X})"
            changed[label] = changed.get(label, 0) + 1
    for label, count in sorted(changed.items()):
        notes.append(f"{label}: reduced for Safe Harbor ({count})")
    if (
        any(_is_date(label) for label in changed)
        and "LongitudinalTemporalInformationModified" in ds
    ):
        ds.LongitudinalTemporalInformationModified = "MODIFIED"
    return notes


def _is_date(label: str) -> bool:
    return label.endswith(("Date", "DateTime")) or label.startswith("(")


def safe_harbor_findings(ds: Dataset) -> list[str]:
    """What in a de-identified data set Safe Harbor does not allow: ``category: keyword``.

    Checks what a program can: dates more precise than the year, ages over 89, a birth year
    showing an age over 89, geography below a state, the direct identifiers of the
    categories in :data:`_DIRECT` present with a value, a PatientID, AccessionNumber or
    StudyID that is not a dicomveil pseudonym (categories 8 and 18), and study, series,
    instance and frame of reference UIDs that were not remapped (18: ``retain-uids``).
    """
    findings: set[str] = set()
    for _, elem in _elements(ds):
        label = elem.keyword or f"({elem.tag.group:04X},{elem.tag.element:04X})"
        values = _texts(elem)
        if elem.VR == "DA" and any(v and year_of_da(v) != v for v in values):
            findings.add(f"3 dates: {label}")
        elif elem.VR == "DT" and any(v and year_of_dt(v) != v for v in values):
            findings.add(f"3 dates: {label}")
        elif elem.VR == "AS" and any(cap_age(v) != v for v in values):
            findings.add(f"3 ages over 89: {label}")
        elif elem.keyword == "PatientAddress" and any(v and not _zip3_form(v) for v in values):
            findings.add(f"2 geographic subdivisions: {label}")
        elif elem.keyword in _GEOGRAPHY and any(values):
            findings.add(f"2 geographic subdivisions: {label}")
    for category, keywords in _DIRECT.items():
        for keyword in keywords:
            if keyword in ds and ds[keyword].value not in (None, "", []):
                findings.add(f"{category}: {keyword}")
    birth = str(ds.get("PatientBirthDate", "") or "")
    if re.match(r"\d{4}", birth) and _reference_year(ds) - int(birth[:4]) > 89:
        findings.add("3 ages over 89: PatientBirthDate")
    for keyword in _INSTANCE_UIDS:  # original UIDs often embed dates, devices, sites
        if not str(ds.get(keyword, "") or "2.25.").startswith("2.25."):
            findings.add(f"18 other unique identifying numbers: {keyword}")
    for keyword, category in (
        ("PatientID", "8 medical record numbers"),
        ("AccessionNumber", "18 other unique identifying numbers"),
        ("StudyID", "18 other unique identifying numbers"),
    ):
        value = str(ds.get(keyword, "") or "").strip()
        if value and not _PSEUDONYM.fullmatch(value):
            findings.add(f"{category}: {keyword}")
    return sorted(findings)


def _zip3_form(value: str) -> bool:
    """Whether an address is what :func:`zip3` leaves: three digits, a restricted area's
    as ``000``."""
    return re.fullmatch(r"\d{3}", value) is not None and value not in RESTRICTED_ZIP3


def _texts(elem: DataElement) -> list[str]:
    value = elem.value
    if value is None:
        return []
    if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
        return [str(v) for v in value]
    return [str(value)]
