"""Benchmark of ``dicomveil deid`` against ``cp -r`` and the tools a user could pick instead.

    .venv/bin/python benchmarks/deid_bench.py [--files 2000] [--rounds 3] [--quick]
        [--tools cp,dicomveil-j2,...] [--no-install] [--big-mb 2048] [--json] [--write-docs]

Issue 3's benchmark, one command:

1. installs the peers as a user would (:mod:`benchmarks.peers`): a separate venv in
   ``benchmarks/_work/peers-venv`` with ``pip install dcmanon dicognito dicom-anonymizer``, and
   ``apt-get install libgdcm-tools`` for gdcmanon when it is missing;
2. builds the corpus in code (:mod:`benchmarks.corpus`: 2,000 files, about 1 GB, cached in
   ``benchmarks/_work``) and reads it once so the page cache is warm;
3. runs every tool once untimed on ten files (bytecode, imports), then ``--rounds`` rounds in
   which each tool runs once on the whole corpus, in an order rotated every round, each run a
   fresh process tree writing into a fresh folder that is deleted (and ``sync``-ed) after it;
4. measures the whole process: wall time from start to the exit of the last process, peak RSS
   of the largest process in the tree (``wait4``), failures reported by the tool, files written;
5. measures start-up (``dicomveil deid`` on one file) and a single multi-frame instance of
   ``--big-mb`` MiB (2 GiB by default) streamed to disk, against ``cp``;
6. prints a table (median seconds, files/s, MB/s, peak RSS, ratio to ``cp -r``) and the
   issue's target checks, or JSON with ``--json``; ``--write-docs`` replaces the
   "De-identification speed (issue 3)" section of ``docs/benchmarks.md``.

Every file it makes is under ``--work`` (default ``benchmarks/_work``, git-ignored); the only
thing installed outside it is Debian's ``libgdcm-tools``. A peer that fails on some files has
its failures counted; a peer that cannot be installed is skipped and named in the notes.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import json
import os
import platform
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):
    sys.path.insert(0, str(REPO))

from benchmarks import corpus, peers  # noqa: E402
from benchmarks.reporting import cpu_model, write_section  # noqa: E402

SECTION = "## De-identification speed (issue 3)"
KEY = "benchmark-pseudonym-key-0123456789abcdef\n"
REPORT_NAME = "dicomveil-report.json"
TIMEOUT = 1800.0
WARMUP_FILES = 10


@dataclass(frozen=True)
class Source:
    """A folder of input files and the lists the drivers read (all, and two halves)."""

    root: Path
    relatives: tuple[str, ...]
    lists: dict[str, Path]
    bytes: int

    @classmethod
    def make(cls, root: Path, relatives: list[str], lists_dir: Path, size: int) -> Source:
        lists_dir.mkdir(parents=True, exist_ok=True)
        parts = {"all": relatives, "half0": relatives[0::2], "half1": relatives[1::2]}
        lists = {}
        for name, items in parts.items():
            path = lists_dir / f"{name}.txt"
            path.write_text("".join(f"{item}\n" for item in items), encoding="utf-8")
            lists[name] = path
        return cls(root, tuple(relatives), lists, size)


@dataclass
class Context:
    """Everything the command builders need."""

    work: Path
    key_file: Path
    dicomveil: list[str]
    peers: peers.Peers
    logs: Path


Builder = Callable[[Context, Source, Path], list[list[str]]]


@dataclass(frozen=True)
class Tool:
    """One row of the table: how to launch it and how to read its failures."""

    id: str
    label: str
    processes: int
    needs: str  # "system", "main", "gdcmanon", "dicomveil" or a PyPI peer's name
    build: Builder
    failures: str  # "cp", "driver", "gdcmanon" or "dicomveil"
    writes: bool = True


@dataclass
class Measured:
    """One run of one tool."""

    seconds: float
    rss_kb: int
    returncodes: list[int]
    stdout: list[str]
    stderr: list[str]
    timed_out: bool = False


@dataclass
class Row:
    """Everything measured for one tool over the rounds."""

    id: str
    label: str
    processes: int
    seconds: list[float] = field(default_factory=list)
    rss_mb: list[float] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    files_out: list[int] = field(default_factory=list)
    returncodes: list[list[int]] = field(default_factory=list)
    digests: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds) if self.seconds else float("nan")

    @property
    def peak_rss_mb(self) -> float:
        return max(self.rss_mb) if self.rss_mb else float("nan")


@dataclass
class Check:
    """One target of the issue."""

    target: str
    measured: str
    passed: bool | None


# -- the tools --------------------------------------------------------------------------------


def _driver(mode: str, halves: bool) -> Builder:
    def build(ctx: Context, source: Source, out: Path) -> list[list[str]]:
        python = sys.executable if peers.MODES[mode] == "main" else str(ctx.peers.python)
        script = str(REPO / "benchmarks" / "peers.py")
        lists = [source.lists["half0"], source.lists["half1"]] if halves else [source.lists["all"]]
        return [[python, script, mode, str(source.root), str(item), str(out)] for item in lists]

    return build


def _cp(ctx: Context, source: Source, out: Path) -> list[list[str]]:
    return [["cp", "-r", str(source.root), str(out)]]


def _gdcmanon(ctx: Context, source: Source, out: Path) -> list[list[str]]:
    binary, certificate = str(ctx.peers.gdcmanon), str(ctx.peers.certificate)
    return [
        [
            binary,
            "-e",
            "-r",
            "--continue",
            "-c",
            certificate,
            "-i",
            str(source.root),
            "-o",
            str(out),
        ]
    ]


#: A teleradiology option set: dates shifted per patient, device and patient characteristics
#: kept (their free text cleaned), safe private attributes kept.
OPTIONS = (
    "retain-longitudinal-modified-dates",
    "retain-device-identity",
    "retain-patient-characteristics",
    "retain-safe-private",
)


def _dicomveil(workers: int, vault: bool, options: tuple[str, ...] = ()) -> Builder:
    def build(ctx: Context, source: Source, out: Path) -> list[list[str]]:
        argv = [*ctx.dicomveil, "deid", str(source.root), str(out), "--key-file", str(ctx.key_file)]
        argv += ["--workers", str(workers), "--json"]
        for option in options:
            argv += ["-o", option]
        return [argv if vault else [*argv, "--no-vault"]]

    return build


TOOLS = (
    Tool("cp", "`cp -r`", 1, "system", _cp, "cp"),
    Tool(
        "parse",
        "pydicom parse only (`stop_before_pixels`)",
        1,
        "main",
        _driver("parse", False),
        "driver",
        writes=False,
    ),
    Tool("naive", "naive pydicom read/modify/save", 2, "main", _driver("naive", True), "driver"),
    Tool(
        "gdcmanon",
        "gdcmanon basic profile (`-e`, certificate)",
        1,
        "gdcmanon",
        _gdcmanon,
        "gdcmanon",
    ),
    Tool("dcmanon-1", "dcmanon", 1, "dcmanon", _driver("dcmanon", False), "driver"),
    Tool("dcmanon-2", "dcmanon", 2, "dcmanon", _driver("dcmanon", True), "driver"),
    Tool("dicognito-2", "dicognito", 2, "dicognito", _driver("dicognito", True), "driver"),
    Tool(
        "dicom-anonymizer",
        "dicom-anonymizer",
        1,
        "dicom-anonymizer",
        _driver("dicom-anonymizer", False),
        "driver",
    ),
    Tool(
        "dicomveil-j1-novault",
        "`dicomveil deid -j1 --no-vault`",
        1,
        "dicomveil",
        _dicomveil(1, False),
        "dicomveil",
    ),
    Tool(
        "dicomveil-j2-novault",
        "`dicomveil deid -j2 --no-vault`",
        2,
        "dicomveil",
        _dicomveil(2, False),
        "dicomveil",
    ),
    Tool(
        "dicomveil-j1",
        "`dicomveil deid -j1` (vault)",
        1,
        "dicomveil",
        _dicomveil(1, True),
        "dicomveil",
    ),
    Tool(
        "dicomveil-j2",
        "`dicomveil deid -j2` (vault)",
        2,
        "dicomveil",
        _dicomveil(2, True),
        "dicomveil",
    ),
    Tool(
        "dicomveil-j2-options",
        "`dicomveil deid -j2` (vault) with " + ", ".join(f"`{o}`" for o in OPTIONS),
        2,
        "dicomveil",
        _dicomveil(2, True, OPTIONS),
        "dicomveil",
    ),
)
TOOL_IDS = tuple(tool.id for tool in TOOLS)


# -- measuring ------------------------------------------------------------------------------


def _gnu_time() -> str | None:
    """GNU time, which reports its child's peak RSS from ``wait4``, if installed."""
    path = shutil.which("time") or ("/usr/bin/time" if Path("/usr/bin/time").exists() else None)
    if path is None:
        return None
    done = subprocess.run([path, "-f", "%M", "true"], capture_output=True, text=True, check=False)
    return path if done.returncode == 0 and done.stderr.strip().isdigit() else None


GNU_TIME = _gnu_time()


def _rss_from(path: Path) -> int:
    lines = path.read_text("utf-8", "replace").split() if path.exists() else []
    return int(lines[-1]) if lines and lines[-1].isdigit() else 0


def measure(
    commands: list[list[str]], env: dict[str, str], log_stem: Path, timeout: float = TIMEOUT
) -> Measured:
    """Start ``commands`` together and wait for all; wall time and the largest peak RSS.

    Each command is its own process group, so a run past ``timeout`` is killed whole. Peak
    RSS is the largest resident set of the process or of any descendant it waited for (a
    worker pool's largest worker, for instance), as ``wait4`` reports it. Each command runs
    under GNU time, which makes that call: a process started straight from this (large)
    Python process would carry this process's own high-water mark into its ``exec``, and
    ``cp`` would seem to need 90 MB. Without GNU time the harness's size is a floor.
    """
    log_stem.parent.mkdir(parents=True, exist_ok=True)
    names = [f"{log_stem.name}.{i}" for i in range(len(commands))]
    stdout = [log_stem.with_name(f"{name}.out") for name in names]
    stderr = [log_stem.with_name(f"{name}.err") for name in names]
    rss_files = [log_stem.with_name(f"{name}.rss") for name in names]
    for path in rss_files:
        path.unlink(missing_ok=True)
    if GNU_TIME is not None:
        commands = [
            [GNU_TIME, "-f", "%M", "-o", str(rss), *argv]
            for rss, argv in zip(rss_files, commands, strict=True)
        ]
    handles = [(a.open("wb"), b.open("wb")) for a, b in zip(stdout, stderr, strict=True)]
    procs: list[subprocess.Popen[bytes]] = []
    timed_out = threading.Event()

    def kill() -> None:
        timed_out.set()
        for proc in procs:
            if proc.returncode is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    rss = 0
    codes: list[int] = []
    try:
        started = time.perf_counter()
        for argv, (out, err) in zip(commands, handles, strict=True):
            procs.append(
                subprocess.Popen(argv, stdout=out, stderr=err, env=env, start_new_session=True)
            )
        timer = threading.Timer(timeout, kill)
        timer.start()
        for proc in procs:
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
            codes.append(proc.returncode)
            rss = max(rss, usage.ru_maxrss)
        seconds = time.perf_counter() - started
        timer.cancel()
    finally:
        for out, err in handles:
            out.close()
            err.close()
    if GNU_TIME is not None:
        rss = max(_rss_from(path) for path in rss_files)
    return Measured(
        seconds=seconds,
        rss_kb=rss,
        returncodes=codes,
        stdout=[p.read_text("utf-8", "replace") for p in stdout],
        stderr=[p.read_text("utf-8", "replace") for p in stderr],
        timed_out=timed_out.is_set(),
    )


def _last_json(text: str) -> dict[str, Any] | None:
    for line in reversed(text.strip().splitlines()):
        if line.startswith("{"):
            try:
                value = json.loads(line)
            except ValueError:
                return None
            return value if isinstance(value, dict) else None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def failures(kind: str, run: Measured, inputs: int, written: int) -> int:
    """Files the tool said it failed; when it said nothing usable, inputs it did not write."""
    missing = max(0, inputs - written)
    if run.timed_out:
        return missing
    if kind == "driver":
        total = 0
        for text in run.stdout:
            summary = _last_json(text)
            if summary is None:
                return missing
            total += int(summary.get("failed", 0))
        return total
    if kind == "gdcmanon":
        reported = sum(line.startswith("Could not") for line in run.stderr[0].splitlines())
        return reported if reported or run.returncodes == [0] else missing
    if kind == "dicomveil":
        summary = json.loads(run.stdout[0]) if run.stdout[0].strip().startswith("{") else None
        if isinstance(summary, dict) and isinstance(summary.get("files"), dict):
            return int(summary["files"].get("failed", 0))
        return missing
    return 0 if run.returncodes == [0] else missing


def count_files(folder: Path) -> int:
    """Regular files under ``folder``, not counting dicomveil's report."""
    total = 0
    for _, _, names in os.walk(folder):
        total += sum(1 for name in names if name != REPORT_NAME)
    return total


def tree_digest(folder: Path) -> str:
    """SHA-256 over the sorted relative paths and contents (without dicomveil's report)."""
    digest = hashlib.sha256()
    paths = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != REPORT_NAME)
    for path in paths:
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
        with path.open("rb") as handle:
            digest.update(hashlib.file_digest(handle, "sha256").digest())
    return digest.hexdigest()


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


def warm(paths: list[Path]) -> None:
    """Read every file once so that every tool starts with the same (warm) page cache."""
    for path in paths:
        with path.open("rb") as handle:
            while handle.read(1 << 20):
                pass


def _env(home: Path | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DICOMVEIL_KEY", "PYTHONPATH")}
    if home is not None:
        env["DICOMVEIL_HOME"] = str(home)
    return env


def run_tool(tool: Tool, ctx: Context, source: Source, tag: str, *, digest: bool) -> Row:
    """Run ``tool`` once on ``source``; return a one-run row (outputs deleted afterwards)."""
    runs = ctx.work / "runs"
    out, home = runs / tool.id, runs / f"{tool.id}-home"
    _remove(out)
    _remove(home)
    runs.mkdir(parents=True, exist_ok=True)
    commands = tool.build(ctx, source, out)
    run = measure(commands, _env(home), ctx.logs / f"{tool.id}-{tag}")
    written = count_files(out) if out.exists() else 0
    row = Row(tool.id, tool.label, tool.processes)
    row.seconds.append(run.seconds)
    row.rss_mb.append(run.rss_kb / 1024)
    row.failed.append(failures(tool.failures, run, len(source.relatives), written))
    if tool.writes:
        row.files_out.append(written)
    row.returncodes.append(run.returncodes)
    if run.timed_out:
        row.notes.append(f"timed out after {TIMEOUT:.0f} s")
    if digest and out.exists() and row.failed == [0]:  # a partial tree says nothing
        row.digests.append(tree_digest(out))
    _remove(out)
    _remove(home)
    os.sync()
    return row


def _merge(into: Row, one: Row) -> None:
    into.seconds += one.seconds
    into.rss_mb += one.rss_mb
    into.failed += one.failed
    into.files_out += one.files_out
    into.returncodes += one.returncodes
    into.digests += one.digests
    into.notes += [note for note in one.notes if note not in into.notes]


# -- the parts of the benchmark ---------------------------------------------------------------


def corpus_rounds(
    tools: list[Tool], ctx: Context, source: Source, warmup: Source | None, rounds: int
) -> list[Row]:
    """Warm up, then run every tool once per round, rotating the order every round."""
    if warmup is not None:
        for tool in tools:
            run_tool(tool, ctx, warmup, "warmup", digest=False)
        log(f"warm-up done ({len(warmup.relatives)} files per tool)")
    rows = {tool.id: Row(tool.id, tool.label, tool.processes) for tool in tools}
    for number in range(rounds):
        shift = number % len(tools)
        for tool in tools[shift:] + tools[:shift]:
            one = run_tool(tool, ctx, source, f"r{number + 1}", digest=tool.needs == "dicomveil")
            _merge(rows[tool.id], one)
            wrote = one.files_out[0] if one.files_out else "-"
            log(
                f"round {number + 1}/{rounds} {tool.id}: {one.seconds[0]:.2f} s, "
                f"{one.rss_mb[0]:.0f} MB, failed {one.failed[0]}, wrote {wrote}"
            )
    return [rows[tool.id] for tool in tools]


def startup(ctx: Context, one_file: Path, runs: int) -> list[Row]:
    """Start-up: ``dicomveil deid`` on one file (defaults, then -j1 --no-vault), python floor.

    Each variant keeps one ``$DICOMVEIL_HOME``, set up by an untimed first run, so what is
    timed is an ordinary start, not the one-off creation of keys and the vault.
    """
    key = ["--key-file", str(ctx.key_file)]
    variants = [
        ("startup-default", "`dicomveil deid FILE OUT` (defaults: vault, one worker per core)", []),
        ("startup-j1-novault", "`dicomveil deid FILE OUT -j1 --no-vault`", ["-j1", "--no-vault"]),
    ]
    rows = [Row(name, label, 1) for name, label, _ in variants]
    floor = Row("python", "`python -c pass` (interpreter floor)", 1)
    out = ctx.work / "runs" / "startup"
    homes = [ctx.work / "runs" / f"{name}-home" for name, _, _ in variants]
    for home in homes:
        _remove(home)
    for number in range(-1, runs):  # -1: the untimed run that sets the state folder up
        for row, (_, _, extra), home in zip(rows, variants, homes, strict=True):
            _remove(out)
            argv = [*ctx.dicomveil, "deid", str(one_file), str(out), *key, *extra]
            run = measure([argv], _env(home), ctx.logs / f"{row.id}-{number}")
            if number < 0:
                continue
            row.seconds.append(run.seconds)
            row.rss_mb.append(run.rss_kb / 1024)
            row.returncodes.append(run.returncodes)
            row.failed.append(0 if run.returncodes == [0] else 1)
        if number < 0:
            continue
        run = measure([[sys.executable, "-c", "pass"]], _env(None), ctx.logs / f"python-{number}")
        floor.seconds.append(run.seconds)
        floor.rss_mb.append(run.rss_kb / 1024)
        floor.failed.append(0)
    _remove(out)
    for home in homes:
        _remove(home)
    return [*rows, floor]


def big_instance(ctx: Context, path: Path, size: int, rounds: int) -> list[Row]:
    """The single big multi-frame instance: ``cp`` and ``dicomveil deid -j2`` alternately."""
    key = ["--key-file", str(ctx.key_file)]
    cp = Row("big-cp", "`cp`", 1)
    deid = Row("big-dicomveil-j2", "`dicomveil deid -j2` (vault)", 2)
    out, home = ctx.work / "runs" / "big", ctx.work / "runs" / "big-home"
    warm([path])
    for number in range(rounds):
        for row in (cp, deid) if number % 2 == 0 else (deid, cp):
            _remove(out)
            _remove(home)
            if row is cp:
                out.mkdir(parents=True)
                argv = ["cp", str(path), str(out / path.name)]
            else:
                argv = [*ctx.dicomveil, "deid", str(path), str(out), *key, "--workers", "2"]
                argv.append("--json")
            run = measure([argv], _env(home), ctx.logs / f"{row.id}-{number}")
            written = count_files(out) if out.exists() else 0
            row.seconds.append(run.seconds)
            row.rss_mb.append(run.rss_kb / 1024)
            row.files_out.append(written)
            row.returncodes.append(run.returncodes)
            kind = "cp" if row is cp else "dicomveil"
            row.failed.append(failures(kind, run, 1, written))
            _remove(out)
            _remove(home)
            os.sync()
            log(
                f"big {number + 1}/{rounds} {row.id}: {run.seconds:.2f} s, "
                f"{run.rss_kb / 1024:.0f} MB"
            )
    return [cp, deid]


# -- reporting --------------------------------------------------------------------------------


def machine() -> dict[str, str]:
    """What this machine is, for the record."""
    cpu = cpu_model()
    memory = "?"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                memory = f"{int(line.split()[1]) / 2**20:.1f} GiB"
    except (OSError, ValueError):
        pass
    versions = {}
    for name in ("pydicom", "numpy", "dicomveil"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "-"
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    filesystem = "?"
    try:  # the longest mount point holding the work folder
        mounts = [line.split() for line in Path("/proc/mounts").read_text().splitlines()]
        here = str(REPO)
        best = max((m for m in mounts if here.startswith(m[1])), key=lambda m: len(m[1]))
        filesystem = f"{best[2]} on {best[0]}"
    except (OSError, ValueError, IndexError):
        pass
    return {
        "cpu": cpu,
        "nproc": str(len(os.sched_getaffinity(0))),
        "memory": memory,
        "os": f"{platform.system()} {platform.release()}",
        "filesystem": filesystem,
        "python": platform.python_version(),
        **versions,
        "load_at_start": load,
    }


def source_state() -> dict[str, str]:
    """The git commit and a digest of ``src/`` (dirty trees differ), to catch a moving tree."""
    digest = hashlib.sha256()
    for path in sorted((REPO / "src").rglob("*.py")):
        digest.update(path.relative_to(REPO).as_posix().encode() + b"\0" + path.read_bytes())
    done = subprocess.run(
        ["git", "-C", str(REPO), "describe", "--always", "--dirty"],
        capture_output=True,
        text=True,
        check=False,
    )
    commit = done.stdout.strip() if done.returncode == 0 else "?"
    return {"commit": commit, "src_sha256": digest.hexdigest()[:16]}


def _ratio(rows: dict[str, Row], numerator: str, denominator: str) -> float | None:
    if numerator not in rows or denominator not in rows:
        return None
    top, bottom = rows[numerator].median, rows[denominator].median
    return top / bottom if bottom > 0 else None


def _novault(tool_id: str) -> str:
    return f"{tool_id}-novault" if tool_id.startswith("dicomveil") else tool_id


def checks(
    corpus_rows: list[Row], startup_rows: list[Row], big_rows: list[Row], big_size: int
) -> list[Check]:
    """The issue's targets, each passed, failed or not measured (``None``)."""
    rows = {row.id: row for row in [*corpus_rows, *startup_rows, *big_rows]}
    result: list[Check] = []

    def ratio_check(target: str, top: str, bottom: str, ok: Callable[[float], bool]) -> None:
        value = _ratio(rows, top, bottom)
        if value is None:
            result.append(Check(target, "not measured", None))
            return
        alternative = _ratio(rows, _novault(top), _novault(bottom))
        extra = f" (`--no-vault`: {alternative:.2f})" if alternative is not None else ""
        result.append(Check(target, f"{value:.2f}{extra}", ok(value)))

    ratio_check("`deid -j2` time ≤ 2.0 × `cp -r`", "dicomveil-j2", "cp", lambda v: v <= 2.0)
    ratio_check(
        "`deid -j2` faster than gdcmanon basic (time ratio < 1)",
        "dicomveil-j2",
        "gdcmanon",
        lambda v: v < 1.0,
    )
    ratio_check(
        "`deid -j2` ≥ 1.25 × faster than dcmanon, 2 processes (dcmanon time / deid time)",
        "dcmanon-2",
        "dicomveil-j2",
        lambda v: v >= 1.25,
    )
    ratio_check(
        "`deid -j1` beats dcmanon, 1 process (time ratio < 1)",
        "dicomveil-j1",
        "dcmanon-1",
        lambda v: v < 1.0,
    )
    deid_rows = [row for row in corpus_rows if row.id.startswith("dicomveil") and row.rss_mb]
    deid_rows += [row for row in big_rows if row.id.startswith("big-dicomveil") and row.rss_mb]
    if deid_rows:
        worst = max(deid_rows, key=lambda row: row.peak_rss_mb)
        result.append(
            Check(
                "peak RSS per worker ≤ 150 MB (largest process of any dicomveil run)",
                f"{worst.peak_rss_mb:.0f} MB ({worst.id})",
                worst.peak_rss_mb <= 150,
            )
        )
    else:
        result.append(Check("peak RSS per worker ≤ 150 MB", "not measured", None))
    if rows.get("startup-default") and rows["startup-default"].seconds:
        seconds = rows["startup-default"].median
        result.append(
            Check("start-up of `deid` on one file ≤ 0.5 s", f"{seconds:.2f} s", seconds <= 0.5)
        )
    else:
        result.append(Check("start-up of `deid` on one file ≤ 0.5 s", "not measured", None))
    size_label = f"{big_size / 2**30:.1f} GiB" if big_size else "big"
    big = rows.get("big-dicomveil-j2")
    if big is not None and big.seconds:
        failed = any(big.failed)
        result.append(
            Check(
                f"{size_label} multi-frame: peak RSS ≤ 200 MB",
                f"{big.peak_rss_mb:.0f} MB" + (" (the file failed)" if failed else ""),
                big.peak_rss_mb <= 200 and not failed,
            )
        )
        speed = _ratio(rows, "big-cp", "big-dicomveil-j2") or 0.0
        result.append(
            Check(
                f"{size_label} multi-frame: ≥ 50 % of `cp` speed",
                f"{speed * 100:.0f} %" + (" (the file failed)" if failed else ""),
                speed >= 0.5 and not failed,
            )
        )
    else:
        result.append(Check("2 GiB multi-frame: peak RSS ≤ 200 MB", "not measured", None))
        result.append(Check("2 GiB multi-frame: ≥ 50 % of `cp` speed", "not measured", None))
    basic = [r for r in corpus_rows if r.id.startswith("dicomveil") and "options" not in r.id]
    digests = {d for row in basic for d in row.digests}
    runs = sum(len(row.digests) for row in basic)
    result.append(
        Check(
            "same key ⇒ byte-identical output whatever the worker count (and vault on/off)",
            f"{len(digests)} distinct output tree(s) over {runs} runs" if runs else "not measured",
            (len(digests) == 1) if runs > 1 else None,
        )
    )
    deid_failed = [max(row.failed) for row in corpus_rows if row.id.startswith("dicomveil")]
    if deid_failed:
        worst_failed = max(deid_failed)
        result.append(
            Check(
                "`deid` de-identifies every file of the corpus (no failures)",
                f"{worst_failed} failed",
                worst_failed == 0,
            )
        )
    return result


def _fmt(value: float, digits: int | None = None) -> str:
    """``value`` with thousands separators; small numbers get two decimals; NaN is "-"."""
    if value != value:  # NaN
        return "-"
    if digits is None:
        digits = 0 if abs(value) >= 10 else 2
    return f"{value:,.{digits}f}"


def table(rows: list[Row], files: int, size: int, base: str | None) -> list[str]:
    """Markdown table of ``rows``; ratios against the row ``base``."""
    reference = next((row.median for row in rows if row.id == base), None)
    lines = [
        "| tool | procs | median s | range s | files/s | MB/s | peak RSS MB | × `cp` "
        "| failed | out |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        median = row.median
        spread = f"{min(row.seconds):.2f}–{max(row.seconds):.2f}" if row.seconds else "-"
        ratio = _fmt(median / reference, 1) if reference else "-"
        failed = str(max(row.failed)) if row.failed else "-"
        out = str(max(row.files_out)) if row.files_out else "-"
        lines.append(
            f"| {row.label} | {row.processes} | {_fmt(median, 2)} | {spread} "
            f"| {_fmt(files / median if median else float('nan'))} "
            f"| {_fmt(size / 1e6 / median if median else float('nan'))} "
            f"| {_fmt(row.peak_rss_mb, 0)} | {ratio} | {failed} | {out} |"
        )
    return lines


def _label(row: Row, versions: dict[str, str]) -> str:
    for name in ("dcmanon", "dicognito", "dicom-anonymizer", "gdcmanon"):
        if row.id.startswith(name) and name in versions and not row.label.endswith(")"):
            return f"{row.label} {versions[name]}"
    return row.label


def render(result: dict[str, Any]) -> str:
    """The Markdown section body: command, machine, corpus, tables, checks, notes."""
    info = result["corpus"]
    versions = result["peers"]["versions"]
    corpus_rows = [Row(**row) for row in result["rows"]]
    for row in corpus_rows:
        row.label = _label(row, versions)
    start_rows = [Row(**row) for row in result["startup"]]
    big_rows = [Row(**row) for row in result["big"]["rows"]]
    m = result["machine"]
    kinds = ", ".join(f"{count} {kind}" for kind, count in info["kinds"].items())
    lines = [
        f"Command: `{result['command']}`",
        "",
        f"Machine: {m['cpu']}, nproc {m['nproc']}, {m['memory']} RAM, {m['os']}, "
        f"{m.get('filesystem', '?')}; Python "
        f"{m['python']}, pydicom {m['pydicom']}, numpy {m['numpy']}, dicomveil "
        f"{m['dicomveil']} (tree {result['source']['commit']}, src/ "
        f"{result['source']['src_sha256']}); load average at start {m['load_at_start']}. The 2 "
        "cores are shared with other work, so absolute times are noisy; the ratios come from "
        "runs side by side.",
        "",
        f"Corpus (`benchmarks/corpus.py`, built in code): {info['files']:,} files, "
        f"{info['bytes'] / 1e6:,.0f} MB ({kinds}); JPEG 2000 by {info['j2k_encoder']}. "
        f"Median of {result['rounds']} rounds, tools alternating, page cache warm, each run "
        "a fresh process tree into a fresh folder; peak RSS is the largest single process.",
        "",
        *table(corpus_rows, info["files"], info["bytes"], "cp"),
        "",
    ]
    if start_rows:
        lines += [
            "Start-up on one CT file (state folder set up by an untimed first run):",
            "",
            "| command | median s | range s | peak RSS MB | failed |",
            "|---|---:|---:|---:|---:|",
        ]
        for row in start_rows:
            lines.append(
                f"| {row.label} | {_fmt(row.median, 2)} | {min(row.seconds):.2f}–"
                f"{max(row.seconds):.2f} | {_fmt(row.peak_rss_mb, 0)} | {max(row.failed)} |"
            )
        lines.append("")
    if big_rows:
        size = result["big"]["bytes"]
        lines += [
            f"One multi-frame instance of {size / 1e9:.2f} GB ({size / 2**30:.2f} GiB, "
            "Multi-frame Grayscale Word SC, streamed by `corpus.write_big_multiframe`), "
            f"median of {len(big_rows[0].seconds)} rounds:",
            "",
            *table(big_rows, 1, size, "big-cp"),
            "",
        ]
    lines += ["Targets of issue 3:", "", "| target | measured | result |", "|---|---|---|"]
    for check in result["checks"]:
        verdict = {True: "pass", False: "**FAIL**", None: "not measured"}[check["passed"]]
        lines.append(f"| {check['target']} | {check['measured']} | {verdict} |")
    notes = [
        "What runs: `cp -r` copies the tree. The pydicom rows, dcmanon, dicognito and "
        "dicom-anonymizer run `benchmarks/peers.py`, a loop over the files calling the "
        "library's API the way a user script would (per-file failures counted, not fatal); "
        '"2 processes" means the file list split in two halves, two processes at once. '
        "gdcmanon runs `gdcmanon -e -r --continue -c cert.pem -i SRC -o OUT` (its Basic "
        "Profile, PS3.15 E.1.1, original values encrypted for a self-signed certificate; there "
        "is no basic-profile mode without encryption, `--dumb` only does the listed tags). "
        "dicomveil runs its console script with `--key-file` and a fresh `$DICOMVEIL_HOME`.",
        "`failed` is what the tool reported (or the files it did not write when it reported "
        "nothing); `out` is the files written. dicognito names outputs by SOP Instance UID "
        "in one folder, the other peers mirror the input tree.",
    ]
    peer_notes = result["peers"]["notes"]
    if peer_notes:
        notes.append("Setup notes: " + "; ".join(peer_notes) + ".")
    lines += ["", *notes]
    return "\n".join(lines)


def write_docs(body: str, path: Path | None = None) -> Path:
    """Replace (or append) this benchmark's section of ``docs/benchmarks.md``; keep the rest."""
    return write_section(SECTION, body, path)


# -- the command ------------------------------------------------------------------------------


def log(message: str) -> None:
    """Progress on stderr (stdout carries the table or the JSON)."""
    print(f"[deid_bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _dicomveil_command() -> list[str]:
    script = Path(sys.executable).parent / "dicomveil"
    return [str(script)] if script.exists() else [sys.executable, "-m", "dicomveil"]


def _select(spec: str | None) -> list[Tool]:
    if not spec or spec == "all":
        return list(TOOLS)
    wanted = [item.strip() for item in spec.split(",") if item.strip()]
    unknown = [item for item in wanted if item not in TOOL_IDS]
    if unknown:
        raise SystemExit(f"unknown tool(s) {unknown}; choose from {', '.join(TOOL_IDS)}")
    return [tool for tool in TOOLS if tool.id in wanted]


def _available(tool: Tool, ctx: Context) -> str | None:
    """Why ``tool`` cannot run here, or ``None``."""
    if tool.needs == "gdcmanon":
        return None if ctx.peers.gdcmanon else "gdcmanon not installed"
    if tool.needs in peers.PIP_PACKAGES:
        return None if tool.needs in ctx.peers.available else f"{tool.needs} not installed"
    return None


def _warmup_source(work: Path, source: Source) -> Source:
    """Hard links to the first files of the corpus, for the untimed warm-up runs."""
    root = work / "warmup"
    _remove(root)
    chosen = list(source.relatives[:WARMUP_FILES])
    size = 0
    for relative in chosen:
        target = root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(source.root / relative, target)
        except OSError:
            shutil.copyfile(source.root / relative, target)
        size += target.stat().st_size
    return Source.make(root, chosen, work / "lists-warmup", size)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, help="corpus files (default 2000, 200 with --quick)")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the default count")
    parser.add_argument("--rounds", type=int, help="rounds per tool (default 3, 1 with --quick)")
    parser.add_argument("--quick", action="store_true", help="200 files, 1 round, 256 MiB big")
    parser.add_argument("--tools", help=f"comma list of: {', '.join(TOOL_IDS)} (default all)")
    parser.add_argument("--no-install", action="store_true", help="never install peers")
    parser.add_argument("--big-mb", type=int, help="big instance in MiB (default 2048; 0: skip)")
    parser.add_argument("--startup-runs", type=int, help="start-up runs (default 5; 0: skip)")
    parser.add_argument("--no-warmup", action="store_true", help="skip the untimed warm-up")
    parser.add_argument("--work", type=Path, default=REPO / "benchmarks" / "_work")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    parser.add_argument("--write-docs", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args(argv)
    quick = args.quick
    if args.files is None:
        args.files = 200 if quick else max(1, round(corpus.DEFAULT_FILES * args.scale))
    args.rounds = args.rounds if args.rounds is not None else (1 if quick else 3)
    args.big_mb = args.big_mb if args.big_mb is not None else (256 if quick else 2048)
    default_startup = 3 if quick else 5
    args.startup_runs = args.startup_runs if args.startup_runs is not None else default_startup
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the table (or JSON)."""
    args = parse_args(argv)
    command = "python benchmarks/deid_bench.py " + shlex.join(
        sys.argv[1:] if argv is None else argv
    )
    work: Path = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    logs = work / "logs"
    _remove(logs)
    tools = _select(args.tools)
    about = machine()
    state_before = source_state()
    needs_peers = any(tool.needs not in ("system", "main", "dicomveil") for tool in tools)
    found = peers.ensure_peers(work, install=not args.no_install) if needs_peers else peers.Peers()
    key_file = work / "bench.key"
    key_file.write_text(KEY, encoding="utf-8")
    ctx = Context(work, key_file, _dicomveil_command(), found, logs)
    notes = list(found.notes)
    runnable = []
    for tool in tools:
        reason = _available(tool, ctx)
        if reason is None:
            runnable.append(tool)
        else:
            notes.append(f"{tool.id} skipped: {reason}")
    info = corpus.ensure_corpus(work, args.files, log=log)
    root = Path(info.root)
    relatives = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.dcm"))
    source = Source.make(root, relatives, work / "lists", info.bytes)
    log(f"corpus: {info.files} files, {info.bytes / 1e6:.0f} MB in {root}")
    warm([root / relative for relative in relatives])
    warmup = None if args.no_warmup else _warmup_source(work, source)
    rows = corpus_rounds(runnable, ctx, source, warmup, args.rounds)
    if warmup is not None:
        _remove(warmup.root)
    start_rows = startup(ctx, root / relatives[0], args.startup_runs) if args.startup_runs else []
    big_rows: list[Row] = []
    big_size = 0
    if args.big_mb > 0:
        big_path, big_size = corpus.ensure_big(work, args.big_mb, log=log)
        # A 2 GiB write follows the virtual disk's mood: more rounds than the corpus.
        big_rows = big_instance(ctx, big_path, big_size, max(args.rounds, 5))
    state_after = source_state()
    if state_after["src_sha256"] != state_before["src_sha256"]:  # not commits of other files
        notes.append(
            f"src/ changed during the run ({state_before['src_sha256']} -> "
            f"{state_after['src_sha256']}): rows mix code versions, run again"
        )
    result: dict[str, Any] = {
        "command": command,
        "machine": about,
        "source": state_before,
        "corpus": asdict(info),
        "rounds": args.rounds,
        "peers": {"versions": found.versions, "notes": notes},
        "rows": [asdict(row) for row in rows],
        "startup": [asdict(row) for row in start_rows],
        "big": {"bytes": big_size, "rows": [asdict(row) for row in big_rows]},
        "checks": [asdict(c) for c in checks(rows, start_rows, big_rows, big_size)],
    }
    (work / "results.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    body = render(result)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"{SECTION}\n\n{body}")
    if args.write_docs:
        log(f"wrote {write_docs(body)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
