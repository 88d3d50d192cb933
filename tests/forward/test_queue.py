"""The routing queue and completion tracker on a real SQLite file, with an injected clock.

Senders here are recorders (the real ones are exercised against Orthanc in
``test_orthanc.py``): these tests are about what is queued when, in which order, and what
survives a restart.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from dicomveil.audit import AuditLog
from dicomveil.forward.completion import CompletionTracker
from dicomveil.forward.queue import ForwardQueue, Job, QueuedInstance
from dicomveil.forward.sender import Acknowledge, Delivery, ForwardFailed
from dicomveil.forward.settings import RoutingSettings
from dicomveil.forward.worker import ForwardWorker
from tests.forward.support import Clock, complete_studies, events

RULES = """
[routing]
completion_timeout = 10
max_attempts = 3
backoff_initial = 1
backoff_max = 4
lease = 5
[routing.completion_timeouts]
FASTCT = 2
[[routing.rules]]
name = "ct"
match = {{ calling_ae = "*CT", Modality = "CT" }}
action = "stow"
url = "http://127.0.0.1:9/dicom-web"
priority = "ROUTINE"
[[routing.rules]]
name = "mr-only"
match = {{ Modality = "MR" }}
action = "webhook"
url = "http://127.0.0.1:9/hook"
[[routing.rules]]
name = "stat"
action = "cstore"
host = "127.0.0.1"
port = 9
ae_title = "PACS"
priority = "STAT"
"""


class Recorder:
    """A sender that acknowledges everything (or fails while ``failing``)."""

    def __init__(self, name: str) -> None:
        self.name, self.calls, self.failing = name, [], False
        self.calls: list[list[str]] = []

    def scope(self, job: Job) -> str:
        return f"rec:{self.name}"

    def send(self, delivery: Delivery) -> None:
        if self.failing:
            raise ForwardFailed("HTTP 503")
        uids = [x.sop_instance_uid for x in delivery.pending]
        self.calls.append(uids)
        delivery.sent(uids)


class StreamRecorder:
    """A streaming sender whose streams acknowledge what they are given, at once."""

    def __init__(self) -> None:
        self.submits: list[list[str]] = []
        self.opened = 0
        self.on_submit: Callable[[list[str]], None] | None = None
        """Called after each submit (a test makes something happen meanwhile)."""

    def scope(self, job: Job) -> str:
        return "rec:stream"

    def open(
        self, job: Job, read: Callable[[str], bytes], acknowledge: Acknowledge,
        changed: Callable[[], None],
    ) -> StreamRecorder.Stream:  # fmt: skip
        self.opened += 1
        return StreamRecorder.Stream(self, acknowledge)

    class Stream:
        def __init__(self, owner: StreamRecorder, acknowledge: Acknowledge) -> None:
            self.owner, self.acknowledge = owner, acknowledge

        def submit(self, items: Sequence[QueuedInstance]) -> None:
            uids = [x.sop_instance_uid for x in items]
            self.owner.submits.append(uids)
            self.acknowledge(uids)
            if self.owner.on_submit is not None:
                self.owner.on_submit(uids)

        def busy(self) -> bool:
            return False

        def fatal(self) -> ForwardFailed | None:
            return None

        def rejected(self) -> ForwardFailed | None:
            return None

        def close(self) -> None:
            pass


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.server)])
def settings(tmp_path: Path, request: pytest.FixtureRequest) -> RoutingSettings:
    """The rules above, with the queue in SQLite (the default) or in PostgreSQL."""
    (tmp_path / "routing.toml").write_text(RULES.format())
    loaded = RoutingSettings.load(tmp_path / "routing.toml", home=tmp_path)
    if request.param == "postgresql":
        from tests.conftest import create_postgres_database

        url = create_postgres_database(request.getfixturevalue("postgres_url"), "routing")
        loaded = dataclasses.replace(loaded, queue_url=url)
    return loaded


@pytest.fixture
def queue(settings: RoutingSettings) -> ForwardQueue:
    opened = ForwardQueue.open(settings.queue_url)
    yield opened
    opened.close()


def worker(
    queue: ForwardQueue, settings: RoutingSettings, clock: Clock, audit: AuditLog | None = None
) -> tuple[ForwardWorker, dict[str, Recorder]]:
    senders = {rule.name: Recorder(rule.name) for rule in settings.rules}
    return ForwardWorker(queue, senders, lambda key: b"", settings, audit, clock), senders


class TestCompletion:
    def test_a_study_completes_after_its_quiet_time_and_rules_match(
        self, queue: ForwardQueue, settings: RoutingSettings
    ) -> None:
        clock = Clock()
        tracker = CompletionTracker(queue, settings, clock)
        tracker.record(events("1.2.3", 3))
        clock.now += 1.9
        tracker.record(events("1.2.3", 2, start=3))  # the quiet time starts again
        clock.now += 1.9
        assert tracker.sweep() == []
        assert tracker.next_due() == pytest.approx(0.1)
        clock.now += 0.2
        created = tracker.sweep()
        jobs = {job.rule: job for job in queue.jobs()}
        assert len(created) == 2 and sorted(jobs) == ["ct", "stat"]  # not "mr-only"
        assert jobs["ct"].target == "http://127.0.0.1:9/dicom-web"
        assert jobs["stat"].target == "PACS@127.0.0.1:9"
        assert tracker.sweep() == [] and tracker.next_due() is None

    def test_the_default_quiet_time_applies_to_other_sources(
        self, queue: ForwardQueue, settings: RoutingSettings
    ) -> None:
        clock = Clock()
        tracker = CompletionTracker(queue, settings, clock)
        tracker.record(events("1.2.4", 2, ae="SLOWCT"))
        clock.now += 9.5
        assert tracker.sweep() == []
        clock.now += 0.6
        assert len(tracker.sweep()) == 2

    def test_instances_after_completion_start_a_round_that_sends_only_them(
        self, queue: ForwardQueue, settings: RoutingSettings
    ) -> None:
        clock = Clock()
        tracker = CompletionTracker(queue, settings, clock)
        work, senders = worker(queue, settings, clock)
        tracker.record(events("1.2.5", 4))
        clock.now += 3
        tracker.sweep()
        while work.run_once():
            pass
        tracker.record(events("1.2.5", 2, start=3))  # one again, one new
        clock.now += 3
        assert len(tracker.sweep()) == 2
        while work.run_once():
            pass
        assert [len(c) for c in senders["ct"].calls] == [4, 1]
        assert [len(c) for c in senders["stat"].calls] == [4, 1]
        rounds = sorted((job.rule, job.round, job.total, job.sent) for job in queue.jobs())
        assert rounds == [("ct", 1, 4, 4), ("ct", 2, 5, 1), ("stat", 1, 4, 4), ("stat", 2, 5, 1)]

    def test_open_rounds_survive_a_restart(self, settings: RoutingSettings) -> None:
        clock = Clock()
        first = ForwardQueue.open(settings.queue_url)
        CompletionTracker(first, settings, clock).record(events("1.2.6", 3))
        first.close()  # the process "dies" here
        again = ForwardQueue.open(settings.queue_url)
        try:
            clock.now += 5
            assert len(CompletionTracker(again, settings, clock).sweep()) == 2
        finally:
            again.close()


class TestJobs:
    def test_stat_before_urgent_before_routine_then_oldest_first(
        self, queue: ForwardQueue, tmp_path: Path
    ) -> None:
        toml = tmp_path / "p.toml"
        toml.write_text(
            "".join(
                f'[[routing.rules]]\nname = "{name}"\naction = "webhook"\n'
                f'url = "http://127.0.0.1:9/{name}"\npriority = "{priority}"\n'
                for name, priority in (("r", "ROUTINE"), ("u", "URGENT"), ("s", "STAT"))
            )
        )
        settings = RoutingSettings.load(toml, home=tmp_path)
        clock = Clock()
        complete_studies(CompletionTracker(queue, settings, clock), clock, ("9.1", "9.2"), 1, 31)
        order = []
        while (job := queue.claim("me", clock(), 60)) is not None:
            order.append((job.rule, job.study_uid))
        assert order == [("s", "9.1"), ("s", "9.2"), ("u", "9.1"), ("u", "9.2"),
                         ("r", "9.1"), ("r", "9.2")]  # fmt: skip

    def test_a_job_whose_worker_died_is_claimable_after_its_lease(
        self, queue: ForwardQueue, settings: RoutingSettings
    ) -> None:
        clock = Clock()
        tracker = CompletionTracker(queue, settings, clock)
        tracker.record(events("1.3", 2))
        clock.now += 3
        tracker.sweep()
        first = queue.claim("dead-worker", clock(), settings.lease)
        assert first is not None and first.rule == "stat"
        queue.mark_sent(first.id, "rec:stat", ["1.3.1.0"], clock())
        clock.now += 4
        second = queue.claim("next", clock(), settings.lease)
        assert second is not None and second.rule == "ct"  # the stat job is still leased
        clock.now += 2
        again = queue.claim("next", clock(), settings.lease)
        assert again is not None and again.id == first.id
        assert queue.finish(first, "dead-worker", 2, clock()) is False  # lease lost
        pending, covered = queue.pending(again, "rec:stat")
        assert [x.sop_instance_uid for x in pending] == ["1.3.1.1"] and len(covered) == 2

    def test_sent_records_are_idempotent(self, queue: ForwardQueue) -> None:
        for _ in range(2):
            queue.mark_sent(1, "scope", ["1.2", "1.2", "1.3"], 0.0)
        assert queue.sent_count("scope") == 2 and queue.sent_count("other") == 0

    def test_failures_back_off_then_dead_letter_then_retry(
        self, queue: ForwardQueue, settings: RoutingSettings, tmp_path: Path
    ) -> None:
        clock = Clock()
        audit = AuditLog.open(tmp_path, environ={"DICOMVEIL_HOME": str(tmp_path)})
        tracker = CompletionTracker(queue, settings, clock)
        work, senders = worker(queue, settings, clock, audit)
        for recorder in senders.values():
            recorder.failing = True
        tracker.record(events("1.4", 1))
        clock.now += 3
        tracker.sweep()
        attempts = 0
        while queue.counts()["dead"] < 2:
            if work.run_once() is None:
                clock.now += 1
            else:
                attempts += 1
            assert clock.now < 1_000_100
        assert attempts == 6 and queue.counts() == {"queued": 0, "running": 0, "done": 0,
                                                    "dead": 2}  # fmt: skip
        dead = queue.jobs(["dead"])
        assert {job.error for job in dead} == {"HTTP 503"} and {j.attempts for j in dead} == {3}
        entries = [e for e in audit.entries() if e.event == "forward.study"]
        assert len(entries) == 6 and {e.outcome for e in entries} == {"failure"}
        assert entries[-1].details["state"] == "dead"
        assert entries[-1].details["pseudo_study_uid"] == "1.4"
        for recorder in senders.values():
            recorder.failing = False
        assert queue.retry(dead[0].id, clock()) and not queue.retry(dead[0].id, clock())
        assert work.run_once() is not None and work.run_once() is None
        assert queue.counts()["done"] == 1 and queue.counts()["dead"] == 1


class TestOnArrival:
    """``cstore`` and ``stow`` rules send while the study arrives (``send = "on-arrival"``,
    their default); completion is the commit point; on-complete rules still wait."""

    def test_the_forward_exists_from_the_first_matching_instance(
        self, queue: ForwardQueue, settings: RoutingSettings
    ) -> None:
        clock = Clock()
        tracker = CompletionTracker(queue, settings, clock)
        assert tracker.record(events("5.1", 2, modality="SR"))  # "stat" takes any study
        assert [job.rule for job in queue.jobs()] == ["stat"]
        assert not tracker.record(events("5.1", 1, start=2, modality="SR"))  # nothing new
        assert tracker.record(events("5.1", 1, start=3))  # the first CT: "ct" matches now
        jobs = {job.rule: job for job in queue.jobs()}
        assert sorted(jobs) == ["ct", "stat"]  # not the on-complete "mr-only"
        assert not any(job.complete for job in jobs.values())
        assert (jobs["stat"].total, jobs["ct"].total) == (4, 4)  # the earlier SRs too
        clock.now += 3
        assert sorted(tracker.sweep()) == sorted(job.id for job in jobs.values())
        assert all(job.complete for job in queue.jobs()) and len(queue.jobs()) == 2

    def test_a_parked_forward_is_woken_by_an_arrival_and_by_the_completion(
        self, queue: ForwardQueue, settings: RoutingSettings
    ) -> None:
        clock = Clock()
        tracker = CompletionTracker(queue, settings, clock)
        tracker.record(events("5.2", 2, ae="MR"))  # "stat" only (no "*CT" caller)
        job = queue.claim("w", clock(), 60)
        assert job is not None and not job.complete
        assert not queue.park(job, "w", 1, clock())  # it has seen 1: one arrived since
        assert queue.park(job, "w", 2, clock())
        assert queue.claim("w", clock(), 60) is None  # parked: not due
        assert queue.jobs()[0].parked
        assert tracker.record(events("5.2", 1, start=2, ae="MR"))  # woken
        again = queue.claim("w", clock(), 60)
        assert again is not None and again.id == job.id and again.total == 3
        assert queue.park(again, "w", 3, clock())
        clock.now += 11
        assert tracker.sweep() == [job.id]
        done = queue.claim("w", clock(), 60)
        assert done is not None and done.complete and not done.parked
        assert not queue.park(done, "w", 3, clock())  # complete: it may end now

    def test_the_worker_streams_parks_resumes_and_ends_at_completion(
        self, queue: ForwardQueue, settings: RoutingSettings, tmp_path: Path
    ) -> None:
        clock = Clock()
        audit = AuditLog.open(tmp_path, environ={"DICOMVEIL_HOME": str(tmp_path)})
        tracker = CompletionTracker(queue, settings, clock)
        sender = StreamRecorder()
        work = ForwardWorker(queue, {"stat": sender}, lambda key: b"", settings, audit, clock)
        work.linger = 0.05
        tracker.record(events("5.3", 3, ae="MR"))
        job = work.run_once()  # sends what is there, lingers, parks
        assert job is not None and sender.submits == [["5.3.1.0", "5.3.1.1", "5.3.1.2"]]
        assert work.run_once() is None  # parked
        tracker.record(events("5.3", 3, start=2, ae="MR"))  # one again, two new
        assert work.run_once() is not None
        assert sender.submits[1:] == [["5.3.1.3", "5.3.1.4"]]
        (streaming,) = queue.jobs()
        assert (streaming.state, streaming.sent, streaming.total) == ("queued", 5, 5)
        assert list(audit.entries()) == []  # parking ends no attempt
        clock.now += 11
        tracker.sweep()
        assert work.run_once() is not None and work.run_once() is None
        assert len(sender.submits) == 2 and sender.opened == 3  # nothing left to send
        (done,) = queue.jobs()
        assert (done.state, done.sent, done.total, done.attempts) == ("done", 5, 5, 0)
        (entry,) = [e for e in audit.entries() if e.event == "forward.study"]
        assert entry.outcome == "success" and (
            entry.details["sent"],
            entry.details["instances"],
        ) == (5, 5)

    def test_a_late_arrival_streams_in_a_new_round(
        self, queue: ForwardQueue, settings: RoutingSettings
    ) -> None:
        clock = Clock()
        tracker = CompletionTracker(queue, settings, clock)
        sender = StreamRecorder()
        work = ForwardWorker(queue, {"stat": sender}, lambda key: b"", settings, None, clock)
        tracker.record(events("5.4", 2, ae="MR"))
        clock.now += 11
        tracker.sweep()
        assert work.run_once() is not None
        assert tracker.record(events("5.4", 2, start=1, ae="MR"))  # round 2 starts streaming
        work.linger = 0.05
        assert work.run_once() is not None
        assert sender.submits == [["5.4.1.0", "5.4.1.1"], ["5.4.1.2"]]
        rounds = sorted((job.round, job.state, job.complete) for job in queue.jobs())
        assert rounds == [(1, "done", True), (2, "queued", False)]


def test_the_listener_never_raises(tmp_path: Path) -> None:
    """A broken event (or database) is logged, never raised into the ingest call."""
    from dicomveil.forward.service import Forwarding
    from tests.forward.support import open_runtime

    toml = tmp_path / "r.toml"
    toml.write_text('[[routing.rules]]\naction = "webhook"\nurl = "http://127.0.0.1:9/"\n')
    with open_runtime(tmp_path / "home") as runtime:
        forwarding = Forwarding.open(toml, runtime)
    try:
        bad: Sequence[object] = [object()]
        forwarding.listener(bad)  # type: ignore[arg-type]
        forwarding.listener(events("1.5", 1))
        assert len(forwarding.queue.open_rounds()) == 1
    finally:
        forwarding.stop()


def test_concurrent_first_arrivals_of_a_study_are_all_recorded(
    queue: ForwardQueue, settings: RoutingSettings
) -> None:
    """Associations in parallel threads deliver the first instances of one study at once."""
    from concurrent.futures import ThreadPoolExecutor

    tracker = CompletionTracker(queue, settings, Clock())
    for study in ("7.1", "7.2", "7.3"):
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(tracker.record, [events(study, 2, start=2 * i) for i in range(8)]))
    assert sorted((due.study_uid, due.instances) for due in queue.open_rounds()) == [
        ("7.1", 16), ("7.2", 16), ("7.3", 16)
    ]  # fmt: skip


def test_a_queue_written_before_on_arrival_forwards_is_upgraded(
    settings: RoutingSettings,
) -> None:
    """Opening a queue whose ``forward_jobs`` lacks ``complete`` and ``parked`` (and the new
    indexes) adds them; the jobs there were all created at completion."""
    from sqlalchemy import create_engine, inspect

    clock = Clock()
    old = ForwardQueue.open(settings.queue_url)
    complete_studies(CompletionTracker(old, settings, clock), clock, ("6.1",), 2, 11)
    old.close()
    engine = create_engine(settings.queue_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP INDEX forward_jobs_round")
        conn.exec_driver_sql("DROP INDEX forward_sent_job")
        conn.exec_driver_sql("ALTER TABLE forward_jobs DROP COLUMN complete")
        conn.exec_driver_sql("ALTER TABLE forward_jobs DROP COLUMN parked")
    upgraded = ForwardQueue.open(settings.queue_url)
    try:
        jobs = upgraded.jobs()
        assert len(jobs) == 2 and all(job.complete and not job.parked for job in jobs)
        assert upgraded.claim("w", clock(), 60) is not None
    finally:
        upgraded.close()
    columns = {c["name"] for c in inspect(engine).get_columns("forward_jobs")}
    indexes = {i["name"] for i in inspect(engine).get_indexes("forward_jobs")}
    indexes |= {i["name"] for i in inspect(engine).get_indexes("forward_sent")}
    engine.dispose()
    assert {"complete", "parked"} <= columns
    assert {"forward_jobs_round", "forward_sent_job"} <= indexes


PRIORITY_RULES = """
[routing]
completion_timeout = 10
[[routing.rules]]
name = "routine"
match = { calling_ae = "*CT" }
action = "cstore"
host = "127.0.0.1"
port = 9
ae_title = "PACS"
priority = "ROUTINE"
[[routing.rules]]
name = "urgent"
match = { calling_ae = "ER*" }
action = "cstore"
host = "127.0.0.1"
port = 9
ae_title = "PACS"
priority = "STAT"
"""


def test_a_stat_study_does_not_wait_for_a_routine_one_still_arriving(tmp_path: Path) -> None:
    """One thread streams a ROUTINE study that keeps arriving; a STAT study comes in: the
    thread submits nothing more of the ROUTINE one, gives it back (due, not parked, no
    attempt ended) and takes the STAT one next."""
    import time

    (tmp_path / "routing.toml").write_text(PRIORITY_RULES)
    settings = RoutingSettings.load(tmp_path / "routing.toml", home=tmp_path)
    queue = ForwardQueue.open(settings.queue_url)
    clock = Clock()
    tracker = CompletionTracker(queue, settings, clock)
    routine, urgent = StreamRecorder(), StreamRecorder()
    work = ForwardWorker(
        queue, {"routine": routine, "urgent": urgent}, lambda key: b"", settings, None, clock
    )
    work.linger = 30.0  # without giving way, the ROUTINE study would hold the thread 30 s
    tracker.record(events("6.1", 2, ae="FASTCT"))
    # The STAT study arrives while the ROUTINE one is being sent.
    routine.on_submit = lambda uids: tracker.record(events("6.2", 1, ae="ER1"))
    try:
        started = time.monotonic()
        first = work.run_once()
        assert time.monotonic() - started < 5
        assert first is not None and first.rule == "routine"
        held = {job.rule: job for job in queue.jobs()}["routine"]
        assert (held.state, held.parked, held.attempts, held.sent) == ("queued", False, 0, 2)
        work.linger = 0.05
        second = work.run_once()
        assert second is not None and second.rule == "urgent"
        assert urgent.submits == [["6.2.1.0"]] and routine.submits == [["6.1.1.0", "6.1.1.1"]]
    finally:
        queue.close()
