"""Run the real ``dicomveil deid`` on a folder of hostile files and check every promise.

One *folder run* starts the command line as a user would (a child process, its own session,
``--quarantine``, a key in the environment, a state folder of its own) and checks, without
trusting the tool's own account:

* it ends (a timeout kills the whole process group: a *hang*), with exit 0 or 1, no traceback
  on stderr, and no worker process left behind;
* its largest process stayed under an RSS bound (``wait4`` reports the child's peak, its reaped
  workers included);
* every input is accounted for: de-identified outputs + quarantined + counted skips and
  duplicates = inputs, and the files in DEST match the report;
* nothing was written outside DEST, the quarantine and the state folder (the sandbox is listed
  before and after; ``/`` and ``/tmp``, where absolute and ``../`` paths land, are searched
  for the hostile UIDs' mark, and an output written elsewhere is missing from DEST);
* no planted identifying value and no key is in DEST, in a reason, or on the terminal; every
  output is a file pydicom reads in full; ``dicomveil verify`` finds no leak.

The same runner serves the test suite (a few hundred mutants) and the long campaign script.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import pydicom

from tests.fuzz.mutator import ESCAPE_MARK, PLANTED, Mutant, write

__all__ = [
    "KEY",
    "OPTION_SETS",
    "FolderRun",
    "dicomveil_command",
    "output_problems",
    "run_deid",
]

REPO: Final = Path(__file__).resolve().parents[2]
KEY: Final = "fuzz-campaign-pseudonym-key-0123456789abcdef"
REPORT_NAME: Final = "dicomveil-report.json"
REASONS_NAME: Final = "reasons.json"
RSS_LIMIT_KIB: Final = 1024 * 1024
"""Largest resident set any process of a run may reach (1 GiB; the inputs are small, the
deflate bombs inflate to hundreds of MiB)."""

#: Every PS3.15 option, alone and in the combinations users run (the two longitudinal
#: options exclude each other).
OPTION_SETS: Final[dict[str, tuple[str, ...]]] = {
    "basic": (),
    "retain-safe-private": ("retain-safe-private",),
    "retain-uids": ("retain-uids",),
    "retain-device-identity": ("retain-device-identity",),
    "retain-institution-identity": ("retain-institution-identity",),
    "retain-patient-characteristics": ("retain-patient-characteristics",),
    "retain-longitudinal-full-dates": ("retain-longitudinal-full-dates",),
    "retain-longitudinal-modified-dates": ("retain-longitudinal-modified-dates",),
    "clean-descriptors": ("clean-descriptors",),
    "clean-structured-content": ("clean-structured-content",),
    "clean-graphics": ("clean-graphics",),
    "clean-pixel-data": ("clean-pixel-data",),
    "everything": (
        "retain-safe-private",
        "retain-uids",
        "retain-device-identity",
        "retain-institution-identity",
        "retain-patient-characteristics",
        "retain-longitudinal-modified-dates",
        "clean-descriptors",
        "clean-structured-content",
        "clean-graphics",
        "clean-pixel-data",
    ),
}


def dicomveil_command(*args: str | Path) -> list[str]:
    """The command line of ``dicomveil`` run with this interpreter (the tree under test)."""
    return [sys.executable, "-m", "dicomveil", *(str(a) for a in args)]


def child_environment(home: Path) -> dict[str, str]:
    """The environment of a run: its own state folder and key, no colours, no terminal."""
    env = dict(os.environ)
    tree = [str(REPO / "src"), str(REPO)]  # the tree under test first, in every child
    env["PYTHONPATH"] = os.pathsep.join([*tree, *filter(None, [env.get("PYTHONPATH")])])
    env.update(
        DICOMVEIL_HOME=str(home),
        DICOMVEIL_KEY=KEY,
        NO_COLOR="1",
        COLUMNS="200",
        PYTHONWARNINGS="ignore",
    )
    for name in ("DICOMVEIL_VAULT_KEY", "DICOMVEIL_AUDIT_KEY", "DICOMVEIL_VAULT_URL"):
        env.pop(name, None)
    return env


@dataclass
class Finished:
    """How a child process ended."""

    code: int | None
    """Exit code (negative: killed by that signal; ``None``: timed out)."""
    seconds: float
    max_rss_kib: int
    cpu_seconds: float
    """User and system time of the process and its reaped children."""
    stdout: str
    stderr: str
    survivors: int
    """Processes of its session still alive after it ended (killed then)."""


def run_child(
    command: Sequence[str], *, env: dict[str, str], cwd: Path, timeout: float
) -> Finished:
    """Run ``command`` in its own session; kill the session on timeout or leftovers."""
    cwd.mkdir(parents=True, exist_ok=True)
    out_path, err_path = cwd / ".stdout", cwd / ".stderr"
    started = time.monotonic()
    with out_path.open("wb") as out, err_path.open("wb") as err:
        child = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
            command, env=env, cwd=cwd, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
    code: int | None = None
    deadline = started + timeout
    while True:
        pid, status, usage = os.wait4(child.pid, os.WNOHANG)
        if pid:
            code = os.waitstatus_to_exitcode(status)
            break
        if time.monotonic() > deadline:
            _kill_session(child.pid)
            _, status, usage = os.wait4(child.pid, 0)
            break
        time.sleep(0.02)
    child.returncode = code if code is not None else -9  # reaped here, not by Popen
    seconds = time.monotonic() - started
    survivors = _kill_session(child.pid)
    stdout = out_path.read_text("utf-8", "replace")
    stderr = err_path.read_text("utf-8", "replace")
    out_path.unlink()
    err_path.unlink()
    cpu = usage.ru_utime + usage.ru_stime
    return Finished(code, seconds, usage.ru_maxrss, cpu, stdout, stderr, survivors)


def _kill_session(session: int) -> int:
    """Kill what is left of the process group ``session``; return how many were left."""
    left = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == session and fields[0] != "Z":  # pgrp, not a zombie
            left += 1
    if left:
        try:
            os.killpg(session, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return left


def _tree(root: Path) -> set[str]:
    """Every path under ``root`` (relative), folders included."""
    found: set[str] = set()
    for folder, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            found.add(os.path.relpath(os.path.join(folder, name), root))
    return found


def _listing(folder: str) -> set[str]:
    try:
        return set(os.listdir(folder))
    except OSError:
        return set()


def _exception_name(stderr: str) -> str:
    """The exception class of a traceback on stderr (never its message: it may quote a
    value)."""
    lines = [line for line in stderr.splitlines() if line and not line.startswith(" ")]
    after = lines[lines.index("Traceback (most recent call last):") + 1 :] if lines else []
    for line in after:
        head = line.split(":", 1)[0]
        if head.replace(".", "").replace("_", "").isalnum():
            return head
    return "unknown"


@dataclass
class FolderRun:
    """What one ``deid`` run on one folder did, and every promise it broke (PHI-free)."""

    option_set: str
    inputs: int
    finished: Finished | None = None
    verify: Finished | None = None
    report: dict[str, Any] = field(default_factory=dict)
    outputs: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)

    @property
    def crashed(self) -> bool:
        """A traceback, or an exit other than 0/1 (the run did not end its own way)."""
        return any(p.startswith(("traceback", "exit ")) for p in self.problems)

    @property
    def hung(self) -> bool:
        return any(p.startswith("hang") for p in self.problems)


def _counted(report: dict[str, Any]) -> tuple[int, int]:
    """(inputs the report accounts for, outputs it says are in DEST)."""
    files = report.get("files", {})
    ok, failed, skipped = (int(files.get(k, 0)) for k in ("ok", "failed", "skipped"))
    duplicates = int(files.get("duplicates", report.get("duplicates", 0)))
    return ok + failed + skipped + duplicates + _not_read(report), ok


def _not_read(report: dict[str, Any]) -> int:
    """Paths under SOURCE the run named but did not read (special files, links leaving it)."""
    found = report.get("not_read", 0)
    return int(found.get("count", 0) if isinstance(found, dict) else found)


SPECIALS: Final = 6
"""How many special files :func:`add_specials` makes."""


def add_specials(source: Path, outside: Path) -> int:
    """Put in ``source`` what is no regular file of it: a FIFO (nobody writes to it), links to
    ``/dev/zero``, to ``/proc/self/environ`` (the key is in the environment), to a DICOM file
    outside SOURCE, to nowhere, and to itself. Return how many (:data:`SPECIALS`)."""
    folder = source / "specials"
    folder.mkdir(parents=True, exist_ok=True)
    os.mkfifo(folder / "fifo.dcm")
    (folder / "zero.dcm").symlink_to("/dev/zero")
    (folder / "environ.dcm").symlink_to("/proc/self/environ")
    outside.mkdir(parents=True, exist_ok=True)
    from tests.fuzz.mutator import bases

    base = next(b for b in bases() if b.planted)
    (outside / "outside.dcm").write_bytes(base.raw)
    (folder / "outside.dcm").symlink_to(outside / "outside.dcm")
    (folder / "dangling.dcm").symlink_to(folder / "nothing-here")
    (folder / "loop.dcm").symlink_to(folder / "loop.dcm")
    return SPECIALS


def output_problems(path: Path) -> list[str]:
    """Why an output file is not a sound DICOM file (empty when it is): pydicom must read it
    without ``force`` and every element's value must decode."""
    try:
        ds = pydicom.dcmread(path)
        ds.decode()
        _walk_values(ds)
    except Exception as exc:  # noqa: BLE001 - any failure is a finding, named by type only
        return [f"unreadable output ({type(exc).__name__})"]
    return []


def _walk_values(ds: pydicom.Dataset) -> None:
    for element in ds.iterall():
        _ = element.value


def _as_tags(mark: bytes) -> list[bytes]:
    """Every 4-byte window of ``mark`` read as a Little Endian tag, written ``GGGG,EEEE``:
    how a reason that reads value bytes as a tag would quote them."""
    windows = (mark[i : i + 4] for i in range(len(mark) - 3))
    return [
        f"{int.from_bytes(w[:2], 'little'):04X},{int.from_bytes(w[2:], 'little'):04X}".encode()
        for w in windows
    ]


_TAG_FORMS: Final = [(i, form) for i, mark in enumerate(PLANTED) for form in _as_tags(mark)]


def _planted_in(data: bytes, *, text: bool = False) -> list[str]:
    """The planted values in ``data``; in ``text`` (terminal, reasons, report) also their
    bytes quoted as a tag."""
    found = {f"planted value #{i}" for i, mark in enumerate(PLANTED) if mark in data}
    if text:
        upper = data.upper()
        found.update(f"planted value #{i} quoted as a tag" for i, f in _TAG_FORMS if f in upper)
    return sorted(found)


def _check_dest(dest: Path, run: FolderRun) -> list[Path]:
    """Outputs in DEST: planted values, escapes in names, readability. Return them."""
    outputs = []
    for path in sorted(p for p in dest.rglob("*") if p.is_file()):
        relative = path.relative_to(dest)
        if ESCAPE_MARK in str(relative) or any(ord(c) < 32 for c in str(relative)):
            run.problems.append("output path built from a hostile value")
        data = path.read_bytes()
        if KEY.encode() in data:
            run.problems.append("key in DEST")
        for found in _planted_in(data, text=path.name == REPORT_NAME):
            run.problems.append(
                f"{found} in DEST ({'report' if path.name == REPORT_NAME else 'output'})"
            )
        if path.name == REPORT_NAME:
            continue
        outputs.append(path)
        run.problems.extend(output_problems(path))
    return outputs


def _regular_bytes(source: Path) -> int:
    return sum(p.lstat().st_size for p in source.rglob("*") if p.is_file() and not p.is_symlink())


def _check_quarantine(quarantine: Path, run: FolderRun, failed: int) -> None:
    if not failed:
        return
    reasons_path = quarantine / REASONS_NAME
    if not reasons_path.is_file():
        run.problems.append("failed files but no reasons.json")
        return
    text = reasons_path.read_bytes()
    if KEY.encode() in text:
        run.problems.append("key in the quarantine's reasons")
    run.problems.extend(f"{p} in reasons.json" for p in _planted_in(text, text=True))
    entries = json.loads(text)
    listed = failed + _not_read(run.report)
    if len(entries) != listed:
        run.problems.append(f"reasons.json lists {len(entries)} of {listed} failed files")
    for entry in entries:
        reason = str(entry.get("reason", ""))
        if not reason:
            run.problems.append("a quarantined file without a reason")
        run.reasons[_reason_class(reason)] += 1
        copy = entry.get("file")
        if copy and not (quarantine / copy).is_file():
            run.problems.append("reasons.json names a copy that does not exist")
        if copy and KEY.encode() in (quarantine / copy).read_bytes():
            run.problems.append("key copied into the quarantine")


def _reason_class(reason: str) -> str:
    """A reason without its variable parts (offsets, tags, sizes), for counting."""
    words = []
    for word in reason.split():
        words.append("#" if any(c.isdigit() for c in word) else word)
    return " ".join(words)[:80]


def run_deid(
    source: Path,
    work: Path,
    option_set: str,
    *,
    inputs: int,
    timeout: float = 120.0,
    workers: int = 2,
    verify: bool = True,
    extra: Iterable[str] = (),
) -> FolderRun:
    """Run ``dicomveil deid SOURCE`` under ``option_set`` in the sandbox ``work`` and check
    every promise (see the module's docstring). ``inputs`` is how many files SOURCE holds."""
    dest, quarantine, home, cwd = (work / n for n in ("dest", "quarantine", "home", "cwd"))
    run = FolderRun(option_set, inputs)
    options = [x for name in OPTION_SETS[option_set] for x in ("-o", name)]
    before, root_before, tmp_before = _tree(work), _listing("/"), _listing("/tmp")
    command = dicomveil_command(
        "deid", source, dest, *options, "--quarantine", quarantine, "-j", str(workers), *extra
    )
    finished = run_child(command, env=child_environment(home), cwd=cwd, timeout=timeout)
    run.finished = finished
    _check_finished(finished, run)
    _check_escapes(work, before, root_before, tmp_before, run)
    if finished.code is None:
        return run
    report_path = dest / REPORT_NAME
    if not report_path.is_file():
        run.problems.append("no report in DEST")
    else:
        run.report = json.loads(report_path.read_text("utf-8"))
    accounted, ok = _counted(run.report)
    outputs = _check_dest(dest, run) if dest.is_dir() else []
    run.outputs = len(outputs)
    if run.report and accounted != inputs:
        run.problems.append(f"the report accounts for {accounted} of {inputs} inputs")
    if run.report and ok != len(outputs):
        run.problems.append(f"the report counts {ok} outputs, DEST holds {len(outputs)}")
    failed = int(run.report.get("files", {}).get("failed", 0)) if run.report else 0
    _check_quarantine(quarantine, run, failed)
    if quarantine.is_dir():  # a copy never grows past its input (a link to /dev/zero)
        held = sum(p.stat().st_size for p in quarantine.rglob("*") if p.is_file())
        if held > _regular_bytes(source) + (1 << 20):
            run.problems.append("the quarantine holds more than the inputs")
    if verify and outputs:
        _verify(source, dest, option_set, cwd, home, run, max(timeout, 300.0))
    return run


def _check_finished(finished: Finished, run: FolderRun) -> None:
    if finished.code is None:
        run.problems.append("hang (killed at the timeout)")
    elif finished.code not in (0, 1):
        run.problems.append(f"exit {finished.code}")
    if "Traceback (most recent call last)" in finished.stderr:
        run.problems.append(f"traceback ({_exception_name(finished.stderr)})")
    terminal = (finished.stdout + finished.stderr).encode("utf-8", "replace")
    run.problems.extend(f"{p} on the terminal" for p in _planted_in(terminal, text=True))
    if KEY.encode() in terminal:
        run.problems.append("key on the terminal")
    if "\x1b" in finished.stderr:
        run.problems.append("escape sequence on the terminal")
    if finished.survivors:
        run.problems.append(f"{finished.survivors} process(es) outlived the run")
    if finished.max_rss_kib > RSS_LIMIT_KIB:
        run.problems.append(f"max RSS {finished.max_rss_kib // 1024} MiB over the bound")


def _check_escapes(
    work: Path, before: set[str], root_before: set[str], tmp_before: set[str], run: FolderRun
) -> None:
    """Anything new in the sandbox but DEST, the quarantine, the state folder, its key folder
    (``home.keys``: the audit key is kept beside the state folder) and the working folder;
    anything new named after a hostile UID in ``/`` or ``/tmp`` (removed: this run wrote it).
    Outputs written anywhere else show as DEST holding fewer files than the report counts
    (other programs' files in ``/`` and ``/tmp`` are never looked at)."""
    allowed = ("dest", "quarantine", "home", "home.keys", "cwd")
    for path in sorted(_tree(work) - before):
        if path.split(os.sep, 1)[0] not in allowed:
            run.problems.append("written outside DEST (in the sandbox)")
            break
    for folder, earlier in (("/", root_before), ("/tmp", tmp_before)):
        for name in sorted(_listing(folder) - earlier):
            if ESCAPE_MARK in name:
                run.problems.append(f"written outside DEST (in {folder})")
                _remove(os.path.join(folder, name))


def _remove(path: str) -> None:
    """Remove an escaped output (named after a hostile UID of this campaign)."""
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            os.unlink(path)
        except OSError:
            pass


def _verify(
    source: Path,
    dest: Path,
    option_set: str,
    cwd: Path,
    home: Path,
    run: FolderRun,
    timeout: float,
) -> None:
    options = [x for name in OPTION_SETS[option_set] for x in ("-o", name)]
    finished = run_child(
        dicomveil_command("verify", source, dest, *options, "--json"),
        env=child_environment(home),
        cwd=cwd,
        timeout=timeout,
    )
    run.verify = finished
    if finished.code is None:
        run.problems.append("verify hung")
    elif finished.code == 1 and "Traceback" not in finished.stderr:
        try:
            leaks = json.loads(finished.stdout)["leaks"]
        except (ValueError, KeyError):
            leaks = [{"attribute": "?", "original": "?"}]
        for leak in leaks:  # keywords and file names only: no value
            original = os.path.relpath(leak["original"], source) if leak["original"] != "?" else "?"
            run.problems.append(f"verify: value of {leak['attribute']} from {original} leaked")
    elif finished.code != 0:
        name = _exception_name(finished.stderr)
        run.problems.append(f"verify failed (exit {finished.code}, {name})")
    terminal = (finished.stdout + finished.stderr).encode("utf-8", "replace")
    run.problems.extend(f"{p} on verify's terminal" for p in _planted_in(terminal, text=True))


@dataclass
class Figures:
    """What a campaign found, summed over its folder runs (PHI-free)."""

    files: int = 0
    folder_runs: int = 0
    crashes: int = 0
    hangs: int = 0
    leaks: int = 0
    escapes: int = 0
    max_rss_kib: int = 0
    verify_max_rss_kib: int = 0
    verify_seconds: float = 0.0
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    outputs: int = 0
    quarantined: Counter[str] = field(default_factory=Counter)
    compared: int = 0
    disagreements: int = 0
    problems: list[str] = field(default_factory=list)
    """Every broken promise, with where it happened (folder, option set, file name)."""

    def add_run(self, folder: str, run: FolderRun) -> None:
        self.folder_runs += 1
        self.files += run.inputs
        self.outputs += run.outputs
        self.crashes += run.crashed
        self.hangs += run.hung
        self.leaks += sum("planted" in p or "leaked" in p or "key" in p for p in run.problems)
        self.escapes += any("outside DEST" in p or "hostile value" in p for p in run.problems)
        if run.finished is not None:
            self.max_rss_kib = max(self.max_rss_kib, run.finished.max_rss_kib)
            self.cpu_seconds += run.finished.cpu_seconds
        if run.verify is not None:
            self.verify_max_rss_kib = max(self.verify_max_rss_kib, run.verify.max_rss_kib)
            self.verify_seconds = max(self.verify_seconds, run.verify.seconds)
        self.quarantined.update(run.reasons)
        self.problems.extend(f"{folder} [{run.option_set}]: {p}" for p in run.problems)

    def add_comparison(self, folder: str, lines: list[dict[str, Any]], expected: int) -> None:
        if len(lines) != expected:
            self.problems.append(f"{folder}: compared {len(lines)} of {expected} files")
        for line in lines:
            self.compared += "agree" in line
            self.disagreements += line.get("agree") is False
            self.hangs += "timeout" in (line["reference"], line.get("fast"))
            self.leaks += sum("planted" in p for p in line["problems"])
            for problem in line["problems"]:
                self.problems.append(f"{folder}/{line['name']}: {problem}")

    @property
    def clean(self) -> bool:
        return not self.problems


def compare_folder(
    source: Path,
    work: Path,
    option_sets: Sequence[str],
    *,
    timeout: float = 300.0,
    budget: float = 60.0,
    single: bool = False,
) -> tuple[list[dict[str, Any]], Finished]:
    """Run :mod:`tests.fuzz.agree` on every file under ``source`` in a child process."""
    sets = [x for name in option_sets for x in ("--option-set", name)]
    command = [
        sys.executable, "-m", "tests.fuzz.agree", "--source", str(source), "--work", str(work),
        "--budget", str(budget), *sets, *(["--single"] if single else []),
    ]  # fmt: skip
    finished = run_child(command, env=child_environment(work / "home"), cwd=work, timeout=timeout)
    lines = [json.loads(line) for line in finished.stdout.splitlines() if line.startswith("{")]
    return lines, finished


def run_campaign(
    batches: Iterable[Sequence[Mutant]],
    work: Path,
    option_sets: Sequence[str],
    *,
    workers: int = 2,
    compare: bool = True,
    verify_every: int = 1,
    timeout: float = 300.0,
    specials_every: int = 0,
    on_folder: Callable[[str, FolderRun, list[str]], None] | None = None,
) -> Figures:
    """Write each batch of mutants into a folder of its own, de-identify it with the real
    command line under the next option set (in turn), compare the two engines file by file,
    and sum the figures. Every ``specials_every``-th folder (from the first) also holds the
    special files of :func:`add_specials`; every ``verify_every``-th is checked by ``dicomveil
    verify`` (0: none; it reads every original, the costliest step). Each folder's sandbox is
    removed once checked; ``on_folder`` is told each folder's run and problems when done."""
    figures = Figures()
    started = time.monotonic()
    for number, batch in enumerate(batches):
        known = len(figures.problems)
        option_set = option_sets[number % len(option_sets)]
        folder = f"folder{number:04d}"
        sandbox = work / folder
        source = sandbox / "source"
        write(batch, source)
        extra = 0
        if specials_every and number % specials_every == 0:
            extra = add_specials(source, sandbox / "outside")
        run = run_deid(
            source, sandbox, option_set, inputs=len(batch) + extra, timeout=timeout,
            workers=workers, verify=bool(verify_every) and number % verify_every == 0,
        )  # fmt: skip
        figures.add_run(folder, run)
        if compare:
            lines, finished = compare_folder(source, sandbox / "agree", [option_set])
            figures.add_comparison(folder, lines, len(batch))
            figures.max_rss_kib = max(figures.max_rss_kib, finished.max_rss_kib)
            figures.cpu_seconds += finished.cpu_seconds
            if finished.code is None:
                figures.problems.append(f"{folder}: the comparison hung")
            if finished.max_rss_kib > RSS_LIMIT_KIB:
                mib = finished.max_rss_kib // 1024
                figures.problems.append(f"{folder}: the comparison's RSS reached {mib} MiB")
        if on_folder is not None:  # with the folder's problems, the per-file ones included
            on_folder(folder, run, figures.problems[known:])
        if not run.problems:
            shutil.rmtree(sandbox, ignore_errors=True)
        else:  # keep the inputs of a failed folder (to reproduce), drop the rest
            for name in ("dest", "quarantine", "agree", "home"):
                shutil.rmtree(sandbox / name, ignore_errors=True)
    figures.seconds = time.monotonic() - started
    return figures


def explain(problems: Iterable[str], made: Iterable[Mutant]) -> list[str]:
    """Each problem, with the recipe of the mutant it names (per-file problems read
    ``folderNNNN/NAME: what``)."""
    recipes = {item.name: item.recipe for item in made}
    lines = []
    for problem in problems:
        head = problem.split(": ", 1)[0]
        name = head.split("/", 1)[1] if "/" in head else ""
        lines.append(f"{problem}  <{recipes[name]}>" if name in recipes else problem)
    return lines
