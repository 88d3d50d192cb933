"""The ``[routing]`` table of the settings TOML: completion, rules, queue, retries.

Example::

    [routing]
    completion_timeout = 30            # seconds without a new instance: the study is complete
    queue_url = "postgresql+psycopg://dicomveil@db/routing"   # default: SQLite under home
    max_attempts = 8                   # then the forward goes to the dead letters
    backoff_initial = 5.0              # seconds before the 1st retry, doubling...
    backoff_max = 600.0                # ...up to this
    workers = 2                        # forwards running at once
    lease = 120                        # seconds a claimed forward is held (renewed while running)
    ae_title = "DICOMVEIL"             # our AE title for C-STORE (default: [dimse] ae_title)

    [routing.completion_timeouts]      # per source: calling AE title, or "stow", "api"...
    CT_SCANNER = 10

    [[routing.rules]]
    name = "ct-to-reading"
    match = { calling_ae = "CT*", Modality = ["CT", "MR"], StudyDescription = "*HEAD*" }
    action = "cstore"
    destination = "READING"            # a [dimse.destinations.READING] entry...
    # host = "10.0.0.5", port = 104, ae_title = "READING"   # ...or given here
    associations = 4                   # at once, per study (1 for peers that take one)
    priority = "STAT"
    send = "on-arrival"                # or "on-complete" (see below)

Actions: ``cstore`` (``destination`` or ``host``/``port``/``ae_title``), ``stow`` (``url``
of the DICOMweb root, optional ``token_env``: the name of the environment variable holding a
bearer token; a secret never sits in the file), ``webhook`` (``url``, optional ``token_env``)
and ``batch`` (``url`` of a batch destination such as ``s3://bucket/prefix``).

Matching: ``calling_ae`` and ``source`` (the entry: ``dimse``, ``stow``, ``api``...) and any
de-identified attribute keyword the index records (``Modality``, ``StudyDescription``,
``BodyPartExamined``...). A pattern is a string or a list of strings with ``*`` and ``?``
wildcards (case-sensitive, as DICOM matching); a study matches a keyword when any of its
instances' values matches any pattern, and a rule when every keyword matches.

When: ``send = "on-arrival"`` (the default of ``cstore`` and ``stow``) sends each instance
as it is archived, and the forward is done once the study is complete and every instance
acknowledged; ``send = "on-complete"`` waits for completion before sending anything (the
only mode of ``batch`` and ``webhook``, whose unit is the complete study). Matching is
monotone ("any instance"), so a rule that matches the instances received so far matches the
complete study: an on-arrival forward starts with the first instance that makes its rule
match, and covers every instance of the study, those before it included.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, Final, Literal
from urllib.parse import urlsplit

from dicomveil.errors import ConfigError
from dicomveil.pipeline.batch_state import Priority

__all__ = [
    "ACTIONS",
    "SEND_MODES",
    "STREAMING_ACTIONS",
    "Action",
    "SendMode",
    "Rank",
    "Rule",
    "RoutingSettings",
    "Target",
    "default_queue_url",
    "safe_url",
]

Action = Literal["batch", "cstore", "stow", "webhook"]
ACTIONS: Final[tuple[Action, ...]] = ("batch", "cstore", "stow", "webhook")
SendMode = Literal["on-arrival", "on-complete"]
SEND_MODES: Final[tuple[SendMode, ...]] = ("on-arrival", "on-complete")
STREAMING_ACTIONS: Final[frozenset[Action]] = frozenset({"cstore", "stow"})
"""Actions that may send instances before the study is complete (one instance at a time has
a meaning for a C-STORE SCP or a DICOMweb server; a batch or a webhook is about the study)."""
QUEUE_FILE: Final = "routing.sqlite"
_AE_CHARS: Final = frozenset(map(chr, range(0x20, 0x7F))) - {"\\"}

_TOP: Final = frozenset(
    {
        "completion_timeout",
        "completion_timeouts",
        "queue_url",
        "max_attempts",
        "backoff_initial",
        "backoff_max",
        "workers",
        "lease",
        "timeout",
        "ae_title",
        "rules",
    }
)
_RULE: Final = frozenset(
    {
        "name",
        "match",
        "action",
        "priority",
        "destination",
        "host",
        "port",
        "ae_title",
        "url",
        "token_env",
        "associations",
        "send",
    }
)


class Rank(IntEnum):
    """Queue order of a priority: lower runs first (STAT before URGENT before ROUTINE)."""

    STAT = 0
    URGENT = 1
    ROUTINE = 2

    @classmethod
    def of(cls, priority: Priority) -> Rank:
        """Return the rank of ``priority``."""
        return cls[priority.value]


def default_queue_url(home: Path, database_url: str | None = None) -> str:
    """Return the queue's place in the shared database ``database_url`` when one is set,
    else the embedded default: ``sqlite:///<home>/routing.sqlite``."""
    if database_url:
        from dicomveil.database import store_url

        return store_url(database_url, "routing")
    return f"sqlite:///{home / QUEUE_FILE}"


def safe_url(url: str) -> str:
    """Return ``url`` without credentials, query or fragment (for logs, audit, status)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return f"{parts.scheme}://{host}{parts.path}" if parts.scheme else "<url>"


@dataclass(frozen=True, slots=True)
class Target:
    """Where a rule sends: the fields its action needs (never a secret).

    ``label`` names the destination in the queue, the audit log and ``routes status``:
    ``AET@host:port`` or a URL without credentials or query. Sent records are kept per
    label, so two rules sending to the same place share them (nothing is sent twice).
    """

    action: Action
    label: str
    host: str = ""
    port: int = 0
    ae_title: str = ""
    url: str = ""
    token_env: str = ""
    associations: int = 1

    def token(self, environ: Mapping[str, str] | None = None) -> str | None:
        """Return the bearer token from the environment variable named ``token_env``.

        Raises
        ------
        ConfigError
            The variable is named but not set.
        """
        if not self.token_env:
            return None
        value = (os.environ if environ is None else environ).get(self.token_env)
        if not value:
            raise ConfigError(f"routing: environment variable {self.token_env} is not set")
        return value


@dataclass(frozen=True, slots=True)
class Rule:
    """One ``[[routing.rules]]`` entry: what studies it takes and where it sends them."""

    name: str
    target: Target
    priority: Priority = Priority.ROUTINE
    match: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    send: SendMode = "on-complete"

    @property
    def on_arrival(self) -> bool:
        """Whether this rule forwards instances as they arrive (before completion)."""
        return self.send == "on-arrival"

    def matches(self, attributes: Mapping[str, frozenset[str] | set[str]]) -> bool:
        """Tell whether a study with these attribute values (by keyword) matches.

        ``attributes`` holds, per keyword, every value seen in the study (``calling_ae``
        and ``source`` included). A keyword the study lacks never matches. Monotone: values
        are only ever added to a study, so once a rule matches it keeps matching (what lets
        an on-arrival rule be decided before the study is complete).
        """
        for keyword, patterns in self.match.items():
            values = attributes.get(keyword, ())
            if not any(fnmatchcase(v, p) for v in values for p in patterns):
                return False
        return True


@dataclass(frozen=True, slots=True)
class RoutingSettings:
    """The parsed ``[routing]`` table (see the module docstring for the TOML)."""

    queue_url: str
    rules: tuple[Rule, ...] = ()
    completion_timeout: float = 30.0
    completion_timeouts: Mapping[str, float] = field(default_factory=dict)
    max_attempts: int = 8
    backoff_initial: float = 5.0
    backoff_max: float = 600.0
    workers: int = 2
    lease: float = 120.0
    timeout: float = 30.0
    ae_title: str = "DICOMVEIL"

    def quiet_seconds(self, source: str) -> float:
        """Seconds without new instances after which a study from ``source`` is complete."""
        return self.completion_timeouts.get(source, self.completion_timeout)

    @classmethod
    def load(
        cls, config: Path | None, *, home: Path, database_url: str | None = None
    ) -> RoutingSettings:
        """Read ``[routing]`` (and ``[dimse.destinations]``) from ``config``.

        No file, or no ``[routing]`` table, gives the defaults with no rules.

        Raises
        ------
        ConfigError
            Unreadable file, unknown keys, wrong types, an unknown destination or action.
        """
        if config is None:
            return cls(queue_url=default_queue_url(home, database_url))
        try:
            data = tomllib.loads(Path(config).read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"config file {config}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {config}: {exc}") from None
        return cls.from_mapping(data, home=home, database_url=database_url)

    @classmethod
    def from_mapping(
        cls, data: Mapping[str, Any], *, home: Path, database_url: str | None = None
    ) -> RoutingSettings:
        """Build the settings from a parsed TOML document (see :meth:`load`); without
        ``queue_url`` the queue lives in the shared database ``database_url``, if any."""
        table = _table(data.get("routing", {}), "[routing]")
        _known(table, _TOP, "[routing]")
        dimse = _table(data.get("dimse", {}), "[dimse]")
        destinations = _table(dimse.get("destinations", {}), "[dimse.destinations]")
        ae_title = _ae(table.get("ae_title", dimse.get("ae_title", "DICOMVEIL")), "ae_title")
        raw_rules = table.get("rules", [])
        if not isinstance(raw_rules, list):
            raise ConfigError("[[routing.rules]] must be an array of tables")
        rules = tuple(_rule(raw, i, destinations) for i, raw in enumerate(raw_rules))
        names = [rule.name for rule in rules]
        if len(set(names)) != len(names):
            raise ConfigError("[[routing.rules]]: two rules have the same name")
        timeouts = _table(table.get("completion_timeouts", {}), "[routing.completion_timeouts]")
        settings = cls(
            queue_url=str(table.get("queue_url") or default_queue_url(home, database_url)),
            rules=rules,
            completion_timeout=_number(table, "completion_timeout", 30.0),
            completion_timeouts={
                str(k): _number(timeouts, k, 0.0, where="[routing.completion_timeouts]")
                for k in timeouts
            },
            max_attempts=int(_number(table, "max_attempts", 8, minimum=1)),
            backoff_initial=_number(table, "backoff_initial", 5.0),
            backoff_max=_number(table, "backoff_max", 600.0),
            workers=int(_number(table, "workers", 2, minimum=1)),
            lease=_number(table, "lease", 120.0, minimum=1.0),
            timeout=_number(table, "timeout", 30.0, minimum=0.1),
            ae_title=ae_title,
        )
        if settings.backoff_max < settings.backoff_initial:
            raise ConfigError("[routing] backoff_max must be at least backoff_initial")
        return settings


def _table(value: object, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{where} must be a table")
    return value


def _known(table: Mapping[str, Any], known: frozenset[str], where: str) -> None:
    unknown = sorted(set(table) - known)
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})"
        )


def _number(
    table: Mapping[str, Any],
    key: str,
    default: float,
    *,
    minimum: float = 0.0,
    where: str = "[routing]",
) -> float:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < minimum:
        raise ConfigError(f"{where} {key} must be a number >= {minimum:g}")
    return float(value)


def _ae(value: object, what: str) -> str:
    text = str(value).strip() if isinstance(value, str) else ""
    if not text or len(text) > 16 or not set(text) <= _AE_CHARS:
        raise ConfigError(f"routing: {what} must be an AE title of 1 to 16 characters")
    return text


def _rule(raw: object, position: int, destinations: Mapping[str, Any]) -> Rule:
    where = f"[[routing.rules]] #{position + 1}"
    table = _table(raw, where)
    name = table.get("name", f"rule-{position + 1}")
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"{where}: name must be a non-empty string")
    where = f"[[routing.rules]] {name!r}"
    _known(table, _RULE, where)
    action = table.get("action")
    if action not in ACTIONS:
        raise ConfigError(f"{where}: action must be one of {', '.join(ACTIONS)}")
    match: dict[str, tuple[str, ...]] = {}
    for keyword, pattern in _table(table.get("match", {}), f"{where} match").items():
        patterns = [pattern] if isinstance(pattern, str) else pattern
        if not isinstance(patterns, list) or not all(isinstance(p, str) for p in patterns):
            raise ConfigError(f"{where}: match.{keyword} must be a string or a list of strings")
        match[str(keyword)] = tuple(patterns)
    priority = Priority.parse(str(table.get("priority", "ROUTINE")))
    return Rule(
        name=name,
        target=_target(table, action, where, destinations),
        priority=priority,
        match=match,
        send=_send_mode(table, action, where),
    )


def _send_mode(table: Mapping[str, Any], action: Action, where: str) -> SendMode:
    """The rule's ``send``: on-arrival by default where the action can stream."""
    default: SendMode = "on-arrival" if action in STREAMING_ACTIONS else "on-complete"
    value = table.get("send", default)
    if value not in SEND_MODES:
        raise ConfigError(f'{where}: send must be "on-arrival" or "on-complete"')
    if value == "on-arrival" and action not in STREAMING_ACTIONS:
        raise ConfigError(
            f'{where}: send = "on-arrival" is for cstore and stow only (a {action} '
            "goes once the study is complete)"
        )
    return "on-arrival" if value == "on-arrival" else "on-complete"


def _target(
    table: Mapping[str, Any], action: Action, where: str, destinations: Mapping[str, Any]
) -> Target:
    token_env = table.get("token_env", "")
    if not isinstance(token_env, str):
        raise ConfigError(f"{where}: token_env must be the name of an environment variable")
    if action != "cstore":
        url = table.get("url")
        if not isinstance(url, str) or not url:
            raise ConfigError(f"{where}: action {action} needs a url")
        if action in ("stow", "webhook") and urlsplit(url).scheme not in ("http", "https"):
            raise ConfigError(f"{where}: url must be http:// or https://")
        if urlsplit(url).password:
            raise ConfigError(f"{where}: no credentials in the url (use token_env)")
        label = safe_url(url) if action != "batch" else url
        return Target(action=action, label=label, url=url, token_env=token_env)
    node: Mapping[str, Any] = table
    name = table.get("destination")
    if name is not None:
        if not isinstance(name, str) or name not in destinations:
            raise ConfigError(f"{where}: destination is not in [dimse.destinations]")
        node = {"ae_title": name, **_table(destinations[name], f"[dimse.destinations.{name}]")}
    host, port = node.get("host"), node.get("port")
    if not isinstance(host, str) or not host:
        raise ConfigError(f"{where}: cstore needs a host (or a destination)")
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise ConfigError(f"{where}: cstore needs a port from 1 to 65535")
    ae_title = _ae(node.get("ae_title", ""), "ae_title")
    lanes = table.get("associations", 4)
    if isinstance(lanes, bool) or not isinstance(lanes, int) or not 1 <= lanes <= 16:
        raise ConfigError(f"{where}: associations must be a whole number from 1 to 16")
    return Target(
        action=action, label=f"{ae_title}@{host}:{port}", host=host, port=port,
        ae_title=ae_title, associations=lanes,
    )  # fmt: skip
