"""Dummy values per VR, and helpers to map multi-valued elements."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydicom.multival import MultiValue

__all__ = ["DUMMY_PDF", "MAX_LENGTH", "dummy_value", "empty_value", "map_strings"]

#: Dummy values of the Basic Profile's action D, per VR.
_DUMMIES: dict[str, Any] = {
    "AE": "ANONYMOUS",
    "AS": "000Y",
    "CS": "ANONYMOUS",
    "DA": "19000101",
    "DS": "0",
    "DT": "19000101000000",
    "IS": "0",
    "LO": "ANONYMOUS",
    "LT": "ANONYMOUS",
    "PN": "ANONYMOUS",
    "SH": "ANONYMOUS",
    "ST": "ANONYMOUS",
    "TM": "000000",
    "UC": "ANONYMOUS",
    "UR": "",
    "UT": "ANONYMOUS",
    "FL": 0.0,
    "FD": 0.0,
    "SL": 0,
    "SS": 0,
    "UL": 0,
    "US": 0,
    "SV": 0,
    "UV": 0,
}

#: Maximum value length in characters, per string VR (PS3.5 Table 6.2-1).
MAX_LENGTH: dict[str, int] = {
    "AE": 16, "AS": 4, "CS": 16, "DA": 8, "DS": 16, "IS": 12, "LO": 64, "LT": 10240,
    "PN": 64, "SH": 16, "ST": 1024, "TM": 14, "UC": 2**32 - 2, "UT": 2**32 - 2,
}  # fmt: skip


def _blank_pdf() -> bytes:
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    if len(out) % 2:
        out += b"\n"
    return bytes(out)


#: A blank one-page PDF: the dummy that replaces an encapsulated document.
DUMMY_PDF = _blank_pdf()


def dummy_value(vr: str) -> Any:
    """Return the dummy value for ``vr`` (an empty value for binary VRs)."""
    if vr in _DUMMIES:
        return _DUMMIES[vr]
    return empty_value(vr)


def empty_value(vr: str) -> Any:
    """Return the zero-length value for ``vr``."""
    if vr == "SQ":
        return []
    if vr in ("OB", "OD", "OF", "OL", "OV", "OW", "UN", "OB or OW"):
        return b""
    if vr in ("FL", "FD", "SL", "SS", "UL", "US", "SV", "UV", "AT"):
        return None
    return ""


def map_strings(value: Any, fn: Callable[[str], str | None]) -> Any:
    """Apply ``fn`` to each value of a (possibly multi-valued) string element.

    Values for which ``fn`` returns ``None`` are dropped.
    """
    if isinstance(value, MultiValue | list | tuple):
        mapped = [fn(str(v)) for v in value]
        return [m for m in mapped if m is not None]
    if value is None:
        return value
    result = fn(str(value))
    return "" if result is None else result
