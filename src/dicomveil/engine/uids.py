"""Keyed, deterministic UID replacement.

A new UID is ``2.25.`` followed by the decimal form of a UUID (version 8, RFC 9562) whose 122
free bits come from HMAC-SHA256 of the original UID under the pseudonym key. The same original
gives the same new UID in every file, batch and process, so references between instances stay
consistent with no shared table; without the key nobody can confirm a guessed original.

References
----------
DICOM PS3.5 Annex B.2 (UUID-derived UIDs), PS3.15 Table E.1-1 action U.
"""

from __future__ import annotations

from pydicom._uid_dict import UID_dictionary

from dicomveil.engine.keys import PseudonymKeys

__all__ = ["is_registry_uid", "remap_uid"]

_VERSION_MASK = ~(0xF << 76) & ((1 << 128) - 1)
_VARIANT_MASK = ~(0x3 << 62) & ((1 << 128) - 1)


def remap_uid(keys: PseudonymKeys, uid: str) -> str:
    """Return the pseudonymous UID of ``uid``.

    UIDs of the DICOM registry (SOP classes, transfer syntaxes, coding schemes, ...) identify
    nobody and are returned unchanged; so is an empty value.

    Examples
    --------
    >>> keys = PseudonymKeys(b"example-secret-0123456789")
    >>> new = remap_uid(keys, "1.2.3.4")
    >>> new.startswith("2.25.") and len(new) <= 64 and new == remap_uid(keys, "1.2.3.4")
    True
    >>> remap_uid(keys, "1.2.840.10008.5.1.4.1.1.2")  # CT Image Storage is kept
    '1.2.840.10008.5.1.4.1.1.2'
    """
    uid = uid.strip("\0 ")
    if not uid or is_registry_uid(uid):
        return uid
    value = keys.integer("uid", uid, 16)
    value = (value & _VERSION_MASK) | (0x8 << 76)
    value = (value & _VARIANT_MASK) | (0x2 << 62)
    return f"2.25.{value}"


def is_registry_uid(uid: str) -> bool:
    """Tell whether ``uid`` is a well-known UID of the DICOM registry (PS3.6 Annex A)."""
    return uid in UID_dictionary
