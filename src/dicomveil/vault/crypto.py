"""Sealing original identifiers: AES-256-GCM, HKDF-derived keys and a keyed blind index.

Every secret used here is derived from the *vault secret* (the ``vault`` key of
:mod:`dicomveil.keystore`) with HKDF-SHA256 and a distinct ``info`` label, so the sealing key
and the blind-index key are independent even though they share one secret on disk.

A sealed value is ``version (1 byte) || nonce (12 bytes) || ciphertext || tag (16 bytes)``.
The associated data names the table, the row's pseudonymous key and the field, so a sealed
value copied into another row or field no longer opens.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import unicodedata
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from dicomveil.errors import VaultError
from dicomveil.keystore import key_id

__all__ = ["VaultKey", "associated_data", "normalize_patient"]

_VERSION = b"\x01"
_NONCE_BYTES = 12
_SEAL_INFO = b"dicomveil vault aes-256-gcm v1"
_INDEX_INFO = b"dicomveil vault blind index v1"
_AAD_PREFIX = "dicomveil-vault-v1"


def _derive(secret: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(secret)


def associated_data(table: str, row_key: str, field_name: str) -> bytes:
    """Return the AES-GCM associated data binding a sealed value to its row and field.

    Parameters
    ----------
    table:
        The table holding the value.
    row_key:
        The row's pseudonymous natural key (for example the pseudonymous UID and the
        pseudonym key id), which is stored in clear next to the sealed value.
    field_name:
        The column or logical field the value belongs to.
    """
    return "\x1f".join((_AAD_PREFIX, table, row_key, field_name)).encode("utf-8")


def normalize_patient(patient_id: str, issuer: str) -> bytes:
    """Return the canonical form of an original patient identity for the blind index.

    Unicode NFC, surrounding spaces (DICOM padding) removed, issuer case preserved:
    ``"  12345 "`` from issuer ``"HOSP"`` and ``"12345"`` from ``"HOSP "`` give the same bytes.
    """
    parts = (unicodedata.normalize("NFC", value).strip() for value in (issuer, patient_id))
    return "\x1f".join(parts).encode("utf-8")


@dataclass(frozen=True, slots=True)
class VaultKey:
    """One vault secret, ready to seal, open and compute blind indexes.

    Attributes
    ----------
    id:
        The public key id (:func:`dicomveil.keystore.key_id` of the secret).
    """

    id: str
    _secret: bytes = field(repr=False)
    _aead: AESGCM = field(repr=False)
    _index_key: bytes = field(repr=False)

    @classmethod
    def from_secret(cls, secret: bytes) -> VaultKey:
        """Derive the sealing and blind-index keys from a vault secret."""
        if not secret:
            raise ValueError("the vault secret is empty")
        return cls(
            id=key_id(secret),
            _secret=secret,
            _aead=AESGCM(_derive(secret, _SEAL_INFO)),
            _index_key=_derive(secret, _INDEX_INFO),
        )

    @property
    def secret(self) -> bytes:
        """The raw secret (only for wrapping it under another key during rotation)."""
        return self._secret

    def seal(self, plaintext: bytes, aad: bytes) -> bytes:
        """Encrypt and authenticate ``plaintext`` bound to ``aad``."""
        nonce = os.urandom(_NONCE_BYTES)
        return _VERSION + nonce + self._aead.encrypt(nonce, plaintext, aad)

    def open(self, sealed: bytes, aad: bytes, *, where: str) -> bytes:
        """Decrypt a value made by :meth:`seal`.

        Parameters
        ----------
        sealed:
            The sealed bytes.
        aad:
            The associated data it was sealed with.
        where:
            A PHI-free description of the value's place (table and pseudonymous key), for
            the error message.

        Raises
        ------
        VaultError
            If the value was sealed under another key, moved to another row or field, or
            altered.
        """
        if len(sealed) < 1 + _NONCE_BYTES + 16 or sealed[:1] != _VERSION:
            raise VaultError(f"sealed value in {where} is malformed")
        nonce, body = sealed[1 : 1 + _NONCE_BYTES], sealed[1 + _NONCE_BYTES :]
        try:
            return self._aead.decrypt(nonce, body, aad)
        except InvalidTag:
            raise VaultError(
                f"sealed value in {where} does not open under vault key {self.id} "
                "(wrong key, or the value was altered or moved)"
            ) from None

    def blind_index(self, data: bytes) -> str:
        """Return the keyed blind index (HMAC-SHA256, hex) of already-normalized ``data``."""
        return hmac.new(self._index_key, data, hashlib.sha256).hexdigest()
