"""The gateway's settings: one frozen object, from a TOML file, the environment and flags.

Later sources win: defaults, then the ``[server]`` table of a TOML file, then environment
variables (``DICOMVEIL_STORAGE_URL``, ``DICOMVEIL_INDEX_URL``, ``DICOMVEIL_VAULT_URL``,
``DICOMVEIL_IMPORT_ROOT``, ``DICOMVEIL_MAX_BODY_BYTES``, ``DICOMVEIL_BATCH_URL``), then
explicit overrides (command-line flags). Secrets are never settings: the pseudonym key is
read from ``key_file``, ``DICOMVEIL_KEY`` or the state folder, as ``deid`` does.

Example TOML::

    [server]
    storage_url = "s3://archive/deid"
    index_url = "postgresql+psycopg://dicomveil@db/index"
    import_root = "/srv/imports"
    options = ["retain-longitudinal-modified-dates"]
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Final

from dicomveil.errors import ConfigError
from dicomveil.profile.policy import Policy, load_policy

__all__ = ["ENV_SETTINGS", "SECTIONS", "Settings"]

ENV_SETTINGS: Final = "DICOMVEIL_SERVE_SETTINGS"
"""Environment variable through which ``dicomveil serve`` hands settings to its workers."""

_ENV: Final = {
    "storage_url": "DICOMVEIL_STORAGE_URL",
    "index_url": "DICOMVEIL_INDEX_URL",
    "vault_url": "DICOMVEIL_VAULT_URL",
    "import_root": "DICOMVEIL_IMPORT_ROOT",
    "max_body_bytes": "DICOMVEIL_MAX_BODY_BYTES",
    "batch_url": "DICOMVEIL_BATCH_URL",
}
_PATHS: Final = frozenset({"home", "key_file", "policy_file", "import_root"})
_TUPLES: Final = frozenset({"options", "cors_origins"})
_MiB: Final = 1 << 20


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the gateway is configured with (no secrets).

    Attributes
    ----------
    home:
        The state folder (keys, vault, audit log, tokens, default index and archive).
    storage_url:
        Where de-identified instances are archived; default ``file://<home>/archive``.
    index_url:
        The metadata index database; default ``sqlite:///<home>/index.sqlite``.
    vault_url:
        The re-identification vault; default as for ``deid``.
    key_file:
        The pseudonym key file (else ``DICOMVEIL_KEY`` or the state folder's key).
    policy_file, options, organization:
        The de-identification policy, as for ``deid``.
    use_vault:
        Record the way back in the vault (off only for one-way services).
    import_root:
        The only folder server-side batches may read from (``None``: no server-side batches).
    max_body_bytes:
        Largest request body accepted (413 beyond).
    max_instance_bytes:
        Largest single instance (one part of a multipart body, or a raw body).
    qido_default_limit, qido_max_limit:
        Rows returned by a QIDO-RS search without, and at most with, ``limit``.
    case_insensitive_names:
        Match person names regardless of case (PS3.4 §C.2.2.2.1 allows either).
    public_url:
        The service's external base URL for RetrieveURL and BulkDataURI (default: taken
        from each request).
    archive_fsync:
        ``fsync`` every object written to a ``file://`` archive (durable on power loss; off
        trades that for ingest speed).
    archive_sidecars:
        Keep a ``.dicomveil-meta`` sidecar (content type, metadata, sha256) beside every
        object of a ``file://`` archive. Off by default: the index already records each
        stored instance (size, sha256, storage key), and a sidecar doubles the files written.
    batch_url:
        Where batches go; default ``file://<home>-outbox``, beside the state folder (a batch
        destination must not overlap it), each batch under its id.
    batch_workers:
        Worker processes of one batch.
    deid_processes:
        Processes that de-identify uploads, per server process (``0``: one per core;
        ``1``: in the server process itself).
    max_json_bytes:
        Largest body of a route that takes JSON or no body at all (413 beyond): upload
        routes take up to ``max_body_bytes``, every other route this much.
    header_timeout:
        Seconds a client has to send a request's headers (the connection is closed then).
    body_timeout:
        Seconds a request body may pause between two reads (the connection is closed then).
    idle_timeout:
        Seconds an idle keep-alive connection is kept open.
    max_connections:
        Open connections per server process (``0``: half the process's file descriptor
        limit). Beyond it, the connection waiting longest for its request headers (or idle
        longest) is closed to make room; when none is waiting, the newcomer is refused.
    max_render_pixels:
        Largest image (rows × columns × frames rendered) ``/rendered`` and ``/thumbnail``
        decode; larger ones are refused with 413.
    docs:
        Serve the interactive API documentation at ``/docs`` (assets served locally).
    replace_instances:
        A STOW-RS of an archived instance (same pseudonymous patient, study, series and SOP
        Instance UID: the same archive key) whose de-identified content differs replaces
        it; by default it is refused (FailureReason 0111H). Audited either way.
    console:
        Serve the operator console at ``/console/``.
    console_session_seconds:
        How long a console session lasts after login.
    console_secure_cookie:
        Mark the session cookie ``Secure`` (off only for plain-HTTP tests on loopback).
    cors_origins:
        Origins (``https://viewer.example.org``) whose scripts may call DICOMweb with a
        bearer token (CORS); none by default.
    viewer:
        Serve the installed viewer (``dicomveil viewer install``) at ``/viewer/``.
    """

    home: Path
    storage_url: str | None = None
    index_url: str | None = None
    vault_url: str | None = None
    key_file: Path | None = None
    policy_file: Path | None = None
    options: tuple[str, ...] = ()
    organization: str | None = None
    use_vault: bool = True
    import_root: Path | None = None
    max_body_bytes: int = 2048 * _MiB
    max_instance_bytes: int = 1024 * _MiB
    qido_default_limit: int = 100
    qido_max_limit: int = 1000
    case_insensitive_names: bool = True
    public_url: str | None = None
    archive_fsync: bool = True
    archive_sidecars: bool = False
    batch_url: str | None = None
    batch_workers: int = 1
    deid_processes: int = 0
    max_json_bytes: int = 16 * 1024
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    idle_timeout: float = 5.0
    max_connections: int = 0
    max_render_pixels: int = 50_000_000
    docs: bool = True
    replace_instances: bool = False
    console: bool = True
    console_session_seconds: int = 8 * 3600
    console_secure_cookie: bool = True
    cors_origins: tuple[str, ...] = ()
    viewer: bool = True

    def __post_init__(self) -> None:
        if min(self.max_body_bytes, self.max_instance_bytes, self.max_json_bytes) <= 0:
            raise ConfigError("size limits must be positive")
        if self.deid_processes < 0:
            raise ConfigError("deid_processes must be 0 (one per core) or more")
        if min(self.header_timeout, self.body_timeout, self.idle_timeout) <= 0:
            raise ConfigError("timeouts must be positive")
        if self.max_connections < 0:
            raise ConfigError("max_connections must be 0 (automatic) or more")
        if self.max_render_pixels <= 0:
            raise ConfigError("max_render_pixels must be positive")
        if not 0 < self.qido_default_limit <= self.qido_max_limit:
            raise ConfigError("qido_default_limit must be between 1 and qido_max_limit")
        if self.console_session_seconds <= 0:
            raise ConfigError("console_session_seconds must be positive")
        for origin in self.cors_origins:
            check_origin(origin)

    @property
    def archive_url(self) -> str:
        """The storage URL in use."""
        return self.storage_url or f"file://{self.home / 'archive'}"

    @property
    def batch_destination(self) -> str:
        """The batch destination URL in use."""
        return self.batch_url or f"file://{self.home.with_name(self.home.name + '-outbox')}"

    @property
    def database_url(self) -> str:
        """The index URL in use."""
        from dicomveil.index.db import default_index_url

        return self.index_url or default_index_url(self.home)

    def policy(self) -> Policy:
        """Build the de-identification policy.

        Raises
        ------
        ProfileError
            The policy file or an option is invalid.
        """
        policy = load_policy(self.policy_file) if self.policy_file else Policy()
        policy = policy.with_options(self.options)
        if self.organization is not None:
            policy = replace(policy, organization=self.organization)
        return policy

    @classmethod
    def load(
        cls,
        *,
        home: Path | None = None,
        config: Path | None = None,
        environ: Mapping[str, str] | None = None,
        **overrides: Any,
    ) -> Settings:
        """Build settings from a TOML file, the environment and ``overrides``.

        Parameters
        ----------
        home:
            The state folder (default: ``$DICOMVEIL_HOME`` or the platform's folder).
        config:
            A TOML file whose ``[server]`` table holds settings by field name.
        environ:
            The environment (defaults to :data:`os.environ`).
        **overrides:
            Field values that win over everything (``None`` values are ignored).

        Raises
        ------
        ConfigError
            Unknown or malformed settings.
        """
        from dicomveil.home import state_home

        env = dict(os.environ if environ is None else environ)
        values: dict[str, Any] = {}
        if config is not None:
            values.update(_read_toml(config))
        for name, variable in _ENV.items():
            if env.get(variable):
                values[name] = env[variable]
        values.update({k: v for k, v in overrides.items() if v is not None})
        values["home"] = Path(values.get("home") or home or state_home(env))
        return cls.from_mapping(values)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> Settings:
        """Build settings from plain values (strings for paths), checking names and types."""
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ConfigError(f"unknown server setting(s): {', '.join(unknown)}")
        converted: dict[str, Any] = {}
        for name, value in values.items():
            if value is None:
                converted[name] = None
            elif name in _PATHS:
                converted[name] = Path(value).expanduser()
            elif name in _TUPLES:
                items = value.split(",") if isinstance(value, str) else value
                converted[name] = tuple(str(v).strip() for v in items if str(v).strip())
            elif known[name].type in ("int", int):
                try:
                    converted[name] = int(value)
                except (TypeError, ValueError):
                    raise ConfigError(f"server setting {name} must be an integer") from None
            elif known[name].type in ("float", float):
                try:
                    converted[name] = float(value)
                except (TypeError, ValueError):
                    raise ConfigError(f"server setting {name} must be a number") from None
            elif known[name].type in ("bool", bool):
                converted[name] = value if isinstance(value, bool) else str(value) in ("1", "true")
            else:
                converted[name] = value
        return cls(**converted)

    def to_json(self) -> str:
        """Serialize for :data:`ENV_SETTINGS` (paths as strings)."""
        data = asdict(self)
        return json.dumps({k: str(v) if isinstance(v, Path) else v for k, v in data.items()})

    @classmethod
    def from_json(cls, text: str) -> Settings:
        """The inverse of :meth:`to_json`."""
        return cls.from_mapping(json.loads(text))


def check_origin(origin: str) -> None:
    """Refuse an origin that is not ``scheme://host[:port]`` (no path, no wildcard)."""
    from urllib.parse import urlsplit

    parts = urlsplit(origin)
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or origin != (f"{parts.scheme}://{parts.netloc}")
    ):
        raise ConfigError("a CORS origin is scheme://host[:port], without a path")


SECTIONS: Final[dict[str, str]] = {"server": "the gateway (dicomveil serve)"}
"""The tables a configuration file may hold, and what each configures. Only ``[server]``
is read by :meth:`Settings.load`; a section added here is accepted by every reader."""


def _read_toml(path: Path, section: str = "server") -> dict[str, Any]:
    """The ``[section]`` table of the TOML file ``path`` (``{}`` when absent).

    Raises
    ------
    ConfigError
        Unreadable or malformed file, a top-level key outside the known :data:`SECTIONS`,
        or a section that is not a table.
    """
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"config file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: {exc}") from None
    outside = sorted(set(data) - set(SECTIONS))
    if outside:
        known = ", ".join(f"[{name}]" for name in SECTIONS)
        raise ConfigError(
            f"config file {path}: settings outside {known}: {', '.join(outside)} "
            f"(every setting belongs in a table: {known})"
        )
    table = data.get(section, {})
    if not isinstance(table, dict):
        raise ConfigError(f"config file {path}: [{section}] must be a table")
    return table
