"""The queues of cluster mode: three priorities and one queue for large instances.

Workers take the priority queues in order (STAT before URGENT before ROUTINE: the Redis
transport's ``queue_order_strategy = "priority"``). Instances of :data:`LARGE_BYTES` or more
go to :data:`LARGE_QUEUE` whatever their priority, so a 2 GB instance is de-identified by a
worker that serves the large queue, never ahead of a STAT study on the others.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

__all__ = [
    "ALL_QUEUES",
    "LARGE_BYTES",
    "LARGE_QUEUE",
    "PRIORITY_QUEUES",
    "Priority",
    "parse_queues",
    "queue_for",
]


class Priority(StrEnum):
    """How urgent an instance is (a reading priority, not a value of the instance)."""

    STAT = "stat"
    URGENT = "urgent"
    ROUTINE = "routine"


PRIORITY_QUEUES: Final[tuple[str, ...]] = tuple(f"dicomveil.{p.value}" for p in Priority)
"""The priority queues, most urgent first."""
LARGE_QUEUE: Final = "dicomveil.large"
LARGE_BYTES: Final = 256 * 1024 * 1024
"""Instances this large or larger go to :data:`LARGE_QUEUE`."""
ALL_QUEUES: Final[tuple[str, ...]] = (*PRIORITY_QUEUES, LARGE_QUEUE)
"""What a worker serves by default, in the order it takes them."""


def queue_for(priority: Priority, size: int, *, large_bytes: int = LARGE_BYTES) -> str:
    """The queue an instance of ``size`` bytes and ``priority`` goes to."""
    if size >= large_bytes:
        return LARGE_QUEUE
    return f"dicomveil.{priority.value}"


def parse_queues(text: str) -> tuple[str, ...]:
    """Parse a worker's ``--queues`` (``"stat,urgent"``, ``"large"``, or full queue names).

    Raises
    ------
    ValueError
        An unknown queue name (the message names the known ones).
    """
    known = {name.removeprefix("dicomveil."): name for name in ALL_QUEUES}
    chosen: list[str] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name = known.get(part.removeprefix("dicomveil."))
        if name is None:
            raise ValueError(f"unknown queue {part!r} (known: {', '.join(known)})")
        if name not in chosen:
            chosen.append(name)
    if not chosen:
        raise ValueError(f"no queue given (known: {', '.join(known)})")
    return tuple(chosen)
