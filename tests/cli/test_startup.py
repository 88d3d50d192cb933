"""Start-up of ``dicomveil deid``: what the parent process imports, and settings that must
reach the workers although the parent never imports pydicom."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pydicom

from dicomveil.demo import write_demo_study

PROBE = """
import sys
from dicomveil.cli.main import main
import dicomveil.pipeline.run as run
seen = {}
def on(outcome, _seen=seen):
    _seen.update((name, name in sys.modules) for name in ("pydicom", "sqlalchemy", "alembic"))
original = run.run_deidentification
def wrapped(*args, **kwargs):
    kwargs["on_outcome"] = on
    return original(*args, **kwargs)
import dicomveil.cli.deid as deid
deid.run_deidentification = wrapped
code = main(sys.argv[1:])
print(sorted(name for name, loaded in seen.items() if loaded))
sys.exit(code if seen else 3)  # no outcome seen: nothing was probed
"""


def _probe(args: list[str], home: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "DICOMVEIL_HOME": str(home)},
    )
    assert done.returncode == 0, done.stderr  # the command's own exit code
    return done.stdout.strip().splitlines()[-1]


class TestParentImports:
    def test_one_way_export_imports_neither_pydicom_nor_sqlalchemy(
        self, tmp_path: Path, key_file: Path
    ) -> None:
        files = write_demo_study(tmp_path / "in", patients=1, series_per_study=1)
        args = ["deid", str(files[0].parent), str(tmp_path / "out"), "--key-file", str(key_file)]
        assert _probe([*args, "-j", "2", "--no-vault"], tmp_path / "home") == "[]"

    def test_the_vault_needs_sqlalchemy_not_alembic_nor_pydicom(
        self, tmp_path: Path, key_file: Path
    ) -> None:
        files = write_demo_study(tmp_path / "in", patients=1, series_per_study=1)
        args = ["deid", str(files[0].parent), str(tmp_path / "out"), "--key-file", str(key_file)]
        assert _probe([*args, "-j", "2"], tmp_path / "home") == "['sqlalchemy']"


def test_workers_do_not_print_values(tmp_path: Path, key_file: Path) -> None:
    """pydicom's validation warnings quote values; forked workers silence them too."""
    source = Path(pydicom.data.__file__).parent / "test_files" / "badVR.dcm"
    folder = tmp_path / "in"
    folder.mkdir()
    for n in range(3):
        shutil.copy(source, folder / f"{n}.dcm")
    exe = shutil.which("dicomveil", path=os.path.dirname(sys.executable))
    assert exe is not None
    result = subprocess.run(
        [exe, "deid", str(folder), str(tmp_path / "out"), "--key-file", str(key_file), "-j", "2"],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "DICOMVEIL_HOME": str(tmp_path / "h")},
    )
    assert result.returncode == 0, result.stderr
    # three copies of one instance: each is de-identified by a worker, one is kept
    assert "1 de-identified, 0 failed" in result.stderr
    assert "2 duplicate(s)" in result.stderr
    assert "1.2.123.456.78.9.0123.4567.89012345678901" not in result.stdout + result.stderr


EXIT_PROBE = """
import atexit, sys
atexit.register(lambda: print("exit handler ran"))
sys.argv = ["dicomveil", "deid", sys.argv[1], sys.argv[2]]
from dicomveil.cli.main import run
run()
"""


def test_the_entry_point_exits_with_the_code_after_exit_handlers(tmp_path: Path) -> None:
    """``run`` skips the interpreter's teardown but keeps exit code, handlers and output."""
    done = subprocess.run(
        [sys.executable, "-c", EXIT_PROBE, str(tmp_path / "missing"), str(tmp_path / "out")],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "DICOMVEIL_HOME": str(tmp_path / "home")},
    )
    assert done.returncode == 2
    assert done.stdout.strip() == "exit handler ran"
    assert "no such file or folder" in done.stderr
