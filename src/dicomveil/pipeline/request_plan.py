"""Before de-identifying a call's instances: parts that repeat an instance, and instances
the archive holds already.

- Parts of one request with the same SOP Instance UID (the pseudonymous one is a keyed
  function of the original, so the original, read from each upload's first bytes by
  :func:`~dicomveil.pipeline.ingest_work.sop_instance_uid_of`, tells): the first is
  de-identified; a later one with the very same bytes shares its fate (stored once,
  answered as stored); one with other bytes is refused (kind
  :data:`~dicomveil.pipeline.ingest_work.CONFLICT_KIND`). The answer no longer depends on which
  engine process finishes first. An upload whose UID cannot be read this way is
  de-identified without the check.
- An instance whose archive key is taken already is not stored by the engine
  (``exists``); :func:`settle_existing` compares it with the indexed instance: the same
  SHA-256 is an idempotent success; other content is refused, or replaces the archived
  object when the ``replace_instances`` setting says so. A key in the archive that the
  index does not know (a crash between the two) is simply stored again.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from dicomveil.pipeline.files import FileOutcome
from dicomveil.pipeline.ingest_work import (
    CONFLICT_KIND,
    Ingested,
    Upload,
    failed,
    pseudonymous_uid,
    sop_instance_uid_of,
    store_results,
)

if TYPE_CHECKING:
    from dicomveil.pipeline.ingest import IngestService

__all__ = ["Plan", "plan_uploads", "settle_existing"]


@dataclass(slots=True)
class Plan:
    """What to do with each upload of a request (numbers from 1, in request order).

    Attributes
    ----------
    work:
        The uploads to de-identify.
    copies:
        Upload number → number of the earlier upload with the same bytes.
    conflicts:
        Uploads refused (number → the earlier upload with their SOP Instance UID and other
        bytes).
    uids:
        The original SOP Instance UID of each upload (by number; ``""``: not read).
    organisation:
        The organisation the request is sent for (its keys name the refused parts).
    """

    work: list[Upload] = field(default_factory=list)
    copies: dict[int, int] = field(default_factory=dict)
    conflicts: dict[int, int] = field(default_factory=dict)
    uids: dict[int, str] = field(default_factory=dict)
    organisation: str | None = None

    def results(self, done: list[Ingested], service: IngestService) -> list[Ingested]:
        """Every upload's :class:`Ingested`, in order, from the results of :attr:`work`."""
        by_number = {upload.number: result for upload, result in zip(self.work, done, strict=True)}
        total = len(self.work) + len(self.copies) + len(self.conflicts)
        results: list[Ingested] = []
        for number in range(1, total + 1):
            source = Path(f"upload-{number}")
            if number in by_number:
                results.append(by_number[number])
            elif number in self.copies:
                results.append(_copy(by_number[self.copies[number]], source))
            else:
                reason = "another part of the request has this SOP Instance UID, other content"
                outcome = failed(source, reason, CONFLICT_KIND)
                keys, compiled = service.engine_for(self.organisation)
                uid = pseudonymous_uid(self.uids[number], compiled, keys)
                sop_class = by_number[self.conflicts[number]].sop_class_uid
                results.append(Ingested(outcome, sop_class_uid=sop_class, sop_instance_uid=uid))
        return results


def _copy(first: Ingested, source: Path) -> Ingested:
    """The result of an upload identical to an earlier one: the same fate, not stored twice
    (no identity: the vault has it from the first)."""
    done = first.outcome
    outcome = FileOutcome(
        source,
        done.status,
        reason=done.reason,
        sha256=done.sha256,
        error_kind=done.error_kind,
    )
    return Ingested(
        outcome,
        record=first.record,
        sop_class_uid=first.sop_class_uid,
        sop_instance_uid=first.sop_instance_uid,
        unchanged=True,
    )


def _digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def settle_existing(service: IngestService, results: list[Ingested]) -> None:
    """Decide on the instances the engine did not store because their key was taken (see
    the module's documentation); store those that replace, or were not indexed."""
    to_store: list[Ingested] = []
    for result in results:
        if not result.exists or result.record is None:
            continue
        values = result.record.values
        found = service.index.instances(
            str(values["StudyInstanceUID"]),
            str(values["SeriesInstanceUID"]),
            str(values["SOPInstanceUID"]),
        )
        if found and found[0].sha256 == result.outcome.sha256:
            result.unchanged = True
        elif found and not service.replace_instances:
            done = result.outcome
            result.outcome = FileOutcome(
                done.source,
                "failed",
                reason="the archive holds different content under this SOP Instance UID",
                sha256=done.sha256,
                error_kind=CONFLICT_KIND,
            )
            if result.staged is not None:
                result.staged.unlink(missing_ok=True)
            result.record, result.staged = None, None
        else:
            result.replaced = bool(found)
            to_store.append(result)
    if to_store:
        store_results(service.store, to_store, overwrite=True)


FOREIGN_STUDY_REASON = "the instance's study is another organisation's"


def refuse_foreign_studies(
    service: IngestService, results: list[Ingested], organisation: str | None
) -> None:
    """Refuse (as conflicts) the instances of a study another organisation's sender (or one
    bound to none, or one bound to an organisation when ``organisation`` is ``None``)
    archived: organisations sharing the server's key map the same original study to the same
    pseudonymous UIDs, and one must never add to, replace in, or read through another's
    study. What this call already stored of them is deleted again (the archive held nothing
    under those keys: an instance whose key was taken was not stored)."""
    pending = [
        (result, result.record.text("StudyInstanceUID"))
        for result in results
        if result.record is not None and not result.unchanged
    ]
    if not pending:
        return
    owners = service.index.owners([uid for _, uid in pending])
    for result, uid in pending:
        if uid not in owners or owners[uid] == organisation:
            continue
        done = result.outcome
        if not result.exists and result.record is not None:
            service.store.delete(result.record.storage_key)
        if result.staged is not None:
            result.staged.unlink(missing_ok=True)
        result.outcome = FileOutcome(
            done.source,
            "failed",
            reason=FOREIGN_STUDY_REASON,
            sha256=done.sha256,
            error_kind=CONFLICT_KIND,
        )
        result.record, result.staged, result.exists = None, None, False


def plan_uploads(
    service: IngestService,
    uploads: list[Path],
    out: str,
    *,
    archive: bool,
    study: str | None,
    organisation: str | None = None,
) -> Plan:
    """Plan the work on a request's ``uploads`` (see the module's documentation), sent for
    ``organisation`` (``None``: none)."""
    plan = Plan(organisation=organisation)
    if len(uploads) == 1:  # nothing to compare within the request
        plan.work.append(Upload(str(uploads[0]), 1, out, archive, study, organisation=organisation))
        return plan
    by_uid: dict[str, list[int]] = defaultdict(list)
    for number, path in enumerate(uploads, start=1):
        plan.uids[number] = uid = sop_instance_uid_of(path)
        if uid:
            by_uid[uid].append(number)
    for numbers in by_uid.values():
        if len(numbers) > 1:
            first = _digest(uploads[numbers[0] - 1])
            for number in numbers[1:]:
                same = _digest(uploads[number - 1]) == first
                if same:
                    plan.copies[number] = numbers[0]
                else:
                    plan.conflicts[number] = numbers[0]
    for number, path in enumerate(uploads, start=1):
        if number not in plan.copies and number not in plan.conflicts:
            plan.work.append(
                Upload(str(path), number, out, archive, study, organisation=organisation)
            )
    return plan
