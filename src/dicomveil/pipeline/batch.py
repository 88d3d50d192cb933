"""Teleradiology batches: de-identify a study folder, stage it, upload it, manifest last.

The application service behind ``dicomveil batch`` and the HTTP gateway's batch resources:

- :func:`create_batch` records a new batch (id, priority, organization, destination, policy,
  key id) and its inputs in a journal under ``$DICOMVEIL_HOME/batches/ID/``;
- :func:`resume_batch` drives a batch to its end from wherever it is: de-identify what is not
  yet staged (vault and audit recorded through :class:`~dicomveil.pipeline.recording.RunRecorder`),
  quarantine what cannot be made safe, upload what is staged (concurrent, verified, retried,
  and starting as soon as the first inputs are staged), then upload ``manifest.json`` and
  clean the staging folder;
- :func:`run_batch` does both.

Crash safety rests on three rules: the vault is written before the journal says an input is
de-identified (so a resumed batch never misses a vault record, and the vault's idempotent
``record`` never duplicates one); the journal says an input is uploaded only after the store
verified it; and the manifest goes up only when every staged input is uploaded. Everything
the journal does not yet say is simply done again: outputs are deterministic and uploads
idempotent by key.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dicomveil.audit import AuditLog
from dicomveil.errors import ConfigError
from dicomveil.keystore import key_id
from dicomveil.pipeline.batch_runner import (
    DICOM_CONTENT_TYPE,
    BatchEvents,
    BatchResult,
    BatchRunner,
    clean_staging,
)
from dicomveil.pipeline.batch_state import (
    SUMMARY_NAME,
    BatchInfo,
    Priority,
    batch_folder,
    batch_status,
    new_batch_id,
)
from dicomveil.pipeline.batch_upload import RetryPolicy
from dicomveil.pipeline.journal import Journal, batch_locked
from dicomveil.pipeline.manifest import MANIFEST_NAME
from dicomveil.pipeline.recording import RunRecorder
from dicomveil.pipeline.sources import Skipped, discover
from dicomveil.ports import BlobStore, Clock
from dicomveil.profile.policy import Policy
from dicomveil.vault import Vault

__all__ = [
    "DICOM_CONTENT_TYPE",
    "BatchEvents",
    "BatchResult",
    "create_batch",
    "fetch_manifest",
    "load_batch",
    "resume_batch",
    "run_batch",
    "stopped_by",
]


def create_batch(
    source: Path,
    dest_url: str,
    *,
    policy: Policy,
    key_id: str,
    priority: Priority | str = Priority.ROUTINE,
    endpoint_url: str | None = None,
    home: Path,
    local_dest: Path | None = None,
    clock: Clock | None = None,
    on_skip: Callable[[Skipped], None] | None = None,
    tenant: str | None = None,
) -> BatchInfo:
    """Record a new batch and its inputs; nothing is de-identified or uploaded yet.

    Parameters
    ----------
    source
        A DICOM file or a folder (searched recursively).
    dest_url
        The destination store's URL; objects go under ``<batch id>/`` in it.
    policy
        The de-identification policy; its ``organization`` is the batch's organization.
    key_id
        Public id of the pseudonym key (resumes must use the same key).
    priority
        ``STAT``, ``URGENT`` or ``ROUTINE``.
    endpoint_url
        An S3-compatible endpoint, remembered for resumes.
    home
        The state folder (``$DICOMVEIL_HOME``).
    local_dest
        The destination folder when ``dest_url`` is a ``file://`` URL (checked for overlap).
    clock
        Source of ``created_at`` (default: the system clock, UTC).
    on_skip
        Called with each path under ``source`` that is not read (see
        :mod:`dicomveil.pipeline.sources`: only regular files are inputs).
    tenant
        The organisation (tenant code) the batch is made for, if any: recorded, and on its
        quarantine (``policy`` and the key are the caller's: the organisation's own).

    Raises
    ------
    ConfigError
        When ``source`` is missing or empty, or the source, the state folder and a local
        destination overlap.
    """
    source = source.absolute()
    if not source.exists():
        raise ConfigError(f"{source}: no such file or folder")
    _check_folders(source, home, local_dest)
    now = clock.now() if clock is not None else datetime.now(UTC)
    batch_id = new_batch_id(now)
    folder = batch_folder(home, batch_id)
    info = BatchInfo(
        batch_id=batch_id,
        priority=Priority.parse(priority),
        organization=policy.organization,
        created_at=now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        source=source,
        dest_url=dest_url,
        endpoint_url=endpoint_url,
        key_id=key_id,
        policy=policy,
        folder=folder,
        tenant=tenant,
    )
    with Journal.create(folder, {**info.to_meta(), "state": "created"}) as journal:
        found = journal.add_inputs(discover(source, on_skip))
    if not found:
        shutil.rmtree(folder, ignore_errors=True)  # nothing to keep: no batch was made
        raise ConfigError(f"{source}: no files found")
    return info


def load_batch(batch_id: str, home: Path) -> BatchInfo:
    """Return what an unfinished batch was created with.

    Raises
    ------
    ConfigError
        When the batch does not exist or is already finished (no journal left).
    """
    folder = batch_folder(home, batch_id)
    if (folder / SUMMARY_NAME).is_file():
        raise ConfigError(f"batch {batch_id} is finished; nothing to resume")
    with Journal.open(folder) as journal:
        return BatchInfo.from_meta(journal.meta(), folder)


def run_batch(
    source: Path,
    dest_url: str,
    *,
    store: BlobStore,
    secret: bytes,
    policy: Policy,
    home: Path,
    priority: Priority | str = Priority.ROUTINE,
    endpoint_url: str | None = None,
    local_dest: Path | None = None,
    vault: Vault | None = None,
    audit: AuditLog | None = None,
    actor: str = "dicomveil",
    workers: int | None = None,
    threads: int = 8,
    retry: RetryPolicy | None = None,
    events: BatchEvents | None = None,
) -> BatchResult:
    """Create a batch and drive it to its end: :func:`create_batch` then :func:`resume_batch`.

    The parameters are theirs.
    """
    info = create_batch(
        source,
        dest_url,
        policy=policy,
        key_id=key_id(secret),
        priority=priority,
        endpoint_url=endpoint_url,
        home=home,
        local_dest=local_dest,
    )
    return resume_batch(
        info.batch_id,
        store=store,
        secret=secret,
        home=home,
        vault=vault,
        audit=audit,
        actor=actor,
        workers=workers,
        threads=threads,
        retry=retry,
        events=events,
    )


def resume_batch(
    batch_id: str,
    *,
    store: BlobStore,
    secret: bytes,
    home: Path,
    vault: Vault | None = None,
    audit: AuditLog | None = None,
    actor: str = "dicomveil",
    workers: int | None = None,
    threads: int = 8,
    retry: RetryPolicy | None = None,
    events: BatchEvents | None = None,
) -> BatchResult:
    """Drive a batch to its end from wherever it stopped (the module docstring says how).

    Parameters
    ----------
    batch_id
        The batch.
    store
        Its destination (opened from the batch's URL, e.g. with
        :func:`~dicomveil.pipeline.destination.open_destination`).
    secret
        The pseudonym key the batch was created with.
    home
        The state folder.
    vault, audit, actor
        Where the way back and the audit trail are recorded (``None`` skips one).
    workers
        De-identification processes (default: every core).
    threads
        Concurrent uploads.
    retry
        Backoff for an unavailable destination, per object.
    events
        Progress hooks.

    Returns
    -------
    BatchResult
        ``state`` is ``complete`` (manifest uploaded, staging removed), ``stopped`` (the
        destination failed: staging kept, resume later) or ``failed`` (nothing could be
        de-identified).

    Raises
    ------
    ConfigError
        When the batch does not exist, another process is running it, or ``secret`` is not
        the key the batch was created with.
    """
    folder = batch_folder(home, batch_id)
    if not folder.is_dir():
        raise ConfigError(f"no batch {batch_id} in {home / 'batches'}")
    with batch_locked(folder) as obtained:
        if not obtained:
            raise ConfigError(f"batch {batch_id} is being processed by another process")
        if (folder / SUMMARY_NAME).is_file():  # finished (perhaps killed while cleaning up)
            clean_staging(folder)
            return BatchResult(batch_status(batch_id, home))
        with Journal.open(folder) as journal:
            info = BatchInfo.from_meta(journal.meta(), folder)
            if key_id(secret) != info.key_id:
                raise ConfigError(
                    f"batch {batch_id} was created with pseudonym key {info.key_id}, "
                    f"not {key_id(secret)}: resume it with the same key"
                )
            runner = BatchRunner(info, journal, store, secret, home, events or BatchEvents())
            recorder = RunRecorder(
                vault,
                audit,
                run_id=info.batch_id,
                actor=actor,
                policy=info.policy,
                pseudonym_key_id=info.key_id,
                files=sum(journal.counts().values()),
            )
            with recorder:
                try:
                    result = runner.run(recorder, workers, threads, retry or RetryPolicy())
                except BaseException as exc:  # stopped: say why (batch status shows it)
                    with contextlib.suppress(Exception):
                        journal.set_meta({"state": "stopped", "error": stopped_by(exc)})
                    raise
        if result.status.state == "complete":
            clean_staging(folder)
    return result


def stopped_by(exc: BaseException) -> str:
    """Say why a batch stopped on ``exc`` (PHI-free: the exception's type, never its text,
    which may quote a value)."""
    if isinstance(exc, KeyboardInterrupt):
        return "stopped: interrupted (Ctrl-C or SIGINT); resume it"
    return f"stopped by an unexpected error ({type(exc).__name__}); resume it"


def fetch_manifest(store: BlobStore, batch_id: str) -> dict[str, Any]:
    """Return the manifest of a complete batch, read from its destination.

    Raises
    ------
    ObjectNotFound
        When the batch has no manifest there (not complete yet, or another destination).
    """
    data: dict[str, Any] = json.loads(store.get_bytes(f"{batch_id}/{MANIFEST_NAME}"))
    return data


def _check_folders(source: Path, home: Path, local_dest: Path | None) -> None:
    def inside(child: Path, parent: Path) -> bool:
        return child.resolve().is_relative_to(parent.resolve())

    if source.is_dir() and inside(home, source):
        raise ConfigError("the state folder ($DICOMVEIL_HOME) must not be inside SOURCE")
    if local_dest is not None:
        if source.is_dir() and inside(local_dest, source):
            raise ConfigError("the destination must not be inside SOURCE")
        if inside(home, local_dest) or inside(local_dest, home):
            raise ConfigError("the destination and the state folder must not overlap")
