"""Per-patient date shifting for the Retain Longitudinal Temporal Information Modified Dates
Option.

Every date of one patient moves back by the same whole number of days, derived from the
pseudonym key and the patient's identity: intervals between any two dates or times of the same
patient are preserved, in every study and batch, with no shared table. Times of day are not
changed (a whole-day shift keeps them valid).

References
----------
DICOM PS3.15 Section E.3.6.
"""

from __future__ import annotations

import re
from datetime import date, timedelta

from dicomveil.engine.keys import PseudonymKeys

__all__ = ["MAX_SHIFT_DAYS", "date_offset_days", "shift_da", "shift_dt"]

#: Dates move back by 1 to this many days.
MAX_SHIFT_DAYS = 3650

_DA_RE = re.compile(r"(\d{4})\.?(\d{2})\.?(\d{2})")
_DT_RE = re.compile(r"(\d{4})(\d{2})(\d{2})(.*)")


def date_offset_days(keys: PseudonymKeys, patient_key: str) -> int:
    """Return the number of days every date of this patient moves back (1 to 3650).

    Examples
    --------
    >>> keys = PseudonymKeys(b"example-secret-0123456789")
    >>> 1 <= date_offset_days(keys, "id:123") <= MAX_SHIFT_DAYS
    True
    """
    return 1 + keys.integer("date-shift", patient_key) % MAX_SHIFT_DAYS


def _shift(year: str, month: str, day: str, days: int) -> str | None:
    try:
        moved = date(int(year), int(month), int(day)) - timedelta(days=days)
    except (ValueError, OverflowError):
        return None
    return f"{moved.year:04d}{moved.month:02d}{moved.day:02d}"


def shift_da(value: str, days: int) -> str | None:
    """Shift one DA value (``YYYYMMDD``, or the ACR-NEMA ``YYYY.MM.DD``) back by ``days``.

    Returns ``None`` when the value cannot be parsed (the caller must then remove it: a date
    that cannot be shifted is never kept).

    Examples
    --------
    >>> shift_da("20240301", 1)
    '20240229'
    >>> shift_da("2024.03.01", 1)
    '20240229'
    >>> shift_da("tomorrow", 1) is None
    True
    """
    match = _DA_RE.fullmatch(value.strip())
    if match is None:
        return None
    year, month, day = match.groups()
    return _shift(year, month, day, days)


def shift_dt(value: str, days: int) -> str | None:
    """Shift one DT value back by ``days``, keeping time of day, fraction and UTC offset.

    A DT with less than day precision (``YYYY`` or ``YYYYMM``) cannot be shifted exactly and
    gives ``None``.

    Examples
    --------
    >>> shift_dt("20240301120000.5+0100", 1)
    '20240229120000.5+0100'
    >>> shift_dt("2024", 1) is None
    True
    """
    match = _DT_RE.fullmatch(value.strip())
    if match is None:
        return None
    year, month, day, rest = match.groups()
    shifted = _shift(year, month, day, days)
    return None if shifted is None else shifted + rest
