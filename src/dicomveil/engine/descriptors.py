"""Cleaning free text: keep descriptions, remove what identifies the patient.

Used by the Clean Descriptors, Clean Structured Content and Clean Graphics options. A
:class:`Scrubber` is built from the identifying values of one dataset (every person name, in
any order or case; patient and study identifiers; addresses and phone numbers; dates in the
usual written forms) and replaces each occurrence in free text, together with patterns that
identify whatever the dataset holds (dates, e-mail addresses, phone numbers, long digit runs).

Every step takes time linear in the length of the text (a value is read a bounded number of
times, whatever its content): the identifying values are found by one Aho-Corasick pass, the
e-mail addresses from their ``@``, and the other patterns are regular expressions that never
retry a run of characters from more than a bounded number of starting points (each is argued
below). A value longer than :data:`MAX_CLEANED_CHARS` is not cleaned at all: the engine
replaces it by a dummy (see :func:`cleaned_value`).

References
----------
DICOM PS3.15 Section E.3.5 (Clean Descriptors Option).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import date
from typing import Any, Final

import ahocorasick

from dicomveil.engine.values import MAX_LENGTH, dummy_value, map_strings

__all__ = [
    "MAX_CLEANED_CHARS",
    "REDACTED",
    "Scrubber",
    "cleaned_value",
    "date_forms",
    "name_parts",
    "too_long_to_clean",
]

#: What replaces each identifying fragment.
REDACTED = "***"

#: Longest value (in characters) the scrubber cleans; a longer free-text value is replaced by
#: the dummy of its VR (and the report says so). The byte-level fast path never meets such a
#: value: it leaves values longer than 4 MiB to the reference path.
MAX_CLEANED_CHARS: Final = 4 * 1024 * 1024

_MONTHS = (
    "january february march april may june july august september october november december"
).split()

# The patterns that identify whatever the dataset holds. Each starts with a digit (an
# ``@`` for e-mail addresses), so the regular expression engine skips every other position
# without trying it, and each either has a bounded length or starts only at the first digit
# of a word and scans the runs that follow once: no run is rescanned from more than a bounded
# number of starting points, and a search over a text of n characters costs O(n). Patterns
# that would need to start before their digits (``MRN12345``, ``January 31, 1970``,
# ``+1 (555) ...``) are found from their digits and extended backwards, or searched in the
# reversed text.
_MONTHS_RE = "jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec"
#: Numeric dates (1970-01-31, 1970/1/31; 31/01/1970, 1.31.70: bounded length from a word's
#: first digit) and record numbers (a word of up to 3 letters, 5 or more digits, up to 3
#: letters: found from its first digit, one start per word, its letters added afterwards).
_NUMBERS = re.compile(
    r"\d(?:(?<!\w\d)(?:\d{3}[-/.]\d{1,2}[-/.]\d{1,2}\b|\d?[-/.]\d{1,2}[-/.]\d{2,4}\b"
    r"|\d{4,}[a-z]{0,3}\b)"
    r"|(?:(?<=(?<!\w)[a-z]\d)|(?<=(?<!\w)[a-z]{2}\d)|(?<=(?<!\w)[a-z]{3}\d))\d{4,}[a-z]{0,3}\b)",
    re.IGNORECASE,
)
#: Phone numbers, of bounded length from a digit (a longer run gives several adjacent
#: matches); a leading "+" or "(" is added afterwards.
_PHONE = re.compile(r"\d[\d ()-]{7,64}\d")
#: 31 January 1970, 31-jan-70: from the day's first digit; the letters, then the separators,
#: are runs scanned once (their classes are disjoint).
_DAY_MONTH = re.compile(
    r"\d(?<!\w\d)\d?[ -]?(?:" + _MONTHS_RE + r")[a-z]*\.?[ -,]*\d{2,4}\b", re.IGNORECASE
)
#: January 31, 1970, searched in the reversed text (from the year's last digit).
_MONTH_DAY_REVERSED = re.compile(
    r"\d(?<!\w\d)\d{1,3} ,?\d{1,2} \.?[a-z]*(?:"
    + "|".join(month[::-1] for month in _MONTHS_RE.split("|"))
    + r")\b",
    re.IGNORECASE,
)
_ASCII_DIGITS: Final = "0123456789"
_ANY_DIGIT = re.compile(r"\d")
#: The right-hand side of an e-mail address, searched from each ``@`` (the runs after two
#: ``@`` never overlap: ``@`` is in none of the classes).
_EMAIL_DOMAIN = re.compile(r"@[\w-]+\.[\w.-]+")
#: The local part of an e-mail address, read backwards from its ``@``.
_EMAIL_LOCAL = re.compile(r"[\w.+-]*")
#: ISO 2022 escape sequences (ESC, intermediate bytes, final byte), stray or not.
_ESCAPES = re.compile(r"\x1b[\x20-\x2f]*[\x30-\x7e]?")
_WORD = re.compile(r"\w")
_NOT_WORD_OR_UNDERSCORE = re.compile(r"[\W_]+")
_ASCII_ALNUM_RUN = re.compile(r"[A-Za-z0-9]{2,}")
_LETTER_RUN = re.compile(r"[^\W\d_]{2,}")
_COMPONENT_DELIMITERS = re.compile(r"[\^=\s\\]+")
#: ASCII characters that are not word characters (``\W``), mapped to a space.
_ASCII_SEPARATORS: Final = {code: " " for code in range(128) if not _WORD.match(chr(code))}


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


def name_parts(value: str) -> list[str]:
    """Return the parts of a person name that are matched in free text, normalised.

    A name may arrive malformed (NUL bytes, control characters, stray ISO 2022 escape
    sequences, bytes that were not valid in its character set and were decoded leniently):
    escape sequences are removed, the name is split on every character that is not a letter
    or digit (component and group delimiters ``^`` and ``=``, spaces, punctuation, controls,
    replacement characters) and each part of two or more characters is lower-cased. A part
    with digits also gives its runs of letters, and a part that mixes ASCII and other
    letters its ASCII runs (a Latin-1 fallback decoding can glue a stray letter to a name).

    Examples
    --------
    >>> name_parts("QUIXOTE^ZEB\\0ULON")
    ['zebulon', 'quixote', 'zeb', 'ulon']
    >>> name_parts("Quixote\\x1b$BZebulon^Ann")
    ['quixote', 'zebulon', 'ann']
    """
    parts: list[str] = []
    value = _ESCAPES.sub(" ", value)
    for component in _COMPONENT_DELIMITERS.split(value):
        # a character that is no letter inside a component (a NUL, an invalid byte) may have
        # been inserted: the component without it is matched too
        joined = _lower(_NOT_WORD_OR_UNDERSCORE.sub("", component))
        if len(joined) >= 2 and joined != _lower(component):
            parts.append(joined)
    for part in _NOT_WORD_OR_UNDERSCORE.split(value):
        if len(part) < 2:
            continue
        part = _lower(part)
        parts.append(part)
        runs = set(_LETTER_RUN.findall(part))
        if not part.isascii():
            runs.update(_ASCII_ALNUM_RUN.findall(part))
        parts.extend(sorted(runs - {part}))
    return parts


def _lower(text: str) -> str:
    """``text`` lower-cased character by character (same length, as ``re.IGNORECASE``
    compares): the rare characters whose lower case is longer are kept as they are."""
    lowered = text.lower()
    if len(lowered) == len(text):
        return lowered
    return "".join(c if len(c.lower()) != 1 else c.lower() for c in text)


def _folded(text: str) -> str:
    """``text`` lower-cased, every non-word character a space, framed by two spaces.

    Position ``i`` of ``text`` is position ``i + 1`` of the result, and a word boundary of
    ``text`` is a space of the result: an identifying value framed the same way is found
    as a whole word (or words) by a plain substring search.
    """
    lowered = _lower(text)
    table: dict[int, str] = _ASCII_SEPARATORS
    if not lowered.isascii():
        others = {c for c in set(lowered) if ord(c) > 127 and not _WORD.match(c)}
        if others:
            table = {**_ASCII_SEPARATORS, **{ord(c): " " for c in others}}
    return " " + lowered.translate(table) + " "


class Scrubber:
    """Replaces identifying fragments in free text.

    Parameters
    ----------
    names:
        Person names (PN values, any component form); each component of two or more
        characters (see :func:`name_parts`) is removed wherever it appears as a word, in
        any case.
    identifiers:
        Whole values that identify (IDs, accession numbers, addresses, phone numbers,
        institution names); removed wherever they appear as words, in any case.
    dates:
        DA values; removed in every common written form.

    Identifying values are matched as whole words, with any non-word character standing
    for any other (``31/01/1970`` also removes ``31-01-1970``). Overlapping matches are
    replaced by one :data:`REDACTED`.

    Examples
    --------
    >>> s = Scrubber(names=["DOE^JOHN"], identifiers=["MRN12345"], dates=["19700131"])
    >>> s.scrub("John Doe (mrn12345), born 31/01/1970: CT chest, johnson scanner")
    '*** *** (***), born ***: CT chest, johnson scanner'
    """

    __slots__ = ("_automaton",)

    def __init__(
        self,
        names: Iterable[str] = (),
        identifiers: Iterable[str] = (),
        dates: Iterable[str] = (),
    ) -> None:
        literals: set[str] = set()
        for name in names:
            literals.update(name_parts(name))
        for ident in identifiers:
            ident = _ESCAPES.sub(" ", ident).strip(" \0")
            if len(ident) >= 2:
                literals.add(ident)
                literals.update(p for p in re.split(r"[\s,;^\0]+", ident) if len(p) >= 4)
        for value in dates:
            literals.update(date_forms(value))
        automaton: Any = None
        for literal in literals:
            framed = _folded(literal)
            if framed.strip():  # a value of separators only identifies nobody
                if automaton is None:
                    automaton = ahocorasick.Automaton()
                automaton.add_word(framed, len(framed))
        if automaton is not None:
            automaton.make_automaton()
        self._automaton = automaton

    def spans(self, text: str) -> list[tuple[int, int]]:
        """Return the ``(start, end)`` of every identifying fragment of ``text``, sorted
        and merged where they overlap."""
        found: list[tuple[int, int]] = []
        if self._automaton is not None:
            # a match of a framed literal ends at ``last`` (inclusive) of the framed text;
            # its frame spaces are the characters just outside the fragment
            # an escape sequence in the text (stray, or glued to a name: ``ESC $ ) C`` ends
            # in a letter) is blanked first, keeping every position
            folded = _folded(_ESCAPES.sub(_blank, text) if "\x1b" in text else text)
            for last, length in self._automaton.iter(folded):
                found.append((last - length + 1, last - 1))
        if _has_digits(text):
            found.extend(_patterns(text))
        if "@" in text:
            found.extend(_emails(text))
        if not found:
            return found
        found.sort()
        merged = [found[0]]
        for start, end in found[1:]:
            last_start, last_end = merged[-1]
            if start <= last_end:  # overlapping or touching: one fragment
                if end > last_end:
                    merged[-1] = (last_start, end)
            else:
                merged.append((start, end))
        return merged

    def scrub(self, text: str) -> str:
        """Return ``text`` with every identifying fragment replaced by :data:`REDACTED`."""
        spans = self.spans(text)
        if not spans:
            return text
        pieces: list[str] = []
        position = 0
        for start, end in spans:
            pieces.append(text[position:start])
            pieces.append(REDACTED)
            position = end
        pieces.append(text[position:])
        return "".join(pieces)


def _blank(match: re.Match[str]) -> str:
    return " " * len(match.group())


def _has_digits(text: str) -> bool:
    if text.isascii():
        return any(digit in text for digit in _ASCII_DIGITS)
    return _ANY_DIGIT.search(text) is not None


def _patterns(text: str) -> list[tuple[int, int]]:
    """The spans of dates, phone numbers and record numbers in ``text`` (which has digits)."""
    spans = []
    for match in _PHONE.finditer(text):
        start = match.start()
        if start and text[start - 1] == "(":  # a leading "+(", "(" or "+"
            start -= 1
        if start and text[start - 1] == "+":
            start -= 1
        spans.append((start, match.end()))
    for match in _NUMBERS.finditer(text):
        start = match.start()
        while start and text[start - 1].isascii() and text[start - 1].isalpha():
            start -= 1  # a record number's letters (at most 3: the lookbehind saw them)
        spans.append((start, match.end()))
    lowered = text.lower()
    if any(month in lowered for month in _MONTHS_RE.split("|")):
        spans.extend(m.span() for m in _DAY_MONTH.finditer(text))
        size = len(text)
        spans.extend(
            (size - m.end(), size - m.start()) for m in _MONTH_DAY_REVERSED.finditer(text[::-1])
        )
    return spans


def _emails(text: str) -> list[tuple[int, int]]:
    """The spans of the e-mail addresses in ``text``, found from each ``@``: the domain
    forwards, the local part backwards (over the reversed text), each run scanned once."""
    reverse = text[::-1]
    size = len(text)
    spans = []
    for match in _EMAIL_DOMAIN.finditer(text):
        at = match.start()
        run = _EMAIL_LOCAL.match(reverse, size - at)  # never None: it matches ""
        local = run.end() - (size - at) if run else 0
        if local:
            spans.append((at - local, match.end()))
    return spans


def too_long_to_clean(value: Any) -> bool:
    """Whether a text value is longer than the scrubber cleans (:data:`MAX_CLEANED_CHARS`)."""
    if isinstance(value, str | bytes):
        return len(value) > MAX_CLEANED_CHARS
    if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
        return sum(len(str(v)) for v in value) > MAX_CLEANED_CHARS
    return False


def cleaned_value(value: Any, vr: str, scrubber: Scrubber) -> Any:
    """Return an element's value with its identifying text cleaned (action C on text).

    A person name becomes ``ANONYMOUS`` (a name is identifying as a whole); other text is
    scrubbed and kept within its VR's maximum length. Each value of a multi-valued element
    is cleaned on its own; an empty value stays empty. A value longer than
    :data:`MAX_CLEANED_CHARS` becomes the dummy of its VR (callers flag it: see
    :func:`too_long_to_clean`).
    """
    if vr == "PN":
        return map_strings(value, lambda v: "ANONYMOUS" if v.strip() else v)
    if too_long_to_clean(value):
        return dummy_value(vr)
    limit = MAX_LENGTH.get(vr)

    def clean(text: str) -> str:
        result = scrubber.scrub(text)
        return result[:limit] if limit else result

    return map_strings(value, clean)
