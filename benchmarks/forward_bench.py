"""Benchmark of routing on study completion (issue 12): a study forwarded complete to Orthanc.

    .venv/bin/python benchmarks/forward_bench.py [--instances 500] [--runs 5]
        [--completion-timeout 5] [--via ingest|storescu] [--send on-arrival|on-complete]
        [--write-docs]

Each run ingests one new synthetic CT study of ``--instances`` instances (64x64, one series)
through the runtime's ingest service, one file per call as the DIMSE receiver does, with
routing subscribed to it, and measures, from the last instance's arrival to the moment
Orthanc holds the whole study, how long forwarding takes. Two routes run at once, to two
Orthancs on loopback (Debian package, DICOMweb plugin): ``cstore`` (pynetdicom C-STORE SCU)
and ``stow`` (STOW-RS). The target: p95 <= completion timeout + 10 s. ``forward`` is the
latency minus the completion timeout (the time routing takes once the study is complete).
Both rules have ``send = --send`` (``on-arrival``, their default: instances are forwarded
while the study arrives; ``on-complete``: nothing goes before the completion), and each run
also reports how many instances each Orthanc held when the last instance arrived and when
the completion timeout ran out (the study's completion).

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
from dataclasses import dataclass, field
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


@dataclass
class Measures:
    """Per route, one value per run."""

    held: dict[str, list[float]] = field(default_factory=dict)
    """Seconds from the last arrival to the whole study held by Orthanc (the target's)."""
    done: dict[str, list[float]] = field(default_factory=dict)
    """Seconds from the last arrival to the forward ``done`` in the queue (committed)."""
    counts: dict[str, list[tuple[int, int]]] = field(default_factory=dict)
    """Instances Orthanc held at the last arrival, and at the completion."""
    push: list[float] = field(default_factory=list)
    """Seconds the study took to arrive (``storescu``'s run, or the ingest calls)."""


def run(args: argparse.Namespace, work: Path) -> Measures:
    from tests.dimse.scp_server import running_scp
    from tests.forward.orthanc import AET, running_receiver
    from tests.forward.support import ingest, open_runtime

    from dicomveil.forward.queue import ForwardQueue
    from dicomveil.forward.service import Forwarding
    from dicomveil.forward.settings import RoutingSettings

    measures = Measures()
    with running_receiver(work / "o1") as dimse, running_receiver(work / "o2") as web:
        home = work / "home"
        toml = work / "routing.toml"
        toml.write_text(
            f"[routing]\ncompletion_timeout = {args.completion_timeout}\n"
            f'[[routing.rules]]\nname = "cstore"\naction = "cstore"\nhost = "127.0.0.1"\n'
            f'port = {dimse.dicom_port}\nae_title = "{AET}"\nsend = "{args.send}"\n'
            f'[[routing.rules]]\nname = "stow"\naction = "stow"\nurl = "{web.dicomweb}"\n'
            f'send = "{args.send}"\n'
        )
        peers = {"cstore": dimse, "stow": web}
        queue = ForwardQueue.open(RoutingSettings.load(toml, home=home).queue_url)
        if args.via == "storescu":
            with running_scp(home, KEY, args=("--config", str(toml))) as node:
                send = partial(storescu, node.port)
                _runs(args, work, send, peers, queue, measures)
            queue.close()
            return measures
        runtime = open_runtime(home)
        forwarding = Forwarding.open(toml, runtime)
        runtime.ingest.subscribe(forwarding.listener)
        forwarding.start()
        try:
            _runs(args, work, partial(ingest, runtime), peers, queue, measures)
        finally:
            forwarding.stop()
            runtime.close()
            queue.close()
    return measures


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
    queue: Any,
    measures: Measures,
) -> None:
    """Send one new study per run; time each route until its Orthanc holds the study and
    until its forward is done."""
    from tests.forward.support import originals

    def done() -> dict[str, int]:
        jobs = queue.jobs(["done"], limit=100_000)
        return {name: sum(job.rule == name for job in jobs) for name in peers}

    for name in peers:
        measures.held.setdefault(name, [])
        measures.done.setdefault(name, [])
        measures.counts.setdefault(name, [])
    for number in range(args.runs):
        files = originals(work / f"originals{number}", args.instances, seed=100 + number)
        before = {name: peer.count() for name, peer in peers.items()}
        done_before = done()
        started = time.monotonic()
        send(files)
        last = time.monotonic()
        measures.push.append(last - started)
        at_last = {name: peer.count() - before[name] for name, peer in peers.items()}
        at_completion: dict[str, int] = {}
        held: dict[str, float] = {}
        finished: dict[str, float] = {}
        while len(held) + len(finished) + bool(at_completion) < 2 * len(peers) + 1:
            now = time.monotonic()
            counts = {name: peer.count() - before[name] for name, peer in peers.items()}
            if not at_completion and now - last >= args.completion_timeout:
                at_completion = counts
            for name, count in counts.items():
                if name not in held and count >= args.instances:
                    held[name] = now - last
            for name, jobs in done().items():
                if name not in finished and jobs > done_before[name]:
                    finished[name] = now - last
            if now - last > 300:
                raise SystemExit("a study was not forwarded within 300 s")
            time.sleep(0.05)
        for name in peers:
            measures.held[name].append(held[name])
            measures.done[name].append(finished[name])
            measures.counts[name].append((at_last[name], at_completion[name]))
        print(
            f"run {number + 1}: pushed in {measures.push[-1]:.2f} s; "
            + "; ".join(
                f"{name} held {held[name]:.2f} s, done {finished[name]:.2f} s "
                f"({at_last[name]} held at the last arrival, {at_completion[name]} at "
                "completion)"
                for name in peers
            ),
            flush=True,
        )


def report(args: argparse.Namespace, measures: Measures) -> str:
    timeout = float(args.completion_timeout)
    rows = [
        "| route | p50 latency (s) | p95 latency (s) | p95 forward (s) | target p95 (s) | met "
        "| p50 / p95 done (s) | held at the last arrival / at completion (p50) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, values in measures.held.items():
        high = p95(values)
        met = "yes" if high <= timeout + 10 else "NO"
        counts = measures.counts[name]
        held = (
            f"{statistics.median(c[0] for c in counts):.0f} / "
            f"{statistics.median(c[1] for c in counts):.0f} of {args.instances}"
        )
        done = measures.done[name]
        rows.append(
            f"| {name} | {statistics.median(values):.2f} | {high:.2f} | {high - timeout:.2f} "
            f"| {timeout + 10:.0f} | {met} | {statistics.median(done):.2f} / {p95(done):.2f} "
            f"| {held} |"
        )
    per_run = [
        f"- {name}: latency " + ", ".join(f"{v:.2f}" for v in measures.held[name])
        + " s; done " + ", ".join(f"{v:.2f}" for v in measures.done[name]) + " s"
        for name in measures.held
    ]  # fmt: skip
    pushes = ", ".join(f"{v:.2f}" for v in measures.push)
    per_run.append(f"- push (the study arriving): {pushes} s")
    command = (
        f"python benchmarks/forward_bench.py --instances {args.instances} --runs {args.runs} "
        f"--completion-timeout {args.completion_timeout:g}"
        + (" --via storescu" if args.via == "storescu" else "")
        + (" --send on-complete" if args.send == "on-complete" else "")
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
            f'C-STORE over 4 associations and STOW-RS, both `send = "{args.send}"`, to two '
            "Orthancs (Debian package, DICOMweb plugin) on loopback receiving at once.",
            "",
            *rows,
            "",
            "Per run:",
            "",
            *per_run,
            "",
            f"Latency: from the last instance's arrival to the whole study ({args.instances} "
            "instances, 64x64 CT) held by Orthanc; it includes the completion timeout "
            "(quiet seconds) unless the route sent while the study arrived; forward = latency "
            "minus the completion timeout (negative: the study was held before its "
            "completion); done = until the forward is done in the queue (committed: "
            "completion, then every instance acknowledged). Target "
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
    parser.add_argument(
        "--send",
        choices=("on-arrival", "on-complete"),
        default="on-arrival",
        help="the rules' send mode: forward while the study arrives (the default of cstore "
        "and stow rules), or only once it is complete.",
    )
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="forward-bench-") as folder:
        measures = run(args, Path(folder))
    text = report(args, measures)
    print(text)
    if args.write_docs:
        print(f"wrote {write_section(SECTION, text)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
