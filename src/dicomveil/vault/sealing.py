"""Sealing whole rows: which clear columns a sealed value is bound to, and (de)serializing.

A row's sealed value is bound (as AES-GCM associated data) to every pseudonymous column of
its row, so neither the sealed value nor the pseudonyms next to it can be changed or swapped
between rows without the value failing to open.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Table

from dicomveil.vault.crypto import VaultKey, associated_data, normalize_patient
from dicomveil.vault.schema import frames_of_reference, instances, series, studies

__all__ = ["BOUND_COLUMNS", "natural_column", "open_row", "patient_index", "seal_row"]

BOUND_COLUMNS: Mapping[str, tuple[str, ...]] = {
    studies.name: (
        "pseudo_study_uid",
        "pseudonym_key_id",
        "pseudo_study_id",
        "pseudo_patient_id",
        "pseudo_accession",
    ),
    series.name: ("pseudo_series_uid", "pseudonym_key_id", "pseudo_study_uid"),
    instances.name: (
        "pseudo_sop_instance_uid",
        "pseudonym_key_id",
        "pseudo_series_uid",
        "pseudo_study_uid",
    ),
    frames_of_reference.name: (
        "pseudo_frame_of_reference_uid",
        "pseudonym_key_id",
        "pseudo_study_uid",
    ),
}


def natural_column(table: Table) -> str:
    """The pseudonymous UID column that, with the pseudonym key id, identifies a row."""
    return BOUND_COLUMNS[table.name][0]


def _aad(table: Table, row: Mapping[Any, Any]) -> bytes:
    row_key = "\x1e".join(str(row[column]) for column in BOUND_COLUMNS[table.name])
    return associated_data(table.name, row_key, "sealed")


def _where(table: Table, row: Mapping[Any, Any]) -> str:
    return f"{table.name} row for {row[natural_column(table)]}"


def seal_row(
    key: VaultKey, table: Table, row: Mapping[Any, Any], original: Mapping[str, Any]
) -> bytes:
    """Seal ``original`` (JSON-serializable) for ``row`` of ``table``."""
    plaintext = json.dumps(original, sort_keys=True, separators=(",", ":")).encode("utf-8")
    return key.seal(plaintext, _aad(table, row))


def open_row(key: VaultKey, table: Table, row: Mapping[Any, Any]) -> dict[str, Any]:
    """Open the ``sealed`` column of ``row`` of ``table`` and return the original values."""
    plaintext = key.open(row["sealed"], _aad(table, row), where=_where(table, row))
    value: dict[str, Any] = json.loads(plaintext)
    return value


def patient_index(key: VaultKey, patient_id: str, issuer: str) -> str:
    """Return the blind index of an original patient identity under ``key``."""
    return key.blind_index(normalize_patient(patient_id, issuer))
