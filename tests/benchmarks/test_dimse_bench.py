"""Smoke test of the DICOM node benchmark (issue 12): it runs end to end, timings not asserted."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import dimse_bench
from tests.dimse.support import dcmtk_binary
from tests.support.servers import require_binary


@pytest.mark.slow
@pytest.mark.server
def test_runs_and_reports(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    dcmtk_binary("storescp")
    require_binary("Orthanc", "/usr/sbin/Orthanc")
    docs = tmp_path / "benchmarks.md"
    from benchmarks.reporting import write_section as write

    monkeypatch.setattr(
        dimse_bench, "write_section", lambda heading, body: write(heading, body, docs)
    )
    # 2 x 1 study of 20 instances by C-STORE, then 2 studies filled directly into each archive
    argv = ["--store", "8", "--find", "80", "--queries", "2", "--broad-queries", "1"]
    assert dimse_bench.main([*argv, "--write-docs"]) == 0
    text = docs.read_text()
    assert dimse_bench.SECTION in text
    for name in ("dicomveil", "Orthanc", "DCMTK storescp", "pynetdicom SCP", "filled beyond"):
        assert name in text
    assert "| C-FIND studies at 80 instances, p50 / p95 ms |" in text
    for kind in ("PatientID exact", "PatientName wild card", "ModalitiesInStudy", "all studies"):
        row = next(line for line in text.splitlines() if line.startswith(f"| {kind} |"))
        assert len(row.split("|")) == 7  # both servers measured, ratio and node CPU given
    assert "C-STORE" in capsys.readouterr().out
