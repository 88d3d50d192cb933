"""The de-identification engine: one dataset in, a de-identified dataset and a report out.

Pure: no files, network or randomness. Every value that changes is derived from the
pseudonym key (:class:`~dicomveil.engine.keys.PseudonymKeys`), so the same input and key give
the same output on any machine. The clock is read only to refuse an instance that takes
longer than its time budget (:class:`~dicomveil.engine.budget.TimeBudget`).

Whatever the input holds, the engine raises only :class:`~dicomveil.errors.DicomveilError`
subclasses, whose messages name attributes and never quote a value: an element pydicom cannot
read (a name in a character set it cannot decode, a number of the wrong length) gives a
:class:`~dicomveil.errors.MalformedInputError`, built outside the handler of pydicom's
exception so that not even the exception's context carries its message.

References
----------
DICOM PS3.15 Annex E (Attribute Confidentiality Profiles), Table E.1-1.
"""

from __future__ import annotations

from dataclasses import fields
from functools import cache
from typing import NamedTuple, TypeVar

from pydicom import config
from pydicom.datadict import keyword_for_tag, tag_for_keyword
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag

from dicomveil.engine.budget import TimeBudget
from dicomveil.engine.dates import date_offset_days, shift_da, shift_dt
from dicomveil.engine.descriptors import Scrubber, cleaned_value, too_long_to_clean
from dicomveil.engine.identity import (
    KEYWORDS,
    IdentityRecord,
    OriginalIdentity,
    PseudonymousIdentity,
)
from dicomveil.engine.keys import PseudonymKeys
from dicomveil.engine.method import add_method_attributes
from dicomveil.engine.pseudonyms import (
    accession_pseudonym,
    hashed_value,
    patient_key,
    patient_pseudonym,
    study_pseudonym,
)
from dicomveil.engine.report import Report
from dicomveil.engine.rules import (
    TYPE2_WITHIN,
    CompiledPolicy,
    Mode,
    Op,
    Rule,
    compile_policy,
    vr_of,
)
from dicomveil.engine.scan import check_pixels, collect_identifiers
from dicomveil.engine.uids import remap_uid
from dicomveil.engine.values import DUMMY_PDF, dummy_value, empty_value, map_strings
from dicomveil.engine.vrs import repair_vrs
from dicomveil.errors import DeidentificationError, DicomveilError, MalformedInputError
from dicomveil.profile.policy import Policy

__all__ = ["DeidResult", "deidentify"]

_ENCAPSULATED_DOCUMENT = 0x00420011
_ENCAPSULATED_DOCUMENT_LENGTH = 0x00420015


class DeidResult(NamedTuple):
    """What :func:`deidentify` returns.

    Attributes
    ----------
    dataset:
        The de-identified dataset (the input object, modified in place).
    report:
        What was done, by attribute and operation; no values.
    identity:
        Original and pseudonymous identifiers: for the re-identification vault only.
    """

    dataset: Dataset
    report: Report
    identity: IdentityRecord


_TAGS: dict[str, BaseTag] = {
    keyword: BaseTag(tag_for_keyword(keyword) or 0) for keyword in KEYWORDS.values()
}

_Identity = TypeVar("_Identity", OriginalIdentity, PseudonymousIdentity)


def _identity(ds: Dataset, kind: type[_Identity]) -> _Identity:
    """Read ``kind`` (original or pseudonymous identity) from the top level of ``ds``."""
    return kind(**{field.name: _text(ds, KEYWORDS[field.name]) for field in fields(kind)})


def _text(ds: Dataset, keyword: str) -> str:
    """Return an element's value as text ('' when absent), cheaply when it is raw ASCII."""
    tag = _TAGS[keyword]
    elem = ds._dict.get(tag)  # noqa: SLF001 - the hot path avoids pydicom's lookups
    if elem is None:
        return ""
    if isinstance(elem, RawDataElement) and isinstance(elem.value, bytes):
        if elem.value.isascii():  # identical in every DICOM character set
            return elem.value.decode("ascii").strip(" \0")
    value = ds[tag].value
    if value is None:
        return ""
    if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
        return "\\".join(str(v) for v in value)
    return str(value)


@cache
def _label(tag: int) -> str:
    if tag >> 16 & 1:
        return f"({tag >> 16:04X},xx{tag & 0xFF:02X})"
    return keyword_for_tag(tag) or f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


def _put(ds: Dataset, key: BaseTag, vr: str, value: object) -> None:
    """Replace an element by one of our own values (valid by construction: no re-validation)."""
    ds._dict[key] = DataElement(key, vr, value, validation_mode=config.IGNORE)  # noqa: SLF001


class _Walker:
    """Applies a compiled policy to every element at every depth of one dataset."""

    def __init__(
        self,
        ds: Dataset,
        compiled: CompiledPolicy,
        keys: PseudonymKeys,
        report: Report,
        budget: TimeBudget,
    ) -> None:
        self.compiled = compiled
        self.keys = keys
        self.report = report
        self.budget = budget
        #: The element being processed (named in the error when pydicom cannot read it).
        self.current = 0
        self.original = _identity(ds, OriginalIdentity)
        #: Each dataset level's original patient (see :meth:`_level_patient`), by ``id``:
        #: every level lives as long as this object.
        self._levels: dict[int, tuple[str, str, str, bool]] = {}
        o = self.original
        self.patient_key = patient_key(
            o.patient_id, o.issuer_of_patient_id, o.patient_name, o.study_instance_uid
        )
        self.patient = patient_pseudonym(keys, self.patient_key, compiled.policy.organization)
        self.offset = (
            date_offset_days(keys, self.patient_key) if compiled.date_mode == "shift" else 0
        )
        # Identifying values are collected before anything changes (elements are visited in
        # the dataset's own order, not sorted), and only when the policy can clean text.
        self.scrubber: Scrubber | None = (
            Scrubber(**collect_identifiers(ds)) if compiled.can_clean_text else None
        )

    # -- the walk ---------------------------------------------------------------------------

    def walk(self, ds: Dataset, mode: Mode, within: int = 0) -> None:
        """Apply the rules to ``ds``, an item of the sequence ``within`` when its module
        requires some attributes the table removes (:data:`TYPE2_WITHIN`), else 0."""
        self.budget.check()
        kept_blocks: set[int] = set()
        creators: list[int] = []
        rule_for = self.compiled.rule
        for base_tag, raw in list(ds._dict.items()):  # noqa: SLF001 - hot path
            tag = self.current = int(base_tag)
            vr = vr_of(tag, raw.VR)
            rule = rule_for(tag, vr, mode, within)
            if rule.op is Op.KEEP:
                continue
            if rule.op is Op.PRIVATE:
                private = self._private_rule(ds, tag, vr, creators, kept_blocks)
                if private is None or private.op is Op.KEEP:
                    continue
                rule = private
            self._apply(ds, base_tag, vr, raw, rule, mode)
        for creator_tag in creators:
            if creator_tag not in kept_blocks:
                del ds[creator_tag]
                self.report.count(_label(creator_tag), "remove")

    def _private_rule(
        self, ds: Dataset, tag: int, vr: str, creators: list[int], kept: set[int]
    ) -> Rule | None:
        group, element = tag >> 16, tag & 0xFFFF
        if 0x0010 <= element <= 0x00FF:
            creators.append(tag)  # decided once the block's elements are known
            return None
        if element < 0x1000:
            return Rule(Op.REMOVE, "private: not in a block")
        creator_tag = (group << 16) | (element >> 8)
        creator_elem = ds.get(creator_tag)
        creator = str(creator_elem.value).rstrip() if creator_elem is not None else ""
        if not self.compiled.keeps_private(creator, group, element & 0xFF):
            return Rule(Op.REMOVE, "private")
        kept.add(creator_tag)
        return Rule(Op.RECURSE if vr == "SQ" else Op.KEEP, "private: safe")

    def _apply(
        self,
        ds: Dataset,
        key: BaseTag,
        vr: str,
        raw: DataElement | RawDataElement,
        rule: Rule,
        mode: Mode,
    ) -> None:
        op = rule.op
        tag = int(key)
        self.report.count(_label(tag), op.value)
        if op is Op.REMOVE:
            if tag >> 16 & 1:
                del ds[tag]  # pydicom also forgets the private block
            else:
                del ds._dict[key]  # noqa: SLF001 - hot path
            return
        if op is Op.EMPTY:
            _put(ds, key, vr, empty_value(vr))
            return
        if op is Op.UID and isinstance(raw, RawDataElement) and isinstance(raw.value, bytes):
            # UIDs are ASCII: map them without pydicom's conversion and validation
            uids = raw.value.decode("ascii", "replace").strip(" \0").split("\\")
            new = [remap_uid(self.keys, uid) for uid in uids]
            _put(ds, key, "UI", new[0] if len(new) == 1 else new)
            return
        if op is Op.DUMMY and vr not in ("UI", "SQ") and tag != _ENCAPSULATED_DOCUMENT:
            _put(ds, key, vr, dummy_value(vr))
            return
        if op in (Op.RECURSE, Op.RECURSE_CLEAN, Op.RECURSE_DUMMY):
            inner = {Op.RECURSE: mode, Op.RECURSE_CLEAN: Mode.CLEAN, Op.RECURSE_DUMMY: Mode.DUMMY}
            value = ds[tag].value
            if isinstance(value, Sequence):
                context = tag if tag in TYPE2_WITHIN else 0
                for item in value:
                    self.walk(item, inner[op], context)
            else:  # an SQ rule on a non-sequence (odd file): never keep it
                del ds[tag]
            return
        elem = ds[tag]
        if op is Op.UID:
            elem.value = map_strings(elem.value, lambda uid: remap_uid(self.keys, uid))
        elif op is Op.DUMMY:
            self._dummy(ds, tag, elem)
        elif op is Op.PSEUDONYM:
            self._pseudonym(ds, tag, elem)
        elif op is Op.SHIFT:
            self._shift(ds, tag, elem)
        elif op is Op.SCRUB:
            self._scrub(elem)
        elif op is Op.REPLACE:
            elem.value = rule.value
        elif op is Op.HASH:
            elem.value = map_strings(elem.value, lambda v: hashed_value(self.keys, tag, v))
        else:  # pragma: no cover - every Op is handled above
            raise DeidentificationError(f"{_label(tag)}: unknown operation {op}")

    # -- operations -------------------------------------------------------------------------

    def _dummy(self, ds: Dataset, tag: int, elem: DataElement) -> None:
        if tag == _ENCAPSULATED_DOCUMENT:
            elem.value = DUMMY_PDF
            if _ENCAPSULATED_DOCUMENT_LENGTH in ds:
                ds[_ENCAPSULATED_DOCUMENT_LENGTH].value = len(DUMMY_PDF)
            if "MIMETypeOfEncapsulatedDocument" in ds:
                ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
            return
        if elem.VR == "UI":
            elem.value = map_strings(elem.value, lambda uid: remap_uid(self.keys, uid))
            return
        ds[tag] = DataElement(tag, elem.VR, dummy_value(elem.VR))

    def _pseudonym(self, ds: Dataset, tag: int, elem: DataElement) -> None:
        value = "" if elem.value is None else str(elem.value).strip()
        if tag == 0x00200010:  # StudyID: from the study, present or not
            study_uid = _text(ds, "StudyInstanceUID") or self.original.study_instance_uid
            ds[tag] = DataElement(
                tag, "SH", study_pseudonym(self.keys, study_uid) if study_uid else ""
            )
            return
        if tag == 0x00080050:  # AccessionNumber: empty stays empty
            new = accession_pseudonym(self.keys, value) if value else ""
            ds[tag] = DataElement(tag, "SH", new)
            return
        # PatientID / PatientName: the patient of this dataset level, judged by the level's
        # values as they were before either element was replaced (whichever comes first)
        item_id, item_name, issuer, absent = self._level_patient(ds)
        if (item_id, item_name) == (self.original.patient_id, self.original.patient_name) or (
            absent
        ):
            new = self.patient
        elif item_id or item_name:
            key = patient_key(item_id, issuer, item_name, "")
            new = patient_pseudonym(self.keys, key, self.compiled.policy.organization)
        else:
            new = ""
        ds[tag] = DataElement(tag, elem.VR if elem.VR in ("PN", "LO") else "LO", new)

    def _level_patient(self, ds: Dataset) -> tuple[str, str, str, bool]:
        """The patient a dataset level names: its original PatientID, PatientName and
        IssuerOfPatientID, and whether it has neither element (read once per level)."""
        found = self._levels.get(id(ds))
        if found is None:
            found = (
                _text(ds, "PatientID"),
                _text(ds, "PatientName"),
                _text(ds, "IssuerOfPatientID"),
                ds.get("PatientID") is None and ds.get("PatientName") is None,
            )
            self._levels[id(ds)] = found
        return found

    def _shift(self, ds: Dataset, tag: int, elem: DataElement) -> None:
        shift = shift_da if elem.VR == "DA" else shift_dt
        before = elem.value
        elem.value = map_strings(before, lambda v: shift(v, self.offset) if v.strip() else v)
        if before and not elem.value:
            self.report.flag(f"{_label(tag)}: unparseable date removed")

    def _scrub(self, elem: DataElement) -> None:
        scrubber = self.scrubber
        if scrubber is None:  # pragma: no cover - can_clean_text covers every SCRUB rule
            raise DeidentificationError(f"{elem.keyword or elem.tag}: no cleaner available")
        self.budget.check()
        if too_long_to_clean(elem.value):
            self.report.flag(f"{_label(int(elem.tag))}: text too long to clean: replaced")
        elem.value = cleaned_value(elem.value, elem.VR, scrubber)


def deidentify(
    ds: Dataset,
    policy: Policy | CompiledPolicy,
    keys: PseudonymKeys,
    *,
    has_pixels: bool | None = None,
    budget: TimeBudget | None = None,
    pixels_checked: bool = False,
) -> DeidResult:
    """De-identify ``ds`` per PS3.15 Annex E under ``policy``.

    The dataset is modified in place (no copy: callers own what they pass). File meta
    information, if any, is left to the writer.

    Parameters
    ----------
    ds:
        The dataset (without or with pixel data; pixel values are never read).
    policy:
        The policy, or a policy compiled once for many datasets (faster).
    keys:
        The pseudonym key.
    has_pixels:
        Whether the instance has pixel data, when it was not parsed into ``ds``.
    budget:
        The time this instance may take (default: a new
        :class:`~dicomveil.engine.budget.TimeBudget`).
    pixels_checked:
        The caller has examined the pixels for burned-in text (see
        :func:`~dicomveil.engine.scan.check_pixels`); clean-pixel-data refuses images
        without it.

    Raises
    ------
    UnsupportedInputError
        When the image declares burned-in annotation (or needs pixel cleaning) and the policy
        does not allow it, or the instance took longer than its time budget; nothing is
        emitted.
    MalformedInputError
        When an element the engine must read cannot be read (the message names the
        attribute, never its value).

    Examples
    --------
    >>> from pydicom.dataset import Dataset
    >>> ds = Dataset()
    >>> ds.PatientName, ds.PatientID, ds.Modality = "DOE^JOHN", "12345", "CT"
    >>> ds.SOPInstanceUID = "1.2.3.4.5"
    >>> out, report, identity = deidentify(ds, Policy(), PseudonymKeys(b"example-secret-0123"))
    >>> str(out.PatientName) == out.PatientID != "12345", out.Modality
    (True, 'CT')
    >>> out.SOPInstanceUID.startswith("2.25."), out.PatientIdentityRemoved
    (True, 'YES')
    """
    compiled = policy if isinstance(policy, CompiledPolicy) else compile_policy(policy)
    walker: _Walker | None = None
    failure: DicomveilError | None = None
    try:
        if has_pixels is None:
            has_pixels = "PixelData" in ds or "FloatPixelData" in ds or "DoubleFloatPixelData" in ds
        report = Report(options=sorted(o.value for o in compiled.policy.options))
        repair_vrs(ds, report)
        walker = _Walker(ds, compiled, keys, report, budget or TimeBudget())
        check_pixels(ds, compiled.policy, has_pixels, report, pixels_checked=pixels_checked)
        walker.walk(ds, Mode.NORMAL)
        add_method_attributes(ds, compiled.policy, compiled.date_mode)
        identity = IdentityRecord(
            original=walker.original,
            pseudonymous=_identity(ds, PseudonymousIdentity),
            key_id=keys.key_id,
            date_offset_days=walker.offset,
        )
        return DeidResult(ds, report, identity)
    except (DicomveilError, MemoryError):
        raise
    except Exception as exc:  # noqa: BLE001 - see below
        # pydicom's messages may quote the value it could not read (a patient's name): the
        # error is built from the exception's type and the attribute only, and raised outside
        # this handler so that it carries no context either
        failure = _unreadable(walker.current if walker else 0, exc)
    raise failure


def _unreadable(tag: int, exc: BaseException) -> MalformedInputError:
    """The value-free error for an element pydicom could not read (or convert back)."""
    where = keyword_for_tag(tag) if tag and not tag >> 16 & 1 else ""
    what = f"{where} cannot be read" if where else "an element cannot be read"
    return MalformedInputError(f"{what} ({type(exc).__name__})")
