"""Loading and creating dicomveil's secret keys.

Three independent secrets, each one line of text:

``pseudonym``
    Keys every pseudonym, UID and date shift (HMAC-SHA256). Same key, same output, anywhere.
``vault``
    Seals the original identifiers in the re-identification vault (AES-256-GCM).
``audit``
    Authenticates each audit log entry (HMAC-SHA256).

Where a key comes from, first match wins: an explicit file (``--key-file``), the
environment (``DICOMVEIL_KEY``, ``DICOMVEIL_VAULT_KEY``, ``DICOMVEIL_AUDIT_KEY``, or ``*_FILE``
variants naming a file), then its default file (:func:`default_key_path`), created on first
use (mode 0600) with a notice.

Default files: ``$DICOMVEIL_KEYS_HOME/<name>.key`` when that variable names a key folder;
otherwise the pseudonym and vault keys in ``$DICOMVEIL_HOME/keys`` and the audit key in a
folder *beside* the state folder, ``<$DICOMVEIL_HOME>.keys`` (``~/.local/share/dicomveil.keys``
by default): a copy of the state folder (log included) then holds no key that can rewrite
or re-authenticate the audit chain. An install whose audit key already sits in
``$DICOMVEIL_HOME/keys`` keeps using it (nothing is moved silently; the gateway warns).

A key file may instead hold a key wrapped by AWS KMS (``keys init --kms KEY_ID``, envelope
encryption, see :mod:`dicomveil.kms`): it is unwrapped when loaded, and the file alone reveals
nothing. A local key file stays the default.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from dicomveil.errors import ConfigError
from dicomveil.home import state_home

__all__ = [
    "KEY_NAMES",
    "KeyName",
    "LoadedKey",
    "MissingKeyError",
    "create_key_file",
    "default_key_path",
    "key_id",
    "separate_key_folder",
    "load_key",
]

KeyName = Literal["pseudonym", "vault", "audit"]
KEY_NAMES: tuple[KeyName, ...] = ("pseudonym", "vault", "audit")
ENV_VARS: Mapping[KeyName, str] = {
    "pseudonym": "DICOMVEIL_KEY",
    "vault": "DICOMVEIL_VAULT_KEY",
    "audit": "DICOMVEIL_AUDIT_KEY",
}
MIN_SECRET_CHARS = 16
KEYS_HOME_VAR = "DICOMVEIL_KEYS_HOME"


class MissingKeyError(ConfigError):
    """No key was found anywhere and :func:`load_key` was told not to create one."""


@dataclass(frozen=True, slots=True)
class LoadedKey:
    """A secret and where it came from (the origin is safe to print; the secret is not)."""

    name: KeyName
    secret: bytes
    origin: str
    created: bool = False
    kms_key_id: str = ""
    """The KMS key wrapping the key file, or empty for a key kept in clear."""

    @property
    def id(self) -> str:
        """A short public identifier of the key (never reveals the secret)."""
        return key_id(self.secret)

    def __repr__(self) -> str:
        return f"LoadedKey(name={self.name!r}, id={self.id!r}, origin={self.origin!r})"


def key_id(secret: bytes) -> str:
    """Return a 12-hex-digit identifier derived from ``secret`` by HMAC (not reversible)."""
    return hmac.new(secret, b"dicomveil key id", hashlib.sha256).hexdigest()[:12]


_UNWRAPPED: dict[tuple[str, str], tuple[bytes, str]] = {}
"""Keys unwrapped by KMS in this process, by (what, wrapped text): one KMS call per key."""


def _read_secret(path: Path, what: str) -> bytes:
    return _read_key(path, what)[0]


def _read_key(path: Path, what: str) -> tuple[bytes, str]:
    """Return (the key, the KMS key id wrapping it or ``""``) from the key file ``path``."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{what}: key file {path} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"{what}: key file {path} cannot be read ({exc.strerror})") from None
    from dicomveil import kms

    if not kms.is_wrapped(text):
        return _validate(text, what), ""
    cached = _UNWRAPPED.get((what, text.strip()))
    if cached is None:
        cached = _UNWRAPPED[(what, text.strip())] = kms.unwrap_key(text, path, what)
    return cached


def _loaded(name: KeyName, path: Path, what: str, created: bool = False) -> LoadedKey:
    secret, kms_key_id = _read_key(path, what)
    return LoadedKey(name, secret, f"file {path}", created=created, kms_key_id=kms_key_id)


def _validate(text: str, what: str) -> bytes:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) != 1:
        raise ConfigError(f"{what}: a key is one line of text ({len(lines)} lines found)")
    if len(lines[0]) < MIN_SECRET_CHARS:
        raise ConfigError(f"{what}: key is too short (at least {MIN_SECRET_CHARS} characters)")
    return lines[0].encode("utf-8")


def create_key_file(
    path: Path, *, overwrite: bool = False, kms_key_id: str = "", name: KeyName | None = None
) -> bytes:
    """Write a new random key (256 bits, urlsafe base64) to ``path`` with mode 0600.

    With ``kms_key_id``, KMS makes the key and the file holds it wrapped by that KMS key
    (``name`` says which key it is: it binds the wrapped key to its purpose).

    Raises
    ------
    ConfigError
        If ``path`` exists and ``overwrite`` is false, or the KMS refuses.
    """
    if kms_key_id:
        from dicomveil import kms

        if name is None:
            raise ConfigError("a KMS-wrapped key needs its name (pseudonym, vault or audit)")
        if path.exists() and not overwrite:
            raise ConfigError(f"key file {path} already exists")
        secret, line = kms.generate_wrapped_key(name, kms_key_id)
        content = line.encode("utf-8")
    else:
        secret = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=")
        content = secret
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if overwrite else os.O_EXCL)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        raise ConfigError(f"key file {path} already exists") from None
    with os.fdopen(fd, "wb") as handle:
        handle.write(content + b"\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.chmod(path, 0o600)
    return secret


def separate_key_folder(home: Path, environ: Mapping[str, str] | None = None) -> Path:
    """The key folder kept apart from the state folder ``home``: ``$DICOMVEIL_KEYS_HOME``,
    else ``<home>.keys`` beside it (never inside it)."""
    env = os.environ if environ is None else environ
    configured = env.get(KEYS_HOME_VAR)
    return Path(configured).expanduser() if configured else home.with_name(home.name + ".keys")


def default_key_path(name: KeyName, home: Path, environ: Mapping[str, str] | None = None) -> Path:
    """The file the ``name`` key is read from (or created in) when none is given explicitly.

    An existing file wins, the one in the separate key folder first, then the one in
    ``home/keys`` (where every key lived before); a new key goes into the separate folder
    for the audit key (and for every key when ``$DICOMVEIL_KEYS_HOME`` is set), else into
    ``home/keys``.
    """
    env = os.environ if environ is None else environ
    separate = separate_key_folder(home, env) / f"{name}.key"
    legacy = home / "keys" / f"{name}.key"
    if separate.exists() or (not legacy.exists() and (name == "audit" or KEYS_HOME_VAR in env)):
        return separate
    return legacy


def load_key(
    name: KeyName,
    *,
    key_file: Path | None = None,
    environ: Mapping[str, str] | None = None,
    home: Path | None = None,
    create: bool = True,
    notice: Callable[[str], None] | None = None,
) -> LoadedKey:
    """Find the ``name`` key, creating it under the state folder on first use.

    Parameters
    ----------
    name:
        Which key: ``"pseudonym"``, ``"vault"`` or ``"audit"``.
    key_file:
        An explicit key file; wins over everything else.
    environ:
        The environment (defaults to :data:`os.environ`).
    home:
        The state folder (defaults to :func:`dicomveil.home.state_home`).
    create:
        Create the key in the state folder when no key is found anywhere.
    notice:
        Called with a one-line message when a key is created.
    """
    what = f"{name} key"
    if key_file is not None:
        return _loaded(name, Path(key_file), what)
    env = os.environ if environ is None else environ
    var = ENV_VARS[name]
    if env.get(var):
        return LoadedKey(name, _validate(env[var], what), f"environment {var}")
    if env.get(f"{var}_FILE"):
        return _loaded(name, Path(env[f"{var}_FILE"]), what)
    path = default_key_path(name, home if home is not None else state_home(dict(env)), env)
    if path.exists():
        return _loaded(name, path, what)
    if not create:
        raise MissingKeyError(f"{what}: none found (set {var}, or run `dicomveil keys init`)")
    try:
        secret = create_key_file(path)
        created = True
    except ConfigError:  # another process created it first
        secret, created = _read_secret(path, what), False
    if created and notice is not None:
        notice(
            f"Created a new {name} key at {path} (mode 0600). Back it up: without it "
            "pseudonyms cannot be reproduced."
            if name == "pseudonym"
            else f"Created a new {name} key at {path} (mode 0600). Back it up."
        )
    return LoadedKey(name, secret, f"file {path}", created=created)
