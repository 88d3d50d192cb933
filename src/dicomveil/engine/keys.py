"""Keyed derivations: every pseudonym, UID and date shift comes from HMAC-SHA256 of one secret.

Sub-keys are derived per purpose, so a value hashed for one purpose (a UID) cannot be replayed
as another (a patient pseudonym). Results are cached per instance of :class:`PseudonymKeys`
(one per run), which makes repeated UIDs within a study nearly free.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

__all__ = ["PseudonymKeys"]


class PseudonymKeys:
    """The pseudonym secret, ready for keyed derivations.

    Parameters
    ----------
    secret:
        The pseudonym key (at least 16 bytes). Never logged; ``repr`` shows the key id only.

    Examples
    --------
    >>> keys = PseudonymKeys(b"example-secret-0123456789")
    >>> keys.token("patient", "12345", 8) == keys.token("patient", "12345", 8)
    True
    >>> keys.token("patient", "12345", 8) != keys.token("study", "12345", 8)
    True
    """

    __slots__ = ("_cache", "_subkeys", "key_id")

    def __init__(self, secret: bytes) -> None:
        if len(secret) < 16:
            raise ValueError("the pseudonym secret must be at least 16 bytes")
        self.key_id: str = hmac.new(secret, b"dicomveil key id", hashlib.sha256).hexdigest()[:12]
        self._subkeys: dict[str, bytes] = {}
        self._cache: dict[tuple[str, str], bytes] = {}
        for purpose in ("uid", "patient", "accession", "study", "date-shift", "hash"):
            self._subkeys[purpose] = hmac.digest(
                secret, b"dicomveil/v1/" + purpose.encode(), "sha256"
            )

    def __repr__(self) -> str:
        return f"PseudonymKeys(key_id={self.key_id!r})"

    def salted(self, salt: str) -> PseudonymKeys:
        """Keys derived from these and ``salt``: every pseudonym, UID and date shift they give
        differs from (and cannot be linked to) those of the unsalted keys without the secret.

        The gateway's on-the-fly de-identification (not archived) salts with the caller's
        token id, so its answers never reveal what the archive calls a patient.
        """
        if not salt:
            raise ValueError("a salt must not be empty")
        secret = hmac.digest(self._subkeys["hash"], b"dicomveil/v1/salt/" + salt.encode(), "sha256")
        return PseudonymKeys(secret)

    def digest(self, purpose: str, value: str) -> bytes:
        """Return HMAC-SHA256 of ``value`` under the sub-key for ``purpose`` (cached)."""
        cache_key = (purpose, value)
        found = self._cache.get(cache_key)
        if found is None:
            try:
                subkey = self._subkeys[purpose]
            except KeyError:
                subkey = self._subkeys.setdefault(
                    purpose, hmac.digest(self._subkeys["hash"], purpose.encode(), "sha256")
                )
            found = hmac.digest(subkey, value.encode("utf-8", "surrogateescape"), "sha256")
            if len(self._cache) > 200_000:
                self._cache.clear()
            self._cache[cache_key] = found
        return found

    def token(self, purpose: str, value: str, length: int) -> str:
        """Return ``length`` upper-case base32 characters (A-Z, 2-7) derived from ``value``."""
        return base64.b32encode(self.digest(purpose, value)).decode("ascii")[:length]

    def integer(self, purpose: str, value: str, nbytes: int = 8) -> int:
        """Return an unsigned integer of ``nbytes`` bytes derived from ``value``."""
        return int.from_bytes(self.digest(purpose, value)[:nbytes], "big")
