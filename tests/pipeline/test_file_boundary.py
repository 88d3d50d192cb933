"""One file's boundary in the pipeline: what reaches the worker, and how long it may take."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from dicomveil.dicomio import read_instance
from dicomveil.engine.keys import PseudonymKeys
from dicomveil.engine.rules import compile_policy
from dicomveil.errors import UnsupportedInputError
from dicomveil.pipeline.files import deidentify_file
from dicomveil.profile.policy import Policy
from tests.engine.rawfile import base_elements, raw_file, text

KEYS = PseudonymKeys(b"file-boundary-test-secret-0123")


def test_a_fifo_swapped_in_after_discovery_does_not_hang(tmp_path: Path) -> None:
    """A FIFO where a file was (swapped in after discovery) is refused at once by both
    paths: opening it never waits for a writer."""
    fifo = tmp_path / "swapped.dcm"
    os.mkfifo(fifo)
    with pytest.raises(UnsupportedInputError, match="not a regular file"):
        read_instance(fifo)
    done: list[str] = []
    worker = threading.Thread(
        target=lambda: done.append(
            deidentify_file(fifo, tmp_path / "out", compile_policy(Policy()), KEYS).status
        ),
        daemon=True,
    )
    worker.start()
    worker.join(10)
    assert done == ["failed"]


@pytest.mark.parametrize("vr", [b"US", b"FD"])
def test_a_mislabelled_modality_is_read_after_de_identification(tmp_path: Path, vr: bytes) -> None:
    """Modality labelled with a numeric VR: the engine reads it as the dictionary's CS; the
    pipeline takes it from the result (pydicom's conversion of the file's VR would fail and
    its message quote the value)."""
    elements = base_elements()
    elements[0x00080060] = (vr, text("CTXY"))
    source = raw_file(tmp_path / "in.dcm", elements)
    for fast in (True, False):
        outcome = deidentify_file(
            source, tmp_path / f"out{fast}", compile_policy(Policy()), KEYS, fast=fast
        )
        assert outcome.status == "ok", outcome.reason
        assert outcome.modality == "CTXY"


def test_the_time_budget_is_shared_by_both_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fast path that used up the time is not followed by a fresh reference run."""
    import dicomveil.pipeline.files as files

    calls: list[str] = []

    def slow_fast(*args: object) -> None:
        calls.append("fast")
        time.sleep(0.05)
        raise RuntimeError("fast path gave up")

    def reference(*args: object, **kwargs: object) -> None:
        calls.append("reference")
        raise AssertionError("the reference path ran after the budget was spent")

    monkeypatch.setattr(files, "_fast", slow_fast)
    monkeypatch.setattr(files, "deidentify", reference)
    real = files.TimeBudget
    monkeypatch.setattr(files, "TimeBudget", lambda: real(0.01))
    source = raw_file(tmp_path / "in.dcm", base_elements())
    outcome = deidentify_file(source, tmp_path / "out", compile_policy(Policy()), KEYS)
    assert calls == ["fast"]
    assert outcome.status == "failed"
    assert "time budget" in outcome.reason
