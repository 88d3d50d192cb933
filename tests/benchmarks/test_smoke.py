"""Smoke tests of the issue 3 benchmark: it builds its corpus and runs, timings not asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pydicom

from benchmarks import corpus, deid_bench

REPO = Path(__file__).resolve().parents[2]


def _tree(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()
    }


class TestCorpus:
    def test_same_arguments_same_bytes(self, tmp_path: Path) -> None:
        first = corpus.build_corpus(tmp_path / "a", 6)
        second = corpus.build_corpus(tmp_path / "b", 6)
        assert first.files == second.files == 6
        assert first.kinds == corpus.plan(6)
        assert all(count >= 1 for count in first.kinds.values())
        assert _tree(tmp_path / "a") == _tree(tmp_path / "b")

    def test_files_carry_phi_in_nested_and_private_elements(self, tmp_path: Path) -> None:
        corpus.build_corpus(tmp_path, 6)
        syntaxes = set()
        for path in tmp_path.rglob("*.dcm"):
            ds = pydicom.dcmread(path)
            syntaxes.add(ds.file_meta.TransferSyntaxUID)
            assert ds.PatientName and ds.PatientID and ds.PatientBirthDate
            assert ds.OtherPatientIDsSequence[0].IssuerOfPatientIDQualifiersSequence
            assert any(element.tag.is_private for element in ds)
            assert "PixelData" in ds
        assert len(syntaxes) == 3  # explicit VR LE, JPEG 2000 lossless, JPEG baseline

    def test_plan_scales_to_the_issue_mix(self) -> None:
        counts = corpus.plan(corpus.DEFAULT_FILES)
        assert sum(counts.values()) == corpus.DEFAULT_FILES
        assert counts["ct"] > 0.85 * corpus.DEFAULT_FILES
        assert corpus.plan(3) == {"ct": 3, "mr": 0, "mr-j2k": 0, "us": 0, "us-jpeg": 0}

    def test_big_multiframe_is_streamed_and_valid(self, tmp_path: Path) -> None:
        path = tmp_path / "big.dcm"
        size = corpus.write_big_multiframe(path, 4 << 20, rows=256, columns=256)
        ds = pydicom.dcmread(path)
        assert ds.NumberOfFrames == 32
        assert len(ds.PixelData) == 32 * 256 * 256 * 2
        assert size == path.stat().st_size > 4 << 20


class TestHarnessParts:
    def test_failures_are_read_from_each_tool(self) -> None:
        def run(stdout: list[str], stderr: list[str], codes: list[int]) -> deid_bench.Measured:
            return deid_bench.Measured(1.0, 1000, codes, stdout, stderr)

        driver = run(['{"ok": 9, "failed": 1}', '{"ok": 8, "failed": 2}'], ["", ""], [1, 1])
        assert deid_bench.failures("driver", driver, 20, 17) == 3
        crashed = run(["Traceback", '{"ok": 10, "failed": 0}'], ["", ""], [1, 0])
        assert deid_bench.failures("driver", crashed, 20, 12) == 8
        gdcm = run([""], ["Could not De-indentify : a.dcm\nCould not De-indentify : b\n"], [1])
        assert deid_bench.failures("gdcmanon", gdcm, 20, 18) == 2
        summary = json.dumps({"files": {"total": 20, "ok": 19, "failed": 1}})
        assert deid_bench.failures("dicomveil", run([summary], [""], [1]), 20, 19) == 1
        assert deid_bench.failures("cp", run([""], [""], [1]), 20, 15) == 5

    def test_measure_reports_the_child_not_the_harness(self, tmp_path: Path) -> None:
        run = deid_bench.measure([["echo", "a"], ["echo", "b"]], {}, tmp_path / "log")
        assert run.returncodes == [0, 0]
        assert run.stdout == ["a\n", "b\n"]  # one log per process
        assert run.seconds > 0
        if deid_bench.GNU_TIME is not None:
            assert 0 < run.rss_kb < 20_000

    def test_write_docs_replaces_only_its_section(self, tmp_path: Path) -> None:
        path = tmp_path / "benchmarks.md"
        path.write_text("# Benchmarks\n\n## Batches (issue 5)\n\nkept\n", encoding="utf-8")
        deid_bench.write_docs("first", path)
        deid_bench.write_docs("second", path)
        text = path.read_text(encoding="utf-8")
        assert "kept" in text and "second" in text and "first" not in text
        assert text.count(deid_bench.SECTION) == 1


class TestSmoke:
    def test_tiny_run_prints_the_table_and_the_checks(self, tmp_path: Path) -> None:
        argv = [
            sys.executable,
            str(REPO / "benchmarks" / "deid_bench.py"),
            "--files",
            "20",
            "--rounds",
            "1",
            "--tools",
            "cp,dicomveil-j1-novault",
            "--no-install",
            "--no-warmup",
            "--big-mb",
            "0",
            "--startup-runs",
            "0",
            "--work",
            str(tmp_path),
        ]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stderr
        assert "| tool | procs | median s |" in done.stdout
        assert "| `cp -r` | 1 |" in done.stdout
        assert "| `dicomveil deid -j1 --no-vault` | 1 |" in done.stdout
        assert "Targets of issue 3:" in done.stdout
        result = json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))
        rows = {row["id"]: row for row in result["rows"]}
        assert rows["cp"]["files_out"] == [20]
        assert rows["dicomveil-j1-novault"]["failed"] == [0]
        assert rows["dicomveil-j1-novault"]["files_out"] == [20]
        assert not (tmp_path / "peers-venv").exists()  # nothing installed in tiny mode
        assert not (tmp_path / "runs" / "cp").exists()  # outputs removed after each run


def test_console_bench_runs_on_a_small_archive(tmp_path: Path) -> None:
    """The console benchmark fills an index, logs in and times both sides (small numbers)."""
    from benchmarks import console_bench

    docs = (REPO / "docs" / "benchmarks.md").read_bytes()

    assert console_bench.fill_index(tmp_path / "home", 120) == 2
    run = subprocess.run(
        [sys.executable, "benchmarks/console_bench.py", "--instances", "200", "--queries", "2"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert "| studies: PatientID |" in run.stdout and "| dashboard |" in run.stdout
    assert (REPO / "docs" / "benchmarks.md").read_bytes() == docs  # only --write-docs writes
