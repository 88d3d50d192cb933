"""A progress bar counting files, for the commands that go through many (``deid``, ``verify``)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from rich.console import Console

__all__ = ["file_progress"]


def file_progress(
    console: Console, total: int, what: str
) -> tuple[Callable[[], None], contextlib.AbstractContextManager[Any]]:
    """Return ``(advance, context)``: a bar on ``console`` while ``context`` is entered,
    moved one file on by each ``advance()``; nothing when ``console`` is not a terminal
    (rich's progress machinery is imported only then).

    The bar shows files done of all, files per second (the rate a user compares runs by;
    the byte rate rich shows by default counts one byte per file) and the time left.
    """
    if not console.is_terminal:
        return lambda: None, contextlib.nullcontext()
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        Task,
        TextColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    class FilesPerSecond(ProgressColumn):
        def render(self, task: Task) -> Text:
            speed = task.finished_speed or task.speed
            shown = "?" if speed is None else f"{speed:.0f}"
            return Text(f"{shown} files/s", style="progress.data.speed")

    progress = Progress(
        TextColumn(what),
        BarColumn(),
        MofNCompleteColumn(),
        FilesPerSecond(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    )
    task = progress.add_task(what, total=total)
    return lambda: progress.update(task, advance=1), progress
