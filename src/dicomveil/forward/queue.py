"""The durable outbound queue: arrivals, completion rounds, forwards, sent records.

Everything routing knows lives in one database (SQLite under the state folder by default,
PostgreSQL when ``[routing] queue_url`` names one), so a restart, even after ``kill -9``,
picks up where the process stopped:

- arrivals are written before the ingest call that stored them returns, so an instance
  acknowledged to its sender is known to routing;
- a forward (job) is created in the same transaction that closes its study's round, and at
  most once per (rule, study, source, round); an *on-arrival* forward is created earlier, in
  the transaction that records the first instance its rule matches, with ``complete`` 0:
  it may send at once, but ends (``done``) only once its round is closed (which sets
  ``complete``) and every instance it covers is acknowledged. Between instances it may be
  *parked* (queued, not claimable): the next arrival or the completion wakes it, in the
  transaction that records them;
- a worker *claims* a job with a lease (``lease_until``), renews it while sending, and a job
  whose lease ran out (its worker died) is claimable again;
- each instance a destination acknowledged is recorded in ``forward_sent`` at once, and a
  job only sends what its scope has no record of: nothing is sent twice to a destination
  (the one window left is a kill between the acknowledgement and its record: then that one
  instance is sent again, which DICOM receivers treat as the same SOP Instance);
- failures are retried with exponential backoff; after ``max_attempts`` the job goes to the
  dead letters (``routes status``), from where ``routes retry`` requeues it.

Priorities: the claim takes the lowest rank first (STAT, URGENT, ROUTINE), oldest first.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from sqlalchemy import and_, case, func, or_, select
from sqlalchemy.engine import Connection, Engine, RowMapping
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from dicomveil.database import make_engine, public_url, schema_transaction, write_transaction
from dicomveil.errors import QueueError
from dicomveil.forward import schema
from dicomveil.forward.settings import Rank

__all__ = [
    "STATES",
    "Arrival",
    "DueStudy",
    "ForwardQueue",
    "Job",
    "NewJob",
    "Progress",
    "QueuedInstance",
]

State = Literal["queued", "running", "done", "dead"]
STATES: Final[tuple[State, ...]] = ("queued", "running", "done", "dead")
_MAX_VALUES: Final = 32
"""Distinct values kept per attribute keyword of a study (for rule matching)."""


@dataclass(frozen=True, slots=True)
class Arrival:
    """One stored instance, as routing records it (pseudonymous values only)."""

    study_uid: str
    source: str
    sop_instance_uid: str
    series_uid: str
    sop_class_uid: str
    storage_key: str
    modality: str | None
    attributes: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class DueStudy:
    """A (study, source) round that has been quiet long enough to be complete."""

    study_uid: str
    source: str
    round: int
    last_at: float
    instances: int
    attributes: Mapping[str, frozenset[str]]


@dataclass(frozen=True, slots=True)
class NewJob:
    """A forward to create when a round completes."""

    rule: str
    action: str
    target: str
    rank: Rank


@dataclass(frozen=True, slots=True)
class Job:
    """One forward of a study round to one destination, as the queue holds it."""

    id: int
    rule: str
    action: str
    target: str
    study_uid: str
    source: str
    round: int
    rank: Rank
    state: str
    attempts: int
    not_before: float
    created_at: float
    updated_at: float
    total: int
    sent: int
    error: str | None
    batch_id: str | None
    complete: bool = True
    parked: bool = False

    @classmethod
    def from_row(cls, row: RowMapping) -> Job:
        """Build a job from a ``forward_jobs`` row."""
        return cls(
            id=row["id"],
            rule=row["rule"],
            action=row["action"],
            target=row["target"],
            study_uid=row["study_uid"],
            source=row["source"],
            round=row["round"],
            rank=Rank(row["priority"]),
            state=row["state"],
            attempts=row["attempts"],
            not_before=row["not_before"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            total=row["total"],
            sent=row["sent"],
            error=row["error"],
            batch_id=row["batch_id"],
            complete=bool(row["complete"]),
            parked=bool(row["parked"]),
        )


@dataclass(frozen=True, slots=True)
class Progress:
    """A running job as its worker re-reads it while streaming."""

    held: bool
    """Still leased to the asking worker."""
    complete: bool
    """Its round is closed: nothing more will arrive for it."""
    total: int
    """Instances it covers so far."""


@dataclass(frozen=True, slots=True)
class QueuedInstance:
    """An instance a job has to send: where it is in the archive and what it is."""

    sop_instance_uid: str
    series_uid: str
    sop_class_uid: str
    storage_key: str
    modality: str | None


OnArrival = Callable[[Mapping[str, frozenset[str]]], Sequence[NewJob]]
"""Given a study's attribute values so far, the on-arrival forwards its rules ask for."""


class ForwardQueue:
    """The routing database (see the module docstring). Thread-safe; share one per process.

    Raises
    ------
    QueueError
        From every method when the database fails (the message names the operation and the
        URL without its password, never a value).
    """

    def __init__(self, engine: Engine, url: str) -> None:
        self._engine, self.url = engine, url

    @classmethod
    def open(cls, url: str) -> ForwardQueue:
        """Open (and create the tables of) the queue database at ``url``."""
        engine = make_engine(url, what="routing queue")
        queue = cls(engine, url)
        with queue._failing("create"), schema_transaction(engine) as conn:
            schema.metadata.create_all(conn)
            schema.upgrade(conn)
        return queue

    def close(self) -> None:
        """Release connections."""
        self._engine.dispose()

    # -- arrivals and completion ----------------------------------------------------------

    def record_arrivals(
        self, arrivals: Sequence[Arrival], now: float, on_arrival: OnArrival | None = None
    ) -> bool:
        """Record stored instances: open (or reopen) their study's round, note the time.

        ``on_arrival(attributes)`` returns the on-arrival forwards the rules ask for, given
        the attribute values the study has so far: those its round lacks are created, and
        the round's on-arrival forwards are told (``total``; a parked one is woken).
        Returns whether a forward was created or woken (a worker may have work).
        """
        if not arrivals:
            return False
        groups: dict[tuple[str, str], list[Arrival]] = {}
        for item in arrivals:
            groups.setdefault((item.study_uid, item.source), []).append(item)
        with self._failing("record arrivals"):
            for attempt in range(3):
                try:
                    with write_transaction(self._engine) as conn:
                        woken = [
                            self._arrive(conn, study, source, items, now, on_arrival)
                            for (study, source), items in groups.items()
                        ]
                    return any(woken)
                except IntegrityError:  # another writer inserted the same rows first
                    if attempt == 2:  # (PostgreSQL; SQLite writers take turns)
                        raise
        return False  # pragma: no cover - the loop returns or raises

    def _arrive(
        self,
        conn: Connection,
        study: str,
        source: str,
        items: list[Arrival],
        now: float,
        on_arrival: OnArrival | None,
    ) -> bool:
        a = schema.arrivals
        key = and_(a.c.study_uid == study, a.c.source == source)
        row = conn.execute(select(a).where(key)).mappings().first()
        values = _merge_attributes(row["attributes"] if row else "{}", items)
        if row is None:
            round_ = 1
            conn.execute(
                a.insert().values(
                    study_uid=study, source=source, round=round_, open=1, first_at=now,
                    last_at=now, instances=len(items), attributes=values,
                )
            )  # fmt: skip
        else:
            round_ = row["round"] if row["open"] else row["round"] + 1
            conn.execute(
                a.update()
                .where(key)
                .values(
                    round=round_, open=1, last_at=now, attributes=values,
                    instances=a.c.instances + len(items),
                    first_at=row["first_at"] if row["open"] else now,
                )
            )  # fmt: skip
        i = schema.instances
        known = set(
            conn.execute(
                select(i.c.sop_instance_uid).where(
                    i.c.study_uid == study,
                    i.c.source == source,
                    i.c.sop_instance_uid.in_([x.sop_instance_uid for x in items]),
                )
            ).scalars()
        )
        fresh = {x.sop_instance_uid: x for x in items if x.sop_instance_uid not in known}
        if fresh:
            conn.execute(
                i.insert(),
                [
                    {
                        "study_uid": study, "source": source, "round": round_,
                        "sop_instance_uid": x.sop_instance_uid, "series_uid": x.series_uid,
                        "sop_class_uid": x.sop_class_uid, "storage_key": x.storage_key,
                        "modality": x.modality,
                    }
                    for x in fresh.values()
                ],
            )  # fmt: skip
        if on_arrival is None:
            return False
        attributes = {k: frozenset(v) for k, v in json.loads(values).items()}
        created = self._create_jobs(
            conn, study, source, round_, on_arrival(attributes), now, complete=False
        )
        if not fresh:
            return bool(created)
        j = schema.jobs
        streaming = and_(
            j.c.study_uid == study, j.c.source == source, j.c.round == round_, j.c.complete == 0
        )
        conn.execute(
            j.update()
            .where(streaming, j.c.id.not_in(created or [0]))
            .values(total=_covered(study, source))
        )
        woken = conn.execute(
            j.update().where(streaming, j.c.parked == 1).values(parked=0, not_before=now)
        ).rowcount
        return bool(created) or woken > 0

    def _create_jobs(
        self,
        conn: Connection,
        study: str,
        source: str,
        round_: int,
        new_jobs: Sequence[NewJob],
        now: float,
        *,
        complete: bool,
    ) -> list[int]:
        """Create the forwards of ``new_jobs`` the round lacks; return their ids."""
        if not new_jobs:
            return []
        j = schema.jobs
        existing = set(
            conn.execute(
                select(j.c.rule).where(
                    j.c.study_uid == study, j.c.source == source, j.c.round == round_
                )
            ).scalars()
        )
        created = []
        for new in new_jobs:
            if new.rule in existing:
                continue
            result = conn.execute(
                j.insert().values(
                    rule=new.rule, action=new.action, target=new.target, study_uid=study,
                    source=source, round=round_, priority=int(new.rank), state="queued",
                    attempts=0, not_before=now, created_at=now, updated_at=now,
                    total=_covered(study, source), sent=0, complete=int(complete), parked=0,
                )
            )  # fmt: skip
            key = result.inserted_primary_key
            assert key is not None
            created.append(int(key[0]))
        return created

    def open_rounds(self) -> list[DueStudy]:
        """Return every (study, source) round still open (the caller checks quiet times)."""
        a = schema.arrivals
        with self._failing("list open rounds"), self._engine.connect() as conn:
            rows = conn.execute(select(a).where(a.c.open == 1)).mappings().all()
        return [
            DueStudy(
                study_uid=row["study_uid"],
                source=row["source"],
                round=row["round"],
                last_at=row["last_at"],
                instances=row["instances"],
                attributes={k: frozenset(v) for k, v in json.loads(row["attributes"]).items()},
            )
            for row in rows
        ]

    def complete(self, due: DueStudy, new_jobs: Sequence[NewJob], now: float) -> list[int]:
        """Close ``due``'s round, create its missing jobs and let its on-arrival jobs end,
        in one transaction; return the ids of every job of the round (created now or
        before).

        Nothing happens (``[]``) when an instance arrived since ``due`` was read: the round
        stays open and is looked at again later.
        """
        a, j = schema.arrivals, schema.jobs
        with self._failing("complete a study"), write_transaction(self._engine) as conn:
            closed = conn.execute(
                a.update()
                .where(
                    a.c.study_uid == due.study_uid,
                    a.c.source == due.source,
                    a.c.round == due.round,
                    a.c.open == 1,
                    a.c.last_at == due.last_at,
                )
                .values(open=0)
            ).rowcount
            if closed != 1:
                return []
            self._create_jobs(
                conn, due.study_uid, due.source, due.round, new_jobs, now, complete=True
            )
            of_round = and_(
                j.c.study_uid == due.study_uid, j.c.source == due.source, j.c.round == due.round
            )
            conn.execute(
                j.update()
                .where(of_round, j.c.complete == 0)
                .values(
                    complete=1,
                    parked=0,
                    not_before=case((j.c.parked == 1, now), else_=j.c.not_before),
                )
            )
            ids = conn.execute(select(j.c.id).where(of_round).order_by(j.c.id)).scalars()
            return [int(i) for i in ids]

    # -- jobs -----------------------------------------------------------------------------

    def claim(self, owner: str, now: float, lease: float) -> Job | None:
        """Take the next job due (highest priority, oldest), leased to ``owner``.

        Due: queued and past its ``not_before``, or running with an expired lease (its worker
        died). Returns ``None`` when nothing is due.
        """
        j = schema.jobs
        due = _due(now)
        with self._failing("claim a job"):  # a read first: idle workers poll often
            with self._engine.connect() as conn:
                if conn.execute(select(j.c.id).where(due).limit(1)).first() is None:
                    return None
        with self._failing("claim a job"), write_transaction(self._engine) as conn:
            for _ in range(8):  # another process may take the candidate first (PostgreSQL)
                job_id = conn.execute(
                    select(j.c.id).where(due).order_by(j.c.priority, j.c.id).limit(1)
                ).scalar()
                if job_id is None:
                    return None
                taken = conn.execute(
                    j.update()
                    .where(j.c.id == job_id, due)
                    .values(state="running", lease_owner=owner, lease_until=now + lease,
                            updated_at=now, parked=0)
                ).rowcount  # fmt: skip
                if taken == 1:
                    row = conn.execute(select(j).where(j.c.id == job_id)).mappings().one()
                    return Job.from_row(row)
        return None

    def more_urgent_due(self, rank: Rank, now: float) -> bool:
        """Whether a job more urgent than ``rank`` is due: a thread holding a job that can
        wait gives it back for it (see :mod:`.worker`)."""
        j = schema.jobs
        urgent = and_(_due(now), j.c.priority < int(rank))
        with self._failing("look for urgent jobs"), self._engine.connect() as conn:
            return conn.execute(select(j.c.id).where(urgent).limit(1)).first() is not None

    def set_batch_id(self, job_id: int, batch_id: str) -> None:
        """Remember the batch a job ships (a retry fills the same batch)."""
        j = schema.jobs
        with self._failing("update a job"), write_transaction(self._engine) as conn:
            conn.execute(j.update().where(j.c.id == job_id).values(batch_id=batch_id))

    def pending(self, job: Job, scope: str) -> tuple[list[QueuedInstance], list[QueuedInstance]]:
        """Return the instances of ``job`` not yet sent to ``scope``, and all of them.

        A job covers every instance its (study, source) delivered up to its round.
        """
        i, s = schema.instances, schema.sent
        where = and_(
            i.c.study_uid == job.study_uid, i.c.source == job.source, i.c.round <= job.round
        )
        with self._failing("list pending instances"), self._engine.connect() as conn:
            done = set(
                conn.execute(
                    select(s.c.sop_instance_uid).where(
                        s.c.scope == scope,
                        s.c.sop_instance_uid.in_(
                            select(i.c.sop_instance_uid).where(where).scalar_subquery()
                        ),
                    )
                ).scalars()
            )
            rows = conn.execute(
                select(i).where(where).order_by(i.c.series_uid, i.c.sop_instance_uid)
            ).mappings()
            covered = [
                QueuedInstance(
                    sop_instance_uid=r["sop_instance_uid"],
                    series_uid=r["series_uid"],
                    sop_class_uid=r["sop_class_uid"],
                    storage_key=r["storage_key"],
                    modality=r["modality"],
                )
                for r in rows
            ]
        return [x for x in covered if x.sop_instance_uid not in done], covered

    def mark_sent(self, job_id: int, scope: str, sop_uids: Iterable[str], now: float) -> None:
        """Record instances ``scope`` acknowledged (one short transaction; idempotent)."""
        s = schema.sent
        rows = [
            {"scope": scope, "sop_instance_uid": u, "job_id": job_id, "sent_at": now}
            for u in dict.fromkeys(sop_uids)
        ]
        if not rows:
            return
        j = schema.jobs
        with self._failing("record sent instances"), write_transaction(self._engine) as conn:
            insert = _insert_ignore(conn, s).values(rows).returning(s.c.sop_instance_uid)
            added = len(conn.execute(insert).all())  # (rowcount: -1 on some drivers)
            if added > 0:
                conn.execute(j.update().where(j.c.id == job_id).values(sent=j.c.sent + added))

    def renew(self, job_id: int, owner: str, until: float) -> bool:
        """Extend ``owner``'s lease on a running job; ``False`` if it lost the job."""
        j = schema.jobs
        with self._failing("renew a lease"), write_transaction(self._engine) as conn:
            return bool(
                conn.execute(
                    j.update()
                    .where(j.c.id == job_id, j.c.state == "running", j.c.lease_owner == owner)
                    .values(lease_until=until)
                ).rowcount
            )

    def progress(self, job_id: int, owner: str) -> Progress:
        """Re-read a running job: still ``owner``'s, its round closed, instances covered."""
        j = schema.jobs
        with self._failing("read a job"), self._engine.connect() as conn:
            row = conn.execute(
                select(j.c.state, j.c.lease_owner, j.c.complete, j.c.total).where(j.c.id == job_id)
            ).first()
        if row is None:
            return Progress(held=False, complete=True, total=0)
        held = row.state == "running" and row.lease_owner == owner
        return Progress(held=held, complete=bool(row.complete), total=int(row.total))

    def park(self, job: Job, owner: str, total: int, now: float) -> bool:
        """Give a running on-arrival job back until its next arrival or its completion.

        Only while nothing changed since ``owner`` last looked: the round is still open and
        covers ``total`` instances (else ``False``: an arrival or the completion came in
        between, and the caller goes on sending).
        """
        j = schema.jobs
        with self._failing("park a job"), write_transaction(self._engine) as conn:
            return bool(
                conn.execute(
                    j.update()
                    .where(
                        j.c.id == job.id, j.c.state == "running", j.c.lease_owner == owner,
                        j.c.complete == 0, j.c.total == total,
                    )
                    .values(state="queued", parked=1, lease_owner=None, lease_until=None,
                            not_before=now, updated_at=now)
                ).rowcount
            )  # fmt: skip

    def release(self, job: Job, owner: str, now: float) -> bool:
        """Give a running job back, due now (its worker stops; not a failed attempt)."""
        j = schema.jobs
        with self._failing("release a job"), write_transaction(self._engine) as conn:
            return bool(
                conn.execute(
                    j.update()
                    .where(j.c.id == job.id, j.c.state == "running", j.c.lease_owner == owner)
                    .values(state="queued", lease_owner=None, lease_until=None,
                            not_before=now, updated_at=now)
                ).rowcount
            )  # fmt: skip

    def finish(self, job: Job, owner: str, total: int, now: float) -> bool:
        """Mark a job done (``total`` instances covered); ``False`` if ``owner`` lost it."""
        return self._end(job.id, owner, now, state="done", total=total, error=None)

    def fail(
        self, job: Job, owner: str, error: str, now: float, *, total: int, retry_at: float | None
    ) -> bool:
        """Count a failed attempt: queue it again at ``retry_at``, or dead-letter it (``None``).

        ``error`` is a value-free reason (an error kind, a DIMSE status, an HTTP status).
        Returns ``False`` when ``owner`` no longer holds the job.
        """
        state: State = "dead" if retry_at is None else "queued"
        j = schema.jobs
        values: dict[str, Any] = {"attempts": j.c.attempts + 1, "not_before": retry_at or now}
        values["total"] = total
        return self._end(job.id, owner, now, state=state, error=error[:255], **values)

    def _end(self, job_id: int, owner: str, now: float, **values: Any) -> bool:
        j, s = schema.jobs, schema.sent
        sent = select(func.count()).select_from(s).where(s.c.job_id == job_id).scalar_subquery()
        values["sent"] = sent
        with self._failing("update a job"), write_transaction(self._engine) as conn:
            return bool(
                conn.execute(
                    j.update()
                    .where(j.c.id == job_id, j.c.state == "running", j.c.lease_owner == owner)
                    .values(lease_owner=None, lease_until=None, updated_at=now, **values)
                ).rowcount
            )

    def retry(self, job_id: int, now: float) -> bool:
        """Requeue a dead-lettered job with fresh attempts; ``False`` if it is not dead."""
        j = schema.jobs
        with self._failing("requeue a job"), write_transaction(self._engine) as conn:
            return bool(
                conn.execute(
                    j.update()
                    .where(j.c.id == job_id, j.c.state == "dead")
                    .values(state="queued", attempts=0, not_before=now, updated_at=now)
                ).rowcount
            )

    def jobs(self, states: Sequence[str] = STATES, limit: int = 1000) -> list[Job]:
        """Return jobs in ``states``, most urgent first, then newest first."""
        j = schema.jobs
        with self._failing("list jobs"), self._engine.connect() as conn:
            rows = conn.execute(
                select(j)
                .where(j.c.state.in_(list(states)))
                .order_by(j.c.priority, j.c.id.desc())
                .limit(limit)
            ).mappings()
            return [Job.from_row(row) for row in rows]

    def counts(self) -> dict[str, int]:
        """Return how many jobs are in each state (every state listed)."""
        j = schema.jobs
        with self._failing("count jobs"), self._engine.connect() as conn:
            rows = conn.execute(select(j.c.state, func.count()).group_by(j.c.state)).all()
        found = {str(state): int(n) for state, n in rows}
        return {state: found.get(state, 0) for state in STATES}

    def sent_count(self, scope: str) -> int:
        """Return how many instances ``scope`` acknowledged."""
        s = schema.sent
        with self._failing("count sent instances"), self._engine.connect() as conn:
            query = select(func.count()).select_from(s).where(s.c.scope == scope)
            return int(conn.execute(query).scalar_one())

    def _failing(self, operation: str) -> _MapErrors:
        return _MapErrors(operation, self.url)


class _MapErrors:
    """Turn database errors into a :class:`QueueError` naming the operation only."""

    def __init__(self, operation: str, url: str) -> None:
        self._operation, self._url = operation, url

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, exc: BaseException | None, tb: object) -> None:
        if isinstance(exc, SQLAlchemyError):
            where = public_url(self._url, "routing queue")
            raise QueueError(
                f"routing queue {where}: could not {self._operation} ({type(exc).__name__})"
            ) from exc


def _due(now: float) -> Any:
    """Jobs a thread may take at ``now``: queued, not parked, past their backoff; or running
    under a lease that ran out (their worker died)."""
    j = schema.jobs
    return or_(
        and_(j.c.state == "queued", j.c.parked == 0, j.c.not_before <= now),
        and_(j.c.state == "running", j.c.lease_until < now),
    )


def _covered(study: str, source: str) -> Any:
    """How many instances a (study, source) delivered: what its newest round's jobs cover."""
    i = schema.instances
    return (
        select(func.count())
        .select_from(i)
        .where(i.c.study_uid == study, i.c.source == source)
        .scalar_subquery()
    )


def _insert_ignore(conn: Connection, table: Any) -> Any:
    """An INSERT that skips rows whose primary key exists (SQLite and PostgreSQL)."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table).on_conflict_do_nothing()
    if conn.dialect.name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(table).on_conflict_do_nothing()
    raise QueueError(f"routing queue: {conn.dialect.name} databases are not supported")


def _merge_attributes(current: str, items: Iterable[Arrival]) -> str:
    """Add the items' attribute values to a study's JSON (keyword -> sorted distinct values)."""
    merged: dict[str, set[str]] = {k: set(v) for k, v in json.loads(current).items()}
    for item in items:
        pairs = dict(item.attributes)
        if item.modality:
            pairs["Modality"] = item.modality
        for keyword, value in pairs.items():
            values = merged.setdefault(keyword, set())
            if value and len(values) < _MAX_VALUES:
                values.add(value)
    return json.dumps({k: sorted(v) for k, v in sorted(merged.items())}, separators=(",", ":"))
