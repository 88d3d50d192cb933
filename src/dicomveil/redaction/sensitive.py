"""``pixel_mode = "sensitive"``: which text read in the pixels identifies the patient.

Like Google's ``REDACT_SENSITIVE_TEXT`` and Presidio's ``use_metadata``: only the text that
matches one of the instance's own identifying values (every person name, part by part and in
any order; IDs, accession numbers, addresses, institution names; dates in their common
written forms, see :func:`~dicomveil.engine.scan.collect_identifiers`) or a pattern that
identifies whatever the header holds (dates, phone numbers, long digit runs, e-mail
addresses: the Clean Descriptors scrubber's patterns) is filled; other text (``L``, ``5 cm``,
``ABD``) keeps its pixels.

OCR reads ``0`` for ``O``, ``1`` for ``I``, drops the ``^`` of a name: besides the exact
word match of the scrubber, the text is compared after the same normalisation as
``verify --pixels`` (letters and digits, confusable characters merged, one edit per six
characters). The text read is only compared, never kept, logged or reported.
"""

from __future__ import annotations

from typing import Final

from pydicom.dataset import Dataset

from dicomveil.engine.descriptors import Scrubber, date_forms, name_parts
from dicomveil.engine.scan import collect_identifiers
from dicomveil.redaction.verify import MIN_VALUE, matches, normalised

__all__ = ["SensitiveText"]

MIN_NAME_PART: Final = 3
"""Name parts shorter than this are matched as whole words only (``LI`` in any text)."""


class SensitiveText:
    """A predicate on text read in the pixels of one instance: does it identify?"""

    __slots__ = ("_scrubber", "_values")

    def __init__(self, ds: Dataset) -> None:
        found = collect_identifiers(ds)
        self._scrubber = Scrubber(**found)
        values: set[str] = set()
        for name in found["names"]:
            values.update(normalised(p) for p in name_parts(name) if len(p) >= MIN_NAME_PART)
        values.update(normalised(v) for v in found["identifiers"])
        for value in found["dates"]:
            values.update(normalised(form) for form in date_forms(value))
        self._values = sorted(v for v in values if len(v) >= MIN_VALUE)

    def __call__(self, text: str) -> bool:
        """Whether ``text`` holds an identifying value or pattern."""
        if self._scrubber.spans(text):
            return True
        reduced = normalised(text)
        return any(matches(value, reduced) for value in self._values)
