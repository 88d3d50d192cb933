"""Benchmark of the DICOM node (issue 12) against Orthanc and DCMTK, one command.

    .venv/bin/python benchmarks/dimse_bench.py [--store 2000] [--find 100000] [--write-docs]

Three receivers run on this machine, on loopback, fed the same synthetic CT corpus
(:func:`dicomveil.demo.write_demo_study`, 64x64 16-bit images, 20 per study):

- **C-STORE ingest**: DCMTK ``storescu`` sends ``--store`` instances over 1 association,
  then (new instances) over 4 associations at once (4 ``storescu`` processes, a quarter of
  the files each); instances/s from the first process started to the last one done.
  ``dicomveil scp`` de-identifies, archives, records the way back and indexes every
  instance before answering success; Orthanc's C-STORE SCP stores (and indexes) only;
  DCMTK ``storescp`` writes files only: the limit of the protocol on this machine; a
  pynetdicom SCP that writes files only (``benchmarks/pynetdicom_storescp.py``) is the
  ceiling of any receiver built on pynetdicom, as the node is.
- **C-FIND study search**: dicomveil and Orthanc hold the same instances (``--find``: filled
  up to that many), then ``--queries`` Study Root searches of each kind (PatientID exact,
  PatientName wild card, ModalitiesInStudy, all studies) are timed one by one on one
  association (pynetdicom ``findscu``-like client); p50 and p95 per server. Each server is
  asked for its own values (dicomveil holds pseudonyms).

DCMTK (``storescu``, ``storescp`` and Orthanc, which is built on it) leaves Nagle's algorithm
on unless the environment says ``TCP_NODELAY=1``; then a small PDU waits for the peer's delayed
acknowledgement and every receiver tops out near 10 instances/s on loopback. The benchmark
sets ``TCP_NODELAY=1`` for every process it starts (the dicomveil node sets TCP_NODELAY on its
sockets itself), so the numbers measure the receivers, not that wait.

``--write-docs`` replaces the "DICOM node (issue 12)" section of ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO))

from benchmarks.reporting import cpu_model, write_section  # noqa: E402

KEY = "benchmark-pseudonym-key-0123456789abcdef"
SECTION = "## DICOM node (issue 12)"
PER_STUDY = 20
BENCH_AE = "BENCH"
STUDY_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
DCMTK_PATH = "/usr/bin:/usr/local/bin"  # pynetdicom's apps share the DCMTK names


def corpus(folder: Path, instances: int, seed: int) -> list[Path]:
    """Write ``instances`` CT images, ``PER_STUDY`` per study (one study per patient)."""
    from dicomveil.demo import write_demo_study

    if instances <= 0:
        return []
    studies = max(1, instances // PER_STUDY)
    return write_demo_study(
        folder, patients=studies, series_per_study=1, images_per_series=PER_STUDY,
        rows=64, columns=64, seed=seed,
    )  # fmt: skip


def dcmtk(name: str) -> str:
    found = shutil.which(name, path=DCMTK_PATH)
    if found is None:
        raise SystemExit(f"DCMTK `{name}` is missing: apt-get install dcmtk")
    return found


def storescu(ae: str, port: int, files: list[Path], associations: int, work: Path) -> float:
    """Send ``files`` with ``associations`` storescu processes at once; instances/s."""
    work.mkdir(parents=True, exist_ok=True)
    lists = []
    for n in range(associations):
        part = files[n::associations]
        folder = work / f"part-{n}"
        folder.mkdir()
        for i, path in enumerate(part):  # one folder per process: storescu +sd
            os.link(path, folder / f"{i:06d}.dcm")
        lists.append(folder)
    started = time.perf_counter()
    procs = [
        subprocess.Popen(
            [
                dcmtk("storescu"),
                "-aet",
                BENCH_AE,
                "-aec",
                ae,
                "+sd",
                "127.0.0.1",
                str(port),
                str(folder),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )  # fmt: skip
        for folder in lists
    ]
    failed = [p.communicate()[1] for p in procs if p.wait() != 0]
    elapsed = time.perf_counter() - started
    shutil.rmtree(work, ignore_errors=True)
    if failed:
        raise RuntimeError(f"storescu to {ae} failed: {failed[0][-500:]!r}")
    return len(files) / elapsed


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as answer:
        return json.loads(answer.read())


@dataclass(frozen=True)
class Receivers:
    """The running receivers: name -> (AE title, port); how to fill the two archives."""

    peers: dict[str, tuple[str, int]]
    fillers: dict[str, Callable[[int, int], float]]
    homes: dict[str, Path]
    config: Path
    pids: dict[str, int]
    """Process ids of the dicomveil nodes (their CPU time per search is measured)."""


BASE = "dicomveil (base)"


@contextmanager
def base_scp(home: Path, source: Path, config: Path) -> Iterator[tuple[int, int]]:
    """Run ``dicomveil scp`` from the checkout ``source`` (an earlier commit) on ``home``;
    yield its port and process id. Compares before/after in one run, under the same load."""
    from tests.support.servers import free_port, start, stop, wait_tcp
    from tests.web.gateway_server import environment

    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = environment(home, KEY)
    env["PYTHONPATH"] = f"{source / 'src'}{os.pathsep}{source}"
    command = [sys.executable, "-m", "dicomveil", "scp", "--port", str(port)]
    proc = start([*command, "--config", str(config)], home.parent / f"base-{port}.log", env)
    try:
        wait_tcp(port, timeout=60, proc=proc)
        yield port, proc.pid
    finally:
        stop(proc)


@contextmanager
def receivers(work: Path, fsync: bool, baseline: Path | None) -> Iterator[Receivers]:
    """Run dicomveil scp, Orthanc and DCMTK storescp."""
    from tests.dimse.scp_server import running_scp
    from tests.support.servers import free_port, start, stop, wait_tcp
    from tests.web.orthanc_server import running_orthanc

    from benchmarks.archive_fill import fill_dicomveil, fill_orthanc

    with ExitStack() as stack:
        config = work / "dicomveil.toml"
        config.write_text(f"[server]\narchive_fsync = {'true' if fsync else 'false'}\n")
        node = stack.enter_context(
            running_scp(work / "dicomveil" / "home", KEY, args=("--config", str(config)))
        )
        bench = {"bench": [BENCH_AE, "127.0.0.1", 1]}
        url = stack.enter_context(
            running_orthanc(work / "orthanc", extra={"DicomModalities": bench})
        )
        orthanc_port = int(_get_json(url + "/system")["DicomPort"])
        files_port = free_port()
        out = work / "storescp"
        out.mkdir()
        scp = start(
            [dcmtk("storescp"), "--fork", "-aet", "STORESCP", "-od", str(out), str(files_port)],
            work / "storescp.log",
        )  # fmt: skip
        stack.callback(stop, scp)
        wait_tcp(files_port, proc=scp)
        py_port = free_port()
        py_scp = start(
            [sys.executable, str(REPO / "benchmarks" / "pynetdicom_storescp.py"), str(py_port),
             str(work / "pynetdicom-scp")],
            work / "pynetdicom-scp.log",
        )  # fmt: skip
        stack.callback(stop, py_scp)
        wait_tcp(py_port, proc=py_scp)
        peers = {
            "dicomveil": ("DICOMVEIL", node.port),
            "Orthanc": (str(_get_json(url + "/system")["DicomAet"]), orthanc_port),
            "DCMTK storescp": ("STORESCP", files_port),
            "pynetdicom SCP": ("PYSCP", py_port),
        }
        homes = {"dicomveil": node.home}
        pids = {"dicomveil": node.proc.pid}
        if baseline is not None:
            homes[BASE] = work / "base" / "home"
            base_port, pids[BASE] = stack.enter_context(base_scp(homes[BASE], baseline, config))
            peers[BASE] = ("DICOMVEIL", base_port)
        fillers: dict[str, Callable[[int, int], float]] = {
            "dicomveil": lambda count, seed: fill_dicomveil(node.home, KEY, count, seed),
            "Orthanc": lambda count, seed: fill_orthanc(url + "/dicom-web", count, seed),
        }
        yield Receivers(peers, fillers, homes, config, pids)


def _find_client(ae: str, port: int) -> Any:
    from pynetdicom import AE

    client = AE(ae_title=BENCH_AE)
    client.add_requested_context(STUDY_FIND)
    assoc = client.associate("127.0.0.1", port, ae_title=ae)
    if not assoc.is_established:
        raise RuntimeError(f"C-FIND association with {ae} refused")
    wrapper = assoc.dul.socket
    if wrapper is not None and wrapper.socket is not None:
        wrapper.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return assoc


def _search(assoc: Any, **keys: str) -> tuple[float, list[Any]]:
    from pydicom.dataset import Dataset

    identifier = Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    for keyword in ("StudyInstanceUID", "PatientID", "PatientName", "ModalitiesInStudy"):
        setattr(identifier, keyword, keys.get(keyword, ""))
    started = time.perf_counter()
    answers = [ds for status, ds in assoc.send_c_find(identifier, STUDY_FIND) if ds is not None]
    return (time.perf_counter() - started) * 1000, answers


def cpu_ms(pid: int | None) -> float:
    """CPU time (user + system) the process ``pid`` used so far, in ms (0 without one)."""
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")


def cfind(
    ae: str, port: int, repeat: int, broad: int, pid: int | None = None
) -> dict[str, tuple[float, float, float]]:
    """Time ``repeat`` searches of each kind (``broad`` of those answering every study);
    give kind -> (p50 ms, p95 ms, the server's CPU ms per search: ``pid``'s, else 0)."""
    assoc = _find_client(ae, port)
    try:
        _, studies = _search(assoc, PatientID="*")
        samples = studies[: max(1, min(len(studies), repeat))]
        kinds: dict[str, list[dict[str, str]]] = {
            "PatientID exact": [{"PatientID": str(s.PatientID)} for s in samples],
            "PatientName wild card": [
                {"PatientName": str(s.PatientName)[:3] + "*"} for s in samples
            ],
            "ModalitiesInStudy": [{"ModalitiesInStudy": "CT"}],
            "all studies": [{}],
        }
        results = {}
        for kind, variants in kinds.items():
            count = repeat if len(variants) > 1 else broad
            used = cpu_ms(pid)
            times = [_search(assoc, **variants[i % len(variants)])[0] for i in range(count)]
            used = (cpu_ms(pid) - used) / count
            times.sort()
            p95 = times[min(len(times) - 1, int(round(0.95 * (len(times) - 1))))]
            results[kind] = (statistics.median(times), p95, used)
        return results
    finally:
        assoc.release()


def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="dicomveil-dimse-bench-"))
    try:
        return _run(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    by_store = args.fill == "cstore"
    print(f"writing corpus (2 x {args.store}) ...")
    one = corpus(work / "one", args.store, seed=1)
    four = corpus(work / "four", args.store, seed=2)
    extra = max(args.find - len(one) - len(four), 0)  # whole studies: may exceed --store
    fill = corpus(work / "fill", extra, seed=3) if by_store else []
    results: dict[str, Any] = {"store": {}, "find": {}, "fill": {}}
    results["instances"] = len(one) + len(four)
    with receivers(work, args.fsync, args.baseline) as running:
        for name, (ae, port) in running.peers.items():
            if not args.store:
                continue
            rate1 = storescu(ae, port, one, 1, work / "send")
            rate4 = storescu(ae, port, four, 4, work / "send")
            results["store"][name] = (rate1, rate4)
            print(f"{name}: C-STORE {rate1:.1f}/s (1 association), {rate4:.1f}/s (4)")
        fill_studies = extra // PER_STUDY
        for name in ("dicomveil", "Orthanc"):
            ae, port = running.peers[name]
            if fill:
                print(f"{name}: filling to {results['instances'] + len(fill)} instances ...")
                storescu(ae, port, fill, 4, work / "send")
            elif fill_studies:
                print(f"{name}: filling {fill_studies * PER_STUDY} instances directly ...")
                started = time.perf_counter()
                rate = running.fillers[name](fill_studies, 4)
                results["fill"][name] = (rate, time.perf_counter() - started)
                print(f"  {rate:.0f} instances/s")
            if not args.queries:
                continue
            _find_all(results, name, ae, port, args, running.pids.get(name))
            if name == "dicomveil" and args.baseline is not None:
                # the earlier commit's node on a copy of this index (not of the archive)
                copy = work / "base-find" / "home"
                shutil.copytree(
                    running.homes[name], copy, ignore=shutil.ignore_patterns("archive", "spool")
                )
                with base_scp(copy, args.baseline, running.config) as (base_port, pid):
                    _find_all(results, BASE, ae, base_port, args, pid)
    results["instances"] += len(fill) if by_store else fill_studies * PER_STUDY
    return results


def _find_all(
    results: dict[str, Any],
    name: str,
    ae: str,
    port: int,
    args: argparse.Namespace,
    pid: int | None = None,
) -> None:
    latencies = cfind(ae, port, args.queries, args.broad_queries, pid)
    results["find"][name] = latencies
    for kind, (p50, p95, cpu) in latencies.items():
        print(
            f"  {name} C-FIND {kind:<22} p50 {p50:7.1f} ms  p95 {p95:7.1f} ms"
            + (f"  server CPU {cpu:7.1f} ms/search" if pid else "")
        )


def report(results: dict[str, Any], args: argparse.Namespace, command: str) -> str:
    store, find = results["store"], results["find"]
    ours, theirs, limit, bare = (
        store.get(n) for n in ("dicomveil", "Orthanc", "DCMTK storescp", "pynetdicom SCP")
    )
    lines = [
        f"Command: `{command}`",
        "",
        f"Machine: {cpu_model()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
        "all on loopback: `dicomveil scp` (SQLite index, file archive"
        f"{'' if args.fsync else ' without fsync'}, vault + audit recorded), Orthanc (Debian "
        "package, default settings) and DCMTK `storescp` (files only); DCMTK `storescu` sends.",
        "",
        "| | dicomveil | Orthanc | DCMTK storescp | pynetdicom SCP | dicomveil / Orthanc |",
        "|---|---|---|---|---|---|",
    ]
    for i, label in enumerate(("1 association", "4 associations at once")):
        if not store:
            break
        lines.append(
            f"| C-STORE {args.store} CT instances, {label} (instances/s) | {ours[i]:.1f} | "
            f"{theirs[i]:.1f} | {limit[i]:.1f} | {bare[i]:.1f} | {ours[i] / theirs[i]:.2f} |"
        )
    if BASE in store:
        base = store[BASE]
        lines.append(
            f"| C-STORE, `dicomveil (base)` (the `--baseline` checkout), 1 / 4 associations | "
            f"{base[0]:.1f} / {base[1]:.1f} | | | | {base[0] / theirs[0]:.2f} / "
            f"{base[1] / theirs[1]:.2f} |"
        )
    if find:
        names = [n for n in ("dicomveil", BASE, "Orthanc") if n in find]
        lines += [
            "",
            f"| C-FIND studies at {results['instances']} instances, p50 / p95 ms | "
            + " | ".join(names)
            + " | p95 / Orthanc's | node CPU ms per search |",
            "|---" * (len(names) + 3) + "|",
        ]
        for kind in find.get("dicomveil", {}):
            cells = [f"{find[n][kind][0]:.1f} / {find[n][kind][1]:.1f}" for n in names]
            ratios = ", ".join(
                f"{find[n][kind][1] / find['Orthanc'][kind][1]:.2f}" for n in names[:-1]
            )
            cpu = ", ".join(f"{find[n][kind][2]:.0f}" for n in names[:-1])
            lines.append(f"| {kind} | " + " | ".join(cells) + f" | {ratios} | {cpu} |")
    fill = results["fill"]
    if fill:
        lines += [
            "",
            "Archives filled beyond the C-STORE runs directly (not timed as part of the "
            "comparison): dicomveil through its ingest service in process (de-identified, "
            "archived, recorded, indexed), "
            f"{fill['dicomveil'][0]:.0f} instances/s; Orthanc by STOW-RS, "
            f"{fill['Orthanc'][0]:.0f} instances/s ({PER_STUDY} instances a study, "
            "`benchmarks/archive_fill.py`). Searches answering every study were timed "
            f"{args.broad_queries} times each, the others {args.queries} times.",
        ]
    lines += [
        "",
        "dicomveil answers each C-STORE only once the instance is de-identified, archived, "
        "its way back recorded and indexed; Orthanc only stores; storescp and the pynetdicom "
        "SCP (`benchmarks/pynetdicom_storescp.py`, the ceiling of a pynetdicom receiver) "
        "only write files. "
        "Ratio: higher is better for ingest, lower for latency.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", type=int, default=2000, help="Instances per C-STORE run.")
    parser.add_argument("--find", type=int, default=100_000, help="Instances for C-FIND.")
    parser.add_argument("--queries", type=int, default=50, help="Searches timed per kind.")
    parser.add_argument(
        "--broad-queries",
        type=int,
        default=10,
        help="Searches timed of the kinds answering every study (all, ModalitiesInStudy).",
    )
    parser.add_argument(
        "--fill",
        choices=("direct", "cstore"),
        default="direct",
        help="How the C-FIND archives are filled beyond the C-STORE runs: in process "
        "(dicomveil: the ingest service; Orthanc: STOW-RS) or by storescu (slow).",
    )
    parser.add_argument(
        "--no-fsync", dest="fsync", action="store_false", help="archive_fsync = false."
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        default=None,
        help="A checkout of an earlier commit (git worktree): its `dicomveil scp` is measured "
        "too, as 'dicomveil (base)' (C-STORE on its own home; C-FIND on a copy of the index).",
    )
    parser.add_argument("--write-docs", action="store_true", help="Update docs/benchmarks.md.")
    args = parser.parse_args(argv)
    os.environ["TCP_NODELAY"] = "1"  # for DCMTK and Orthanc (see the module's documentation)
    results = run(args)
    command = "python benchmarks/dimse_bench.py " + " ".join(
        a for a in (argv if argv is not None else sys.argv[1:]) if a != "--write-docs"
    )
    text = report(results, args, command.strip())
    print(text)
    if args.write_docs:
        write_section(SECTION, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
