"""A ``--pool threads`` worker shares one runtime between its tasks: a task must neither close
a runtime it did not see fail, nor let a runtime closed under it end its message as done.

Found in a benchmark: a task whose runtime failed to open reset the state, closing the
runtime another task had opened since; its staging folder was swept while the other tasks
used it, their ``runtime.workspace()`` raised, and Celery acknowledged those messages (3 of
300 instances never ingested). Real runtimes here (SQLite, a folder archive).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom.data import get_testdata_file

from dicomveil.cluster.payload import TaskPayload, incoming_key
from dicomveil.cluster.settings import ClusterSettings
from dicomveil.settings import CoreSettings
from dicomveil.worker.tasks import Verdict, WorkerState, handle


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[WorkerState]:
    monkeypatch.setenv("DICOMVEIL_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DICOMVEIL_KEY", "worker-state-test-key-0123456789abcdef")
    core = CoreSettings.load(home=tmp_path / "home", deid_processes=1)
    cluster = ClusterSettings.load(
        environ={"DICOMVEIL_INCOMING_URL": f"file://{tmp_path / 'incoming'}"}
    )
    made = WorkerState(core, cluster)
    yield made
    made.close()


def _queued(state: WorkerState) -> dict[str, object]:
    """A real CT instance put in the incoming store; its message body."""
    data = Path(get_testdata_file("CT_small.dcm")).read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    key = incoming_key(digest)
    state.incoming().put_bytes(key, data, content_type="application/dicom")
    return TaskPayload(key, digest, len(data)).to_json()


def test_a_task_closes_only_the_runtime_it_saw_fail(state: WorkerState) -> None:
    first = state.runtime()
    state.reset(object())  # type: ignore[arg-type]  # a runtime that is no longer in use
    assert state.runtime() is first  # still open, still shared
    first.workspace().rmdir()  # its staging folder is still there
    state.reset(first)
    assert state.runtime() is not first


def test_a_runtime_closed_under_a_task_retries_its_message(state: WorkerState) -> None:
    body = _queued(state)
    state.runtime().close()  # another task's reset, after this task took the runtime
    assert handle(body, state) is Verdict.RETRY  # before: FileNotFoundError, acknowledged
    state.reset()
    assert handle(body, state) is Verdict.STORED  # the retry ingests it
    assert state.runtime().index.counts().instances == 1
