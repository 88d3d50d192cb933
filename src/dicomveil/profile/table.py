"""Lookups in the generated PS3.15 tables (Table E.1-1 and Table E.3.10-1)."""

from __future__ import annotations

from functools import cache

from dicomveil.profile import _ps315
from dicomveil.profile._rows import Ps315Row

__all__ = ["EDITION", "is_safe_private", "row_for", "rows"]

EDITION = _ps315.EDITION

_EXACT: dict[int, Ps315Row] = {}
_MASKED: list[tuple[int, int, Ps315Row]] = []  # (mask, value, row): tag & mask == value
_PRIVATE_ROW: Ps315Row | None = None

for _row in _ps315.ROWS:
    if _row.tag == "odd":
        _PRIVATE_ROW = _row
    elif "x" in _row.tag:
        _mask = int("".join("0" if c == "x" else "F" for c in _row.tag), 16)
        _value = int(_row.tag.replace("x", "0"), 16)
        _MASKED.append((_mask, _value, _row))
    else:
        _EXACT[int(_row.tag, 16)] = _row


def rows() -> tuple[Ps315Row, ...]:
    """Return every row of Table E.1-1."""
    return _ps315.ROWS


def row_for(tag: int) -> Ps315Row | None:
    """Return the Table E.1-1 row for a standard ``tag``, or ``None`` when the table is silent.

    Repeating groups (``(50xx,xxxx)`` curves, ``(60xx,3000)`` overlays) match by mask. Private
    tags (odd groups) are not looked up here: see :func:`private_row`.

    Examples
    --------
    >>> row_for(0x00100010).name
    "Patient's Name"
    >>> row_for(0x60023000).name
    'Overlay Data'
    >>> row_for(0x00280010) is None
    True
    """
    row = _EXACT.get(tag)
    if row is not None:
        return row
    for mask, value, masked_row in _MASKED:
        if tag & mask == value:
            return masked_row
    return None


def private_row() -> Ps315Row:
    """Return the row "(GGGG,EEEE) where GGGG is odd" (private attributes)."""
    assert _PRIVATE_ROW is not None, "Table E.1-1 has no private attributes row"
    return _PRIVATE_ROW


@cache
def _safe_private_keys() -> frozenset[tuple[str, int, int]]:
    from dicomveil.profile import _safe_private

    return frozenset(
        (row.creator, int(row.group, 16), int(row.element, 16)) for row in _safe_private.ROWS
    )


def is_safe_private(creator: str, group: int, element_offset: int) -> bool:
    """Tell whether a private attribute is listed in PS3.15 Table E.3.10-1.

    Parameters
    ----------
    creator:
        The Private Creator value reserving the block (trailing spaces ignored).
    group:
        The (odd) group number.
    element_offset:
        The low byte of the element number (``0x0C`` for ``(0019,100C)``).
    """
    return (creator.rstrip(), group, element_offset) in _safe_private_keys()
