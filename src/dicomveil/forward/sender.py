"""What every sender shares: the delivery it is handed and the failure it raises.

A sender (:mod:`.cstore`, :mod:`.stow`, :mod:`.webhook`, :mod:`.batch`) gets a
:class:`Delivery`: the job, the instances still to send (those its scope has not
acknowledged), every instance the job covers, a reader for the de-identified archive, and
``sent``, which it calls with the SOP Instance UIDs the destination acknowledged, as soon as it
acknowledged them (the worker records them and renews the job's lease). It raises
:class:`ForwardFailed` with a value-free reason when the forward must be tried again.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from dicomveil.errors import QueueError
from dicomveil.forward.queue import Job, QueuedInstance

__all__ = ["Delivery", "ForwardFailed", "Sender"]


class ForwardFailed(QueueError):
    """A forward did not complete; the message is a value-free reason (a status, a kind).

    Parameters
    ----------
    reason
        What went wrong: an HTTP or DIMSE status, an error kind. Never a value from a
        dataset, never a response body.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Delivery:
    """One attempt at a job (see the module docstring)."""

    job: Job
    pending: Sequence[QueuedInstance]
    covered: Sequence[QueuedInstance]
    read: Callable[[str], bytes]
    sent: Callable[[Sequence[str]], None]
    remember_batch: Callable[[str], None]


class Sender(Protocol):
    """Sends a job's instances (or news of them) to one kind of destination."""

    def scope(self, job: Job) -> str:
        """Return the name under which acknowledged instances are recorded for ``job``."""
        ...

    def send(self, delivery: Delivery) -> None:
        """Send what ``delivery`` holds; raise :class:`ForwardFailed` to be retried."""
        ...
