"""A synthetic multi-patient corpus of identity records with PHI sentinels in every original.

Originals start with ``PHI``/``1.2.826.0.1.3680043.99.7`` so a byte search finds any leak;
pseudonyms are derived from the originals with SHA-256 (a stand-in for the keyed engine).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

from dicomveil.engine.identity import IdentityRecord, OriginalIdentity, PseudonymousIdentity

ORIGINAL_ROOT = "1.2.826.0.1.3680043.99.7"
PSEUDONYM_KEY_ID = "a1b2c3d4e5f6"


def pseudo_uid(original: str, key_id: str = PSEUDONYM_KEY_ID) -> str:
    """A ``2.25.`` UID derived from ``original`` and ``key_id``."""
    digest = hashlib.sha256(f"{key_id}|{original}".encode()).digest()
    return "2.25." + str(int.from_bytes(digest[:16], "big"))


def make_records(
    patients: int = 3,
    studies: int = 2,
    series: int = 2,
    instances: int = 3,
    *,
    key_id: str = PSEUDONYM_KEY_ID,
    first_patient: int = 0,
) -> list[IdentityRecord]:
    """Records for ``patients`` x ``studies`` x ``series`` x ``instances`` instances."""
    return list(_records(patients, studies, series, instances, key_id, first_patient))


def _records(
    patients: int, studies: int, series: int, instances: int, key_id: str, first: int
) -> Iterator[IdentityRecord]:
    for p in range(first, first + patients):
        for s in range(studies):
            study_uid = f"{ORIGINAL_ROOT}.{p}.{s}"
            for r in range(series):
                for i in range(instances):
                    original = OriginalIdentity(
                        patient_id=f"PHI-PID-{p:03d}",
                        patient_name=f"PHINAME{p:03d}^GIVEN",
                        issuer_of_patient_id="PHI-HOSPITAL",
                        patient_birth_date=f"19{p % 90 + 10:02d}0317",
                        study_instance_uid=study_uid,
                        accession_number=f"PHIACC{p:03d}{s}",
                        study_date=f"2023{s + 1:02d}{p % 28 + 1:02d}",
                        series_instance_uid=f"{study_uid}.{r}",
                        sop_instance_uid=f"{study_uid}.{r}.{i}",
                    )
                    yield IdentityRecord(
                        original=original,
                        pseudonymous=PseudonymousIdentity(
                            patient_id=f"ANON{key_id[:4]}{p:03d}",
                            study_id=f"S{key_id[:4]}{p:03d}{s}",
                            study_instance_uid=pseudo_uid(study_uid, key_id),
                            accession_number=f"A{key_id[:4]}{p:03d}{s}",
                            series_instance_uid=pseudo_uid(original.series_instance_uid, key_id),
                            sop_instance_uid=pseudo_uid(original.sop_instance_uid, key_id),
                        ),
                        key_id=key_id,
                        date_offset_days=p * 7 + 3,
                    )


def planted_values(records: list[IdentityRecord]) -> set[str]:
    """Every original value in ``records`` (what must never appear in clear)."""
    values: set[str] = set()
    for record in records:
        o = record.original
        values.update(
            (
                o.patient_id,
                o.patient_name,
                o.issuer_of_patient_id,
                o.patient_birth_date,
                o.study_instance_uid,
                o.accession_number,
                o.study_date,
                o.series_instance_uid,
                o.sop_instance_uid,
            )
        )
    return {v for v in values if v}
