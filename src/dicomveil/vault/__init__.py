"""The re-identification vault: the way back from pseudonyms to the original identifiers.

Original values are sealed (AES-256-GCM, key derived from the ``vault`` secret); lookups by
original patient identity go through a keyed blind index. Embedded default: SQLite at
``$DICOMVEIL_HOME/vault.sqlite``; shared: PostgreSQL by URL (``DICOMVEIL_VAULT_URL``).
See :mod:`dicomveil.vault.store` for keys and concurrency, :mod:`dicomveil.vault.rotation`
for key rotation.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from dicomveil.keystore import load_key
from dicomveil.vault.db import default_vault_url
from dicomveil.vault.models import (
    OriginalStudy,
    RecordResult,
    RotationReport,
    StudyMatch,
    VaultStats,
)
from dicomveil.vault.rotation import pending_key_id, rotate_vault_key
from dicomveil.vault.store import Vault

__all__ = [
    "OriginalStudy",
    "RecordResult",
    "RotationReport",
    "StudyMatch",
    "Vault",
    "VaultStats",
    "default_vault_url",
    "open_vault",
    "pending_key_id",
    "rotate_vault_key",
]


def open_vault(
    url: str | None = None,
    *,
    key_file: Path | None = None,
    environ: Mapping[str, str] | None = None,
    create: bool = True,
    notice: Callable[[str], None] | None = None,
) -> Vault:
    """Open the configured vault with the configured vault key.

    Parameters
    ----------
    url:
        The vault URL; defaults to ``$DICOMVEIL_VAULT_URL``, else
        ``sqlite:///$DICOMVEIL_HOME/vault.sqlite``.
    key_file:
        An explicit vault key file (else the key store's usual places).
    environ:
        The environment (defaults to :data:`os.environ`).
    create:
        Create the vault and its key on first use (``deid``). Readers (``reidentify``) pass
        false: a missing vault or key is then an error, and nothing is created.
    notice:
        Called with a one-line message when a key is created.

    Raises
    ------
    ConfigError
        No vault key (``create`` false) or an unreadable one.
    VaultError
        No vault (``create`` false), or the key does not open it.
    """
    key = load_key("vault", key_file=key_file, environ=environ, create=create, notice=notice)
    return Vault.open(default_vault_url(url, environ), key.secret, create=create)
