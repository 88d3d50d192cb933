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
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO))

from benchmarks.reporting import cpu_model, write_section  # noqa: E402

SECTION = "## Routing (issue 12)"


def p95(values: list[float]) -> float:
    """The 95th percentile (nearest rank)."""
    ordered = sorted(values)
    return ordered[max(0, round(0.95 * len(ordered) + 0.5) - 1)]


def run(args: argparse.Namespace, work: Path) -> dict[str, list[float]]:
    from tests.forward.orthanc import AET, running_receiver
    from tests.forward.support import ingest, open_runtime, originals

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
        runtime = open_runtime(home)
        forwarding = Forwarding.open(toml, runtime)
        runtime.ingest.subscribe(forwarding.listener)
        forwarding.start()
        try:
            for number in range(args.runs):
                files = originals(work / f"originals{number}", args.instances, seed=100 + number)
                before = {"cstore": dimse.count(), "stow": web.count()}
                ingest(runtime, files)
                last = time.monotonic()
                pending = {"cstore": dimse, "stow": web}
                while pending:
                    for name, peer in list(pending.items()):
                        if peer.count() - before[name] >= args.instances:
                            latencies[name].append(time.monotonic() - last)
                            del pending[name]
                    if time.monotonic() - last > 300:
                        raise SystemExit("a study was not forwarded within 300 s")
                    time.sleep(0.05)
                print(
                    f"run {number + 1}: "
                    + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in latencies.items()),
                    flush=True,
                )
        finally:
            forwarding.stop()
            runtime.close()
    return latencies


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
    )
    return "\n".join(
        [
            f"Command: `{command}`",
            "",
            f"Machine: {cpu_model()}, Python {platform.python_version()}; ingest and routing in "
            "this process (in-process de-identification, SQLite index and queue, file archive, "
            "vault and audit recorded; C-STORE over 4 associations), two Orthancs (Debian "
            "package, DICOMweb plugin) on loopback receiving the C-STORE and STOW-RS routes "
            "at once.",
            "",
            *rows,
            "",
            f"Latency: from the last instance's arrival to the whole study ({args.instances} "
            "instances, 64x64 CT) held by Orthanc; it includes the completion timeout "
            "(quiet seconds); forward = latency minus the completion timeout. Target "
            "(issue 12): p95 <= completion timeout + 10 s. Instances enter through the ingest "
            "service directly (the DIMSE receiver in front of it is measured by "
            "benchmarks/dimse_bench.py).",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instances", type=int, default=500)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--completion-timeout", type=float, default=5.0)
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
