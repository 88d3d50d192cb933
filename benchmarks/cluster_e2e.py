"""End-to-end latency in cluster mode (issue 15): ``cluster_bench.py --e2e``.

A real gateway (``dicomveil serve --queue``) and two ``dicomveil worker`` processes share
Redis, PostgreSQL (vault, index), a file archive and a file incoming store. A background
sender (its own process) pushes other studies by STOW-RS at ``--background`` images/s, paced
against the clock. Each round then pushes a fresh 500-image CT study by STOW-RS in requests
of ``--request`` instances and measures, from the answer to its last request (the last image
accepted), the time until QIDO-RS reports all of the study's instances
(NumberOfStudyRelatedInstances) and WADO-RS returns one of them.

The offered background rate is reported next to what the gateway accepted and what the
workers drained over the run: when the workers drain less than is offered, the queue grows
and every later round waits behind it, so the ratio says whether the latency measured is
that of a sustainable load.
"""

from __future__ import annotations

import multiprocessing
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.servers import free_port, start, stop, wait_http, wait_tcp

DCMTK_PATH = "/usr/bin:/usr/local/bin"
"""Where DCMTK's storescu is (pynetdicom installs a Python app of the same name)."""
STUDY_TIMEOUT = 300.0
"""Seconds a round waits for its study before calling it not visible (``--timeout``)."""


@dataclass
class Round:
    """One study's timings, seconds from its last image accepted."""

    send: float
    """Seconds from its first request to the answer to its last."""
    visible: float | None
    """QIDO-RS counts every instance and WADO-RS returns one (None: not within the timeout)."""
    backlog: int
    """Messages waiting in the broker when the study's last image was accepted."""


@dataclass
class Result:
    """What :func:`run` measured."""

    rounds: list[Round] = field(default_factory=list)
    offered: float = 0.0
    """Background images/s the sender was asked for."""
    accepted: float = 0.0
    """Background images/s the gateway accepted."""
    drained: float = 0.0
    """Instances/s the workers indexed over the measured part of the run (all senders)."""
    elapsed: float = 0.0

    def p95(self) -> float | None:
        """95th percentile of the visible times (nearest rank), None if a round missed."""
        times = [r.visible for r in self.rounds]
        if not times or any(t is None for t in times):
            return None
        ordered = sorted(t for t in times if t is not None)
        return ordered[max(0, -(-95 * len(ordered) // 100) - 1)]


def _related(parts: list[bytes]) -> tuple[str, bytes]:
    boundary = "bench-e2e-boundary-7f3a"
    chunks: list[bytes] = []
    for data in parts:
        chunks += [f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode(), data]
        chunks.append(b"\r\n")
    chunks.append(f"--{boundary}--\r\n".encode())
    return f'multipart/related; type="application/dicom"; boundary={boundary}', b"".join(chunks)


def _stow(client: Any, token: str, parts: list[bytes]) -> list[str]:
    """POST one STOW-RS request; return the SOP Instance UIDs the answer names."""
    content_type, body = _related(parts)
    answer = client.post(
        "/dicomweb/studies",
        content=body,
        headers={"Authorization": f"Bearer {token}", "Content-Type": content_type},
    )
    if answer.status_code != 200:
        raise RuntimeError(f"STOW-RS answered {answer.status_code}")
    items = answer.json()["00081199"]["Value"]
    return [str(item["00081155"]["Value"][0]) for item in items]


def background(
    base: str, token: str, rate: float, folder: str, matrix: int, sent: Any, running: Any
) -> None:
    """The background sender (a process): studies of 20 images, paced to ``rate`` images/s."""
    import httpx

    from dicomveil.demo import write_demo_study

    began = time.monotonic()
    seed = 1000
    with httpx.Client(base_url=base, timeout=120) as client:
        while running.value:
            ahead = sent.value / rate - (time.monotonic() - began)
            if ahead > 0:
                time.sleep(min(ahead, 0.5))
                continue
            seed += 1
            where = Path(folder) / str(seed)
            files = write_demo_study(
                where, patients=1, series_per_study=1, images_per_series=20,
                rows=matrix, columns=matrix, seed=seed,
            )  # fmt: skip
            parts = [path.read_bytes() for path in files]
            shutil.rmtree(where, ignore_errors=True)
            _stow(client, token, parts)
            with sent.get_lock():
                sent.value += len(parts)


def _cstore(port: int, files: list[Path], key: str) -> list[str]:
    """Send ``files`` with DCMTK's storescu in one association; return the pseudonymous SOP
    Instance UIDs they will have (keyed, as the node names them; storescu does not say)."""
    from dicomveil.engine.keys import PseudonymKeys
    from dicomveil.engine.rules import compile_policy
    from dicomveil.pipeline.ingest_work import head_uids, pseudonymous_uid
    from dicomveil.profile.policy import Policy

    binary = shutil.which("storescu", path=DCMTK_PATH)
    if binary is None:
        raise RuntimeError("DCMTK's storescu is not installed")
    sent = subprocess.run(
        [binary, "-aec", "DICOMVEIL", "127.0.0.1", str(port), *map(str, files)],
        capture_output=True, check=False, timeout=600,
    )  # fmt: skip
    if sent.returncode != 0:
        raise RuntimeError(f"storescu failed ({sent.returncode})")
    keys, compiled = PseudonymKeys(key.encode()), compile_policy(Policy())
    return [pseudonymous_uid(head_uids(p).sop_instance, compiled, keys) for p in files]


def _first(item: dict[str, Any], tag: str) -> Any:
    return item[tag]["Value"][0]


def _visible(client: Any, token: str, named: list[str], count: int) -> bool:
    """Whether QIDO-RS counts ``count`` instances in the study and WADO-RS returns one."""
    auth = {"Authorization": f"Bearer {token}"}
    found = client.get("/dicomweb/instances", params={"SOPInstanceUID": named[-1]}, headers=auth)
    if found.status_code != 200 or not found.json():
        return False
    item = found.json()[0]
    study, series = _first(item, "0020000D"), _first(item, "0020000E")
    studies = client.get("/dicomweb/studies", params={"StudyInstanceUID": study}, headers=auth)
    rows = studies.json() if studies.status_code == 200 else []
    if not rows or int(_first(rows[0], "00201208")) < count:
        return False
    path = f"/dicomweb/studies/{study}/series/{series}/instances/{named[-1]}"
    retrieved = client.get(
        path, headers={**auth, "Accept": "multipart/related; type=application/dicom"}
    )
    return bool(retrieved.status_code == 200 and b"DICM" in retrieved.content)


def run(
    env: dict[str, str],
    root: Path,
    *,
    rounds: int,
    study_images: int,
    request_size: int,
    rate: float,
    matrix: int,
    workers: int,
    threads: int,
    backlog: Callable[[], int],
    indexed: Callable[[], int],
    timeout: float = STUDY_TIMEOUT,
    sender: str = "stow",
) -> Result:
    """Start gateway, workers and background sender; measure ``rounds`` studies."""
    import httpx

    from dicomveil.demo import write_demo_study
    from dicomveil.tokens import token_store

    gateway_home = root / "home-e2e-gateway"
    gateway_home.mkdir()
    store = token_store(gateway_home)
    ingest, read = store.create("ingest", "bench")[1], store.create("read", "bench")[1]
    store_close = getattr(store, "close", None)
    if callable(store_close):
        store_close()
    port = free_port()
    procs = []
    cmd = [sys.executable, "-m", "dicomveil", "serve", "--queue", env["DICOMVEIL_QUEUE"]]
    gateway = start(
        [*cmd, "--port", str(port)], root / "e2e-gateway.log",
        {**env, "DICOMVEIL_HOME": str(gateway_home)},
    )  # fmt: skip
    procs.append(gateway)
    context = multiprocessing.get_context("spawn")
    sent, running = context.Value("l", 0), context.Value("b", 1)
    loader = None
    result = Result(offered=rate)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/healthz", timeout=60, proc=gateway)
        dimse = free_port()
        if sender == "cstore":  # a DICOM node in cluster mode, its own state folder
            (root / "home-e2e-node").mkdir()
            node = [sys.executable, "-m", "dicomveil", "scp", "--queue", env["DICOMVEIL_QUEUE"]]
            procs.append(
                start(
                    [*node, "--port", str(dimse)],
                    root / "e2e-node.log",
                    {**env, "DICOMVEIL_HOME": str(root / "home-e2e-node")},
                )  # fmt: skip
            )
            wait_tcp(dimse, timeout=60, proc=procs[-1])
        for number in range(workers):
            home = root / f"home-e2e-{number}"
            home.mkdir()
            work = [sys.executable, "-m", "dicomveil", "worker", "--concurrency", str(threads)]
            procs.append(
                start(work, root / f"e2e-{number}.log", {**env, "DICOMVEIL_HOME": str(home)})
            )
        if rate > 0:
            loader = context.Process(
                target=background,
                args=(base, ingest, rate, str(root / "background"), matrix, sent, running),
            )
            loader.start()
        time.sleep(10)  # warm-up: the workers started, the background load in its stride
        began, sent_before, indexed_before = time.monotonic(), sent.value, indexed()
        with httpx.Client(base_url=base, timeout=120) as client:
            for number in range(rounds):
                files = write_demo_study(
                    root / f"study-{number}", patients=1, series_per_study=2,
                    images_per_series=study_images // 2, rows=matrix, columns=matrix,
                    seed=number + 1,
                )  # fmt: skip
                parts = [path.read_bytes() for path in files]
                start_send = time.monotonic()
                named: list[str] = []
                if sender == "cstore":
                    named = _cstore(dimse, files, env["DICOMVEIL_KEY"])
                for at in range(0, len(parts) if sender == "stow" else 0, request_size):
                    named += _stow(client, ingest, parts[at : at + request_size])
                accepted = time.monotonic()
                waiting = backlog()
                visible = None
                while time.monotonic() - accepted < timeout:
                    if _visible(client, read, named, len(parts)):
                        visible = time.monotonic() - accepted
                        break
                    if any(p.poll() is not None for p in procs):
                        raise RuntimeError(f"a server exited; see {root}")
                    time.sleep(0.2)
                result.rounds.append(Round(accepted - start_send, visible, waiting))
                print(f"round {number + 1}: sent in {accepted - start_send:.1f} s, backlog "
                      f"{waiting}, visible after {visible} s", flush=True)  # fmt: skip
                shutil.rmtree(root / f"study-{number}", ignore_errors=True)
        result.elapsed = time.monotonic() - began
        result.accepted = (sent.value - sent_before) / result.elapsed
        result.drained = (indexed() - indexed_before) / result.elapsed
    finally:
        running.value = 0
        if loader is not None:
            loader.join(30)
            if loader.is_alive():
                loader.kill()
        for proc in procs:
            stop(proc)
    return result


def report(
    result: Result, *, study_images: int, request_size: int, matrix: int, sender: str = "stow"
) -> list[str]:
    """The table rows for docs/benchmarks.md."""
    p95 = result.p95()
    visible = [r.visible for r in result.rounds]
    shown = ", ".join("–" if v is None else f"{v:.1f}" for v in visible)
    ratio = result.accepted / result.offered if result.offered else 0.0
    median_send = statistics.median(r.send for r in result.rounds)
    return [
        "| measure | value | target |",
        "|---|---:|---|",
        f"| study | {study_images} CT images {matrix}x{matrix}, "
        + (
            f"STOW-RS requests of {request_size}"
            if sender == "stow"
            else "C-STORE (DCMTK storescu, one association) to `dicomveil scp --queue`"
        )
        + " | |",
        f"| rounds, visible after last image (s) | {shown} | |",
        f"| p95 over {len(result.rounds)} rounds (s) | "
        f"{'not all visible' if p95 is None else f'{p95:.1f}'} | ≤ 30 s |",
        f"| study send time, median (s) | {median_send:.1f} | |",
        f"| queue backlog at last image (messages) | "
        f"{', '.join(str(r.backlog) for r in result.rounds)} | |",
        f"| background offered, images/s | {result.offered:.1f} | 100 |",
        f"| background accepted by the gateway, images/s | {result.accepted:.1f} "
        f"({ratio:.0%} of offered) | |",
        f"| drained by 2 workers over the run (all senders), instances/s | "
        f"{result.drained:.1f} | |",
    ]
