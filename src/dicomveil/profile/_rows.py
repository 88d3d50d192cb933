"""Row types of the generated PS3.15 tables (hand-written; the rows themselves are generated)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Ps315Row:
    """One row of PS3.15 Table E.1-1.

    Attributes
    ----------
    tag:
        Eight lower-case hex digits (``"00100010"``), possibly with ``x`` wildcards
        (``"50xxxxxx"``), or ``"odd"`` for the row "(GGGG,EEEE) where GGGG is odd".
    name:
        The attribute name as the standard prints it.
    in_std_iod:
        Column "In Std. Comp. IOD": the attribute is used in a standard composite IOD.
    basic:
        The action code of the Basic Profile column (``"X"``, ``"X/Z/D"``, ...).
    options:
        ``(option name, action code)`` pairs, only for the options that change the action.
    """

    tag: str
    name: str
    in_std_iod: bool
    basic: str
    options: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class SafePrivateRow:
    """One row of PS3.15 Table E.3.10-1 "Safe Private Attributes".

    Attributes
    ----------
    creator:
        The Private Creator value that reserves the block (compared exactly, after stripping
        trailing spaces).
    group:
        The private group as four lower-case hex digits (``"0019"``).
    element:
        The element offset within the block as two lower-case hex digits (``"0c"`` for
        ``(0019,xx0C)``).
    vr:
        The value representation the standard lists.
    name:
        The meaning the standard gives.
    """

    creator: str
    group: str
    element: str
    vr: str
    name: str
