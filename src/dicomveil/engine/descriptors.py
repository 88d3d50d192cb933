"""Cleaning free text: keep descriptions, remove what identifies the patient.

Used by the Clean Descriptors, Clean Structured Content and Clean Graphics options. A
:class:`Scrubber` is built from the identifying values of one dataset (every person name, in
any order or case; patient and study identifiers; addresses and phone numbers; dates in the
usual written forms) and replaces each occurrence in free text, together with patterns that
identify whatever the dataset holds (dates, e-mail addresses, phone numbers, long digit runs).

References
----------
DICOM PS3.15 Section E.3.5 (Clean Descriptors Option).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import date
from typing import Any

from dicomveil.engine.values import MAX_LENGTH, map_strings

__all__ = ["REDACTED", "Scrubber", "cleaned_value", "date_forms"]

#: What replaces each identifying fragment.
REDACTED = "***"

_MONTHS = (
    "january february march april may june july august september october november december"
).split()

_GENERIC_PATTERNS = (
    r"\b\d{4}[-/.]\d{1,2}[-/.]\d{1,2}\b",  # 1970-01-31, 1970/1/31
    r"\b\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}\b",  # 31/01/1970, 1.31.70
    r"\b(?:19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\b",  # 19700131
    r"\b\d{1,2}[ -]?(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.?[ -,]*\d{2,4}\b",
    r"\b(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.? \d{1,2},? \d{2,4}\b",
    r"[\w.+-]+@[\w-]+\.[\w.-]+",  # e-mail
    r"\+?\(?\d[\d ()-]{7,}\d",  # phone numbers
    r"\b[A-Za-z]{0,3}\d{5,}[A-Za-z]{0,3}\b",  # record numbers, long digit runs
)


def date_forms(value: str) -> list[str]:
    """Return the common written forms of a DA value, for matching in free text.

    Examples
    --------
    >>> "31/01/1970" in date_forms("19700131") and "January 31, 1970" in date_forms("19700131")
    True
    """
    value = value.strip()
    if not re.fullmatch(r"\d{8}", value):
        return []
    try:
        day = date(int(value[:4]), int(value[4:6]), int(value[6:]))
    except ValueError:
        return [value]
    y, m, d = f"{day.year:04d}", f"{day.month:02d}", f"{day.day:02d}"
    month = _MONTHS[day.month - 1]
    forms = [value, f"{y}-{m}-{d}", f"{y}/{m}/{d}", f"{y}.{m}.{d}"]
    for sep in "/.-":
        forms += [f"{d}{sep}{m}{sep}{y}", f"{m}{sep}{d}{sep}{y}"]
        forms += [f"{day.day}{sep}{day.month}{sep}{y}", f"{day.month}{sep}{day.day}{sep}{y}"]
    forms += [
        f"{month.title()} {day.day}, {y}",
        f"{day.day} {month.title()} {y}",
        f"{month[:3].title()} {day.day} {y}",
        f"{d}-{month[:3].title()}-{y}",
    ]
    return forms


def _name_parts(value: str) -> Iterable[str]:
    for part in re.split(r"[\^=,\s]+", value):
        part = part.strip(" .")
        if len(part) >= 2:
            yield part


class Scrubber:
    """Replaces identifying fragments in free text.

    Parameters
    ----------
    names:
        Person names (PN values, any component form); each component of two or more
        characters is removed wherever it appears, in any case.
    identifiers:
        Whole values that identify (IDs, accession numbers, addresses, phone numbers,
        institution names); removed wherever they appear, in any case.
    dates:
        DA values; removed in every common written form.

    Examples
    --------
    >>> s = Scrubber(names=["DOE^JOHN"], identifiers=["MRN12345"], dates=["19700131"])
    >>> s.scrub("John Doe (mrn12345), born 31/01/1970: CT chest, johnson scanner")
    '*** *** (***), born ***: CT chest, johnson scanner'
    """

    __slots__ = ("_pattern",)

    def __init__(
        self,
        names: Iterable[str] = (),
        identifiers: Iterable[str] = (),
        dates: Iterable[str] = (),
    ) -> None:
        literals: set[str] = set()
        for name in names:
            literals.update(_name_parts(name))
        for ident in identifiers:
            ident = ident.strip()
            if len(ident) >= 2:
                literals.add(ident)
                literals.update(p for p in re.split(r"[\s,;^]+", ident) if len(p) >= 4)
        for value in dates:
            literals.update(date_forms(value))
        escaped = [re.escape(x) for x in sorted(literals, key=lambda x: (-len(x), x))]
        alternatives = list(_GENERIC_PATTERNS)
        if escaped:  # whole words only: the name "Ann" must not eat "scanner"
            alternatives.insert(0, r"(?<!\w)(?:" + "|".join(escaped) + r")(?!\w)")
        self._pattern = re.compile("|".join(alternatives), re.IGNORECASE)

    def scrub(self, text: str) -> str:
        """Return ``text`` with every identifying fragment replaced by :data:`REDACTED`."""
        return self._pattern.sub(REDACTED, text)


def cleaned_value(value: Any, vr: str, scrubber: Scrubber) -> Any:
    """Return an element's value with its identifying text cleaned (action C on text).

    A person name becomes ``ANONYMOUS`` (a name is identifying as a whole); other text is
    scrubbed and kept within its VR's maximum length. Each value of a multi-valued element
    is cleaned on its own; an empty value stays empty.
    """
    if vr == "PN":
        return map_strings(value, lambda v: "ANONYMOUS" if v.strip() else v)
    limit = MAX_LENGTH.get(vr)

    def clean(text: str) -> str:
        result = scrubber.scrub(text)
        return result[:limit] if limit else result

    return map_strings(value, clean)
