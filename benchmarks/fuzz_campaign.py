#!/usr/bin/env python3
"""The long mutation fuzz campaign: 10,000+ hostile files through the real ``dicomveil deid``.

The same mutator and checks as the test suite's bounded campaign (``tests/fuzz``), with more
mutants, larger deflate bombs and every option set in turn, one folder run per option set.
It prints each folder's result as it goes, then the figures (files, crashes, hangs, leaks,
escapes, max RSS, quarantined by reason, fast/reference disagreements, time), writes every
finding with the recipe that reproduces it to ``WORK/findings.json``, and with ``--docs``
replaces the figures section of ``docs/fuzz.md``.

Run from the repository root (nice keeps a shared machine usable)::

    nice -n 10 python benchmarks/fuzz_campaign.py --mutants 10000 --docs docs/fuzz.md

A finding names its mutant (kind, detail, base file, seed, index); write it again with
``python -m tests.fuzz.mutator --seed S --index I --out DIR``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import re
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "src"), str(REPO)]

from tests.fuzz.campaign import OPTION_SETS, Figures, FolderRun, explain, run_campaign  # noqa: E402
from tests.fuzz.mutator import Mutant, mutants  # noqa: E402

START = "<!-- fuzz-figures:start -->"
END = "<!-- fuzz-figures:end -->"


def _batches(
    seed: int, count: int, size: int, bomb_scale: int, made: list[Mutant]
) -> Iterator[list[Mutant]]:
    batch: list[Mutant] = []
    for item in mutants(seed, count, duplicate_every=50, bomb_scale=bomb_scale):
        made.append(dataclasses.replace(item, data=b""))  # its recipe, not its bytes
        batch.append(item)
        if len(batch) >= size and not (item.group and item.detail != "different"):
            yield batch
            batch = []
    if batch:
        yield batch


def _figures_text(figures: Figures, command: str, seed: int, elapsed: float) -> str:
    reasons = "\n".join(
        f"| {count} | {reason.replace('|', '/')} |"
        for reason, count in figures.quarantined.most_common(25)
    )
    classes: dict[str, int] = {}
    for problem in figures.problems:
        kind = re.sub(r"\d+", "N", problem.split(": ", 1)[-1])
        classes[kind] = classes.get(kind, 0) + 1
    found = "\n".join(f"| {n} | {k} |" for k, n in sorted(classes.items(), key=lambda x: -x[1]))
    verify_mib = figures.verify_max_rss_kib // 1024
    return f"""{START}
Last run: {time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}, seed {seed}, on {platform.machine()}
({platform.python_implementation()} {platform.python_version()}), reproduced by:

```
{command}
```

| Figure | Value |
|---|---|
| Files (mutants, duplicates included) | {figures.files} |
| Folder runs of `dicomveil deid` (option sets in turn) | {figures.folder_runs} |
| De-identified outputs | {figures.outputs} |
| Crashes (traceback, or exit other than 0/1) | {figures.crashes} |
| Hangs (run or file over its time budget) | {figures.hangs} |
| Leaks (planted value or key in an output, reason or terminal; `verify` leak) | {figures.leaks} |
| Writes outside DEST | {figures.escapes} |
| Max RSS of any process of `deid` or the comparison | {figures.max_rss_kib // 1024} MiB |
| `verify`: max RSS, longest run | {verify_mib} MiB, {figures.verify_seconds:.0f} s |
| Files both engines accepted, compared byte for byte | {figures.compared} |
| Fast path and reference disagree | {figures.disagreements} |
| Wall time | {elapsed / 60:.1f} min |
| CPU time of `deid` runs and comparisons | {figures.cpu_seconds / 60:.1f} min |

Quarantined, by reason (variable parts as `#`, top 25):

| Files | Reason |
|---|---|
{reasons or "| 0 | - |"}

Findings, by kind ({len(figures.problems)} in all; each with its recipe in `findings.json`):

| Count | Finding |
|---|---|
{found or "| 0 | none |"}
{END}"""


def _write_docs(path: Path, text: str) -> None:
    old = path.read_text("utf-8") if path.is_file() else "# Fuzzing\n"
    if START in old and END in old:
        new = old[: old.index(START)] + text + old[old.index(END) + len(END) :]
    else:
        new = old.rstrip("\n") + "\n\n" + text + "\n"
    path.write_text(new, "utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--mutants", type=int, default=10_000)
    parser.add_argument("--folder-size", type=int, default=150)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--bomb-scale", type=int, default=4, help="deflate bombs x this")
    parser.add_argument("--no-compare", action="store_true", help="skip fast/reference")
    parser.add_argument(
        "--verify-every", type=int, default=1, help="dicomveil verify every N folders (0: never)"
    )
    parser.add_argument("--work", type=Path, help="sandbox folder (default: a temporary one)")
    parser.add_argument("--docs", type=Path, help="markdown file whose figures to replace")
    args = parser.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="dicomveil-fuzz-"))
    work.mkdir(parents=True, exist_ok=True)
    made: list[Mutant] = []
    started = time.monotonic()

    def progress(folder: str, run: FolderRun, problems: list[str]) -> None:
        finished = run.finished
        code = finished.code if finished else "?"
        rss = finished.max_rss_kib // 1024 if finished else 0
        files = run.report.get("files", {})
        print(
            f"{folder} {run.option_set:36} exit {code} {run.inputs} files: "
            f"{files.get('ok', '?')} ok, {files.get('failed', '?')} failed, "
            f"{files.get('skipped', '?')} skipped, {rss} MiB, {len(run.problems)} problem(s) "
            f"[{(time.monotonic() - started) / 60:.1f} min]",
            flush=True,
        )
        for line in explain(problems, made):
            print(f"    {line}", flush=True)

    figures = run_campaign(
        _batches(args.seed, args.mutants, args.folder_size, args.bomb_scale, made),
        work,
        list(OPTION_SETS),
        workers=args.workers,
        compare=not args.no_compare,
        verify_every=args.verify_every,
        timeout=600,
        specials_every=10,
        on_folder=progress,
    )
    elapsed = time.monotonic() - started
    findings = explain(figures.problems, made)
    (work / "findings.json").write_text(json.dumps(findings, indent=1), "utf-8")
    given = list(sys.argv[1:] if argv is None else argv)
    shown = [a for i, a in enumerate(given) if "--work" not in (a, given[i - 1] if i else "")]
    command = " ".join(["nice -n 10 python benchmarks/fuzz_campaign.py", *shown])
    text = _figures_text(figures, command, args.seed, elapsed)
    print(text)
    print(f"findings: {work / 'findings.json'}")
    if args.docs:
        _write_docs(args.docs, text)
    return 0 if figures.clean else 1


if __name__ == "__main__":
    sys.exit(main())
