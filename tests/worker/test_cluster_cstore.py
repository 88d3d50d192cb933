"""C-STORE in cluster mode (issue #15): the DICOM node stores and queues, a worker ingests.

DCMTK ``storescu`` gets success (0000H) once each original is in the incoming store and its
message in the broker; the node's own index stays empty until a worker has ingested them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from dicomveil.cluster.submit import attach_cluster
from dicomveil.runtime import Runtime
from dicomveil.settings import CoreSettings
from tests.dimse.support import (
    NODE_AE,
    SENDER_AE,
    assert_no_phi,
    dcmtk,
    node_settings,
    phi_study,
    running_node,
)
from tests.worker.conftest import Cluster, RedisServer


@pytest.mark.slow
def test_cstore_in_cluster_mode_answers_once_queued_and_a_worker_ingests(
    cluster: Cluster,
    redis_server: RedisServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in cluster.env.items():
        monkeypatch.setenv(name, value)
    files = phi_study(tmp_path / "study", images=4)
    settings = CoreSettings.load(home=tmp_path / "node-home", deid_processes=1)
    with Runtime.open(settings) as runtime:
        assert attach_cluster(runtime) is not None
        with running_node(runtime, node_settings()) as node:
            done = dcmtk(
                "storescu", "-aet", SENDER_AE, "-aec", NODE_AE, "127.0.0.1",
                node.address[1], *files,
            )  # fmt: skip
            assert done.returncode == 0, done.stderr
        assert runtime.index.counts().instances == 0  # accepted, not ingested here
        assert len(list((cluster.root / "incoming").rglob("*.dcm"))) == len(files)
        assert_no_phi(redis_server.values(), "the broker")
        cluster.start_worker("a")
        cluster.wait(lambda: runtime.index.counts().instances == len(files))
        cluster.wait(lambda: not list((cluster.root / "incoming").rglob("*.dcm")))
    assert_no_phi(cluster.logs(), "the worker's log")
