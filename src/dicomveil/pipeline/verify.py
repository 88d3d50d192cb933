"""Leak check: does any identifying value of the originals survive in the de-identified files?

For every original, every value the applied policy should have removed or replaced (at every
depth, private elements included) becomes a *needle*, in every encoding the file could use
(its Specific Character Set, UTF-8, Latin-1, ISO 2022 escapes as pydicom writes them), person
names also by component, dates also in their usual written forms. Every byte of every output is
then searched for every needle. Values that the policy keeps elsewhere in the same original,
registry UIDs, dummy values and very short values are not needles (they would prove nothing).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pydicom
from pydicom import config
from pydicom.charset import convert_encodings, encode_string
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from dicomveil.engine.descriptors import date_forms
from dicomveil.engine.rules import CompiledPolicy, Mode, Op, compile_policy, vr_of
from dicomveil.engine.uids import is_registry_uid
from dicomveil.engine.values import dummy_value
from dicomveil.profile.options import Option
from dicomveil.profile.policy import Policy
from dicomveil.profile.table import is_safe_private

__all__ = ["Leak", "VerifyResult", "collect_needles", "options_from_output", "verify_folders"]

MIN_NEEDLE = 4
MAX_NEEDLE = 256
"""Longer values are searched by their first characters, up to a word boundary: that is
evidence enough, and a needle of hundreds of kB (a long comment) made the Aho-Corasick
automaton crash the process (a segmentation fault freeing its deep trie)."""
_BREAK = re.compile(r"\W")
_SEARCHED_OPS = frozenset(
    {Op.REMOVE, Op.EMPTY, Op.DUMMY, Op.PSEUDONYM, Op.UID, Op.SHIFT, Op.HASH, Op.REPLACE}
)
_TEXT_VRS = frozenset(
    {"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UI",
     "UR", "UT"}
)  # fmt: skip
#: Numbers (DS, IS) and ages identify nobody on their own and collide with anything.
_SEARCHED_VRS = _TEXT_VRS - {"DS", "IS", "AS"}
_DUMMIES = frozenset(str(dummy_value(vr)) for vr in _TEXT_VRS)


@dataclass(frozen=True, slots=True)
class Needle:
    """One identifying value, as bytes, and where it came from (keyword only, no value)."""

    data: bytes
    attribute: str
    original: Path
    text: str = field(default="", repr=False)


@dataclass(frozen=True, slots=True)
class Leak:
    """An identifying value found in an output file."""

    output: Path
    attribute: str
    original: Path


@dataclass(slots=True)
class VerifyResult:
    """What :func:`verify_folders` found."""

    originals: int = 0
    outputs: int = 0
    needles: int = 0
    leaks: list[Leak] = field(default_factory=list)
    unreadable: list[Path] = field(default_factory=list)
    #: With ``pixels``: outputs whose pixels were read, values read in them, and outputs
    #: whose pixels could not be decoded (not examined: nothing is proven about them).
    images: int = 0
    pixel_leaks: list[Leak] = field(default_factory=list)
    pixels_unread: list[Path] = field(default_factory=list)


def _label(tag: int) -> str:
    from pydicom.datadict import keyword_for_tag

    return keyword_for_tag(tag) or f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


def _strings(value: object) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
        return [str(v) for v in value]  # type: ignore[attr-defined]
    return [str(value)]


def _variants(text: str, vr: str) -> Iterator[str]:
    text = text.strip(" \0")
    if not text or text.upper() in _DUMMIES:
        return
    if vr == "PN" and not text.strip("^= "):  # separators only: no name (pydicom's "^^^^")
        return
    if vr == "UI":
        if not is_registry_uid(text):
            yield text
        return
    if vr == "DA":
        yield from date_forms(text)
        return
    if vr == "DT":
        yield text
        yield from date_forms(text[:8])
        return
    yield text
    if vr == "PN":
        for part in re.split(r"[\^=]+", text):
            part = part.strip()
            if len(part) >= 3 or (part and not part.isascii() and len(part) >= 2):
                yield part


def _elements(item: Dataset) -> Iterator[DataElement]:
    """The elements of ``item``. One pydicom cannot decode (an unknown VR, a length its VR
    does not allow: a malformed original the engine may still have handled) is given as
    the text of its bytes under the dictionary's VR when that is a searched text VR (not a
    number), else left out:
    its value is still looked for, and it never ends the check."""
    for tag in list(item.keys()):
        try:
            elem = item[tag]
            _ = elem.value
        except Exception:  # noqa: BLE001 - pydicom raises many kinds here
            raw = item.get_item(tag)
            data = getattr(raw, "value", None)
            vr = vr_of(int(tag), None)
            if not isinstance(data, bytes) or vr not in _SEARCHED_VRS:
                continue
            try:
                elem = DataElement(tag, vr, data.decode("latin-1"), validation_mode=config.IGNORE)
            except Exception:  # noqa: BLE001 - not even as text of its VR
                continue
        yield elem


def _head(text: str) -> str:
    """``text``, or its first :data:`MAX_NEEDLE` characters cut after a non-word character."""
    if len(text) <= MAX_NEEDLE:
        return text
    head = text[:MAX_NEEDLE]
    breaks = [m.end() for m in _BREAK.finditer(head)]
    return head[: breaks[-1]] if breaks and breaks[-1] >= MIN_NEEDLE else head


def collect_needles(
    ds: Dataset, compiled: CompiledPolicy, source: Path, kept: set[str] | None = None
) -> list[Needle]:
    """Return every identifying value of ``ds`` that ``compiled`` must not let through.

    ``kept`` collects the values the policy keeps (shared across originals by the caller, so
    that a value kept in one file is not reported when found in another).
    """
    candidates: list[tuple[str, str, str]] = []  # (text, vr, attribute)
    kept = set() if kept is None else kept
    try:
        charset = ds.get("SpecificCharacterSet", "ISO_IR 6")
        encodings = convert_encodings(charset if charset else "ISO_IR 6")
    except Exception:  # noqa: BLE001 - a malformed value: search the usual encodings
        encodings = ["iso8859", "utf-8"]

    def visit(item: Dataset, mode: Mode) -> None:
        for elem in _elements(item):
            tag = int(elem.tag)
            vr = vr_of(tag, elem.VR)
            rule = compiled.rule(tag, vr, mode)
            op = rule.op
            if op is Op.PRIVATE:
                op = _private_op(item, tag, compiled)
            if vr == "SQ" and isinstance(elem.value, Sequence):
                if op in (Op.REMOVE, Op.EMPTY, Op.PRIVATE, Op.RECURSE_DUMMY):
                    inner = Mode.DUMMY  # everything inside must go
                elif op is Op.RECURSE_CLEAN:
                    inner = Mode.CLEAN
                else:
                    inner = mode
                for child in elem.value:
                    visit(child, inner)
                continue
            if vr not in _SEARCHED_VRS or elem.tag.is_private_creator:
                continue
            values = _strings(elem.value)
            if op in _SEARCHED_OPS or (mode is Mode.DUMMY and op is not Op.KEEP):
                candidates.extend((v, vr, _label(tag)) for v in values)
            elif op is Op.KEEP:
                kept.update(v.strip() for v in values)

    visit(ds, Mode.NORMAL)
    needles: dict[bytes, Needle] = {}
    for text, vr, attribute in candidates:
        for variant in map(_head, _variants(text, vr)):
            if len(variant.encode("utf-8")) < MIN_NEEDLE:
                continue
            for data in _encodings_of(variant, encodings):
                needles.setdefault(data.lower(), Needle(data.lower(), attribute, source, variant))
    return list(needles.values())


def _private_op(item: Dataset, tag: int, compiled: CompiledPolicy) -> Op:
    group, element = tag >> 16, tag & 0xFFFF
    if element < 0x1000:
        return Op.KEEP if element >= 0x10 else Op.REMOVE
    creator_elem = item.get((group << 16) | (element >> 8))
    creator = str(creator_elem.value).rstrip() if creator_elem is not None else ""
    for rule in compiled.policy.private_rules:
        if rule.matches(creator, group, element & 0xFF):
            return Op.KEEP if rule.action.value == "keep" else Op.REMOVE
    if compiled.has(Option.RETAIN_SAFE_PRIVATE) and is_safe_private(creator, group, element & 0xFF):
        return Op.KEEP
    return Op.REMOVE


def _encodings_of(text: str, encodings: list[str]) -> Iterator[bytes]:
    seen: set[bytes] = set()
    candidates: list[bytes] = []
    try:
        candidates.append(encode_string(text, encodings))
    except (UnicodeError, LookupError, ValueError):
        pass
    for codec in ("utf-8", "latin-1", "utf-16-le"):
        try:
            candidates.append(text.encode(codec))
        except UnicodeError:
            continue
    for data in candidates:
        # ISO 2022: also the bytes without the escape sequences around them
        stripped = re.sub(rb"\x1b[\(\)\$][\x20-\x7e]{0,2}[@-~]?", b"", data)
        for option in (data, stripped):
            if len(option) >= MIN_NEEDLE and option not in seen:
                seen.add(option)
                yield option


def _found_in(text: str, corpus: bytes) -> bool:
    """Tell whether ``text`` occurs as a whole token in ``corpus`` (lower-case bytes)."""
    data = text.strip().lower().encode("utf-8", "replace")
    start = corpus.find(data)
    while start != -1:
        if _bounded(corpus, start, start + len(data)):
            return True
        start = corpus.find(data, start + 1)
    return False


def options_from_output(ds: Dataset) -> frozenset[Option]:
    """Return the options recorded in an output's De-identification Method."""
    found = set()
    for value in _strings(ds.get("DeidentificationMethod")):
        try:
            found.add(Option(value.strip()))
        except ValueError:
            continue
    return frozenset(found)


def _files(root: Path) -> list[Path]:
    if root.is_file():
        return [root]
    return sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))


def _pixel_range(path: Path) -> tuple[int, int] | None:
    """Return the byte range of the top-level pixel data of an output, if it has one."""
    from dicomveil.dicomio import read_instance
    from dicomveil.errors import DicomveilError

    try:
        span = read_instance(path).pixel
    except DicomveilError:
        return None
    if span is None or span.data is not None:
        return None
    return span.offset, span.offset + span.length


class _Matcher:
    """Finds whole-token occurrences of many needles at once (Aho-Corasick, one pass)."""

    def __init__(self, needles: Iterable[bytes]) -> None:
        import ahocorasick

        self._automaton = ahocorasick.Automaton()
        for needle in needles:
            # latin-1 maps each byte to one character: byte offsets are kept
            self._automaton.add_word(needle.decode("latin-1"), needle)
        self._automaton.make_automaton()

    def find(self, data: bytes) -> set[bytes]:
        """Return the needles found in ``data`` (already lower-case) as whole tokens."""
        found: set[bytes] = set()
        text = data.decode("latin-1")
        for end, needle in self._automaton.iter(text):
            start = end - len(needle) + 1
            if _bounded(data, start, end + 1):
                found.add(needle)
        return found


def _same_class(a: int, b: int) -> bool:
    digits = range(0x30, 0x3A)
    letters = range(0x61, 0x7B)
    return (a in digits and b in digits) or (a in letters and b in letters)


def _bounded(data: bytes, start: int, end: int) -> bool:
    """A number must not continue a longer number, a word not a longer word, and a dotted
    number not sit in the middle of a longer one (``1.2.4`` inside the transfer syntax
    ``1.2.840.10008.1.2.4.50``; an original UID as a prefix or suffix of another still
    counts)."""
    if start > 0 and _same_class(data[start - 1], data[start]):
        return False
    if end < len(data) and _same_class(data[end - 1], data[end]):
        return False
    return not (_dotted(data, start - 1, start - 2) and _dotted(data, end, end + 1))


def _dotted(data: bytes, dot: int, digit: int) -> bool:
    """Whether ``data[dot]`` is a dot and ``data[digit]`` a digit (in range)."""
    return (
        0 <= min(dot, digit)
        and max(dot, digit) < len(data)
        and (data[dot] == 0x2E and 0x30 <= data[digit] <= 0x39)
    )


def _scan(path: Path, matcher: _Matcher, chunk: int = 64 << 20) -> set[bytes]:
    """Return the needles found in ``path``, pixel data (never changed, not text) excepted."""
    found: set[bytes] = set()
    overlap = 4096
    skip = _pixel_range(path)
    with path.open("rb") as handle:
        tail = b""
        position = 0
        while block := handle.read(chunk):
            start, position = position, position + len(block)
            if skip is not None and skip[0] < position and skip[1] > start:
                # keep the pixel element's header, blank its value
                lo = max(skip[0] - start, 0)
                hi = min(skip[1] - start, len(block))
                block = block[:lo] + bytes(hi - lo) + block[hi:]
            found |= matcher.find((tail + block).lower())
            tail = block[-overlap:]
    return found


def _read_original(path: Path) -> Dataset:
    """An original's header, read as ``deid`` reads it: bounded (a deflated data set is
    inflated up to the header limit, values past the pixel data and the pixel data itself
    are never loaded; pydicom alone took 2 GB and 37 s for a 1 GiB deflate bomb), and files
    without a preamble or File Meta Information that ``deid`` accepts are read too. A file
    it finds malformed (which ``deid`` refuses, but another tool may have de-identified) is
    read by pydicom, unless deflated."""
    from dicomveil.dicomio import read_instance
    from dicomveil.dicomio._model import DEFLATED_TRANSFER_SYNTAXES
    from dicomveil.errors import MalformedInputError

    try:
        return read_instance(path, require_uids=False).dataset
    except MalformedInputError:
        with path.open("rb") as handle:
            head = handle.read(4096)
        if any(uid.encode() in head for uid in DEFLATED_TRANSFER_SYNTAXES):
            raise
        return pydicom.dcmread(path, stop_before_pixels=True)


def verify_folders(
    originals: Path,
    deidentified: Path,
    policy: Policy | None = None,
    *,
    pixels: bool = False,
    on_progress: Callable[[int, int], None] | None = None,
) -> VerifyResult:
    """Search every output under ``deidentified`` for identifying values of ``originals``.

    Parameters
    ----------
    policy:
        The policy that was applied; by default the options recorded in the outputs'
        De-identification Method attribute, on top of the Basic Profile.
    on_progress:
        Called with ``(files done, files in all)`` after each original and each output.
    pixels:
        Also read the text in every output's pixels (OCR, the ``redaction`` extra) and look
        for the same values there (see :mod:`dicomveil.redaction.verify`).
    """
    result = VerifyResult()
    outputs = [p for p in _files(deidentified) if p.suffix != ".json"]
    sources = _files(originals)
    done, total = 0, len(sources) + len(outputs)

    def advance() -> None:
        nonlocal done
        done += 1
        if on_progress is not None:
            on_progress(done, total)

    result.outputs = len(outputs)
    if policy is None:
        options: frozenset[Option] = frozenset()
        for path in outputs[:1]:
            try:
                options = options_from_output(pydicom.dcmread(path, stop_before_pixels=True))
            except Exception:  # noqa: BLE001 - an unreadable output is reported below
                pass
        policy = Policy(options=options)
    compiled = compile_policy(policy)
    needles: dict[bytes, Needle] = {}
    kept: set[str] = set()
    for path in sources:
        advance()
        try:
            ds = _read_original(path)
        except Exception:  # noqa: BLE001 - not DICOM: nothing to look for
            result.unreadable.append(path)
            continue
        result.originals += 1
        for needle in collect_needles(ds, compiled, path, kept):
            needles.setdefault(needle.data, needle)
    # a value the policy keeps somewhere (a manufacturer, a code, a word of a kept
    # description) proves nothing when found
    kept_text = "\n".join(sorted(kept)).lower().encode("utf-8", "replace")
    needles = {k: n for k, n in needles.items() if not _found_in(n.text, kept_text)}
    result.needles = len(needles)
    if not needles:
        return result
    matcher = _Matcher(needles)
    for path in outputs:
        advance()
        for hit in sorted(_scan(path, matcher)):
            needle = needles[hit]
            result.leaks.append(Leak(path, needle.attribute, needle.original))
    if pixels:
        _verify_pixels(outputs, list(needles.values()), result)
    return result


def _verify_pixels(outputs: list[Path], needles: list[Needle], result: VerifyResult) -> None:
    """Read the text in each output's pixels; record every needle it still shows."""
    from dicomveil.errors import DicomveilError
    from dicomveil.redaction.verify import matches, normalised, read_pixels

    values: dict[tuple[str, str, Path], None] = {}
    for needle in needles:
        values.setdefault((normalised(needle.text), needle.attribute, needle.original))
    for path in outputs:
        try:
            read = read_pixels(path)
        except DicomveilError:
            result.pixels_unread.append(path)
            continue
        if read is None:
            continue
        result.images += 1
        seen: set[tuple[str, Path]] = set()
        for value, attribute, original in values:
            if (attribute, original) not in seen and matches(value, read.text):
                seen.add((attribute, original))
                result.pixel_leaks.append(Leak(path, attribute, original))
