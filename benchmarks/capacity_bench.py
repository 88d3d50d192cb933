"""Bytes per instance of the shared state on a real PostgreSQL (issue 15's capacity model).

    .venv/bin/python benchmarks/capacity_bench.py [--instances 2000] [--per-call 20]
        [--write-docs]

Starts a PostgreSQL of its own (initdb + pg_ctl on a free port, as the test suite does), opens
a runtime whose index and vault are in it (file archive, audit log in the state folder), and
ingests ``--instances`` synthetic CT instances (512x512 16-bit, 10 series of 100 per study,
PHI planted as any real export carries) through the real ingest service, ``--per-call`` files
per call (one STOW-RS request's worth). Then it measures:

- per table, ``pg_total_relation_size`` (rows, TOAST and indexes) after ``VACUUM ANALYZE``,
  divided by the instances: index and vault bytes per instance;
- the same once every instance's DICOM JSON is kept in the index (the gateway keeps it on the
  first metadata read: the upper bound);
- the audit log's bytes per instance and the archive's (de-identified objects).

``docs/deploy.md``'s capacity model multiplies these by 700,000 a day and 20 million a month.
``--write-docs`` replaces the "Shared state per instance (issue 15)" section of
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO))

from benchmarks.bench_run import publish, workdir  # noqa: E402
from benchmarks.reporting import cpu_model  # noqa: E402

SECTION = "## Shared state per instance (issue 15)"
COMMAND = ".venv/bin/python benchmarks/capacity_bench.py --instances 2000 --write-docs"
KEY = "capacity-bench-pseudonym-key-0123456789abcdef"


@contextmanager
def postgres() -> Iterator[str]:
    """A throw-away PostgreSQL on loopback; yields its base URL."""
    from tests.conftest import PG_BIN, _as_postgres
    from tests.support.servers import free_port

    initdb = shutil.which("initdb") or str(PG_BIN / "initdb")
    pg_ctl = shutil.which("pg_ctl") or str(PG_BIN / "pg_ctl")
    root = Path(tempfile.mkdtemp(prefix="dicomveil-pg-capacity-"))
    root.chmod(0o755)
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    data, port = root / "data", free_port()
    halt = _as_postgres([pg_ctl, "-D", str(data), "-m", "fast", "-w", "stop"])
    try:
        init = [initdb, "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8"]
        subprocess.run(_as_postgres(init), check=True, capture_output=True)
        options = f"-h 127.0.0.1 -p {port} -k {root}"
        start = [pg_ctl, "-D", str(data), "-l", str(root / "log"), "-w", "-o", options, "start"]
        subprocess.run(_as_postgres(start), check=True, capture_output=True)
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}"
    finally:
        subprocess.run(halt, check=False, capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def table_sizes(url: str) -> dict[str, int]:
    """``pg_total_relation_size`` of every table of the database at ``url``, after VACUUM."""
    import psycopg

    plain = url.replace("postgresql+psycopg", "postgresql")
    with psycopg.connect(plain, autocommit=True) as connection:
        connection.execute("VACUUM ANALYZE")
        rows = connection.execute(
            "SELECT relname, pg_total_relation_size(relid) FROM pg_stat_user_tables"
        ).fetchall()
    return {str(name): int(size) for name, size in rows}


def originals(folder: Path, instances: int) -> list[Path]:
    import pydicom

    from dicomveil.demo import write_demo_study

    series = max(1, instances // 100)
    paths = write_demo_study(
        folder,
        patients=1,
        series_per_study=series,
        images_per_series=instances // series,
        rows=512,
        columns=512,
    )
    for path in paths:
        ds = pydicom.dcmread(path)
        ds.InstitutionName, ds.OperatorsName = "GENERAL HOSPITAL", "OPERATOR^ONE"
        ds.save_as(path)
    return paths


def measure(args: argparse.Namespace, work: Path, base: str) -> dict[str, float]:
    from tests.conftest import create_postgres_database

    from dicomveil.index import metadata_from_file
    from dicomveil.pipeline.ingest import Origin
    from dicomveil.runtime import Runtime
    from dicomveil.settings import CoreSettings

    for name in ("DICOMVEIL_KEY", "DICOMVEIL_VAULT_KEY", "DICOMVEIL_AUDIT_KEY"):
        os.environ.pop(name, None)
    files = originals(work / "in", args.instances)
    index_url = create_postgres_database(base, "index")
    vault_url = create_postgres_database(base, "vault")
    key = work / "key"
    key.write_text(KEY)
    home = work / "home"
    settings = CoreSettings(
        home=home, key_file=key, index_url=index_url, vault_url=vault_url, deid_processes=2
    )
    origin = Origin(entry="stow", actor="token:bench", calling_ae=None, peer="127.0.0.1")
    before = {"index": table_sizes(index_url), "vault": table_sizes(vault_url)}
    began = time.perf_counter()
    with Runtime.open(settings) as runtime:
        for start in range(0, len(files), args.per_call):
            chunk = files[start : start + args.per_call]
            assert all(r.ok for r in runtime.ingest.ingest(chunk, origin))
        elapsed = time.perf_counter() - began
        after = {"index": table_sizes(index_url), "vault": table_sizes(vault_url)}
        archive = home / "archive"
        stored = [p for p in archive.rglob("*") if p.is_file()]
        headers = {}
        for path in stored:
            import pydicom

            uid = str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)
            headers[uid] = metadata_from_file(path)
        runtime.index.set_metadata(headers)
    with_json = table_sizes(index_url)
    n = len(files)
    grown = {db: sum(after[db].values()) - sum(before[db].values()) for db in ("index", "vault")}
    audit = sum(p.stat().st_size for p in (home / "audit").rglob("*") if p.is_file())
    return {
        "instances": n,
        "seconds": elapsed,
        "index": grown["index"] / n,
        "index_json": (sum(with_json.values()) - sum(before["index"].values())) / n,
        "vault": grown["vault"] / n,
        "audit": audit / n,
        "archive": sum(p.stat().st_size for p in stored) / n,
        "original": sum(p.stat().st_size for p in files) / n,
    }


def report(args: argparse.Namespace, m: dict[str, float]) -> str:
    return "\n".join(
        [
            f"`{COMMAND}` on {cpu_model()} ({platform.python_version()}): "
            f"{int(m['instances']):,} CT instances (512x512, 16-bit) ingested through the "
            f"ingest service, {args.per_call} per call, index and vault on PostgreSQL "
            f"(sizes after `VACUUM ANALYZE`, rows + TOAST + indexes), in {m['seconds']:.1f} s.",
            "",
            "| what | bytes per instance |",
            "|---|---:|",
            f"| index (PostgreSQL), as ingested | {m['index']:,.0f} |",
            f"| index with every instance's DICOM JSON kept (after metadata reads) | "
            f"{m['index_json']:,.0f} |",
            f"| vault (PostgreSQL) | {m['vault']:,.0f} |",
            f"| audit log (file in the state folder today) | {m['audit']:,.0f} |",
            f"| archive: de-identified object | {m['archive']:,.0f} |",
            f"| original as received (incoming store in cluster mode, deleted once done) | "
            f"{m['original']:,.0f} |",
            "",
            "One study of many instances: per-study and per-patient rows are shared by all its "
            "instances, so smaller studies (CR, MG) cost a little more per instance.",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instances", type=int, default=2000)
    parser.add_argument("--per-call", type=int, default=20)
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args(argv)
    with workdir("dicomveil-capacity-") as work, postgres() as base:
        publish(SECTION, [report(args, measure(args, work, base))], write_docs=args.write_docs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
