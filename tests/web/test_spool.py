"""Spooling uploaded parts: anonymous memory within the request's budget, files beyond."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dicomveil.web.spool import Spool

IN_MEMORY = hasattr(os, "memfd_create") and os.path.isdir("/proc/self/fd")


class TestSpool:
    @pytest.mark.skipif(not IN_MEMORY, reason="no anonymous files on this system")
    def test_small_parts_stay_in_memory(self, tmp_path: Path) -> None:
        spool = Spool(tmp_path / "in", budget=1000)
        part = spool.create("part-1")
        part.write(b"DICM" * 10)
        part.write(memoryview(b"tail"))
        part.finish()
        assert part.in_memory and part.path.read_bytes() == b"DICM" * 10 + b"tail"
        assert not (tmp_path / "in").exists()  # nothing on disk
        assert spool.used == 44
        spool.close()
        assert spool.used == 0

    def test_past_the_budget_parts_go_to_disk_intact(self, tmp_path: Path) -> None:
        spool = Spool(tmp_path / "in", budget=100)
        first = spool.create("part-1")
        first.write(b"a" * 60)
        first.finish()
        second = spool.create("part-2")
        second.write(b"b" * 30)
        second.write(b"c" * 30)  # 120 bytes in memory would exceed the budget: moves to disk
        second.finish()
        assert not second.in_memory
        assert second.path == tmp_path / "in" / "part-2"
        assert second.path.read_bytes() == b"b" * 30 + b"c" * 30
        assert second.path.stat().st_mode & 0o777 == 0o600
        assert first.path.read_bytes() == b"a" * 60
        spool.close()

    def test_no_budget_means_files(self, tmp_path: Path) -> None:
        spool = Spool(tmp_path, budget=0)
        part = spool.create("x")
        part.write(b"data")
        part.finish()
        assert not part.in_memory and (tmp_path / "x").read_bytes() == b"data"
        spool.close()
        assert (tmp_path / "x").exists()  # files stay until their folder is removed
