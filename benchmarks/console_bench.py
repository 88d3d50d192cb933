"""Benchmark of the operator console (issue 16): its pages against the QIDO-RS query behind them.

    .venv/bin/python benchmarks/console_bench.py [--instances 100000] [--write-docs]

The target: every console page's p95 within 2x the p95 of the QIDO-RS query it runs, with
100,000 instances in the archive. The index of a fresh gateway is filled directly with
``--instances`` synthetic instance rows (pseudonymous values only; 50 instances per study,
two studies per patient, five series per study), then one gateway serves both sides:

- ``GET /dicomweb/studies`` with a read token, ``limit=50`` (the console's page size), and
- ``GET /console/studies`` with a read session (the same search, rendered as HTML),
- ``GET /console/`` (the dashboard: archive counts) against the unfiltered QIDO-RS search.

Each kind of search is timed ``--queries`` times, one request at a time, alternating the two
sides; the values searched for are taken from the archive itself.

``--write-docs`` replaces the "Console (issue 16)" section of ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO))

from benchmarks.reporting import cpu_model, write_section  # noqa: E402

KEY = "benchmark-pseudonym-key-0123456789abcdef"
SECTION = "## Console (issue 16)"
PER_STUDY = 50
SERIES_PER_STUDY = 5
PAGE = 50
MODALITIES = ("CT", "MR", "US", "CR", "DX")
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"


def fill_index(home: Path, instances: int, seed: int = 7) -> int:
    """Write ``instances`` synthetic rows into the gateway's default index; return studies."""
    from dicomveil.index import open_index
    from dicomveil.index.db import default_index_url
    from dicomveil.index.records import InstanceRecord

    rng = random.Random(seed)
    index = open_index(default_index_url(home))
    studies = max(1, instances // PER_STUDY)
    try:
        batch: list[InstanceRecord] = []
        for study in range(studies):
            patient = study // 2
            study_uid = f"2.25.{10**20 + study}"
            modality = rng.choice(MODALITIES)
            common: dict[str, str | int | None] = {
                "PatientName": f"P{patient:015d}",
                "PatientID": f"P{patient:015d}",
                "PatientBirthDate": None,
                "PatientSex": rng.choice(("F", "M", "O")),
                "StudyInstanceUID": study_uid,
                "StudyDate": f"{rng.randint(2000, 2022)}{rng.randint(1, 12):02d}"
                f"{rng.randint(1, 28):02d}",
                "StudyTime": "120000",
                "AccessionNumber": f"A{study:015d}",
                "StudyID": f"S{study:015d}",
                "StudyDescription": f"{modality} study",
                "Modality": modality,
                "SOPClassUID": CT_IMAGE,
                "Rows": 64,
                "Columns": 64,
            }
            for number in range(PER_STUDY):
                series = number % SERIES_PER_STUDY
                values = {
                    **common,
                    "SeriesInstanceUID": f"{study_uid}.{series + 1}",
                    "SeriesNumber": series + 1,
                    "SeriesDescription": f"series {series + 1}",
                    "SOPInstanceUID": f"{study_uid}.{series + 1}.{number + 1}",
                    "InstanceNumber": number + 1,
                }
                key = f"{common['PatientID']}/{study_uid}/{number}.dcm"
                batch.append(InstanceRecord(values, key, 10_000, "0" * 64, EXPLICIT_LE, ""))
                if len(batch) >= 2000:
                    index.add(batch)
                    batch = []
        if batch:
            index.add(batch)
    finally:
        index.close()
    return studies


def searches(studies: int, rng: random.Random) -> dict[str, list[dict[str, str]]]:
    """The searches of each kind, with values that exist in the filled archive."""
    picks = [rng.randrange(studies) for _ in range(20)]
    return {
        "all studies": [{}],
        "PatientID": [{"PatientID": f"P{p // 2:015d}"} for p in picks],
        "PatientName*": [{"PatientName": f"P{p // 2:015d}"[:12] + "*"} for p in picks],
        "StudyDate range": [{"StudyDate": "20100101-20151231"}],
        "ModalitiesInStudy": [{"ModalitiesInStudy": "CT"}],
    }


def timed(call: Callable[[], Any], times: list[float]) -> None:
    started = time.perf_counter()
    answer = call()
    times.append((time.perf_counter() - started) * 1000)
    if answer.status_code != 200:
        raise RuntimeError(f"request failed: {answer.status_code}")


def p50_p95(times: list[float]) -> tuple[float, float]:
    ordered = sorted(times)
    return statistics.median(ordered), ordered[int(0.95 * (len(ordered) - 1))]


def run(args: argparse.Namespace) -> dict[str, Any]:
    import httpx
    from tests.web.gateway_server import running_gateway

    work = Path(tempfile.mkdtemp(prefix="dicomveil-console-bench-"))
    try:
        home = work / "home"
        home.mkdir()
        started = time.perf_counter()
        studies = fill_index(home, args.instances)
        print(f"indexed {args.instances} instances in {time.perf_counter() - started:.0f} s")
        kinds = searches(studies, random.Random(3))
        results: dict[str, Any] = {"studies": studies, "pages": {}}
        with running_gateway(home, KEY) as gateway:
            read = {"Authorization": f"Bearer {gateway.tokens['read']}"}
            with httpx.Client(base_url=gateway.url, timeout=120) as client:
                login = client.post(
                    "/console/login",
                    data={"token": gateway.tokens["read"]},
                    headers={"Origin": gateway.url},
                )
                if login.status_code != 303:
                    raise RuntimeError(f"console login failed: {login.status_code}")
                cookie = login.headers["set-cookie"].split(";", 1)[0]
                session = {"Cookie": cookie}
                pages = [(f"studies: {kind}", "/console/studies", kind) for kind in kinds]
                pages.append(("dashboard", "/console/", "all studies"))
                for label, path, kind in pages:
                    qido_times: list[float] = []
                    page_times: list[float] = []
                    for n in range(args.queries + 2):
                        params = kinds[kind][n % len(kinds[kind])]
                        query = {**params, "limit": str(PAGE)}

                        def ask_qido(query: dict[str, str] = query) -> Any:
                            return client.get("/dicomweb/studies", params=query, headers=read)

                        def ask_page(params: dict[str, str] = params, path: str = path) -> Any:
                            wanted = params if path != "/console/" else {}
                            return client.get(path, params=wanted, headers=session)

                        sides: list[tuple[Callable[[], Any], list[float]]] = [
                            (ask_qido, qido_times),
                            (ask_page, page_times),
                        ]
                        for call, times in sides if n % 2 else sides[::-1]:
                            timed(call, times)
                        if n < 2:  # warm-up: caches, templates
                            qido_times.clear()
                            page_times.clear()
                    results["pages"][label] = {
                        "qido": p50_p95(qido_times),
                        "page": p50_p95(page_times),
                    }
                    q, p = results["pages"][label]["qido"], results["pages"][label]["page"]
                    print(
                        f"{label:<32} console p95 {p[1]:7.1f} ms  QIDO p95 {q[1]:7.1f} ms  "
                        f"ratio {p[1] / q[1]:.2f}"
                    )
        return results
    finally:
        shutil.rmtree(work, ignore_errors=True)


def report(results: dict[str, Any], args: argparse.Namespace, command: str) -> str:
    lines = [
        f"Command: `{command}`",
        "",
        f"Machine: {cpu_model()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"one gateway (`serve`, SQLite index) holding {args.instances} instances in "
        f"{results['studies']} studies; {args.queries} requests per row, one at a time, the "
        "console page and its QIDO-RS query alternating.",
        "",
        "| page | console p50 ms | console p95 ms | QIDO-RS p95 ms | ratio (target ≤ 2) |",
        "|---|---|---|---|---|",
    ]
    for label, row in results["pages"].items():
        (p50, p95), (_, q95) = row["page"], row["qido"]
        lines.append(f"| {label} | {p50:.1f} | {p95:.1f} | {q95:.1f} | {p95 / q95:.2f} |")
    lines += [
        "",
        "The console page runs the QIDO-RS query's index search (page size 50) and renders "
        "it as HTML; the dashboard counts the archive and is set against the unfiltered "
        "search.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instances", type=int, default=100_000, help="Instances indexed.")
    parser.add_argument("--queries", type=int, default=60, help="Requests timed per row.")
    parser.add_argument("--write-docs", action="store_true", help="Update docs/benchmarks.md.")
    args = parser.parse_args(argv)
    results = run(args)
    command = "python benchmarks/console_bench.py " + " ".join(
        a for a in (argv if argv is not None else sys.argv[1:]) if a != "--write-docs"
    )
    text = report(results, args, command.strip())
    print(text)
    if args.write_docs:
        write_section(SECTION, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
