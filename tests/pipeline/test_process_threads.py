"""Thread pools that survive ``fork`` (dicomveil/threads.py): a child forked after
its parent used the pool gets threads of its own; with a plain executor it would wait for
ever (the inherited executor believes it has an idle thread that did not come along)."""

from __future__ import annotations

import os

import pytest

from dicomveil import readiness
from dicomveil.audit import log as audit_log
from dicomveil.pipeline import ingest, recording
from dicomveil.storage import file as file_store
from dicomveil.threads import ProcessThreads
from tests.support.processes import wait_child

POOL = ProcessThreads("test-fork", 2)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX only")
def test_a_child_forked_after_use_runs_work_in_threads_of_its_own() -> None:
    assert POOL.get().submit(os.getpid).result(10) == os.getpid()  # parent's threads run
    pid = os.fork()
    if pid == 0:  # the child: leave without running the parent's cleanup
        code = 1
        try:
            code = 0 if POOL.get().submit(os.getpid).result(10) == os.getpid() else 2
        finally:
            os._exit(code)
    assert wait_child(pid, 30) == 0, "the forked child's work never ran"
    assert POOL.get().submit(lambda: 7).result(10) == 7  # the parent's pool still works
    POOL.shutdown()
    assert POOL.get().submit(lambda: 8).result(10) == 8  # a use after shutdown starts anew
    POOL.shutdown()


def test_every_background_pool_is_per_process() -> None:
    """The archive writes of an ingest call, the vault writes of a recording, the audit
    log's head writers, the file store's flushers and the readiness probes use them."""
    for pool in (
        ingest._archivers,
        recording._threads,
        audit_log._head_writers,
        file_store._flushers,
        readiness._probes,
    ):
        assert isinstance(pool, ProcessThreads)
