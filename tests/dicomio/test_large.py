"""Large instances: bounded memory, pixel bytes identical.

Each read+write runs in a fresh interpreter and reports its peak RSS (``ru_maxrss``)
before and after, so the growth measured is that of the round trip alone.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from dicomveil.dicomio import read_instance
from tests.dicomio.conftest import sha256_range
from tests.dicomio.synth import write_encapsulated, write_multiframe

PROBE = """
import json, resource, sys
from dicomveil.dicomio import read_instance, write_instance
src, dest, hash_output = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
instance = read_instance(src)
result = write_instance(
    instance, instance.dataset, instance.trailing, dest, hash_output=hash_output
)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"growth_kib": after - before, "peak_kib": after, "size": result.size,
                  "sha256": result.sha256}))
"""
MIB = 1024


def _probe(src: Path, dest: Path, hash_output: bool) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(src), str(dest), "1" if hash_output else "0"],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def _same_pixels(src: Path, dest: Path) -> None:
    before, after = read_instance(src), read_instance(dest)
    assert before.pixel is not None and after.pixel is not None
    assert before.pixel.length == after.pixel.length
    assert sha256_range(src, before.pixel.offset, before.pixel.length) == sha256_range(
        dest, after.pixel.offset, after.pixel.length
    )
    assert [int(t) for t in after.trailing.keys()] == [0xFFFCFFFC]


@pytest.mark.slow
@pytest.mark.parametrize("hash_output", [False, True], ids=["kernel-copy", "hashed"])
def test_300_mb_multiframe(tmp_path: Path, hash_output: bool) -> None:
    src = tmp_path / "big.dcm"
    size = write_multiframe(src, frames=600)
    assert size > 300 * 1024 * 1024
    dest = tmp_path / "out.dcm"
    report = _probe(src, dest, hash_output)
    assert report["growth_kib"] < 100 * MIB, report
    assert report["size"] == dest.stat().st_size
    if hash_output:
        assert report["sha256"] == sha256_range(dest, 0, report["size"])
    _same_pixels(src, dest)


@pytest.mark.slow
def test_many_fragments(tmp_path: Path) -> None:
    src = tmp_path / "rle.dcm"
    write_encapsulated(src, fragments=20000)
    instance = read_instance(src)
    assert instance.pixel is not None and instance.pixel.encapsulated
    dest = tmp_path / "out.dcm"
    report = _probe(src, dest, hash_output=False)
    assert report["growth_kib"] < 50 * MIB, report
    before, after = read_instance(src), read_instance(dest)
    assert before.pixel is not None and after.pixel is not None
    assert sha256_range(src, before.pixel.offset, before.pixel.length) == sha256_range(
        dest, after.pixel.offset, after.pixel.length
    )
