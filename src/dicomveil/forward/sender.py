"""What every sender shares: what it is handed and the failure it raises.

Two kinds of senders:

- a :class:`Sender` (:mod:`.webhook`, :mod:`.batch`) gets a :class:`Delivery` once the
  study is complete: the job, the instances still to send (those its scope has not
  acknowledged), every instance the job covers, a reader for the de-identified archive, and
  ``sent``, which it calls with the SOP Instance UIDs the destination acknowledged, as soon
  as it acknowledged them (the worker records them and renews the job's lease);
- a :class:`StreamingSender` (:mod:`.cstore`, :mod:`.stow`) opens a :class:`Stream` per
  attempt, which the worker feeds with instances as they are archived (on-arrival rules) or
  all at once (on-complete rules, and what is left at completion): its connections
  (associations, an HTTP client) are reused from one instance to the next.

Both raise (or report) :class:`ForwardFailed` with a value-free reason when the forward must
be tried again.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from dicomveil.errors import QueueError
from dicomveil.forward.queue import Job, QueuedInstance

__all__ = ["Acknowledge", "Delivery", "ForwardFailed", "Sender", "Stream", "StreamingSender"]


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


Acknowledge = Callable[[Sequence[str]], None]
"""Called with the SOP Instance UIDs a destination acknowledged (from any thread)."""


class Stream(Protocol):
    """One attempt of a streaming sender: instances go in as they become available.

    A stream may send in the calling thread (``submit`` returns once they are answered) or
    in its own threads (then it calls the ``changed`` function it was opened with when it
    becomes idle or fails, so the worker need not poll).
    """

    def submit(self, items: Sequence[QueuedInstance]) -> None:
        """Send ``items`` (or queue them for sending); may raise :class:`ForwardFailed`."""
        ...

    def busy(self) -> bool:
        """Whether submitted instances are still unanswered."""
        ...

    def fatal(self) -> ForwardFailed | None:
        """Why the stream cannot go on (nothing more will be sent), if so."""
        ...

    def rejected(self) -> ForwardFailed | None:
        """Why instances answered were not stored (refusals), if any were not."""
        ...

    def close(self) -> None:
        """Stop sending and release connections (waits for what is in flight)."""
        ...


@runtime_checkable
class StreamingSender(Protocol):
    """Sends a job's instances over a :class:`Stream` (see the module docstring)."""

    def scope(self, job: Job) -> str:
        """Return the name under which acknowledged instances are recorded for ``job``."""
        ...

    def open(
        self,
        job: Job,
        read: Callable[[str], bytes],
        acknowledge: Acknowledge,
        changed: Callable[[], None],
    ) -> Stream:
        """Open a stream for one attempt at ``job`` (no network yet)."""
        ...
