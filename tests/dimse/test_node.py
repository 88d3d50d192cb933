"""The node against real DCMTK peers on loopback."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pydicom

from tests.dimse.support import (
    NODE_AE,
    SENDER_AE,
    assert_no_phi,
    dcmtk,
    files_in,
    node_settings,
    phi_study,
    running_node,
)


def _echo(port: int, calling: str = SENDER_AE) -> Any:
    return dcmtk("echoscu", "-aet", calling, "-aec", NODE_AE, "127.0.0.1", port)


class TestEchoAndStore:
    def test_echo(self, runtime: Any) -> None:
        with running_node(runtime, node_settings()) as node:
            done = _echo(node.address[1])
        assert done.returncode == 0, done.stderr

    def test_storescu_then_findscu(self, runtime: Any, tmp_path: Path) -> None:
        files = phi_study(tmp_path / "in", images=3)
        with running_node(runtime, node_settings()) as node:
            port = node.address[1]
            sent = dcmtk("storescu", "-aet", SENDER_AE, "-aec", NODE_AE, "127.0.0.1", port, *files)
            assert sent.returncode == 0, sent.stderr
            out = tmp_path / "find"
            out.mkdir()
            found = dcmtk(
                "findscu", "-S", "-X", "-aet", SENDER_AE, "-aec", NODE_AE,
                "-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID",
                "-k", "PatientName", "-k", "PatientID", "-k", "NumberOfStudyRelatedInstances",
                "127.0.0.1", port, cwd=out,
            )  # fmt: skip
        assert found.returncode == 0, found.stderr
        answers = [pydicom.dcmread(p) for p in files_in(out)]
        assert len(answers) == 1
        assert answers[0].NumberOfStudyRelatedInstances == 3
        for path in files_in(out):
            assert_no_phi(path.read_bytes(), "a C-FIND answer")
        assert runtime.index.counts().instances == 3
