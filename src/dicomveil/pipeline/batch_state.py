"""What a batch is, where it is kept, and how it is doing: ids, folders, status, listing.

A batch lives in ``$DICOMVEIL_HOME/batches/ID/`` while it runs: ``journal.sqlite`` (see
:mod:`dicomveil.pipeline.journal`), ``staged/`` (the de-identified files waiting for upload)
and ``lock``. When it completes, those are removed and ``summary.json`` (PHI-free) stays, so
``batch status`` and ``batch list`` still know it. Failed inputs are copied to
``$DICOMVEIL_HOME/quarantine/ID/``.

Batch states: ``created`` (inputs being discovered), ``running``, ``stopped`` (the
destination failed; resumable), ``complete`` (manifest uploaded) and ``failed`` (nothing could
be de-identified; no manifest). A ``running`` batch whose process died shows as
``interrupted``: resume it.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from dicomveil.errors import ConfigError
from dicomveil.pipeline.journal import Journal, is_locked
from dicomveil.pipeline.manifest import MANIFEST_NAME
from dicomveil.pipeline.quarantine import input_sha256
from dicomveil.profile.pixel_regions import pixel_settings_to_mapping
from dicomveil.profile.policy import Policy, policy_from_mapping

__all__ = [
    "STAGED_DIR",
    "SUMMARY_NAME",
    "BatchInfo",
    "BatchStatus",
    "Priority",
    "batch_folder",
    "batch_status",
    "journal_status",
    "list_batches",
    "new_batch_id",
    "policy_to_mapping",
    "quarantine_folder",
    "write_summary",
]

STAGED_DIR = "staged"
SUMMARY_NAME = "summary.json"
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_BATCH_ID = re.compile(r"[0-9A-HJKMNP-TV-Z]{26}")


class Priority(StrEnum):
    """How soon the reading service should read the batch."""

    STAT = "STAT"
    URGENT = "URGENT"
    ROUTINE = "ROUTINE"

    @classmethod
    def parse(cls, value: str | Priority) -> Priority:
        """Return the priority named ``value`` (any case).

        Raises
        ------
        ConfigError
            For an unknown name.
        """
        try:
            return cls(str(value).strip().upper())
        except ValueError:
            known = ", ".join(p.value for p in cls)
            raise ConfigError(f"unknown priority {value!r} (known: {known})") from None


def new_batch_id(now: datetime, rand: Callable[[int], bytes] = os.urandom) -> str:
    """Return a new opaque batch id: 26 characters, sorting by creation time (ULID layout).

    48 bits of milliseconds since the epoch, then 80 random bits, in Crockford's base 32.
    """
    millis = int(now.timestamp() * 1000) & ((1 << 48) - 1)
    value = (millis << 80) | int.from_bytes(rand(10), "big")
    return "".join(_CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))


def batch_folder(home: Path, batch_id: str) -> Path:
    """Return the staging folder of ``batch_id`` (which must look like a batch id).

    Raises
    ------
    ConfigError
        When ``batch_id`` is not a batch id (so no path can be smuggled in).
    """
    if not isinstance(batch_id, str) or not _BATCH_ID.fullmatch(batch_id.upper()):
        raise ConfigError(f"{batch_id!r} is not a batch id (26 letters and digits)")
    return home / "batches" / batch_id.upper()


def quarantine_folder(home: Path, batch_id: str) -> Path:
    """Return where the failed inputs of ``batch_id`` are copied."""
    return home / "quarantine" / batch_id


def policy_to_mapping(policy: Policy) -> dict[str, Any]:
    """Return ``policy`` as a policy file's content (the inverse of ``policy_from_mapping``)."""
    tags = {
        f"({tag >> 16:04X},{tag & 0xFFFF:04X})": (
            {"action": o.action.value, "value": o.value}
            if o.value is not None
            else {"action": o.action.value}
        )
        for tag, o in sorted(policy.overrides.items())
    }
    private = [
        {
            "creator": rule.creator,
            "action": rule.action.value,
            **({"group": rule.group} if rule.group is not None else {}),
            **({"element": rule.element} if rule.element is not None else {}),
        }
        for rule in policy.private_rules
    ]
    return {
        "name": policy.name,
        "options": sorted(o.value for o in policy.options),
        "organization": policy.organization,
        "allow_burned_in_annotation": policy.allow_burned_in_annotation,
        **({"trust_burned_in_annotation_no": True} if policy.trust_burned_in_annotation_no else {}),
        **pixel_settings_to_mapping(policy.pixels),
        "tags": tags,
        "private": private,
    }


@dataclass(frozen=True, slots=True)
class BatchInfo:
    """What a batch was created with (kept in its journal)."""

    batch_id: str
    priority: Priority
    organization: str
    created_at: str
    source: Path
    dest_url: str
    endpoint_url: str | None
    key_id: str
    policy: Policy
    folder: Path
    tenant: str | None = None
    """The organisation (tenant code) the batch was made for, when it was bound to one
    (its quarantine records it); ``organization`` is the pseudonym prefix it carries."""

    def to_meta(self) -> dict[str, str]:
        """Return the journal's ``meta`` values."""
        return {
            "batch_id": self.batch_id,
            "priority": self.priority.value,
            "organization": self.organization,
            **({"tenant": self.tenant} if self.tenant else {}),
            "created_at": self.created_at,
            "source": str(self.source),
            "dest_url": self.dest_url,
            "endpoint_url": self.endpoint_url or "",
            "key_id": self.key_id,
            "policy": json.dumps(policy_to_mapping(self.policy), sort_keys=True),
        }

    @classmethod
    def from_meta(cls, meta: Mapping[str, str], folder: Path) -> BatchInfo:
        """Rebuild the info from the journal's ``meta`` values."""
        return cls(
            batch_id=meta["batch_id"],
            priority=Priority.parse(meta["priority"]),
            organization=meta.get("organization", ""),
            created_at=meta["created_at"],
            source=Path(meta["source"]),
            dest_url=meta["dest_url"],
            endpoint_url=meta.get("endpoint_url") or None,
            key_id=meta["key_id"],
            policy=policy_from_mapping(json.loads(meta["policy"])),
            folder=folder,
            tenant=meta.get("tenant") or None,
        )

    @property
    def header(self) -> dict[str, str]:
        """The manifest's header values."""
        from dicomveil import __version__

        return {
            "batch_id": self.batch_id,
            "priority": self.priority.value,
            "organization": self.organization,
            "created_at": self.created_at,
            "generator": f"dicomveil {__version__}",
        }

    @property
    def manifest_key(self) -> str:
        """The manifest's key in the destination store."""
        return f"{self.batch_id}/{MANIFEST_NAME}"


@dataclass(frozen=True, slots=True)
class BatchStatus:
    """How a batch is doing (PHI-free: ids, counts, digests and reasons only)."""

    batch_id: str
    priority: str
    organization: str
    created_at: str
    destination: str
    state: str
    inputs: Mapping[str, int]
    studies: int = 0
    images: int = 0
    bytes: int = 0
    manifest_key: str | None = None
    manifest_sha256: str | None = None
    error: str = ""
    failures: tuple[Mapping[str, str], ...] = ()
    staging: str | None = None
    quarantine: str | None = None
    updated_at: str = field(default="")

    @property
    def resumable(self) -> bool:
        """Whether ``batch resume`` has work to do."""
        return self.state in ("created", "running", "interrupted", "stopped")

    def to_dict(self) -> dict[str, Any]:
        """Return the status as JSON-ready values."""
        return {
            "batch_id": self.batch_id,
            "priority": self.priority,
            "organization": self.organization,
            "created_at": self.created_at,
            "destination": self.destination,
            "state": self.state,
            "inputs": {"total": sum(self.inputs.values()), **self.inputs},
            "studies": self.studies,
            "images": self.images,
            "bytes": self.bytes,
            "manifest": (
                {"key": self.manifest_key, "sha256": self.manifest_sha256}
                if self.manifest_sha256
                else None
            ),
            "error": self.error,
            "failures": [dict(f) for f in self.failures],
            "staging": self.staging,
            "quarantine": self.quarantine,
            "updated_at": self.updated_at,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BatchStatus:
        """Rebuild a status from :meth:`to_dict`'s values."""
        manifest = data.get("manifest") or {}
        inputs = {k: int(v) for k, v in data["inputs"].items() if k != "total"}
        return cls(
            batch_id=data["batch_id"],
            priority=data["priority"],
            organization=data["organization"],
            created_at=data["created_at"],
            destination=data["destination"],
            state=data["state"],
            inputs=inputs,
            studies=int(data["studies"]),
            images=int(data["images"]),
            bytes=int(data["bytes"]),
            manifest_key=manifest.get("key"),
            manifest_sha256=manifest.get("sha256"),
            error=data.get("error", ""),
            failures=tuple(data.get("failures", ())),
            staging=data.get("staging"),
            quarantine=data.get("quarantine"),
            updated_at=data.get("updated_at", ""),
        )


def journal_status(journal: Journal, home: Path, *, running: bool | None = None) -> BatchStatus:
    """Return the status of the batch whose journal is open (``running``: lock held)."""
    meta = journal.meta()
    info = BatchInfo.from_meta(meta, journal.folder)
    state = meta.get("state", "created")
    if running is None:
        running = is_locked(journal.folder)
    if state == "running" and not running:
        state = "interrupted"
    files = [r for r in journal.rows() if r.state in ("deidentified", "uploaded")]
    failed = journal.rows("failed")
    quarantine = quarantine_folder(home, info.batch_id)
    return BatchStatus(
        batch_id=info.batch_id,
        priority=info.priority.value,
        organization=info.organization,
        created_at=info.created_at,
        destination=info.dest_url,
        state=state,
        inputs=journal.counts(),
        studies=len({r.study_id for r in files}),
        images=len({r.path for r in files}),
        bytes=sum({r.path: r.size for r in files}.values()),
        manifest_key=info.manifest_key,
        manifest_sha256=meta.get("manifest_sha256") or None,
        error=meta.get("error", ""),
        failures=tuple(
            {"input_sha256": input_sha256(r.source), "reason": r.reason} for r in failed
        ),
        staging=str(journal.folder),
        quarantine=str(quarantine) if quarantine.is_dir() else None,
        updated_at=_now(),
    )


def write_summary(folder: Path, status: BatchStatus) -> None:
    """Write ``summary.json`` atomically into the batch folder."""
    temporary = folder / (SUMMARY_NAME + ".tmp")
    temporary.write_text(json.dumps(status.to_dict(), indent=2) + "\n", encoding="utf-8")
    os.replace(temporary, folder / SUMMARY_NAME)


def batch_status(batch_id: str, home: Path) -> BatchStatus:
    """Return the status of one batch.

    Raises
    ------
    ConfigError
        When there is no such batch.
    """
    folder = batch_folder(home, batch_id)
    summary = folder / SUMMARY_NAME
    if summary.is_file():
        return BatchStatus.from_dict(json.loads(summary.read_text(encoding="utf-8")))
    if not folder.is_dir():
        raise ConfigError(f"no batch {batch_id} in {home / 'batches'}")
    with Journal.open(folder) as journal:
        return journal_status(journal, home)


def list_batches(home: Path) -> list[BatchStatus]:
    """Return the status of every batch of the state folder, oldest first."""
    root = home / "batches"
    found = []
    for folder in sorted(root.iterdir()) if root.is_dir() else []:
        if _BATCH_ID.fullmatch(folder.name):
            try:
                found.append(batch_status(folder.name, home))
            except ConfigError:  # a batch whose creation never finished
                continue
    return found


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
