"""Encoding the header data set and the File Meta Information into output parts.

Elements still raw (as read, in the output encoding, character set unchanged) are
re-emitted from their bytes with one ``struct.pack`` for the header; elements the engine
touched go through pydicom's :func:`~pydicom.filewriter.write_data_element`. Values the
reader left in the file (deferred) become spans of the source file, copied later by the
writer without passing through memory.
"""

from __future__ import annotations

import re
import struct
from typing import Final, NamedTuple

from pydicom.dataelem import RawDataElement, convert_raw_data_element
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import correct_ambiguous_vr_element, write_data_element
from pydicom.tag import BaseTag
from pydicom.valuerep import AMBIGUOUS_VR

from dicomveil.dicomio._model import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME
from dicomveil.dicomio._scan import _LONG_VRS, UNDEFINED, tag_name
from dicomveil.errors import DeidentificationError

__all__ = [
    "MIN_PADDING",
    "PADDING_CREATOR_UID",
    "Parts",
    "SourceSpan",
    "alignment_padding",
    "character_set",
    "encode_elements",
    "encode_file_meta",
    "sorted_tags",
]

_PREFIX: Final = b"\0" * 128 + b"DICM"
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


_UID_CHARS: Final = re.compile(r"[0-9][0-9.]{0,63}")


def _uid_value(value: str, keyword: str) -> bytes:
    text = value.strip("\0 ")
    if not _UID_CHARS.fullmatch(text):
        raise DeidentificationError(f"{keyword} is not a valid UID")
    data = text.encode("ascii")
    return data + b"\0" if len(data) % 2 else data


def _short(tag: int, vr: bytes, value: bytes) -> bytes:
    return struct.pack("<HH2sH", tag >> 16, tag & 0xFFFF, vr, len(value)) + value


def encode_file_meta(
    sop_class_uid: str, sop_instance_uid: str, transfer_syntax: str, *, padding: int = 0
) -> bytes:
    """Return preamble, ``DICM`` and a fresh File Meta Information group.

    The preamble is zeroed; the group holds only the version, the SOP Class and
    Instance UIDs of the data set, the transfer syntax and dicomveil's implementation
    identity. Source/sending/receiving AE titles and private information are never
    copied, and the group length is computed.

    With `padding`, the group is made exactly that many bytes longer by a zero-filled
    (0002,0102) Private Information whose (0002,0100) creator is :data:`PADDING_CREATOR_UID`
    (see :func:`alignment_padding`); `padding` must then be at least :data:`MIN_PADDING`
    and even.

    References
    ----------
    PS3.10 section 7.1.
    """
    version = struct.pack("<HH2sHL", 0x0002, 0x0001, b"OB", 0, 2) + b"\x00\x01"
    name = IMPLEMENTATION_VERSION_NAME.encode("ascii")
    elements = [
        version,
        _short(0x00020002, b"UI", _uid_value(sop_class_uid, "SOPClassUID")),
        _short(0x00020003, b"UI", _uid_value(sop_instance_uid, "SOPInstanceUID")),
        _short(0x00020010, b"UI", _uid_value(transfer_syntax, "TransferSyntaxUID")),
        _short(0x00020012, b"UI", _uid_value(IMPLEMENTATION_CLASS_UID, "ImplementationClassUID")),
        _short(0x00020013, b"SH", name + b" " * (len(name) % 2)),
    ]
    if padding:
        if padding < MIN_PADDING or padding % 2:
            raise ValueError("padding must be even and at least MIN_PADDING bytes")
        elements.append(_PADDING_CREATOR)
        size = padding - MIN_PADDING
        elements.append(struct.pack("<HH2sHL", 0x0002, 0x0102, b"OB", 0, size) + bytes(size))
    body = b"".join(elements)
    group_length = struct.pack("<HH2sHL", 0x0002, 0x0000, b"UL", 4, len(body))
    return _PREFIX + group_length + body


PADDING_CREATOR_UID: Final = IMPLEMENTATION_CLASS_UID + ".1"
"""(0002,0100) creator of the zero-filled alignment padding dicomveil may add to the meta."""
_PADDING_CREATOR: Final = _short(0x00020100, b"UI", _uid_value(PADDING_CREATOR_UID, "creator"))
MIN_PADDING: Final = len(_PADDING_CREATOR) + 12
_PAGE: Final = 4096


def alignment_padding(header_end: int, source_offset: int) -> int:
    """Return the meta padding that puts `header_end` at the page offset of `source_offset`.

    Kernel copies (``copy_file_range``/``sendfile``) of a large span run about 1.7 times
    faster when the span starts at the same offset within a page in the output as in
    the source, so the writer pads the File Meta Information of instances with large
    pixel data by up to 4 KiB to line them up. Returns 0 when no padding can do it
    (odd offsets).
    """
    pad = (source_offset - header_end) % _PAGE
    if pad % 2:
        return 0
    while pad and pad < MIN_PADDING:
        pad += _PAGE
    return pad


_PADDING: Final = {
    **dict.fromkeys(
        ("AE", "AS", "CS", "DA", "DT", "TM", "LO", "LT", "SH", "ST", "UC", "UR", "UT"), b" "
    ),
    "UI": b"\0",
}
"""String VRs whose single ``str`` value pydicom writes verbatim, and their padding."""
_LONG_NAMES: Final = frozenset(vr.decode("ascii") for vr in _LONG_VRS)


def character_set(ds: Dataset) -> str | list[str]:
    """Return the Python encodings of `ds` now, without re-decoding an unchanged term."""
    elem = ds._dict.get(BaseTag(0x00080005))
    original = ds.original_character_set
    if original and isinstance(elem, RawDataElement):
        return original if isinstance(original, str) else list(original)
    return ds._character_set


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
) -> None:
    """Append the encoded elements `tags` of `ds`, in the given order, to `parts`.

    Raw elements in the output encoding are re-emitted from their bytes; single ASCII
    string values of string VRs are encoded directly; every other element goes through
    pydicom's :func:`~pydicom.filewriter.write_data_element`. Group length elements and
    groups 0000-0007 are not written (PS3.5 section 7.2).

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
    charset = character_set(ds)
    fast = ds.original_character_set == charset and ds.original_encoding == (implicit, little)
    elements = ds._dict
    raw_type, padding, long_names = RawDataElement, _PADDING, _LONG_NAMES
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
                if implicit:
                    add(pack_implicit(group, element, length))
                elif vr in long_names:
                    add(pack_long(group, element, vr.encode("ascii"), 0, length))
                else:
                    add(pack_short(group, element, vr.encode("ascii"), length))
                if value is None and length:
                    if not allow_spans:
                        raise DeidentificationError(f"element {tag_name(tag)} was never read")
                    parts.add(b"".join(out))
                    out.clear()
                    parts.span(tell, length)
                elif value:
                    add(value)
                if length == UNDEFINED:
                    add(delimiter)
                continue
        else:
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
            if data is not None:
                if implicit:
                    add(pack_implicit(group, element, len(data)))
                    add(data)
                    continue
                if vr in long_names:
                    add(pack_long(group, element, vr.encode("ascii"), 0, len(data)))
                    add(data)
                    continue
                if len(data) > 0xFFFF:
                    raise DeidentificationError(f"element {tag_name(tag)} is too long for its VR")
                add(pack_short(group, element, vr.encode("ascii"), len(data)))
                add(data)
                continue
        add(_pydicom_encode(ds, tag, implicit, little, charset))
    parts.add(b"".join(out))


def _pydicom_encode(
    ds: Dataset, tag: BaseTag, implicit: bool, little: bool, charset: str | list[str]
) -> bytes:
    fp = DicomBytesIO()
    fp.is_implicit_VR = implicit
    fp.is_little_endian = little
    item = ds._dict[tag]
    original = ds.original_character_set
    try:
        if isinstance(item, RawDataElement) and item.value is not None and original != charset:
            # decode with the character set the value was written in, encode with the new one
            elem = convert_raw_data_element(item, encoding=original or charset, ds=ds)
            if elem.VR in AMBIGUOUS_VR:
                elem = correct_ambiguous_vr_element(elem, ds, little)
        else:
            elem = ds[tag]
        write_data_element(fp, elem, charset)
    except _ENCODE_ERRORS as exc:
        raise DeidentificationError(f"element {tag_name(tag)} cannot be encoded") from exc
    data = fp.getvalue()
    if not implicit and data[4:6] == b"UN" and elem.VR != "UN":
        # pydicom turns an over-long short-length value into UN; a strict writer refuses
        raise DeidentificationError(f"element {tag_name(tag)} is too long for its VR")
    return data
