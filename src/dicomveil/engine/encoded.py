"""De-identification from encoded bytes to encoded bytes: the pipeline's fast path.

:func:`deidentify_encoded` applies a compiled policy to the encoded top-level data set of an
instance (explicit or implicit VR little endian) without building pydicom objects: kept
elements are copied as bytes, changed ones encoded directly. For what it accepts it gives,
byte for byte, what :func:`~dicomveil.engine.deidentify.deidentify` followed by
:func:`dicomveil.dicomio.write_instance` gives, with the same operation counts, flags and
identity record. Anything it does not reproduce exactly (options that clean or shift text,
``replace``/``hash`` overrides, values pydicom would normalise, unusual encodings) makes it
return ``None``, and the caller takes the reference path. Differential tests hold the two
paths together.

References
----------
DICOM PS3.15 Annex E; PS3.5 sections 7.1 (data elements) and 7.5 (nesting of data sets).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from dicomveil.engine._encoded_plan import (
    ACCESSION,
    BIRTH_DATE,
    BURNED_IN,
    FRAME_OF_REFERENCE,
    ISSUER,
    MODALITY,
    PATIENT_ID,
    PATIENT_NAME,
    SERIES_UID,
    SOP_CLASS,
    SOP_INSTANCE,
    STUDY_DATE,
    STUDY_ID,
    STUDY_UID,
)
from dicomveil.engine._encoded_text import (
    Fallback,
    NeedIdentifiers,
    NeedMoreData,
    converted,
    pixel_flags,
)
from dicomveil.engine._encoded_walk import Walker
from dicomveil.engine.budget import TimeBudget
from dicomveil.engine.dates import date_offset_days
from dicomveil.engine.descriptors import Scrubber
from dicomveil.engine.identity import IdentityRecord, OriginalIdentity, PseudonymousIdentity
from dicomveil.engine.keys import PseudonymKeys
from dicomveil.engine.rules import CompiledPolicy
from dicomveil.errors import DicomveilError
from dicomveil.profile.options import Option

__all__ = ["EncodedResult", "NeedIdentifiers", "NeedMoreData", "deidentify_encoded"]


@dataclass(frozen=True, slots=True)
class EncodedResult:
    """What :func:`deidentify_encoded` returns.

    Attributes
    ----------
    body:
        The encoded de-identified data set, as parts to write in order.
    stop:
        Offset of the top-level pixel data element, or of the end of the data set.
    has_pixels:
        Whether top-level pixel data follows the data set (at ``stop``).
    identity:
        Original and pseudonymous identifiers (for the vault only).
    operations:
        How many elements each operation touched.
    flags:
        Warnings for a human (``possible-burned-in-annotation``, ...).
    modality:
        The Modality as read.
    sop_class_uid, sop_instance_uid:
        The output's SOP Class and Instance UIDs (for its File Meta Information).
    """

    body: list[bytes]
    stop: int
    has_pixels: bool
    identity: IdentityRecord
    operations: dict[str, int]
    flags: list[str]
    modality: str
    sop_class_uid: str
    sop_instance_uid: str


def _result(walker: Walker, body: bytes, stop: int, pixels: bool) -> EncodedResult:
    texts = walker.top.texts.get
    sop_class, sop_instance = texts(SOP_CLASS, ""), texts(SOP_INSTANCE, "")
    o = OriginalIdentity(
        *walker.original(
            PATIENT_ID, PATIENT_NAME, ISSUER, BIRTH_DATE, STUDY_UID, ACCESSION,
            STUDY_DATE, SERIES_UID, SOP_INSTANCE, FRAME_OF_REFERENCE,
        )
    )  # fmt: skip
    seen = walker.seen.get
    required = (seen(SOP_CLASS, b"").strip(b"\0 "), o.sop_instance_uid, o.study_instance_uid,
                o.series_instance_uid)  # fmt: skip
    if not (all(required) and sop_class and sop_instance):
        raise Fallback  # the reader or the writer refuses, with its own message
    flags = (
        pixel_flags(walker.compiled.policy, seen(BURNED_IN, b""), seen(SOP_CLASS, b""),
                    seen(MODALITY, b""))
        if pixels else []
    )  # fmt: skip
    modality = seen(MODALITY)
    offset = walker.offset or 0  # found during the walk when a date was shifted
    if walker.compiled.date_mode == "shift" and walker.offset is None:
        offset = date_offset_days(walker.keys, walker.patient_key())
    identity = IdentityRecord(
        original=o,
        pseudonymous=PseudonymousIdentity(
            patient_id=texts(PATIENT_ID, ""),
            study_id=texts(STUDY_ID, ""),
            study_instance_uid=texts(STUDY_UID, ""),
            accession_number=texts(ACCESSION, ""),
            series_instance_uid=texts(SERIES_UID, ""),
            sop_instance_uid=sop_instance,
            frame_of_reference_uid=texts(FRAME_OF_REFERENCE, ""),
        ),
        key_id=walker.keys.key_id,
        date_offset_days=offset,
    )
    return EncodedResult(
        body=[body],
        stop=stop,
        has_pixels=pixels,
        identity=identity,
        operations=walker.counts,
        flags=flags,
        modality="" if modality is None else converted(modality),
        sop_class_uid=sop_class,
        sop_instance_uid=sop_instance,
    )


def deidentify_encoded(
    data: bytes,
    start: int,
    limit: int,
    implicit: bool,
    compiled: CompiledPolicy,
    keys: PseudonymKeys,
    *,
    eof: bool,
    identifiers: Mapping[str, list[str]] | None = None,
    budget: TimeBudget | None = None,
) -> EncodedResult | None:
    """De-identify the encoded data set that starts at ``data[start]``, or return ``None``.

    Parameters
    ----------
    data:
        The bytes of the file from its start (or of the data set, with ``start`` 0).
    start:
        Offset of the first data set element (after the File Meta Information).
    limit:
        End of the bytes available in ``data``.
    implicit:
        Whether the data set is implicit VR (little endian either way).
    compiled, keys:
        The compiled policy and the pseudonym key.
    eof:
        Whether ``limit`` is the end of the file; otherwise the data set must end (at
        pixel data) before ``limit``.
    identifiers:
        The identifying values of the data set
        (:func:`~dicomveil.engine.scan.collect_identifiers`), needed only when it has text
        to clean.
    budget:
        The time this instance may take (pass the same one to the reference path when
        this one gives up, so that the two together stay within it).

    Returns
    -------
    EncodedResult or None
        ``None`` when only the reference path gives the right output for this instance.

    Raises
    ------
    NeedMoreData
        The data set continues past ``limit``: call again with more bytes.
    NeedIdentifiers
        The data set has text to clean and ``identifiers`` were not given: call again with
        them.
    UnsupportedInputError
        The instance took longer than its time ``budget`` (default: a new
        :class:`~dicomveil.engine.budget.TimeBudget`).
    """
    if Option.SAFE_HARBOR in compiled.policy.options:
        return None  # Safe Harbor rewrites kept values: the reference path only
    walker = Walker(data, limit, eof, implicit, compiled, keys, budget or TimeBudget())
    try:
        if identifiers is not None:
            walker.scrubber = Scrubber(**identifiers)
        body, stop = walker.dataset(start, limit, 0, 0, walker.top, False, True)
        return _result(walker, body, stop, stop < limit)
    except (NeedMoreData, NeedIdentifiers, DicomveilError, MemoryError):
        raise
    except Exception:  # noqa: BLE001 - Fallback, or pydicom could not read a value
        # the reference path reads the instance again and fails, if it does, with a
        # value-free error of its own: no message of pydicom's leaves this function
        return None
