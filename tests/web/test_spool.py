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


def _open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not IN_MEMORY, reason="no anonymous files on this system")
def test_a_thousand_tiny_parts_hold_few_descriptors(tmp_path: Path) -> None:
    """Before the budget, each tiny part held an open anonymous file until the request
    ended: 1,000 parts, 1,000 descriptors (500 under ``ulimit -n 1024``)."""
    from dicomveil.web.spool import MAX_OPEN_PER_REQUEST

    before = _open_descriptors()
    spool = Spool(tmp_path / "in")
    parts = []
    for number in range(1000):
        part = spool.create(f"part-{number}")
        part.write(b"x" * 10)
        part.finish()
        parts.append(part)
    assert _open_descriptors() - before <= MAX_OPEN_PER_REQUEST + 2
    assert all(p.path.read_bytes() == b"x" * 10 for p in parts)
    spool.close()
    assert _open_descriptors() <= before


def test_zip_bomb_refused_by_ratio(tmp_path: Path) -> None:
    import zipfile

    from dicomveil.web.errors import PayloadTooLarge
    from dicomveil.web.imports import MAX_ZIP_RATIO, extract_zip

    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as bundle:
        with bundle.open("zeros.dcm", "w") as entry:
            for _ in range(MAX_ZIP_RATIO + 8):
                entry.write(b"\0" * (1 << 20))
    assert bomb.stat().st_size < 1 << 20
    with pytest.raises(PayloadTooLarge):
        extract_zip(bomb, tmp_path / "out", max_bytes=1 << 40)
    written = sum(p.stat().st_size for p in (tmp_path / "out").rglob("*") if p.is_file())
    assert written <= (MAX_ZIP_RATIO << 20) + (1 << 20)


def test_sweep_keeps_live_folders_and_removes_dead_ones(tmp_path: Path) -> None:
    from dicomveil.pipeline.staging import claim_staging, sweep_spool

    spool = tmp_path / "spool"
    live = claim_staging(spool)
    (live.path / "upload").write_bytes(b"in use")
    dead = spool / "gateway-dead"
    dead.mkdir()
    (dead / "upload").write_bytes(b"left by a crash")
    other = claim_staging(spool)  # a second server starting: sweeps the dead folder only
    assert live.path.is_dir() and other.path.is_dir() and not dead.exists()
    assert sweep_spool(spool) == 0
    live.release()
    other.release()
    assert not live.path.exists() and not other.path.exists()
