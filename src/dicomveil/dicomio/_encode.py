"""Encoding the header data set and the File Meta Information into output parts.

Elements still raw (as read, in the output encoding, character set unchanged) are
re-emitted from their bytes with one ``struct.pack`` for the header; elements the engine
touched go through pydicom's :func:`~pydicom.filewriter.write_data_element`. Values the
reader left in the file (deferred) become spans of the source file, copied later by the
writer without passing through memory.
"""

from __future__ import annotations

import struct
from typing import Any, Final, NamedTuple

from pydicom.dataelem import DataElement, RawDataElement, convert_raw_data_element
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import correct_ambiguous_vr_element, write_data_element
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag
from pydicom.valuerep import AMBIGUOUS_VR, PersonName

from dicomveil.dicomio._window import LONG_VRS, UNDEFINED, VR_NAMES, tag_name
from dicomveil.errors import DeidentificationError

__all__ = [
    "Parts",
    "SourceSpan",
    "attach_source_window",
    "character_set",
    "encode_elements",
    "sorted_tags",
    "source_window",
]

_ENCODE_ERRORS: Final = (
    ValueError,
    TypeError,
    OverflowError,
    struct.error,
    LookupError,
    AttributeError,
    NotImplementedError,
    UnicodeError,
)


class SourceSpan(NamedTuple):
    """``length`` bytes at ``offset`` of the source file, copied as they are."""

    offset: int
    length: int


class Parts:
    """The output as a list of in-memory byte strings and source-file spans."""

    __slots__ = ("_pending", "items", "size")

    def __init__(self) -> None:
        self.items: list[bytes | SourceSpan] = []
        self._pending: list[bytes] = []
        self.size = 0

    def add(self, data: bytes) -> None:
        """Append bytes."""
        self._pending.append(data)
        self.size += len(data)

    def span(self, offset: int, length: int) -> None:
        """Append a span of the source file."""
        self.flush()
        self.items.append(SourceSpan(offset, length))
        self.size += length

    def flush(self) -> None:
        """Join pending bytes into one part."""
        if self._pending:
            self.items.append(b"".join(self._pending))
            self._pending = []

    def finish(self) -> list[bytes | SourceSpan]:
        """Return the parts (pending bytes joined)."""
        self.flush()
        return self.items


_PADDING: Final = {
    **dict.fromkeys(
        ("AE", "AS", "CS", "DA", "DT", "TM", "LO", "LT", "SH", "ST", "UC", "UR", "UT"), b" "
    ),
    "UI": b"\0",
}
"""String VRs whose single ``str`` value pydicom writes verbatim, and their padding."""
_LONG_NAMES: Final = frozenset(vr.decode("ascii") for vr in LONG_VRS)
_VR_BYTES: Final[dict[str | None, bytes]] = {name: raw for raw, name in VR_NAMES.items()}


def character_set(ds: Dataset) -> str | list[str]:
    """Return the Python encodings of `ds` now, without re-decoding an unchanged term."""
    elem = ds._dict.get(BaseTag(0x00080005))
    original = ds.original_character_set
    if original and isinstance(elem, RawDataElement):
        return original if isinstance(original, str) else list(original)
    return ds._character_set


_WINDOW_ATTR: Final = "_dicomveil_source_window"


def attach_source_window(ds: Dataset, base: int, buf: bytes) -> None:
    """Remember the source bytes ``buf`` (at offset `base`) that `ds` was read from.

    :func:`encode_elements` copies runs of untouched raw elements straight from them. The
    raw elements of `ds` must have been read from that same source (their ``value_tell``
    is an offset in it), which holds for every data set :func:`read_instance` returns.
    """
    ds.__dict__[_WINDOW_ATTR] = (base, buf)


def source_window(ds: Dataset) -> tuple[int, bytes]:
    """Return the source window attached to `ds`, or ``(0, b"")``."""
    window: tuple[int, bytes] = ds.__dict__.get(_WINDOW_ATTR, (0, b""))
    return window


def sorted_tags(ds: Dataset) -> list[BaseTag]:
    """Return the tags of `ds` in ascending order (compared as ints, which is fast)."""
    return sorted(ds._dict, key=int)


def encode_elements(  # noqa: PLR0912 - one hot loop, kept flat for speed
    ds: Dataset,
    tags: list[BaseTag],
    implicit: bool,
    little: bool,
    parts: Parts,
    *,
    allow_spans: bool = True,
    charset: str | list[str] | None = None,
) -> None:
    """Append the encoded elements `tags` of `ds`, in the given order, to `parts`.

    Raw elements in the output encoding are re-emitted from their bytes (runs of
    untouched elements as one slice of the source); single ASCII values of string and
    person name VRs are encoded directly, sequences item by item with this same
    function; every other element goes through pydicom's
    :func:`~pydicom.filewriter.write_data_element`. Group length elements and groups
    0000-0007 are not written (PS3.5 section 7.2). `charset` is the character set
    inherited from an enclosing data set (for sequence items).

    Raises
    ------
    DeidentificationError
        When an element cannot be encoded (its tag is named, never its value).
    """
    order = "<" if little else ">"
    pack_implicit = struct.Struct(order + "HHL").pack
    pack_short = struct.Struct(order + "HH2sH").pack
    pack_long = struct.Struct(order + "HH2sHL").pack
    delimiter = pack_implicit(0xFFFE, 0xE0DD, 0)
    if charset is None or BaseTag(0x00080005) in ds._dict:
        charset = character_set(ds)
    fast = ds.original_character_set == charset and ds.original_encoding == (implicit, little)
    elements = ds._dict
    raw_type, padding, long_names, vr_bytes = RawDataElement, _PADDING, _LONG_NAMES, _VR_BYTES
    numbers = _NUMBERS
    win_base, win_buf = source_window(ds)
    win_end = win_base + len(win_buf) if win_buf else -1
    run_start = run_end = -1
    out: list[bytes] = []
    add = out.append
    for tag in tags:
        group = tag >> 16
        element = tag & 0xFFFF
        if group < 0x0008 or element == 0:
            continue
        elem = elements[tag]
        if type(elem) is raw_type:
            _, vr, length, value, tell, elem_implicit, elem_little, _, _ = elem
            if fast and elem_implicit == implicit and elem_little == little and (implicit or vr):
                if value is not None:
                    # untouched elements contiguous in the source are copied as one slice
                    start = tell - (12 if not implicit and vr in long_names else 8)
                    end = tell + (length if length != UNDEFINED else len(value) + 8)
                    if win_base <= start and end <= win_end:
                        if start != run_end:
                            if run_end >= 0:
                                add(win_buf[run_start - win_base : run_end - win_base])
                            run_start = start
                        run_end = end
                        continue
                if run_end >= 0:
                    add(win_buf[run_start - win_base : run_end - win_base])
                    run_end = -1
                if implicit:
                    add(pack_implicit(group, element, length))
                elif vr in long_names:
                    add(pack_long(group, element, vr_bytes[vr], 0, length))
                else:
                    add(pack_short(group, element, vr_bytes[vr], length))
                if value is None and length:
                    if not allow_spans:
                        raise DeidentificationError(f"{tag_name(tag)} was never read")
                    parts.add(b"".join(out))
                    out.clear()
                    parts.span(tell, length)
                elif value:
                    add(value)
                if length == UNDEFINED:
                    add(delimiter)
                continue
        if run_end >= 0:
            add(win_buf[run_start - win_base : run_end - win_base])
            run_end = -1
        if not isinstance(elem, raw_type):
            vr = elem.VR
            value = elem.value
            pad = padding.get(vr)
            data: bytes | None = None
            if pad is not None and isinstance(value, str) and value.isascii():
                data = value.encode("ascii")
                if len(data) & 1:
                    data += pad
            elif value is None and vr != "SQ":
                data = b""
            elif vr == "SQ" and isinstance(value, Sequence):
                add(_encode_sequence(group, element, elem, implicit, little, charset))
                continue
            elif type(value) is PersonName and value.original_string is None:
                text = str(value)
                if text.isascii():
                    data = text.encode("ascii") + b" " * (len(text) & 1)
            elif vr in numbers and type(value) in (int, float):
                data = _pack_number(numbers[vr], value, order)
            elif isinstance(value, MultiValue):
                data = _multi_value(value, vr, pad, numbers.get(vr), order)
            if data is not None:
                if implicit:
                    add(pack_implicit(group, element, len(data)))
                    add(data)
                    continue
                if vr in long_names:
                    add(pack_long(group, element, vr_bytes[vr], 0, len(data)))
                    add(data)
                    continue
                if len(data) > 0xFFFF:
                    raise DeidentificationError(f"{tag_name(tag)} is too long for its VR")
                add(pack_short(group, element, vr_bytes[vr], len(data)))
                add(data)
                continue
        add(_pydicom_encode(ds, tag, implicit, little, charset))
    if run_end >= 0:
        add(win_buf[run_start - win_base : run_end - win_base])
    parts.add(b"".join(out))


_NUMBERS: Final = {
    "US": "H",
    "SS": "h",
    "UL": "L",
    "SL": "l",
    "UV": "Q",
    "SV": "q",
    "FL": "f",
    "FD": "d",
}
"""Binary number VRs and their ``struct`` format, as pydicom writes them."""


def _pack_number(code: str, value: float, order: str) -> bytes | None:
    try:
        return struct.pack(order + code, value)
    except struct.error:
        return None  # out of range: pydicom reports it


def _multi_value(
    value: MultiValue[Any], vr: str, pad: bytes | None, code: str | None, order: str
) -> bytes | None:
    """Encode a multi-valued string or binary number element directly, when simple."""
    if pad is not None and all(type(v) is str for v in value):
        text = "\\".join(value)
        if text.isascii():
            data = text.encode("ascii")
            return data + pad if len(data) & 1 else data
    elif code is not None and all(type(v) in (int, float) for v in value):
        try:
            return struct.pack(f"{order}{len(value)}{code}", *value)
        except struct.error:
            return None
    return None


def _encode_sequence(
    group: int,
    element: int,
    elem: DataElement,
    implicit: bool,
    little: bool,
    charset: str | list[str],
) -> bytes:
    """Encode a sequence element, its items through :func:`encode_elements`.

    Lengths are defined unless the element or item was read with undefined length,
    as pydicom does (PS3.5 section 7.5).
    """
    pack = struct.Struct(("<" if little else ">") + "HHL").pack
    items = []
    for item in elem.value:
        item_parts = Parts()
        encode_elements(
            item,
            sorted_tags(item),
            implicit,
            little,
            item_parts,
            allow_spans=False,
            charset=charset,
        )
        body = b"".join(part for part in item_parts.finish() if isinstance(part, bytes))
        if item.is_undefined_length_sequence_item:
            items.append(pack(0xFFFE, 0xE000, UNDEFINED) + body + pack(0xFFFE, 0xE00D, 0))
        else:
            items.append(pack(0xFFFE, 0xE000, len(body)) + body)
    content = b"".join(items)
    length = UNDEFINED if elem.is_undefined_length else len(content)
    if implicit:
        header = pack(group, element, length)
    else:
        header = struct.pack(("<" if little else ">") + "HH2sHL", group, element, b"SQ", 0, length)
    if elem.is_undefined_length:
        return header + content + pack(0xFFFE, 0xE0DD, 0)
    return header + content


def _pydicom_encode(
    ds: Dataset, tag: BaseTag, implicit: bool, little: bool, charset: str | list[str]
) -> bytes:
    fp = DicomBytesIO()
    fp.is_implicit_VR = implicit
    fp.is_little_endian = little
    item = ds._dict[tag]
    original = ds.original_character_set
    elem: DataElement | RawDataElement
    try:
        if isinstance(item, RawDataElement) and item.value is not None and original != charset:
            # decode with the character set the value was written in, encode with the new one
            elem = convert_raw_data_element(item, encoding=original or charset, ds=ds)
            if elem.VR in AMBIGUOUS_VR:
                elem = correct_ambiguous_vr_element(elem, ds, little)
        else:
            elem = ds[tag]
        write_data_element(fp, elem, charset)
    except _ENCODE_ERRORS:
        failed = True  # raised below, outside the handler: pydicom's message may quote a value
    else:
        failed = False
    if failed:
        raise DeidentificationError(f"{tag_name(tag)} cannot be encoded")
    data = fp.getvalue()
    if not implicit and data[4:6] == b"UN" and elem.VR != "UN":
        # pydicom turns an over-long short-length value into UN; a strict writer refuses
        raise DeidentificationError(f"{tag_name(tag)} is too long for its VR")
    return data
