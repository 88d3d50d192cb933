"""The task payload: what a queue message says (JSON, no attribute value, ever).

A message names an object in the incoming store and how it came (entry point, audit actor,
priority); the worker reads the instance from the store. The broker therefore never holds
PHI: no patient name, no UID, no original file name (an incoming object is named after the
SHA-256 of its content, :func:`incoming_key`, or by a direct upload's opaque id).

Every field is validated on both sides (:meth:`TaskPayload.from_json`): a message that is
not exactly this schema is refused, not half-read.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any, Final

from dicomveil.cluster.queues import Priority

__all__ = ["SCHEMA_VERSION", "TaskPayload", "incoming_key", "is_digest"]

SCHEMA_VERSION: Final = 1
_DIGEST: Final = re.compile(r"[0-9a-f]{64}")
_KEY: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,511}")
_ACTOR: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9 :._@/+-]{0,127}")
_ENTRY: Final = re.compile(r"[a-z][a-z_-]{0,31}")
_ORGANISATION: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,31}")  # a token's code
_FIELDS: Final = frozenset(
    {
        "v",
        "key",
        "sha256",
        "size",
        "priority",
        "entry",
        "actor",
        "calling_ae",
        "organisation",
        "enqueued_at",
    }
)


def is_digest(text: str) -> bool:
    """Whether ``text`` is a SHA-256 in lowercase hex."""
    return _DIGEST.fullmatch(text) is not None


def incoming_key(sha256: str, organisation: str | None = None) -> str:
    """The incoming store's key of an original whose content has this SHA-256, sent for
    ``organisation`` (``None``: none).

    The organisation is part of the name: the same bytes sent by two organisations are two
    instances (each de-identified with its own prefix and key), so neither may find the
    other's object gone once ingested.

    Raises
    ------
    ValueError
        ``sha256`` is not 64 lowercase hex digits or ``organisation`` not a token's code
        (a name never comes from anything else).
    """
    if not is_digest(sha256):
        raise ValueError("an incoming object is named by a SHA-256 (64 lowercase hex digits)")
    if organisation is None:
        return f"sha256/{sha256}.dcm"  # one folder: a group of writes is one fsync
    if not _ORGANISATION.fullmatch(organisation):
        raise ValueError("invalid organisation")
    return f"sha256/{sha256}-{organisation}.dcm"


def _check_key(key: str) -> str:
    if _KEY.fullmatch(key) is None or ".." in key.split("/") or "//" in key:
        raise ValueError("invalid incoming object key")
    return key


@dataclass(frozen=True, slots=True)
class TaskPayload:
    """One queued instance.

    Attributes
    ----------
    key:
        Its object in the incoming store.
    sha256:
        The SHA-256 of the original when the sender knew it (``""`` for direct uploads),
        checked by the worker before de-identifying.
    size:
        Its size in bytes (``0``: unknown).
    priority:
        Its queue priority.
    entry, actor, calling_ae:
        As in :class:`~dicomveil.pipeline.ingest.Origin` (an AE title and a token's id
        are not patient data).
    organisation:
        The organisation (tenant) the sender's token or AE is bound to (``None``: none);
        the worker de-identifies with its prefix and key and files the study under it.
    enqueued_at:
        When the sender enqueued it (UNIX time), for the task-latency metric.
    """

    key: str
    sha256: str = ""
    size: int = 0
    priority: Priority = Priority.ROUTINE
    entry: str = "worker"
    actor: str = "worker"
    calling_ae: str | None = None
    organisation: str | None = None
    enqueued_at: float = 0.0

    def __post_init__(self) -> None:
        _check_key(self.key)
        if self.sha256 and not is_digest(self.sha256):
            raise ValueError("invalid sha256")
        if self.size < 0:
            raise ValueError("invalid size")
        if _ENTRY.fullmatch(self.entry) is None or _ACTOR.fullmatch(self.actor) is None:
            raise ValueError("invalid origin")
        if self.calling_ae is not None and not re.fullmatch(r"[ -~]{1,16}", self.calling_ae):
            raise ValueError("invalid calling AE title")
        if self.organisation is not None and not _ORGANISATION.fullmatch(self.organisation):
            raise ValueError("invalid organisation")

    def to_json(self) -> dict[str, Any]:
        """The message body (JSON types only)."""
        body = asdict(self)
        body["priority"] = self.priority.value
        return {"v": SCHEMA_VERSION, **body}

    @classmethod
    def from_json(cls, body: object) -> TaskPayload:
        """Validate and read a message body.

        Raises
        ------
        ValueError
            Not exactly this schema (value-free message).
        """
        if not isinstance(body, dict) or body.get("v") != SCHEMA_VERSION:
            raise ValueError("not a dicomveil task payload (version)")
        if set(body) - _FIELDS or "key" not in body:
            raise ValueError("not a dicomveil task payload (fields)")
        values = {k: v for k, v in body.items() if k != "v"}
        types = {"key": str, "sha256": str, "size": int, "entry": str, "actor": str}
        for name, kind in types.items():
            if name in values and (type(values[name]) is not kind):
                raise ValueError(f"not a dicomveil task payload ({name})")
        if values.get("calling_ae") is not None and not isinstance(values["calling_ae"], str):
            raise ValueError("not a dicomveil task payload (calling_ae)")
        if values.get("organisation") is not None and not isinstance(values["organisation"], str):
            raise ValueError("not a dicomveil task payload (organisation)")
        enqueued = values.get("enqueued_at", 0.0)
        if not isinstance(enqueued, int | float) or isinstance(enqueued, bool):
            raise ValueError("not a dicomveil task payload (enqueued_at)")
        try:
            priority = Priority(values.get("priority", Priority.ROUTINE.value))
        except ValueError:
            raise ValueError("not a dicomveil task payload (priority)") from None
        return cls(**{**values, "priority": priority, "enqueued_at": float(enqueued)})
