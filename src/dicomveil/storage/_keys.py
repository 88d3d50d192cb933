"""Rules every backend applies to keys, prefixes, content types and metadata.

One set of rules for all backends, so that a key or a metadata mapping accepted by the memory
store is accepted by S3, Azure, GCS and the file system alike:

- **Keys** are relative, ``/``-separated paths such as ``studies/2.25.1234/0001.dcm``: 1 to
  1024 bytes of UTF-8, no leading or trailing ``/``, no empty, ``.`` or ``..`` segment, no
  backslash or control character, and no segment starting with ``.dicomveil-`` (reserved for
  the file store's own bookkeeping). A key can therefore never escape the store's root.
- **Metadata** keys are lower-case ASCII identifiers (``[a-z][a-z0-9_]*``, at most 63
  characters; Azure only accepts identifiers, and S3 lower-cases everything). Values are
  non-empty printable ASCII strings without leading or trailing blanks (HTTP headers trim
  them). Keys plus values take at most 2 KiB (the S3 limit). ``sha256`` is reserved: the store
  writes the content's digest there itself.
- **Metadata values must never carry PHI.** Metadata travels in HTTP headers, shows in cloud
  consoles and inventories and is copied into logs by proxies; put pseudonyms, opaque ids and
  hashes there, never a patient's name, id or dates. Error messages name offending metadata
  *keys* only, never values.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

__all__ = [
    "MAX_KEY_BYTES",
    "MAX_METADATA_BYTES",
    "RESERVED_PREFIX",
    "SHA256_KEY",
    "check_content_type",
    "check_key",
    "check_metadata",
    "check_prefix",
    "is_valid_key",
]

MAX_KEY_BYTES = 1024
MAX_METADATA_BYTES = 2048
RESERVED_PREFIX = ".dicomveil-"
SHA256_KEY = "sha256"

_METADATA_KEY = re.compile(r"[a-z][a-z0-9_]{0,62}")
_METADATA_VALUE = re.compile(r"[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?")
_CONTENT_TYPE = re.compile(r"[A-Za-z0-9!#$&^_.+-]+/[A-Za-z0-9!#$&^_.+-]+(?:\s*;[\x20-\x7e]*)?")
_FORBIDDEN_CHARS = re.compile(r"[\x00-\x1f\x7f\\]")


def check_key(key: str) -> str:
    """Return ``key`` unchanged when it is a valid object key.

    Parameters
    ----------
    key
        The key to check, relative to the store's root.

    Returns
    -------
    str
        The same key.

    Raises
    ------
    TypeError
        When ``key`` is not a string.
    ValueError
        When ``key`` is empty, too long, absolute, contains an empty, ``.`` or ``..`` segment,
        a backslash, a control character, or a reserved segment.
    """
    if not isinstance(key, str):
        raise TypeError(f"key must be str, not {type(key).__name__}")
    problem = _key_problem(key)
    if problem:
        raise ValueError(f"invalid key {key!r}: {problem}")
    return key


def is_valid_key(key: str) -> bool:
    """Return whether ``key`` passes :func:`check_key` (for filtering foreign listings)."""
    return _key_problem(key) is None


def check_prefix(prefix: str) -> str:
    """Return ``prefix`` unchanged when it is a valid listing prefix.

    A prefix is a plain string prefix of keys (``"a/b"`` matches ``"a/b/c"`` and ``"a/bc"``).
    Its complete segments obey the key rules; the last, partial segment may be anything a key
    segment may start with.

    Raises
    ------
    TypeError
        When ``prefix`` is not a string.
    ValueError
        When ``prefix`` could match keys outside the store (absolute, ``..``) or could never
        match a valid key.
    """
    if not isinstance(prefix, str):
        raise TypeError(f"prefix must be str, not {type(prefix).__name__}")
    if prefix == "":
        return prefix
    head, _, last = prefix.rpartition("/")
    problem = _key_problem(head) if head else None
    if problem is None and head == "" and prefix.startswith("/"):
        problem = "must be relative (no leading '/')"
    if problem is None and _FORBIDDEN_CHARS.search(last):
        problem = "contains a backslash or a control character"
    if problem:
        raise ValueError(f"invalid prefix {prefix!r}: {problem}")
    return prefix


def check_content_type(content_type: str) -> str:
    """Return ``content_type`` unchanged when it is a plausible media type (``type/subtype``).

    Raises
    ------
    TypeError
        When ``content_type`` is not a string.
    ValueError
        When it is not of the form ``type/subtype[; parameters]`` in printable ASCII.
    """
    if not isinstance(content_type, str):
        raise TypeError(f"content_type must be str, not {type(content_type).__name__}")
    if len(content_type) > 255 or not _CONTENT_TYPE.fullmatch(content_type):
        raise ValueError("content_type must be a media type such as 'application/dicom'")
    return content_type


def check_metadata(metadata: Mapping[str, str] | None) -> dict[str, str]:
    """Return a validated copy of ``metadata`` (see the module docstring for the rules).

    Raises
    ------
    TypeError
        When ``metadata`` is not a mapping of strings to strings.
    ValueError
        When a key or a value breaks the rules. The message names the key, never the value.
    """
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise TypeError(f"metadata must be a mapping, not {type(metadata).__name__}")
    checked: dict[str, str] = {}
    total = 0
    for name, value in metadata.items():
        if not isinstance(name, str) or not _METADATA_KEY.fullmatch(name):
            raise ValueError(
                f"metadata key {name!r} must be a lower-case ASCII identifier "
                "([a-z][a-z0-9_]*, at most 63 characters)"
            )
        if name == SHA256_KEY:
            raise ValueError(f"metadata key {name!r} is reserved for the content digest")
        if not isinstance(value, str):
            raise TypeError(f"metadata {name!r}: value must be str, not {type(value).__name__}")
        if not _METADATA_VALUE.fullmatch(value):
            raise ValueError(
                f"metadata {name!r}: value must be non-empty printable ASCII "
                "without leading or trailing blanks"
            )
        total += len(name) + len(value)
        checked[name] = value
    if total + len(SHA256_KEY) + 64 > MAX_METADATA_BYTES:
        raise ValueError(f"metadata is too large: at most {MAX_METADATA_BYTES} bytes in all")
    return checked


def _key_problem(key: str) -> str | None:
    """Return why ``key`` is invalid, or ``None`` when it is valid."""
    if key == "":
        return "must not be empty"
    if len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        return f"longer than {MAX_KEY_BYTES} bytes"
    if key.startswith("/"):
        return "must be relative (no leading '/')"
    if _FORBIDDEN_CHARS.search(key):
        return "contains a backslash or a control character"
    for segment in key.split("/"):
        if segment in ("", ".", ".."):
            return "contains an empty, '.' or '..' segment"
        if segment.startswith(RESERVED_PREFIX):
            return f"segments starting with {RESERVED_PREFIX!r} are reserved"
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid Unicode text"
    return None
