"""How the reference engine reads text, reproduced on raw bytes for the fast path.

The reference engine (:mod:`dicomveil.engine.deidentify`) reads some values raw (ASCII with
its padding stripped) and others through pydicom, which converts the element: its writer
then re-encodes it. These helpers give the same text, and tell the fast path when an
element would not come out of that re-encoding unchanged (:class:`Fallback`).
"""

from __future__ import annotations

import warnings
from functools import lru_cache
from typing import Final

from pydicom.charset import convert_encodings, python_encoding
from pydicom.dataelem import RawDataElement
from pydicom.tag import BaseTag
from pydicom.values import convert_string, convert_value

from dicomveil.engine._encoding import text_bytes
from dicomveil.engine.scan import _RISKY_MODALITIES, _RISKY_SOP_PREFIXES
from dicomveil.profile.options import Option
from dicomveil.profile.policy import Policy

__all__ = [
    "Fallback",
    "NeedIdentifiers",
    "NeedMoreData",
    "check_canonical",
    "converted",
    "decoded",
    "encodings",
    "pixel_flags",
    "strip_text",
]

_PRINTABLE: Final = bytes(range(0x20, 0x7F))
_DECODED_VRS: Final = frozenset(
    {"PN", "LO", "SH", "LT", "ST", "UT", "UC", "CS", "AE", "DA", "TM", "DT"}
)


class Fallback(Exception):
    """The fast path cannot promise the reference output for this instance."""


class NeedMoreData(Exception):
    """The data set continues past the bytes given: call again with more of the file."""


class NeedIdentifiers(Exception):
    """The data set has text to clean: call again with its identifying values (see
    :func:`dicomveil.engine.scan.collect_identifiers`)."""


def strip_text(raw: bytes) -> str:
    """``_text`` of a raw ASCII value: padding stripped on both sides."""
    if not raw.isascii():
        raise Fallback  # the reference decodes with the character set (and converts)
    return raw.decode("ascii").strip(" \0")


def converted(raw: bytes) -> str:
    """pydicom's value of a single-valued printable ASCII string (no leading padding)."""
    if raw.translate(None, _PRINTABLE).strip(b"\0"):
        raise Fallback
    text = raw.decode("ascii")
    if "\\" in text or text[:1] in (" ", "\0"):
        raise Fallback
    return text.rstrip("\0 ")


def check_canonical(raw: bytes, vr: str) -> None:
    """Fall back unless re-encoding pydicom's value of ``raw`` gives ``raw`` again."""
    if raw != text_bytes(converted(raw), vr):
        raise Fallback


def encodings(raw: bytes) -> list[str]:
    """The Python encodings of a raw Specific Character Set, as the reader computes them."""
    value = convert_string(raw, True)
    terms = [value] if isinstance(value, str) else list(value)
    if all(term in python_encoding or not term for term in terms):
        return convert_encodings(value)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return convert_encodings(value)


def decoded(raw: bytes, vr: str, charset: tuple[str, ...]) -> str | tuple[str, ...]:
    """pydicom's value of a non-ASCII string element, as text (a tuple when multi-valued).

    Remembered (names repeat across the files of a study; decoding them is slow).
    """
    if vr not in _DECODED_VRS:
        raise Fallback
    return _decoded(raw, vr, charset)


@lru_cache(maxsize=4096)
def _decoded(raw: bytes, vr: str, charset: tuple[str, ...]) -> str | tuple[str, ...]:
    element = RawDataElement(BaseTag(0), vr, len(raw), raw, 0, False, True)
    value = convert_value(vr, element, list(charset))
    if value is None:
        return ""
    if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
        return tuple(str(v) for v in value)
    return str(value)


def pixel_flags(policy: Policy, burned_in: bytes, sop_class: bytes, modality: bytes) -> list[str]:
    """The reference's ``check_pixels`` for an image: its flags, or :class:`Fallback` where
    it refuses the image (with its own message)."""
    if Option.CLEAN_PIXEL_DATA in policy.options:
        raise Fallback  # the pixels are examined on the reference path
    burned = converted(burned_in).strip().upper()
    if burned == "YES":
        if not policy.allow_burned_in_annotation:
            raise Fallback
        return ["burned-in-annotation-allowed"]
    kind = converted(modality).strip().upper()
    risky = kind in _RISKY_MODALITIES or converted(sop_class).startswith(_RISKY_SOP_PREFIXES)
    if risky and burned != "NO":
        return ["possible-burned-in-annotation"]
    return []
