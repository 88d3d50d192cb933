"""Before de-identifying a request's uploads: parts that repeat an instance, and instances
the archive holds already.

The pseudonymous SOP Instance UID is a keyed function of the original one, so both checks
are made on the original UIDs, read from each upload's first bytes (see
:func:`~dicomveil.web.ingest_work.head_uids`), before any de-identification:

- parts of one request with the same SOP Instance UID: the first is de-identified; a later
  one with the very same bytes shares its fate (stored once, answered as stored); one with
  other bytes is refused (kind :data:`~dicomveil.web.ingest_work.CONFLICT_KIND`). The
  answer no longer depends on which engine process finishes first.
- an instance the archive holds: the upload carries the archived object's SHA-256, and the
  engine compares it with the de-identified result (same: nothing stored again; different:
  refused, or replaced when the ``replace_instances`` setting says so).

An upload whose UIDs cannot be read from its head is de-identified without these checks.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from dicomveil.pipeline.files import FileOutcome
from dicomveil.web.ingest_work import (
    CONFLICT_KIND,
    HeadUids,
    Ingested,
    Upload,
    failed,
    head_uids,
    pseudonymous_uid,
)
from dicomveil.web.services import Services

__all__ = ["Plan", "plan_uploads"]


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
        Uploads refused: an earlier part has their SOP Instance UID and other bytes.
    heads:
        The UIDs read from each upload's head (by number).
    """

    work: list[Upload] = field(default_factory=list)
    copies: dict[int, int] = field(default_factory=dict)
    conflicts: set[int] = field(default_factory=set)
    heads: dict[int, HeadUids] = field(default_factory=dict)

    def results(self, done: list[Ingested], services: Services) -> list[Ingested]:
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
                head = self.heads[number]
                reason = "another part of the request has this SOP Instance UID, other content"
                outcome = failed(source, reason, CONFLICT_KIND)
                uid = pseudonymous_uid(head.sop_instance, services.compiled, services.keys)
                results.append(
                    Ingested(outcome, sop_class_uid=head.sop_class, sop_instance_uid=uid)
                )
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


def _known_sha256(services: Services, head: HeadUids) -> str:
    if not head.sop_instance or not head.study:
        return ""
    compiled, keys = services.compiled, services.keys
    study = pseudonymous_uid(head.study, compiled, keys)
    sop = pseudonymous_uid(head.sop_instance, compiled, keys)
    found = services.index.instances(study, None, sop)
    return found[0].sha256 if found else ""


def plan_uploads(
    services: Services, uploads: list[Path], out: str, *, archive: bool, study: str | None
) -> Plan:
    """Plan the work on a request's ``uploads`` (see the module's documentation)."""
    plan = Plan()
    if len(uploads) == 1 and not archive:  # one instance sent back: nothing to compare
        plan.work.append(Upload(str(uploads[0]), 1, out, archive, study))
        return plan
    by_uid: dict[str, list[int]] = defaultdict(list)
    for number, path in enumerate(uploads, start=1):
        plan.heads[number] = head = head_uids(path)
        if head.sop_instance:
            by_uid[head.sop_instance].append(number)
    for numbers in by_uid.values():
        if len(numbers) > 1:
            first = _digest(uploads[numbers[0] - 1])
            for number in numbers[1:]:
                same = _digest(uploads[number - 1]) == first
                if same:
                    plan.copies[number] = numbers[0]
                else:
                    plan.conflicts.add(number)
    replace = services.settings.replace_instances
    for number, path in enumerate(uploads, start=1):
        if number in plan.copies or number in plan.conflicts:
            continue
        known = _known_sha256(services, plan.heads[number]) if archive else ""
        plan.work.append(Upload(str(path), number, out, archive, study, known, replace))
    return plan
