"""What every issue-15 benchmark does around its measurement: a throw-away work folder, and
the result printed and (``--write-docs``) written as its section of docs/benchmarks.md."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from benchmarks.reporting import write_section

__all__ = ["publish", "workdir"]


@contextmanager
def workdir(prefix: str) -> Iterator[Path]:
    """A new folder under the system's temporary folder, removed afterwards."""
    work = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield work
    finally:
        shutil.rmtree(work, ignore_errors=True)


def publish(
    section: str,
    parts: Sequence[str],
    *,
    write_docs: bool,
    command: str | None = None,
    machine: str | None = None,
) -> str:
    """Print a section's text (``parts``, then the command and the machine line, as
    paragraphs) and, with ``write_docs``, replace ``section`` of docs/benchmarks.md with it."""
    tail = [f"Command: `{command}`"] if command else []
    text = "\n".join([*parts, *(f"\n{line}" for line in [*tail, *([machine] if machine else [])])])
    print(text)
    if write_docs:
        print(f"wrote {write_section(section, text)}")
    return text
