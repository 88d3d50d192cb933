"""Discovery of inputs: regular files only, symbolic links only within SOURCE, every path
not read named with a reason (FIFOs used to hang a run, ``/dev/zero`` to fill a disk,
``/proc/self/environ`` to copy the environment into the quarantine)."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from dicomveil.pipeline.sources import NotRegularFileError, discover, find_inputs, open_regular


def _walked(source: Path) -> list[Path]:
    """The former discovery (``os.walk``), for the order of regular files."""
    found = []
    for root, dirs, files in os.walk(source):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found.extend(Path(root) / n for n in sorted(files) if not n.startswith("."))
    return found


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    source = tmp_path / "in"
    for name in ("b/2.dcm", "b/1.dcm", "a/x/9.dcm", "a/3.dcm", "top.dcm", ".hidden/h.dcm"):
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).write_bytes(b"x")
    (source / ".dot.dcm").write_bytes(b"x")
    return source


def test_regular_files_in_the_former_order(tree: Path) -> None:
    found = find_inputs(tree)
    assert found.files == _walked(tree)
    assert [p.relative_to(tree).as_posix() for p in found.files] == [
        "top.dcm", "a/3.dcm", "a/x/9.dcm", "b/1.dcm", "b/2.dcm",
    ]  # fmt: skip
    assert found.skipped == []  # hidden names are passed over silently


def test_special_files_are_named_not_read(tree: Path, tmp_path: Path) -> None:
    os.mkfifo(tree / "fifo.dcm")
    (tree / "zero.dcm").symlink_to("/dev/zero")
    (tree / "environ.dcm").symlink_to("/proc/self/environ")
    (tree / "null.dcm").symlink_to("/dev/null")
    outside = tmp_path / "outside.dcm"
    outside.write_bytes(b"secret")
    (tree / "outside.dcm").symlink_to(outside)
    (tree / "broken.dcm").symlink_to(tree / "missing")
    (tree / "loop.dcm").symlink_to(tree / "loop.dcm")
    (tree / "a" / "to_b").symlink_to(tree / "b")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(tree / "sock"))
        found = find_inputs(tree)
    read = {p.name for p in found.files}
    assert read == {"top.dcm", "3.dcm", "9.dcm", "1.dcm", "2.dcm"}
    reasons = {s.path.name: s.reason for s in found.skipped}
    assert set(reasons) == {
        "fifo.dcm", "zero.dcm", "environ.dcm", "null.dcm", "outside.dcm", "broken.dcm",
        "loop.dcm", "to_b", "sock",
    }  # fmt: skip
    assert "FIFO" in reasons["fifo.dcm"] and "socket" in reasons["sock"]
    for name in ("zero.dcm", "environ.dcm", "null.dcm", "outside.dcm"):
        assert "outside SOURCE" in reasons[name]
    assert "broken" in reasons["broken.dcm"] and "folder" in reasons["to_b"]
    assert all(str(tree) not in reason for reason in reasons.values())  # no path in a reason


def test_links_within_source_are_read_through_their_real_path(tree: Path) -> None:
    (tree / "link.dcm").symlink_to(tree / "a" / "3.dcm")
    (tree / "hidden_link.dcm").symlink_to(tree / ".hidden" / "h.dcm")
    os.mkfifo(tree / ".hidden" / "pipe")
    (tree / "pipe_link").symlink_to(tree / ".hidden" / "pipe")
    found = find_inputs(tree)
    assert tree / ".hidden" / "h.dcm" in found.files
    assert found.files.count(tree / "a" / "3.dcm") == 2  # once as itself, once by its link
    assert [s.path.name for s in found.skipped] == ["pipe_link"]
    assert not any(p.is_symlink() for p in found.files)


def test_source_given_as_a_link_is_followed(tree: Path, tmp_path: Path) -> None:
    link = tmp_path / "link"
    link.symlink_to(tree)
    (tree / "inner.dcm").symlink_to(tree / "top.dcm")
    found = find_inputs(link)
    assert len(found.files) == 6 and not found.skipped


def test_a_fifo_as_source_is_named(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "f")
    found = find_inputs(tmp_path / "f")
    assert not found.files and "FIFO" in found.skipped[0].reason
    assert list(discover(tmp_path / "missing")) == []


@pytest.fixture
def shared_tree() -> Iterator[Path]:
    """A tree another user can reach (pytest's own temporary folders are private to root)."""
    with tempfile.TemporaryDirectory(prefix="dicomveil-src-") as folder:
        source = Path(folder) / "in"
        (source / "closed").mkdir(parents=True)
        (source / "closed" / "a.dcm").write_bytes(b"x")
        (source / "open.dcm").write_bytes(b"x")
        os.chmod(folder, 0o755)
        os.chmod(source, 0o755)
        os.chmod(source / "open.dcm", 0o644)
        os.chmod(source / "closed", 0)
        yield source
        os.chmod(source / "closed", 0o700)


PROBE = """
import json, os, sys
from pathlib import Path
from dicomveil.pipeline.sources import find_inputs
if os.geteuid() == 0:
    os.setgid(65534); os.setuid(65534)  # root reads every folder: be nobody
found = find_inputs(Path(sys.argv[1]))
print(json.dumps({"files": [p.name for p in found.files],
                  "skipped": [[s.path.name, s.reason] for s in found.skipped]}))
"""


def test_a_folder_that_cannot_be_listed_is_named(shared_tree: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(shared_tree)],
        capture_output=True, text=True, check=True, env=env, cwd="/",
    )  # fmt: skip
    found = json.loads(done.stdout)
    assert found == {
        "files": ["open.dcm"],
        "skipped": [["closed", "folder cannot be read (Permission denied)"]],
    }


class TestOpenRegular:
    def test_a_fifo_is_refused_without_waiting(self, tmp_path: Path) -> None:
        os.mkfifo(tmp_path / "f")
        with pytest.raises(NotRegularFileError, match="FIFO"):
            open_regular(tmp_path / "f")  # a blocking open would wait here forever

    def test_devices_folders_and_links_are_refused(self, tmp_path: Path) -> None:
        with pytest.raises(NotRegularFileError, match="character device"):
            open_regular("/dev/zero")
        with pytest.raises(NotRegularFileError, match="folder"):
            open_regular(tmp_path)
        (tmp_path / "link").symlink_to("/proc/self/environ")
        with pytest.raises(OSError):
            open_regular(tmp_path / "link")

    def test_a_regular_file_is_opened_blocking(self, tmp_path: Path) -> None:
        (tmp_path / "r").write_bytes(b"data")
        fd = open_regular(tmp_path / "r")
        try:
            assert stat.S_ISREG(os.fstat(fd).st_mode) and os.get_blocking(fd)
            assert os.read(fd, 10) == b"data"
        finally:
            os.close(fd)
