"""Progress of a batch on the terminal: one rich bar per phase, with throughput."""

from __future__ import annotations

import threading
from pathlib import Path
from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

from dicomveil.cli.common import show
from dicomveil.pipeline.batch import BatchEvents

__all__ = ["RichBatchEvents"]

_LABELS = {"deidentify": "de-identify", "upload": "upload"}


class _Throughput(ProgressColumn):
    """Files per second and megabytes per second of a task so far."""

    def render(self, task: Task) -> Text:
        elapsed = task.finished_time if task.finished else task.elapsed
        if not elapsed:
            return Text("", style="progress.data.speed")
        files = task.completed / elapsed
        megabytes = float(task.fields.get("bytes", 0)) / elapsed / 1e6
        return Text(f"{files:.0f} files/s {megabytes:.1f} MB/s", style="progress.data.speed")


class RichBatchEvents(BatchEvents):
    """Show a batch's phases as progress bars on ``console`` (nothing when not a terminal).

    Failures and retry notices are printed above the bars. Use it as a context manager
    around the batch.
    """

    def __init__(self, console: Console) -> None:
        self._progress = Progress(
            TextColumn("{task.description:<12}"),
            BarColumn(),
            MofNCompleteColumn(),
            _Throughput(),
            TimeElapsedColumn(),
            console=console,
            disable=not console.is_terminal,
        )
        self._tasks: dict[str, TaskID] = {}
        self._bytes: dict[str, int] = {}
        self._lock = threading.Lock()

    def __enter__(self) -> RichBatchEvents:
        self._progress.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._progress.stop()

    def phase(self, name: str, total: int) -> None:
        """Add the phase's bar, or change its total."""
        task = self._tasks.get(name)
        if task is not None:
            self._progress.update(task, total=total)
            return
        self._bytes[name] = 0
        self._tasks[name] = self._progress.add_task(_LABELS.get(name, name), total=total, bytes=0)

    def advance(self, name: str, files: int, size: int) -> None:
        """Move the phase's bar."""
        self._bytes[name] = self._bytes.get(name, 0) + size
        task = self._tasks.get(name)
        if task is not None:
            self._progress.update(task, advance=files, bytes=self._bytes[name])

    def phase_done(self, name: str) -> None:
        """Stop the phase's clock."""
        task = self._tasks.get(name)
        if task is not None:
            self._progress.stop_task(task)

    def failed(self, source: Path, reason: str) -> None:
        """Print the failed input (a local path, shown to the operator only)."""
        self._progress.console.print(f"[red]failed:[/] {show(source)}: {show(reason)}", markup=True)

    def retrying(self, message: str) -> None:
        """Print the retry notice (called from upload threads)."""
        with self._lock:
            self._progress.console.print(f"[yellow]retrying:[/] {show(message)}", markup=True)
