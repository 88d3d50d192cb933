"""The time one instance may take to de-identify.

Every step of the engine is linear in the size of its input, but an input can be large (a
structured report of tens of MB, with text to clean in every item): a per-instance budget
bounds what one file can cost a run. Both engines check it between elements and sequence
items and before cleaning a text value; an instance over budget is refused with a value-free
:class:`~dicomveil.errors.UnsupportedInputError` (the pipeline quarantines it).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Final

from dicomveil.errors import UnsupportedInputError

__all__ = ["DEFAULT_SECONDS", "TimeBudget"]

#: Seconds one instance may take by default (a 60 MB structured report takes a few).
DEFAULT_SECONDS: Final = 120.0


class TimeBudget:
    """A deadline, ``seconds`` from now.

    Examples
    --------
    >>> TimeBudget(60).check()  # well within
    >>> TimeBudget(-1).check()  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    dicomveil.errors.UnsupportedInputError: de-identification took longer than ...
    """

    __slots__ = ("_clock", "deadline", "seconds")

    def __init__(
        self, seconds: float = DEFAULT_SECONDS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.seconds = seconds
        self._clock = clock
        self.deadline = clock() + seconds

    def check(self) -> None:
        """Raise when the deadline has passed.

        Raises
        ------
        UnsupportedInputError
            The instance took longer than its budget.
        """
        if self._clock() > self.deadline:
            raise UnsupportedInputError(
                f"de-identification took longer than its time budget ({self.seconds:g} s): refused"
            )
