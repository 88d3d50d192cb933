"""Matching conditions as SQL clauses (the SQLAlchemy side of :mod:`.matching`)."""

from __future__ import annotations

from sqlalchemy import ColumnElement, Table, and_, exists, false, or_, select, true

from dicomveil.index.attributes import Attribute, MatchKind
from dicomveil.index.matching import AnyOf, Condition, Range, Single, Wildcard
from dicomveil.index.schema import series

__all__ = ["clause", "like_pattern"]

_ESCAPE = "\\"


def like_pattern(pattern: str) -> str:
    """Turn a DICOM wild card pattern (``*``, ``?``) into a SQL ``LIKE`` pattern.

    SQL's own wild cards and the escape character in the value are escaped.
    """
    out = []
    for char in pattern:
        if char in ("%", "_", _ESCAPE):
            out.append(_ESCAPE + char)
        elif char == "*":
            out.append("%")
        elif char == "?":
            out.append("_")
        else:
            out.append(char)
    return "".join(out)


def _column(attribute: Attribute, table: Table, folded: bool) -> ColumnElement[object]:
    name = attribute.column
    if attribute.kind is MatchKind.TIME:
        name = f"{name}_key"
    elif folded:
        name = f"{name}_key"
    column: ColumnElement[object] = table.c[name]
    return column


def _wildcard(column: ColumnElement[object], condition: Wildcard) -> ColumnElement[bool]:
    value = condition.pattern.upper() if condition.case_insensitive else condition.pattern
    pattern = like_pattern(value)
    if not condition.any_component:
        return column.like(pattern, escape=_ESCAPE)
    starts = [pattern] + [f"%{sep}{pattern}" for sep in ("^", " ", "=", "-")]
    return or_(*(column.like(p, escape=_ESCAPE) for p in starts))


def _text(column: ColumnElement[object], condition: Condition) -> ColumnElement[bool]:
    if isinstance(condition, Single):
        value = condition.value.upper() if condition.case_insensitive else condition.value
        return column == value
    if isinstance(condition, Wildcard):
        return _wildcard(column, condition)
    if isinstance(condition, AnyOf):
        return column.in_(list(condition.values))
    parts = []
    if condition.low is not None:
        parts.append(column >= condition.low)
    if condition.high is not None:
        parts.append(column <= condition.high)
    return and_(*parts) if parts else true()


def clause(attribute: Attribute, table: Table, condition: Condition) -> ColumnElement[bool]:
    """Return the SQL condition for ``attribute`` (a column of ``table``) and ``condition``.

    ``ModalitiesInStudy`` matches when any series of the study has a matching modality;
    ``table`` is then the studies table.
    """
    if attribute.kind is MatchKind.MODALITIES:
        inner = _text(series.c.modality, condition)
        return exists(select(series.c.pk).where(series.c.study_pk == table.c.pk, inner))
    if attribute.kind is MatchKind.INTEGER:
        if not isinstance(condition, Single):  # pragma: no cover - parse_condition guarantees
            return false()
        return table.c[attribute.column] == int(condition.value)
    folded = isinstance(condition, Single | Wildcard) and condition.case_insensitive
    if isinstance(condition, Range) and attribute.kind is MatchKind.DATE:
        folded = False
    return _text(_column(attribute, table, folded), condition)
