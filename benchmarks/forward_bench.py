"""Benchmark of routing on study completion (issue 12): a study forwarded complete to Orthanc.

    .venv/bin/python benchmarks/forward_bench.py [--instances 500] [--runs 5]
        [--completion-timeout 5] [--write-docs]

Each run ingests one new synthetic CT study of ``--instances`` instances (64x64, one series)
through the runtime's ingest service, one file per call as the DIMSE receiver does, with
routing subscribed to it, and measures, from the last instance's arrival to the moment
Orthanc holds the whole study, how long forwarding takes. Two routes run at once, to two
Orthancs on loopback (Debian package, DICOMweb plugin): ``cstore`` (pynetdicom C-STORE SCU)
and ``stow`` (STOW-RS). The target: p95 <= completion timeout + 10 s. ``forward`` is the
latency minus the completion timeout (the time routing takes once the study is complete).

``--write-docs`` replaces the "Routing (issue 12)" section of ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO))

from benchmarks.reporting import cpu_model, write_section  # noqa: E402

SECTION = "## Routing (issue 12)"
KEY = "benchmark-pseudonym-key-0123456789abcdef"


def p95(values: list[float]) -> float:
    """The 95th percentile (nearest rank)."""
    ordered = sorted(values)
    return ordered[max(0, round(0.95 * len(ordered) + 0.5) - 1)]


def run(args: argparse.Namespace, work: Path) -> dict[str, list[float]]:
    from tests.dimse.scp_server import running_scp
    from tests.forward.orthanc import AET, running_receiver
    from tests.forward.support import ingest, open_runtime

    from dicomveil.forward.service import Forwarding

    latencies: dict[str, list[float]] = {"cstore": [], "stow": []}
    with running_receiver(work / "o1") as dimse, running_receiver(work / "o2") as web:
        home = work / "home"
        toml = work / "routing.toml"
        toml.write_text(
            f"[routing]\ncompletion_timeout = {args.completion_timeout}\n"
            f'[[routing.rules]]\nname = "cstore"\naction = "cstore"\nhost = "127.0.0.1"\n'
            f'port = {dimse.dicom_port}\nae_title = "{AET}"\n'
            f'[[routing.rules]]\nname = "stow"\naction = "stow"\nurl = "{web.dicomweb}"\n'
        )
        if args.via == "storescu":
            with running_scp(home, KEY, args=("--config", str(toml))) as node:
                send = partial(storescu, node.port)
                _runs(args, work, send, {"cstore": dimse, "stow": web}, latencies)
            return latencies
        runtime = open_runtime(home)
        forwarding = Forwarding.open(toml, runtime)
        runtime.ingest.subscribe(forwarding.listener)
        forwarding.start()
        try:
            _runs(args, work, partial(ingest, runtime), {"cstore": dimse, "stow": web}, latencies)
        finally:
            forwarding.stop()
            runtime.close()
    return latencies


def storescu(port: int, files: list[Path]) -> None:
    """Push ``files`` to the node with DCMTK ``storescu`` (one association); return once
    the last one is answered."""
    from tests.dimse.support import dcmtk

    sent = dcmtk(
        "storescu", "-aet", "BENCH", "-aec", "DICOMVEIL", "127.0.0.1", port, *files, timeout=900
    )
    if sent.returncode != 0:
        raise SystemExit(f"storescu failed: {sent.stderr[-300:]!r}")


def _runs(
    args: argparse.Namespace,
    work: Path,
    send: Callable[[list[Path]], object],
    peers: dict[str, Any],
    latencies: dict[str, list[float]],
) -> None:
    """Send one new study per run; time each route until its Orthanc holds the study."""
    from tests.forward.support import originals

    for number in range(args.runs):
        files = originals(work / f"originals{number}", args.instances, seed=100 + number)
        before = {name: peer.count() for name, peer in peers.items()}
        send(files)
        last = time.monotonic()
        pending = dict(peers)
        while pending:
            for name, peer in list(pending.items()):
                if peer.count() - before[name] >= args.instances:
                    latencies[name].append(time.monotonic() - last)
                    del pending[name]
            if time.monotonic() - last > 300:
                raise SystemExit("a study was not forwarded within 300 s")
            time.sleep(0.05)
        print(
            f"run {number + 1}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in latencies.items()),
            flush=True,
        )


def report(args: argparse.Namespace, latencies: dict[str, list[float]]) -> str:
    timeout = float(args.completion_timeout)
    rows = [
        "| route | p50 latency (s) | p95 latency (s) | p95 forward (s) | target p95 (s) | met |",
        "|---|---|---|---|---|---|",
    ]
    for name, values in latencies.items():
        high = p95(values)
        met = "yes" if high <= timeout + 10 else "NO"
        rows.append(
            f"| {name} | {statistics.median(values):.2f} | {high:.2f} | {high - timeout:.2f} "
            f"| {timeout + 10:.0f} | {met} |"
        )
    command = (
        f"python benchmarks/forward_bench.py --instances {args.instances} --runs {args.runs} "
        f"--completion-timeout {args.completion_timeout:g}"
        + (" --via storescu" if args.via == "storescu" else "")
    )
    if args.via == "storescu":
        where = (
            "`dicomveil scp` on loopback (default settings: SQLite index and queue, file "
            "archive, vault and audit recorded; routes in the node), fed by DCMTK `storescu` "
            "over 1 association"
        )
        entry = (
            "Each study is pushed by `storescu`; latency counts from `storescu`'s exit (the "
            "last instance answered)."
        )
    else:
        where = (
            "ingest and routing in this process (in-process de-identification, SQLite index "
            "and queue, file archive, vault and audit recorded)"
        )
        entry = (
            "Instances enter through the ingest service directly (the DIMSE receiver in "
            "front of it is measured by benchmarks/dimse_bench.py)."
        )
    return "\n".join(
        [
            f"Command: `{command}`",
            "",
            f"Machine: {cpu_model()}, Python {platform.python_version()}; {where}; routes: "
            "C-STORE over 4 associations and STOW-RS, to two Orthancs (Debian package, "
            "DICOMweb plugin) on loopback receiving at once.",
            "",
            *rows,
            "",
            f"Latency: from the last instance's arrival to the whole study ({args.instances} "
            "instances, 64x64 CT) held by Orthanc; it includes the completion timeout "
            "(quiet seconds); forward = latency minus the completion timeout. Target "
            f"(issue 12): p95 <= completion timeout + 10 s. {entry}",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instances", type=int, default=500)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--completion-timeout", type=float, default=5.0)
    parser.add_argument(
        "--via",
        choices=("ingest", "storescu"),
        default="ingest",
        help="ingest: the ingest service in this process, one file a call; storescu: DCMTK "
        "storescu pushes each study to a `dicomveil scp` (1 association) holding the routes.",
    )
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="forward-bench-") as folder:
        latencies = run(args, Path(folder))
    text = report(args, latencies)
    print(text)
    if args.write_docs:
        print(f"wrote {write_section(SECTION, text)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
