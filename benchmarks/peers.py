"""The tools ``dicomveil deid`` is measured against (issue 3), installed as a user would.

:func:`ensure_peers` makes them ready and says what it found:

- ``WORK/peers-venv``: a separate virtual environment with
  ``pip install dcmanon dicognito dicom-anonymizer`` (skipped when they already import);
- ``gdcmanon`` from Debian's ``libgdcm-tools`` (``apt-get install`` when it is missing and we
  are root), and a self-signed certificate made with ``openssl`` for its Basic Profile mode
  (``gdcmanon -e`` encrypts the original attributes for the certificate's owner, PS3.15 E.1.1).

The Python peers have no command that walks a tree and survives a bad file (dicognito 0.19's
console script does not even start, dicom-anonymizer's walks one folder level and stops at the
first error), so the benchmark drives their Python API the way a user script would, one file
after another, counting failures instead of stopping::

    PYTHON benchmarks/peers.py MODE ROOT LIST OUT [--seed S]

``MODE`` is one of :data:`MODES`; ``LIST`` holds paths relative to ``ROOT``, one a line; the
outputs go to ``OUT``. The last line printed is a JSON summary ``{"ok": n, "failed": n,
"errors": {type: count}}``. This module imports only the standard library at the top, so the
peers' venv runs it without dicomveil installed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["MODES", "PIP_PACKAGES", "Peers", "drive", "ensure_peers"]

#: PyPI distributions and the module each one installs.
PIP_PACKAGES = {
    "dcmanon": "dcmanon",
    "dicognito": "dicognito",
    "dicom-anonymizer": "dicomanonymizer",
}
APT_PACKAGE = "libgdcm-tools"
#: Driver modes and the venv they need (``main``: pydicom of the benchmark's own venv).
MODES = {
    "parse": "main",
    "naive": "main",
    "dcmanon": "dcmanon",
    "dicognito": "dicognito",
    "dicom-anonymizer": "dicom-anonymizer",
}
#: What the naive read/modify/save script blanks (plus every private tag removed).
NAIVE_BLANK = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientAddress",
    "PatientTelephoneNumbers",
    "ReferringPhysicianName",
    "InstitutionName",
    "AccessionNumber",
)


@dataclass
class Peers:
    """What :func:`ensure_peers` made ready; ``None`` for a peer that could not be had."""

    python: Path | None = None
    available: set[str] = field(default_factory=set)
    gdcmanon: str | None = None
    certificate: Path | None = None
    versions: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _run(argv: list[str], log_path: Path, env: dict[str, str] | None = None) -> bool:
    with log_path.open("ab") as log:
        log.write(f"\n$ {' '.join(argv)}\n".encode())
        log.flush()
        done = subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT, env=env, check=False)
    return done.returncode == 0


def _importable(python: Path, module: str) -> bool:
    done = subprocess.run([str(python), "-c", f"import {module}"], capture_output=True, check=False)
    return done.returncode == 0


def _pip_versions(python: Path, names: list[str]) -> dict[str, str]:
    code = (
        "import importlib.metadata as m, json, sys\n"
        "print(json.dumps({n: m.version(n) for n in sys.argv[1:]}))\n"
    )
    done = subprocess.run(
        [str(python), "-c", code, *names], capture_output=True, text=True, check=False
    )
    try:
        result = json.loads(done.stdout)
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in result.items()}


def _ensure_venv(work: Path, peers: Peers, log_path: Path, install: bool) -> None:
    venv = work / "peers-venv"
    python = venv / "bin" / "python"
    if not python.exists():
        if not install:
            peers.notes.append("peers venv missing and installs disabled")
            return
        base = getattr(sys, "_base_executable", sys.executable)
        if not _run([base, "-m", "venv", str(venv)], log_path):
            peers.notes.append(f"could not create {venv} (see {log_path})")
            return
    missing = [name for name, mod in PIP_PACKAGES.items() if not _importable(python, mod)]
    if missing and install:
        _run([str(python), "-m", "pip", "install", "--quiet", *missing], log_path)
    peers.python = python
    for name, module in PIP_PACKAGES.items():
        if _importable(python, module):
            peers.available.add(name)
        else:
            peers.notes.append(f"{name} not importable in {venv} (see {log_path})")
    peers.versions.update(_pip_versions(python, sorted(peers.available)))


def _ensure_gdcmanon(work: Path, peers: Peers, log_path: Path, install: bool) -> None:
    binary = shutil.which("gdcmanon")
    if binary is None and install and shutil.which("apt-get") and os.geteuid() == 0:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        command = ["apt-get", "install", "-y", "-q", APT_PACKAGE]
        if not _run(command, log_path, env):
            _run(["apt-get", "update", "-q"], log_path, env)
            _run(command, log_path, env)
        binary = shutil.which("gdcmanon")
    if binary is None:
        peers.notes.append(f"gdcmanon missing (apt-get install {APT_PACKAGE})")
        return
    done = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Version}", APT_PACKAGE],
        capture_output=True,
        text=True,
        check=False,
    )
    peers.versions["gdcmanon"] = done.stdout.strip() if done.returncode == 0 else "?"
    folder = work / "gdcm"
    certificate = folder / "cert.pem"
    if not certificate.exists():
        folder.mkdir(parents=True, exist_ok=True)
        made = shutil.which("openssl") is not None and _run(
            [
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                str(folder / "key.pem"),
                "-out",
                str(certificate),
                "-days",
                "3650",
                "-subj",
                "/CN=dicomveil-bench",
            ],
            log_path,
        )
        if not made:
            peers.notes.append("openssl could not make a certificate for gdcmanon -e")
            return
    peers.gdcmanon = binary
    peers.certificate = certificate


def ensure_peers(work: Path, *, install: bool = True) -> Peers:
    """Make the peers ready under ``work`` (install what is missing unless ``install`` is off).

    Nothing outside ``work`` is touched except the system package ``libgdcm-tools``; every
    command's output goes to ``work/peers-install.log``.
    """
    work.mkdir(parents=True, exist_ok=True)
    log_path = work / "peers-install.log"
    peers = Peers()
    _ensure_venv(work, peers, log_path, install)
    _ensure_gdcmanon(work, peers, log_path, install)
    return peers


# -- the per-file drivers (run inside the peers' venv) --------------------------------------


def _operation(mode: str, out: Path, seed: str) -> Callable[[Path, Path], None]:
    """Return ``run(source, relative)`` for ``mode``; imports happen here, inside the timing."""
    if mode == "parse":
        import pydicom

        def parse(source: Path, relative: Path) -> None:
            pydicom.dcmread(source, stop_before_pixels=True)

        return parse
    if mode == "naive":
        import pydicom

        def naive(source: Path, relative: Path) -> None:
            ds = pydicom.dcmread(source)
            for keyword in NAIVE_BLANK:
                if keyword in ds:
                    ds[keyword].value = "ANONYMOUS" if keyword == "PatientName" else ""
            ds.remove_private_tags()
            ds.save_as(_target(out, relative), enforce_file_format=True)

        return naive
    if mode == "dcmanon":
        from dcmanon import Anonymizer  # type: ignore[import-not-found,unused-ignore]

        anonymizer = Anonymizer()

        def dcmanon(source: Path, relative: Path) -> None:
            _target(out, relative).write_bytes(anonymizer.anonymize(str(source)))

        return dcmanon
    if mode == "dicognito":
        import pydicom
        from dicognito.anonymizer import Anonymizer as Dicognito  # type: ignore[import-not-found,unused-ignore]

        # the same seed in every process keeps pseudonyms consistent across processes
        dicognito = Dicognito(seed=seed)
        out.mkdir(parents=True, exist_ok=True)

        def cognito(source: Path, relative: Path) -> None:
            with pydicom.dcmread(source) as ds:  # what its command line does
                dicognito.anonymize(ds)
                ds.save_as(out / f"{ds.SOPInstanceUID}.dcm", enforce_file_format=True)

        return cognito
    if mode == "dicom-anonymizer":
        from dicomanonymizer.simpledicomanonymizer import (  # type: ignore[import-not-found,unused-ignore]
            anonymize_dicom_file,
        )

        def kitware(source: Path, relative: Path) -> None:
            anonymize_dicom_file(str(source), str(_target(out, relative)))

        return kitware
    raise ValueError(f"unknown mode {mode!r}")


_MADE: set[Path] = set()


def _target(out: Path, relative: Path) -> Path:
    target = out / relative
    if target.parent not in _MADE:
        target.parent.mkdir(parents=True, exist_ok=True)
        _MADE.add(target.parent)
    return target


def drive(mode: str, root: Path, relatives: list[str], out: Path, seed: str) -> dict[str, object]:
    """Run ``mode`` on every file; return the summary (never raises for a file's failure)."""
    operation = _operation(mode, out, seed)
    errors: Counter[str] = Counter()
    ok = 0
    for relative in relatives:
        try:
            operation(root / relative, Path(relative))
        except Exception as exc:  # a peer's failure on one file is data, not a crash
            errors[type(exc).__name__] += 1
        else:
            ok += 1
    return {"ok": ok, "failed": sum(errors.values()), "errors": dict(errors)}


def main(argv: list[str] | None = None) -> int:
    """Run one driver over a list of files and print the JSON summary."""
    parser = argparse.ArgumentParser(description="Run a peer de-identifier over a file list.")
    parser.add_argument("mode", choices=sorted(MODES))
    parser.add_argument("root", type=Path)
    parser.add_argument("list", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--seed", default="dicomveil-bench")
    args = parser.parse_args(argv)
    relatives = [line for line in args.list.read_text("utf-8").splitlines() if line]
    summary = drive(args.mode, args.root, relatives, args.out, args.seed)
    print(json.dumps(summary))
    return 0 if summary["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
