"""The walk of the byte-level fast path: one instance's encoded data set, element by element.

See :mod:`dicomveil.engine.encoded` for what it promises. Every method reproduces one piece of
the reference engine (:mod:`dicomveil.engine.deidentify`) on raw bytes, and raises
:class:`~dicomveil.engine._encoded_text.Fallback` wherever it could not promise the same bytes.
"""

from __future__ import annotations

from pydicom.dataelem import RawDataElement, convert_raw_data_element
from pydicom.tag import BaseTag
from pydicom.values import convert_DA_string, convert_DT_string

from dicomveil.engine._encoded_plan import (
    ACCESSION,
    CHARSET,
    CHECKED,
    CONTEXT_OF,
    CREATOR,
    DUMMY,
    EMPTY,
    ENCAPSULATED_DOCUMENT,
    EXPLICIT,
    IMPLICIT,
    ISSUER,
    ITEM_DELIMITER,
    ITEM_END,
    KEEP,
    LENGTH,
    LONG_BYTES,
    MAX_DEPTH,
    MAX_VALUE,
    METHOD_CODES,
    MODES,
    NO_TAG,
    ORIGINAL,
    PACK_IMPLICIT,
    PATIENT_ID,
    PATIENT_NAME,
    PIXEL_TAGS,
    PRIVATE,
    PSEUDONYM,
    RECURSE,
    REMOVE,
    SCRUB,
    SEQUENCE_DELIMITER,
    SHIFT,
    SKIP,
    STUDY_ID,
    STUDY_UID,
    TRACKED,
    UID,
    UNDEFINED,
    UNDEFINED_ITEM,
    Entry,
    element_value,
    plan_for,
    resolve,
    sequence_header,
)
from dicomveil.engine._encoded_text import (
    Fallback,
    NeedIdentifiers,
    NeedMoreData,
    check_canonical,
    converted,
    decoded,
    encodings,
    strip_text,
)
from dicomveil.engine._encoding import VR_NAMES, dummy_bytes, element, text_bytes
from dicomveil.engine.budget import TimeBudget
from dicomveil.engine.dates import date_offset_days, shift_da, shift_dt
from dicomveil.engine.descriptors import Scrubber, cleaned_value
from dicomveil.engine.keys import PseudonymKeys
from dicomveil.engine.pseudonyms import (
    accession_pseudonym,
    patient_key,
    patient_pseudonym,
    study_pseudonym,
)
from dicomveil.engine.rules import CompiledPolicy, vr_of
from dicomveil.engine.uids import remap_uid
from dicomveil.engine.values import map_strings
from dicomveil.engine.vrs import needs_repair


class Level:
    """One data set level: current texts, converted elements, private creators, and the
    patient it names (its original PatientID, PatientName and IssuerOfPatientID)."""

    __slots__ = ("converted", "creators", "kept", "patient", "texts")

    def __init__(self) -> None:
        self.texts: dict[int, str] = {}
        self.patient: tuple[str, str, str] | None = None
        self.converted: set[int] = set()
        self.creators: list[tuple[int, int, bytes, bytes | None]] = []
        self.kept: set[int] = set()


class Walker:
    """One instance: walks the encoded data set and builds the output."""

    __slots__ = (
        "budget",
        "buf",
        "charset",
        "compiled",
        "counts",
        "eof",
        "implicit",
        "keys",
        "limit",
        "offset",
        "originals",
        "patient",
        "plan",
        "scrubber",
        "seen",
        "top",
        "top_pos",
    )

    def __init__(
        self,
        buf: bytes,
        limit: int,
        eof: bool,
        implicit: bool,
        compiled: CompiledPolicy,
        keys: PseudonymKeys,
        budget: TimeBudget,
    ) -> None:
        self.buf = buf
        self.budget = budget
        self.limit = limit
        self.eof = eof
        self.implicit = implicit
        self.compiled = compiled
        self.keys = keys
        self.plan = plan = plan_for(compiled)
        if plan.uid_keys is not keys or len(plan.uids) > 50_000 or len(plan.pseudonyms) > 50_000:
            plan.uids.clear()  # remembered for one key only
            plan.pseudonyms.clear()
            plan.uid_keys = keys
        self.counts: dict[str, int] = {}
        self.seen: dict[int, bytes] = {}
        self.originals: dict[int, str] = {}
        self.offset: int | None = None  # days dates move back (found when first needed)
        self.scrubber: Scrubber | None = None  # the text cleaner, when given identifiers
        self.patient: str | None = None
        self.charset: tuple[str, ...] = ("iso8859",)
        self.top = Level()
        self.top.converted.update(CHECKED)  # read through pydicom by the reference
        self.top_pos = 0

    def short(self, end: int) -> Exception:
        """The exception for data that runs past ``end``."""
        if end < self.limit or self.eof:
            return Fallback()
        return NeedMoreData()

    def header(self, pos: int, end: int) -> tuple[int, bytes | None, int, int]:
        """Return ``(tag, VR bytes or None, length, header length)`` of the element at pos."""
        buf = self.buf
        if pos + 8 > end:
            raise self.short(end)
        if self.implicit:
            group, elem, length = IMPLICIT(buf, pos)
            return group << 16 | elem, None, length, 8
        group, elem, vrb, length = EXPLICIT(buf, pos)
        if vrb in LONG_BYTES and group != 0xFFFE:
            if pos + 12 > end:
                raise self.short(end)
            if buf[pos + 6] or buf[pos + 7]:
                raise Fallback  # reserved bytes: the reference writer zeroes them
            return group << 16 | elem, vrb, LENGTH(buf, pos + 8)[0], 12
        return group << 16 | elem, vrb, length, 8

    # -- text as the reference reads it -----------------------------------------------------

    def raw_text(self, tag: int, raw: bytes, vr: str, level: Level) -> str:
        """``_text`` of an element not converted yet (reading a non-ASCII one converts it)."""
        if raw.isascii():
            return raw.decode("ascii").strip(" \0")
        level.converted.add(tag)
        text = decoded(raw, vr, self.charset)
        return text if isinstance(text, str) else "\\".join(text)

    def value_text(self, tag: int, raw: bytes, vr: str) -> str:
        """``str(value)`` of a single-valued string element pydicom converted."""
        if raw.isascii():
            return converted(raw)
        text = decoded(raw, vr, self.charset)
        if not isinstance(text, str):
            raise Fallback  # the reference would use the list's repr
        return text

    def original(self, *tags: int) -> list[str]:
        """The original top-level texts of ``tags`` (read ahead when not reached yet)."""
        missing = sorted(tag for tag in tags if tag not in self.originals)
        if missing:
            found = self.ahead(self.top_pos, self.limit, missing, None)
            for tag in missing:
                raw = found.get(tag)
                self.originals[tag] = "" if raw is None else self.raw_text(tag, *raw, self.top)
        return [self.originals[tag] for tag in tags]

    def ahead(
        self, pos: int, end: int, wanted: list[int], level: Level | None
    ) -> dict[int, tuple[bytes, str]]:
        """Return the raw value and VR of ``wanted`` elements from ``pos`` on in one level
        (those it has not processed yet)."""
        found: dict[int, tuple[bytes, str]] = {}
        last = wanted[-1]
        while True:
            if pos == end and (end < self.limit or self.eof):
                return found
            tag, vrb, length, hdr = self.header(pos, end)
            if tag > last or tag >> 16 == 0xFFFE or tag in PIXEL_TAGS:
                return found
            vpos = pos + hdr
            if length == UNDEFINED:
                if vrb not in (None, b"SQ"):
                    raise Fallback
                pos = self.skip(vpos, end, True, 0)
                continue
            if vpos + length > end:
                raise self.short(end)
            if tag in wanted and (level is None or tag not in level.texts):
                vr = vr_of(tag, None) if vrb is None else VR_NAMES.get(vrb, "UN")
                found[tag] = (self.buf[vpos : vpos + length], vr)
            pos = vpos + length

    # -- sequences --------------------------------------------------------------------------

    def items(
        self, pos: int, end: int, undefined: bool, mode: int, depth: int
    ) -> tuple[bytes, int]:
        """Encode the items of the sequence value at ``pos``; return them and its end.

        Items accumulate in one buffer: a sequence of a hundred thousand items (a large
        structured report or structure set) costs its size, not a million small objects.
        """
        if depth > MAX_DEPTH:
            raise Fallback
        out = bytearray()
        buf = self.buf
        while True:
            if pos == end and not undefined:
                return bytes(out), pos
            if pos + 8 > end:
                raise self.short(end)
            group, elem, length = IMPLICIT(buf, pos)
            pos += 8
            if group != 0xFFFE:
                raise Fallback
            if elem == 0xE0DD and undefined:
                if length:
                    raise Fallback
                return bytes(out), pos
            if elem != 0xE000:
                raise Fallback
            self.budget.check()
            if length == UNDEFINED:
                body, pos = self.dataset(pos, end, mode, depth + 1, Level(), True, False)
                out += UNDEFINED_ITEM
                out += body
                out += ITEM_DELIMITER
                continue
            if pos + length > end:
                raise self.short(end)
            body, _ = self.dataset(pos, pos + length, mode, depth + 1, Level(), False, False)
            out += PACK_IMPLICIT(0xFFFE, 0xE000, len(body))
            out += body
            pos += length

    def skip(self, pos: int, end: int, undefined: bool, depth: int) -> int:
        """Validate the sequence value at ``pos`` as the reader does; return its end."""
        if depth > MAX_DEPTH:
            raise Fallback
        buf = self.buf
        while True:
            if pos == end and not undefined:
                return pos
            if pos + 8 > end:
                raise self.short(end)
            group, elem, length = IMPLICIT(buf, pos)
            pos += 8
            if group == 0xFFFE and elem == 0xE0DD and undefined:
                return pos
            if group != 0xFFFE or elem != 0xE000:
                raise Fallback
            if length == UNDEFINED:
                pos = self.skip_elements(pos, end, True, depth + 1)
                continue
            if pos + length > end:
                raise self.short(end)
            self.skip_elements(pos, pos + length, False, depth + 1)
            pos += length

    def skip_elements(self, pos: int, end: int, undefined: bool, depth: int) -> int:
        """Validate the elements of one item; return the position after it."""
        while True:
            if pos >= end and not undefined:
                if pos > end:
                    raise Fallback
                return pos
            tag, vrb, length, hdr = self.header(pos, end)
            if tag == ITEM_END and undefined:
                return pos + 8
            if tag >> 16 == 0xFFFE:
                raise Fallback
            vr_name = None if vrb is None else VR_NAMES.get(vrb)
            if vrb is not None and vr_name is None:
                raise Fallback
            if length != UNDEFINED and needs_repair(tag, vr_name, length):
                raise Fallback  # the reference repairs it, with a flag (engine.vrs)
            pos += hdr
            sequence = vrb == b"SQ" or (vrb is None and vr_of(tag, None) == "SQ")
            if length == UNDEFINED:
                if not sequence:
                    raise Fallback
                pos = self.skip(pos, end, True, depth)
                continue
            if pos + length > end:
                raise self.short(end)
            if sequence:
                self.skip(pos, pos + length, False, depth)
            pos += length

    # -- one data set level -----------------------------------------------------------------

    def dataset(  # noqa: C901, PLR0912, PLR0915 - the hot loop, kept flat for speed
        self, pos: int, end: int, mode: int, depth: int, level: Level, item_end: bool, top: bool
    ) -> tuple[bytes, int]:
        """Encode one data set level in ``[pos, end)``; return it and where it ended.

        An item of undefined length (``item_end``) ends after its delimiter; the top level
        ends at the first pixel data element, or at the end of the data.
        """
        buf, implicit = self.buf, self.implicit
        table = self.plan.tables[mode]
        counts = self.counts
        out: list[bytes] = []
        add = out.append
        methods = self.plan.methods[implicit] if top else []
        next_method = methods[0][0] if methods else NO_TAG
        method_index = 0
        run = -1  # start of a run of kept elements, copied as one slice
        previous = -1
        unpack_explicit, unpack_implicit, long_bytes = EXPLICIT, IMPLICIT, LONG_BYTES
        uids = self.plan.uids
        undefined, max_value, keep, skip, uid = UNDEFINED, MAX_VALUE, KEEP, SKIP, UID
        while True:
            if pos >= end and not item_end:
                if top and not self.eof:
                    raise NeedMoreData
                if pos > end:
                    raise Fallback
                break
            if pos + 8 > end:
                raise self.short(end)
            if implicit:
                group, elem, length = unpack_implicit(buf, pos)
                vrb = None
                hdr = 8
            else:
                group, elem, vrb, length = unpack_explicit(buf, pos)
                hdr = 8
                if vrb in long_bytes and group != 0xFFFE:
                    if pos + 12 > end:
                        raise self.short(end)
                    if buf[pos + 6] or buf[pos + 7]:
                        raise Fallback  # reserved bytes: the reference writer zeroes them
                    length = LENGTH(buf, pos + 8)[0]
                    hdr = 12
            tag = group << 16 | elem
            if tag <= previous or group == 0xFFFE:
                if tag == ITEM_END and item_end and not length:
                    if run >= 0:
                        add(buf[run:pos])
                        run = -1
                    pos += 8
                    break
                raise Fallback
            previous = tag
            if group == 0x7FE0 and top and tag in PIXEL_TAGS:
                break
            key = (tag, vrb)
            entry = table.get(key)
            if entry is None:
                entry = table[key] = resolve(self.compiled, tag, vrb, mode)
            code, inner, name, vr, look, const, mask = entry
            if length == undefined:
                if vr != "SQ" or vrb not in (None, b"SQ"):
                    raise Fallback
                vend = -1
            else:
                if length & mask:
                    raise Fallback  # numbers of the wrong length: the reference empties them
                vend = pos + hdr + length
                if vend > end:
                    raise self.short(end)
                if length > max_value and vr != "SQ":  # sequences are never deferred
                    raise Fallback
            if tag >= next_method:  # the method attributes replace or join the data set
                if run >= 0:
                    add(buf[run:pos])
                    run = -1
                while method_index < len(methods) and methods[method_index][0] < tag:
                    add(methods[method_index][1])
                    method_index += 1
                replaced = method_index < len(methods) and methods[method_index][0] == tag
                if replaced:
                    mark = len(out)
                    self.top_pos = pos
                    pos = self.one(
                        pos, hdr, vend, end, tag, vrb, entry, level, out, mode, depth, top
                    )
                    del out[mark:]
                    add(self.method(tag, vrb, vend, code, methods[method_index][1]))
                    method_index += 1
                next_method = methods[method_index][0] if method_index < len(methods) else NO_TAG
                if replaced:
                    continue
            if not look:
                if code == keep:
                    if run < 0:
                        run = pos
                    pos = vend
                    continue
                if run >= 0:
                    add(buf[run:pos])
                    run = -1
                if code == skip:
                    pos = vend
                    continue
                counts[name] = counts.get(name, 0) + 1
                if code == uid:
                    value = buf[pos + hdr : vend]
                    new = uids.get(value)
                    if new is None:
                        new = uids[value] = self.uid(value)
                    if group >= 0x0008:
                        add(element(tag, vr, new, implicit))
                elif const:
                    add(const)
                pos = vend
                continue
            if run >= 0:
                add(buf[run:pos])
                run = -1
            if top:
                self.top_pos = pos
            pos = self.one(pos, hdr, vend, end, tag, vrb, entry, level, out, mode, depth, top)
        if run >= 0:
            add(buf[run:pos])
        while method_index < len(methods):
            add(methods[method_index][1])
            method_index += 1
        if level.creators:
            self.finish_creators(level, out)
        return b"".join(out), pos

    def method(self, tag: int, vrb: bytes | None, vend: int, code: int, new: bytes) -> bytes:
        """A method attribute replacing an element of the input: pydicom sets the value of
        the existing element, which keeps its VR and, for a sequence, its undefined length."""
        if vrb is not None and vrb != new[4:6]:
            raise Fallback
        if tag == METHOD_CODES and vend < 0 and code in (RECURSE, KEEP):
            return self.plan.undefined_codes[self.implicit]
        return new

    # -- elements the loop does not handle itself -------------------------------------------

    def one(  # noqa: PLR0913 - the loop's state, passed rather than stored
        self,
        pos: int,
        hdr: int,
        vend: int,
        end: int,
        tag: int,
        vrb: bytes | None,
        entry: Entry,
        level: Level,
        out: list[bytes],
        mode: int,
        depth: int,
        top: bool,
    ) -> int:
        """Handle one element; return the position after it.

        ``vend`` is -1 for an undefined-length sequence; ``end`` bounds the level.
        """
        code, inner, name, vr, _, _, _ = entry
        buf = self.buf
        vpos = pos + hdr
        if top and tag in ORIGINAL and tag not in self.originals:
            if vend < 0:
                raise Fallback
            self.originals[tag] = self.raw_text(tag, buf[vpos:vend], vr, level)
        if code == PRIVATE:
            code, name = self.private(tag, vr, level)
            if code == CREATOR:
                if vend < 0:
                    raise Fallback
                level.creators.append((tag, len(out), buf[pos:vend], vrb))
                out.append(buf[pos:vend])
                return vend
        if code == RECURSE:
            if vr != "SQ" or vrb not in (None, b"SQ"):
                raise Fallback
            self.count(name)
            undefined = vend < 0
            inner = mode % len(MODES) if inner < 0 else inner
            inner += len(MODES) * CONTEXT_OF.get(tag, 0)
            body, after = self.items(vpos, end if undefined else vend, undefined, inner, depth)
            if undefined:
                out.append(sequence_header(tag, UNDEFINED, self.implicit))
                out.append(body)
                out.append(SEQUENCE_DELIMITER)
            else:
                out.append(sequence_header(tag, len(body), self.implicit))
                out.append(body)
            return after
        if vr == "SQ" and vrb in (None, b"SQ"):  # not walked: validated all the same
            if vend < 0:
                if code in (KEEP, SKIP):
                    raise Fallback
                vend = self.skip(vpos, end, True, depth)
            else:
                self.skip(vpos, vend, False, depth)
        elif vend < 0:
            raise Fallback
        value = buf[vpos:vend]
        if top and tag in CHECKED:
            self.seen[tag] = value
        if code == KEEP or code == SKIP:
            if tag in level.converted:
                check_canonical(value, vr)
            if tag in TRACKED:
                level.texts[tag] = strip_text(value)
            if tag == CHARSET:
                if not top:
                    raise Fallback  # an item's own character set: reference path
                if value:
                    self.charset = tuple(encodings(value))
            if code == KEEP:
                out.append(buf[pos:vend])
            return vend
        self.count(name)
        if code == REMOVE:
            level.texts.pop(tag, None)
            return vend
        if code == EMPTY:
            new = b""
            text = ""
        elif code == UID:
            uids = self.plan.uids
            new = uids.get(value) or uids.setdefault(value, self.uid(value))
            text = new.rstrip(b"\0").decode("ascii")
        elif code == PSEUDONYM:
            text = self.pseudonym(tag, vr, value, level, vend, end)
            if tag in (STUDY_ID, ACCESSION):
                vr = "SH"
            new = text_bytes(text, vr)
        elif code == SHIFT:
            new = self.shifted(value, vr)
            text = ""
        elif code == SCRUB and tag not in TRACKED:
            new = self.cleaned(tag, value, vr)
            text = ""
        elif code == DUMMY and vr != "SQ" and tag not in TRACKED and tag != ENCAPSULATED_DOCUMENT:
            new = dummy_bytes(vr)
            text = ""
        else:
            raise Fallback
        if tag in TRACKED:
            level.texts[tag] = text
        if tag >> 16 >= 0x0008:
            out.append(element(tag, vr, new, self.implicit))
        return vend

    def shifted(self, value: bytes, vr: str) -> bytes:
        """The reference's ``_shift``: each date of a DA or DT value moved back by the
        patient's offset, the value read and written as pydicom does."""
        if self.offset is None:
            self.offset = date_offset_days(self.keys, self.patient_key())
        days = self.offset
        shift = shift_da if vr == "DA" else shift_dt
        before = (convert_DA_string if vr == "DA" else convert_DT_string)(value, True)
        after = map_strings(before, lambda v: shift(v, days) if v.strip() else v)
        if before and not after:
            raise Fallback  # an unparseable date: the reference removes it, with a flag
        text = after if isinstance(after, str) else "\\".join(after)
        if not text.isascii():
            raise Fallback
        return text_bytes(text, vr)

    def cleaned(self, tag: int, value: bytes, vr: str) -> bytes:
        """The reference's ``_scrub``: the value read as pydicom reads it, cleaned, and
        written back (ASCII results only: others are re-encoded by the reference writer)."""
        if self.scrubber is None:
            raise NeedIdentifiers
        self.budget.check()
        raw = RawDataElement(BaseTag(tag), vr, len(value), value, 0, self.implicit, True)
        before = convert_raw_data_element(raw, encoding=list(self.charset)).value
        after = cleaned_value(before, vr, self.scrubber)
        if after is None:
            text = ""
        elif isinstance(after, str):
            text = after
        else:
            text = "\\".join(str(v) for v in after)
        if not text.isascii():
            raise Fallback
        return text_bytes(text, vr)

    def count(self, name: str) -> None:
        self.counts[name] = self.counts.get(name, 0) + 1

    def uid(self, value: bytes) -> bytes:
        """The keyed UIDs of a raw UI value, encoded."""
        if not value.isascii():
            raise Fallback
        uids = value.decode("ascii").strip(" \0").split("\\")
        return text_bytes("\\".join([remap_uid(self.keys, uid) for uid in uids]), "UI")

    def pseudonym(self, tag: int, vr: str, value: bytes, level: Level, vend: int, end: int) -> str:
        """The reference's ``_pseudonym``: StudyID, AccessionNumber, PatientID and Name."""
        if tag == STUDY_ID:
            study_uid = level.texts.get(STUDY_UID, "") or self.original(STUDY_UID)[0]
            return self.pseudonyms(STUDY_ID, study_uid) if study_uid else ""
        if tag == ACCESSION:
            text = self.value_text(tag, value, vr).strip()
            return self.pseudonyms(ACCESSION, text) if text else ""
        if tag not in (PATIENT_ID, PATIENT_NAME) or vr not in ("PN", "LO"):
            raise Fallback
        level.texts[tag] = self.value_text(tag, value, vr)  # ``ds[tag]`` converted it
        ahead = {}
        for other, (raw, other_vr) in self.ahead(vend, end, [PATIENT_ID, ISSUER], level).items():
            ahead[other] = self.raw_text(other, raw, other_vr, level)
        if level.patient is None:  # the level's patient before either element is replaced
            level.patient = (
                level.texts.get(PATIENT_ID, ahead.get(PATIENT_ID, "")),
                level.texts.get(PATIENT_NAME, ""),
                level.texts.get(ISSUER, ahead.get(ISSUER, "")),
            )
        item_id, item_name, issuer = level.patient
        if [item_id, item_name] == self.original(PATIENT_ID, PATIENT_NAME):
            return self.patient_pseudonym()
        if tag == PATIENT_NAME and PATIENT_ID in ahead:
            level.converted.add(PATIENT_ID)  # ``ds.get("PatientID")`` converted it
        if item_id or item_name:
            key = patient_key(item_id, issuer, item_name, "")
            return self.pseudonyms(PATIENT_NAME, key)
        return ""

    def patient_key(self) -> str:
        """The original patient's key (the Study Instance UID is read only if needed)."""
        pid, issuer, name = self.original(PATIENT_ID, ISSUER, PATIENT_NAME)
        study = "" if pid.strip() or name.strip() else self.original(STUDY_UID)[0]
        return patient_key(pid, issuer, name, study)

    def patient_pseudonym(self) -> str:
        if self.patient is None:
            self.patient = self.pseudonyms(PATIENT_NAME, self.patient_key())
        return self.patient

    def pseudonyms(self, tag: int, value: str) -> str:
        """The pseudonym of ``value`` for ``tag`` (patient key, Study UID or accession),
        remembered per policy and key: most files of a run share them."""
        cache = self.plan.pseudonyms
        found = cache.get((tag, value))
        if found is None:
            if tag == STUDY_ID:
                found = study_pseudonym(self.keys, value)
            elif tag == ACCESSION:
                found = accession_pseudonym(self.keys, value)
            else:
                organization = self.compiled.policy.organization
                found = patient_pseudonym(self.keys, value, organization)
            cache[(tag, value)] = found
        return found

    def private(self, tag: int, vr: str, level: Level) -> tuple[int, str]:
        """The reference's ``_private_rule``: ``(code, operation name)``."""
        group, elem = tag >> 16, tag & 0xFFFF
        if 0x0010 <= elem <= 0x00FF:
            return CREATOR, ""
        if elem < 0x1000:
            return REMOVE, "remove"
        creator_tag = (group << 16) | (elem >> 8)
        creator = ""
        for known, _, encoded, _ in level.creators:
            if known == creator_tag:
                creator = converted(element_value(encoded, self.implicit)).rstrip()
                break
        if not self.compiled.keeps_private(creator, group, elem & 0xFF):
            return REMOVE, "remove"
        level.kept.add(creator_tag)
        return (RECURSE, "recurse") if vr == "SQ" else (KEEP, "keep")

    def finish_creators(self, level: Level, out: list[bytes]) -> None:
        """Remove the private creators whose block kept nothing (kept ones were converted)."""
        for tag, index, encoded, vrb in level.creators:
            if tag in level.kept:
                if vrb not in (None, b"LO"):
                    raise Fallback
                check_canonical(element_value(encoded, self.implicit), "LO")
            else:
                out[index] = b""
                self.count("remove")
