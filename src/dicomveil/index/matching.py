"""Query values turned into matching conditions, per PS3.4 §C.2.2.2 and PS3.18 §8.3.4.

Pure: no database. A :class:`Condition` says *what* matches; the SQL adapter decides *how*.

=====================  =========================================================
query value            condition
=====================  =========================================================
``""`` or ``*``        universal matching: no condition
``ABC``                :class:`Single` (exact; case-insensitive for PN if asked)
``AB*``, ``A?C``       :class:`Wildcard` (``*`` any run, ``?`` one character)
``1.2.3,1.2.4``        :class:`AnyOf` (UI, ModalitiesInStudy; ``\\`` too)
``20200101-20201231``  :class:`Range` (DA, TM; either end may be open)
=====================  =========================================================

References
----------
PS3.4 §C.2.2.2.1-§C.2.2.2.5 (single value, list of UID, universal, wild card and range
matching); PS3.18 §8.3.4.1 (QIDO-RS matching), §8.3.4.6 (fuzzymatching).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from dicomveil.errors import QueryError
from dicomveil.index.attributes import Attribute, MatchKind

__all__ = [
    "AnyOf",
    "Condition",
    "QueryError",
    "Range",
    "Single",
    "Wildcard",
    "normalize_date",
    "normalize_time",
    "parse_condition",
]

_UID: Final = re.compile(r"[0-9]+(\.[0-9]+)*")
_DATE: Final = re.compile(r"[0-9]{8}")
_TIME: Final = re.compile(r"[0-9]{2}([0-9]{2}([0-9]{2}(\.[0-9]{1,6})?)?)?")
_TIME_LOW: Final = "000000.000000"
_TIME_HIGH: Final = "235959.999999"
_MAX_VALUE: Final = 1024
_MAX_UIDS: Final = 1000


@dataclass(frozen=True, slots=True)
class Single:
    """Single value matching: equal values match."""

    value: str
    case_insensitive: bool = False


@dataclass(frozen=True, slots=True)
class Wildcard:
    """Wild card matching; ``pattern`` uses ``*`` and ``?``.

    With ``any_component`` (fuzzy person-name matching) the pattern may also match from the
    start of any name component or word, not only from the start of the value.
    """

    pattern: str
    case_insensitive: bool = False
    any_component: bool = False


@dataclass(frozen=True, slots=True)
class AnyOf:
    """List of UID matching (and a list of modalities): any listed value matches."""

    values: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Range:
    """Range matching on normalized values (inclusive; ``None`` for an open end)."""

    low: str | None
    high: str | None


Condition = Single | Wildcard | AnyOf | Range


def normalize_date(text: str) -> str | None:
    """Return a DA value as ``YYYYMMDD`` (ACR-NEMA ``YYYY.MM.DD`` accepted), or ``None``."""
    value = text.strip().replace(".", "") if len(text.strip()) == 10 else text.strip()
    return value if _DATE.fullmatch(value) else None


def normalize_time(text: str, *, high: bool = False) -> str | None:
    """Return a TM value padded to ``HHMMSS.FFFFFF``, or ``None`` when malformed.

    Missing components are filled with their lowest value, or their highest when ``high``
    (so the upper end of a range ``-12`` includes 12:59:59.999999). ACR-NEMA colons are
    dropped.
    """
    value = text.strip().replace(":", "")
    if not _TIME.fullmatch(value):
        return None
    fill = _TIME_HIGH if high else _TIME_LOW
    return value + fill[len(value) :]


def _split_list(raw: str) -> list[str]:
    return [part.strip() for part in re.split(r"[,\\]", raw) if part.strip()]


def _range(attribute: Attribute, raw: str) -> Condition:
    date = attribute.kind is MatchKind.DATE
    low_text, _, high_text = raw.partition("-")

    def norm(text: str, high: bool) -> str | None:
        if not text.strip():
            return None
        value = normalize_date(text) if date else normalize_time(text, high=high)
        if value is None:
            raise QueryError(f"{attribute.keyword}: not a valid {attribute.vr} value or range")
        return value

    if "-" not in raw:
        if date:
            single = norm(raw, False)
            assert single is not None
            return Single(single)
        return Range(norm(raw, False), norm(raw, True))
    low, high = norm(low_text, False), norm(high_text, True)
    if low is None and high is None:
        raise QueryError(f"{attribute.keyword}: a range needs at least one end")
    return Range(low, high)


def parse_condition(
    attribute: Attribute, raw: str, *, case_insensitive_names: bool = False, fuzzy: bool = False
) -> Condition | None:
    """Return the condition a query value stands for, or ``None`` for universal matching.

    Parameters
    ----------
    attribute:
        The attribute matched on.
    raw:
        The query value as sent (already URL-decoded).
    case_insensitive_names:
        Match PN values regardless of case (the server's setting).
    fuzzy:
        ``fuzzymatching=true``: PN values match regardless of case, as a prefix of the
        value or of any of its name components (``smi`` finds ``JONES^SMITH``).

    Raises
    ------
    QueryError
        The value is malformed for the attribute's VR.
    """
    if len(raw) > _MAX_VALUE:
        raise QueryError(f"{attribute.keyword}: value longer than {_MAX_VALUE} characters")
    value = raw.strip()
    if value in ("", "*"):
        return None
    kind = attribute.kind
    if kind in (MatchKind.DATE, MatchKind.TIME):
        return _range(attribute, value)
    if kind is MatchKind.UID:
        uids = _split_list(value)
        if not uids or len(uids) > _MAX_UIDS or not all(_UID.fullmatch(u) for u in uids):
            raise QueryError(f"{attribute.keyword}: not a valid UID or list of UIDs")
        return Single(uids[0]) if len(uids) == 1 else AnyOf(tuple(uids))
    if kind is MatchKind.INTEGER:
        if not re.fullmatch(r"[+-]?[0-9]{1,12}", value):
            raise QueryError(f"{attribute.keyword}: not an integer")
        return Single(str(int(value)))
    if kind is MatchKind.MODALITIES and re.search(r"[,\\]", value):
        return AnyOf(tuple(_split_list(value)))
    if fuzzy and kind is MatchKind.PERSON_NAME:
        pattern = value if value.endswith("*") else value + "*"
        return Wildcard(pattern, case_insensitive=True, any_component=True)
    fold = case_insensitive_names and kind is MatchKind.PERSON_NAME
    if "*" in value or "?" in value:
        return Wildcard(value, case_insensitive=fold)
    return Single(value, case_insensitive=fold)
