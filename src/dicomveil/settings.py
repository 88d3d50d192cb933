"""The core settings every entry point shares: one frozen object, from TOML, environment, flags.

:class:`CoreSettings` holds what the ingest service needs (state folder, archive, index,
vault, key, policy, batches, engine processes); the gateway's
:class:`dicomveil.web.settings.Settings` extends it with web concerns (limits, timeouts,
console, CORS), and the DICOM node and the router read their own tables of the same file.

Later sources win: defaults, then the ``[server]`` table of a TOML file, then environment
variables (``DICOMVEIL_STORAGE_URL``, ``DICOMVEIL_DATABASE_URL``, ``DICOMVEIL_INDEX_URL``,
``DICOMVEIL_VAULT_URL``, ``DICOMVEIL_BATCH_URL``, and the subclasses' own), then explicit
overrides (command-line flags). Secrets are never settings: the pseudonym key is read from
``key_file``, ``DICOMVEIL_KEY`` or the state folder, as ``deid`` does.

Example TOML::

    [server]
    storage_url = "s3://archive/deid"
    database_url = "postgresql+psycopg://dicomveil@db/dicomveil"   # every shared table
    options = ["retain-longitudinal-modified-dates"]
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, ClassVar, Final, Self

from dicomveil.errors import ConfigError
from dicomveil.profile.policy import Policy, load_policy

__all__ = ["SECTIONS", "CoreSettings", "read_section"]

_MiB: Final = 1 << 20

SECTIONS: Final[dict[str, str]] = {
    "server": "the gateway and the ingest service (dicomveil serve, scp)",
    "dimse": "the DICOM node (dicomveil scp, serve --dimse-port)",
    "routing": "routing of complete studies (rules, outbound queue)",
    "cluster": "cluster mode: queue URL, incoming store (dicomveil worker, serve --queue)",
    "uploads": "direct uploads: limits, URL expiry (POST /api/v1/uploads)",
    "events": "signed CloudEvents webhooks: endpoints, secret, retries",
    "organisations": "tenants: [organisations.<CODE>] pseudonym prefix and key (dicomveil.tenants)",
    "retention": "how long archive, quarantine, spool and audit keep things (retention run)",
}
"""The tables a configuration file may hold, and what each configures. ``[server]`` is read
by :meth:`CoreSettings.load`; the others by their own modules (:func:`read_section`)."""


@dataclass(frozen=True, slots=True)
class CoreSettings:
    """What the ingest service is configured with (no secrets, no web concerns).

    Attributes
    ----------
    home:
        The state folder (keys, vault, audit log, tokens, default index and archive).
    storage_url:
        Where de-identified instances are archived; default ``file://<home>/archive``.
    database_url:
        The shared database (``--database``, ``DICOMVEIL_DATABASE_URL``): when set, the
        default home of every shared table (vault, index, tokens, audit chain, routing
        queue and study completion; see :func:`dicomveil.database.store_url` and
        docs/deploy-state.md). ``None``: each keeps its embedded default under ``home``.
    index_url:
        The metadata index database (wins over ``database_url``); default
        ``sqlite:///<home>/index.sqlite``.
    vault_url:
        The re-identification vault (wins over ``database_url``); default as for ``deid``.
    key_file:
        The pseudonym key file (else ``DICOMVEIL_KEY`` or the state folder's key).
    policy_file, options, organization:
        The de-identification policy, as for ``deid``.
    use_vault:
        Record the way back in the vault (off only for one-way services).
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
        Processes that de-identify received instances, per server process (``0``: one per
        core; ``1``: in the server process itself).
    replace_instances:
        An instance received again (same archive key) whose de-identified content differs
        replaces the archived one; by default it is refused (STOW-RS FailureReason 0111H).
        Audited either way.
    config_file:
        The configuration file these settings were read from (set by :meth:`load`, not a
        key of the file): the ``[dimse]`` and ``[routing]`` tables are read from it by the
        services that own them, in every process that opens a runtime.
    """

    home: Path
    storage_url: str | None = None
    database_url: str | None = None
    index_url: str | None = None
    vault_url: str | None = None
    key_file: Path | None = None
    policy_file: Path | None = None
    options: tuple[str, ...] = ()
    organization: str | None = None
    use_vault: bool = True
    archive_fsync: bool = True
    archive_sidecars: bool = False
    batch_url: str | None = None
    batch_workers: int = 1
    deid_processes: int = 0
    replace_instances: bool = False
    config_file: Path | None = field(default=None, metadata={"set_by": "--config"})

    ENV: ClassVar[Mapping[str, str]] = {
        "storage_url": "DICOMVEIL_STORAGE_URL",
        "database_url": "DICOMVEIL_DATABASE_URL",
        "index_url": "DICOMVEIL_INDEX_URL",
        "vault_url": "DICOMVEIL_VAULT_URL",
        "batch_url": "DICOMVEIL_BATCH_URL",
    }
    """Environment variable of each setting that has one."""
    PATHS: ClassVar[frozenset[str]] = frozenset({"home", "key_file", "policy_file", "config_file"})
    TUPLES: ClassVar[frozenset[str]] = frozenset({"options"})
    STRICT: ClassVar[bool] = False
    """Refuse unknown ``[server]`` keys. The core reader ignores them (the table is shared
    with the gateway, whose :class:`~dicomveil.web.settings.Settings` checks every key)."""

    def __post_init__(self) -> None:
        if self.deid_processes < 0:
            raise ConfigError("deid_processes must be 0 (one per core) or more")

    @property
    def archive_url(self) -> str:
        """The storage URL in use."""
        return self.storage_url or f"file://{self.home / 'archive'}"

    @property
    def batch_destination(self) -> str:
        """The batch destination URL in use."""
        return self.batch_url or f"file://{self.home.with_name(self.home.name + '-outbox')}"

    @property
    def index_database(self) -> str:
        """The index URL in use: ``index_url``, else in ``database_url``, else embedded."""
        from dicomveil.database import store_url
        from dicomveil.index.db import default_index_url

        if self.index_url:
            return self.index_url
        if self.database_url:
            return store_url(self.database_url, "index")
        return default_index_url(self.home)

    @property
    def vault_database(self) -> str | None:
        """The vault URL: ``vault_url``, else in ``database_url``, else ``None`` (the
        vault's own default, see :func:`dicomveil.vault.default_vault_url`)."""
        from dicomveil.database import store_url

        if self.vault_url:
            return self.vault_url
        return store_url(self.database_url, "vault") if self.database_url else None

    def core(self) -> CoreSettings:
        """The core settings alone (for a subclass: its core fields)."""
        if type(self) is CoreSettings:
            return self
        names = {f.name for f in fields(CoreSettings)}
        return CoreSettings(
            **{f.name: getattr(self, f.name) for f in fields(self) if f.name in names}
        )

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
    ) -> Self:
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
            Unknown (for the gateway's settings) or malformed settings.
        """
        from dicomveil.home import state_home

        env = dict(os.environ if environ is None else environ)
        values: dict[str, Any] = {}
        if config is not None:
            values.update(read_section(config, "server"))
            if "config_file" in values:
                raise ConfigError("config_file is not a setting: it is the file read (--config)")
        for name, variable in cls.ENV.items():
            if env.get(variable):
                values[name] = env[variable]
        values.update({k: v for k, v in overrides.items() if v is not None})
        values["home"] = Path(values.get("home") or home or state_home(env))
        if config is not None:
            values["config_file"] = Path(config)
        if not cls.STRICT:
            known = {f.name for f in fields(cls)}
            values = {k: v for k, v in values.items() if k in known}
        return cls.from_mapping(values)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> Self:
        """Build settings from plain values (strings for paths), checking names and types."""
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ConfigError(f"unknown server setting(s): {', '.join(unknown)}")
        converted: dict[str, Any] = {}
        for name, value in values.items():
            converted[name] = cls._convert(name, known[name].type, value)
        return cls(**converted)

    @classmethod
    def _convert(cls, name: str, kind: object, value: Any) -> Any:
        if value is None:
            return None
        if name in cls.PATHS:
            return Path(value).expanduser()
        if name in cls.TUPLES:
            items = value.split(",") if isinstance(value, str) else value
            return tuple(str(v).strip() for v in items if str(v).strip())
        if kind in ("int", int):
            try:
                return int(value)
            except (TypeError, ValueError):
                raise ConfigError(f"server setting {name} must be an integer") from None
        if kind in ("float", float):
            try:
                return float(value)
            except (TypeError, ValueError):
                raise ConfigError(f"server setting {name} must be a number") from None
        if kind in ("bool", bool):
            return value if isinstance(value, bool) else str(value) in ("1", "true")
        return value

    def to_json(self) -> str:
        """Serialize (paths as strings): how ``serve`` hands settings to its workers."""
        data = asdict(self)
        return json.dumps({k: str(v) if isinstance(v, Path) else v for k, v in data.items()})

    @classmethod
    def from_json(cls, text: str) -> Self:
        """The inverse of :meth:`to_json`."""
        return cls.from_mapping(json.loads(text))


def read_section(path: Path, section: str) -> dict[str, Any]:
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
