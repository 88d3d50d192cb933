"""Each mutant through both engines, one by one: do the fast path and the reference agree?

:func:`dicomveil.pipeline.files.deidentify_file` takes the byte-level fast path unless told
``fast=False``; the fast path itself (``files._fast``) answers ``None`` when it leaves a file
to the reference. For every file this module runs the reference (``fast=False``) and the fast
path alone, and when both accept the file, compares status, output path, counts, flags,
identity and the output bytes. It also attributes findings to single files, which a folder
run cannot: planted values in an output, an unreadable output, an output outside its root, an
exception escaping the per-file unit, a file that takes longer than its budget.

It runs as a child process (``python -m tests.fuzz.agree``) so that a hang or a blow-up of
one file cannot take the test runner with it; it prints one JSON object per file.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

__all__ = ["compare_file", "main"]

_FIELDS = ("status", "output", "size", "operations", "flags", "modality", "identity")


class FileTimeout(BaseException):  # noqa: N818 - not an error of the code under test
    """One file took longer than its budget (a BaseException: nothing under test catches
    it)."""


def _alarm(signum: int, frame: FrameType | None) -> None:
    raise FileTimeout


def _inside(path: Path, root: Path) -> bool:
    return path.resolve().is_relative_to(root.resolve())


def _outcome(call: Any, budget: float) -> tuple[Any, str]:
    """Run ``call`` within ``budget`` seconds: (its result, "") or (None, what happened)."""
    signal.setitimer(signal.ITIMER_REAL, budget)
    try:
        return call(), ""
    except FileTimeout:
        return None, "timeout"
    except RecursionError:
        return None, "raised:RecursionError"
    except Exception as exc:  # noqa: BLE001 - reported by type, never by message
        return None, f"raised:{type(exc).__name__}"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


def _remove_escaped(target: Path) -> None:
    """Remove an output the unit under test just wrote outside its root, and the folders it
    made for it (while empty)."""
    target.unlink(missing_ok=True)
    for folder in target.parents:
        try:
            folder.rmdir()
        except OSError:
            break


@functools.cache
def _engine(options: tuple[str, ...]) -> tuple[Any, Any]:
    """The compiled policy and keys of an option set (compiled once per process)."""
    from dicomveil.engine.keys import PseudonymKeys
    from dicomveil.engine.rules import compile_policy
    from dicomveil.profile.policy import Policy
    from tests.fuzz.campaign import KEY

    return compile_policy(Policy.from_names(options)), PseudonymKeys(KEY.encode())


def _check_output(label: str, outcome: Any, out_root: Path, problems: list[str]) -> None:
    """An accepted file's output: inside its root, free of planted values, readable."""
    from tests.fuzz.campaign import output_problems
    from tests.fuzz.mutator import PLANTED

    if outcome is None or outcome.status != "ok":
        return
    target = out_root / outcome.output
    if not _inside(target, out_root):
        problems.append(f"{label}: output outside its root")
        _remove_escaped(target)
        return
    data = target.read_bytes()
    problems.extend(
        f"{label}: planted value #{i} in the output" for i, m in enumerate(PLANTED) if m in data
    )
    problems.extend(f"{label}: {p}" for p in output_problems(target))


def compare_file(
    source: Path,
    work: Path,
    options: Sequence[str],
    budget: float = 60.0,
    root: Path | None = None,
    *,
    single: bool = False,
) -> dict[str, Any]:
    """Run ``source`` both ways under ``options``; return the PHI-free comparison.

    ``single`` runs only what production runs (``deidentify_file`` as the pipeline calls it)
    and checks its output, without the comparison.
    """
    from dicomveil.pipeline import files

    compiled, keys = _engine(tuple(options))
    ref_root, fast_root = work / "reference", work / "fast"
    name = str(source.relative_to(root)) if root is not None else source.name
    result: dict[str, Any] = {"name": name, "problems": []}
    problems: list[str] = result["problems"]
    reference, error = _outcome(
        lambda: files.deidentify_file(source, ref_root, compiled, keys, fast=single), budget
    )
    result["reference"] = error or reference.status
    if error.startswith("raised"):
        problems.append(f"reference: an exception escapes the per-file unit ({error[7:]})")
    if error == "timeout":
        problems.append("reference: over the per-file budget")
    _check_output("reference", reference, ref_root, problems)
    fast = None
    if not single:
        fast, error = _outcome(
            lambda: files._fast(source, fast_root, compiled, keys, False, False),  # noqa: SLF001
            budget,
        )
        result["fast"] = error or ("declined" if fast is None else fast.status)
        if error == "timeout":
            problems.append("fast: over the per-file budget")
        _check_output("fast", fast, fast_root, problems)
    if reference is not None and fast is not None:
        if reference.status == "ok" and fast.status == "ok":
            diff = [name for name in _FIELDS if getattr(fast, name) != getattr(reference, name)]
            ref_out, fast_out = ref_root / reference.output, fast_root / fast.output
            if ref_out.is_file() and fast_out.is_file():
                if ref_out.read_bytes() != fast_out.read_bytes():
                    diff.append("bytes")
            result["agree"] = not diff
            if diff:
                problems.append(f"fast and reference differ: {', '.join(diff)}")
    for out_root in (ref_root, fast_root):
        shutil.rmtree(out_root, ignore_errors=True)
    return result


def main(argv: Sequence[str] | None = None) -> None:
    """Compare every file of ``--source`` (one JSON line each on stdout)."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--source", type=Path, required=True)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--option-set", action="append", required=True)
    parser.add_argument("--budget", type=float, default=60.0)
    parser.add_argument("--single", action="store_true", help="production's way only")
    args = parser.parse_args(argv)
    import warnings

    from tests.fuzz.campaign import OPTION_SETS

    warnings.simplefilter("ignore")
    signal.signal(signal.SIGALRM, _alarm)
    paths = sorted(p for p in args.source.rglob("*") if p.is_file() and not p.is_symlink())
    for option_set in args.option_set:
        for path in paths:
            options = OPTION_SETS[option_set]
            line = compare_file(
                path, args.work, options, args.budget, args.source, single=args.single
            )
            line["set"] = option_set
            sys.stdout.write(json.dumps(line) + "\n")
            sys.stdout.flush()
    os._exit(0)  # noqa: SLF001 - skip interpreter teardown (pools of the code under test)


if __name__ == "__main__":
    main()
