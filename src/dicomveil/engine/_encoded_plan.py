"""What a compiled policy comes to on the byte-level fast path (:mod:`dicomveil.engine.encoded`).

Each element's rule is resolved once per policy, process and ``(tag, VR bytes, mode)`` into an
:data:`Entry`: a small code, the operation counted, the VR, whether the walker must look closer,
and the bytes to write when they never change (empty and dummy values).
"""

from __future__ import annotations

import struct
from typing import Final

from dicomveil.engine._encoded_text import Fallback
from dicomveil.engine._encoding import LONG_VRS, VR_NAMES, dummy_bytes, element, method_elements
from dicomveil.engine.keys import PseudonymKeys
from dicomveil.engine.rules import TYPE2_WITHIN, CompiledPolicy, Mode, Op, vr_of
from dicomveil.engine.vrs import NUMBER_SIZES, dictionary_vrs, mislabelled
from dicomveil.profile.options import Option

UNDEFINED: Final = 0xFFFFFFFF
ITEM: Final = 0xFFFEE000
ITEM_END: Final = 0xFFFEE00D
SEQUENCE_END: Final = 0xFFFEE0DD
PIXEL_TAGS: Final = frozenset({0x7FE00008, 0x7FE00009, 0x7FE00010})
MAX_DEPTH: Final = 60
MAX_VALUE: Final = 4 * 1024 * 1024  # the reader defers longer values: reference path
NO_TAG: Final = 0x100000000

CHARSET: Final = 0x00080005
SOP_CLASS: Final = 0x00080016
SOP_INSTANCE: Final = 0x00080018
STUDY_DATE: Final = 0x00080020
ACCESSION: Final = 0x00080050
MODALITY: Final = 0x00080060
PATIENT_NAME: Final = 0x00100010
PATIENT_ID: Final = 0x00100020
ISSUER: Final = 0x00100021
BIRTH_DATE: Final = 0x00100030
STUDY_UID: Final = 0x0020000D
SERIES_UID: Final = 0x0020000E
STUDY_ID: Final = 0x00200010
FRAME_OF_REFERENCE: Final = 0x00200052
BURNED_IN: Final = 0x00280301
METHOD_CODES: Final = 0x00120064
ENCAPSULATED_DOCUMENT: Final = 0x00420011

#: Top-level elements of the original identity (read before anything changes).
ORIGINAL: Final = frozenset(
    {SOP_INSTANCE, STUDY_DATE, ACCESSION, PATIENT_NAME, PATIENT_ID, ISSUER, BIRTH_DATE,
     STUDY_UID, SERIES_UID, FRAME_OF_REFERENCE}
)  # fmt: skip
#: Elements whose current text the reference reads (``_text``): pseudonym rules, identity.
TRACKED: Final = frozenset(
    {PATIENT_NAME, PATIENT_ID, ISSUER, STUDY_UID, STUDY_ID, ACCESSION, SERIES_UID,
     SOP_INSTANCE, SOP_CLASS, FRAME_OF_REFERENCE}
)  # fmt: skip
#: Top-level elements the reference reads through pydicom before the walk (pixel checks).
CHECKED: Final = frozenset({SOP_CLASS, MODALITY, BURNED_IN})
OBSERVED: Final = TRACKED | CHECKED | ORIGINAL | {CHARSET}

EXPLICIT = struct.Struct("<HH2sH").unpack_from
IMPLICIT = struct.Struct("<HHL").unpack_from
LENGTH = struct.Struct("<L").unpack_from
PACK_IMPLICIT = struct.Struct("<HHL").pack
PACK_SEQUENCE = struct.Struct("<HH2sHL").pack
LONG_BYTES: Final = frozenset(vr.encode("ascii") for vr in LONG_VRS)
ITEM_DELIMITER: Final = PACK_IMPLICIT(0xFFFE, 0xE00D, 0)
SEQUENCE_DELIMITER: Final = PACK_IMPLICIT(0xFFFE, 0xE0DD, 0)
UNDEFINED_ITEM: Final = PACK_IMPLICIT(0xFFFE, 0xE000, UNDEFINED)

# What an element's rule comes to on this path.
KEEP, SKIP, REMOVE, EMPTY, DUMMY, UID, PSEUDONYM, RECURSE, PRIVATE, SHIFT, SCRUB = range(11)
CREATOR = -1
MODES: Final = (Mode.NORMAL, Mode.CLEAN, Mode.DUMMY)
#: The sequences whose items have rules of their own (:data:`TYPE2_WITHIN`), 0 for the rest:
#: the walk's mode number is ``mode + len(MODES) * index`` of the enclosing sequence here.
CONTEXTS: Final = (0, *sorted(TYPE2_WITHIN))
CONTEXT_OF: Final = {tag: index for index, tag in enumerate(CONTEXTS) if tag}
INNER: Final = {Op.RECURSE: -1, Op.RECURSE_CLEAN: 1, Op.RECURSE_DUMMY: 2}
CODE_OF: Final = {
    Op.KEEP: KEEP,
    Op.REMOVE: REMOVE,
    Op.EMPTY: EMPTY,
    Op.DUMMY: DUMMY,
    Op.UID: UID,
    Op.PSEUDONYM: PSEUDONYM,
    Op.RECURSE: RECURSE,
    Op.RECURSE_CLEAN: RECURSE,
    Op.RECURSE_DUMMY: RECURSE,
    Op.PRIVATE: PRIVATE,
    Op.SHIFT: SHIFT,
    Op.SCRUB: SCRUB,
}

#: ``(code, inner mode or -1, operation name, VR, needs a closer look, constant output,
#: mask)``: a value length with a bit of ``mask`` set cannot be read as the VR's numbers.
Entry = tuple[int, int, str, str, bool, bytes, int]
Table = dict[tuple[int, bytes | None], Entry]


# -- decisions, once per policy ---------------------------------------------------------------


def resolve(compiled: CompiledPolicy, tag: int, vrb: bytes | None, mode: int) -> Entry:
    if vrb is None:
        vr = vr_of(tag, None)
    else:
        vr_name = VR_NAMES.get(vrb)
        if vr_name is None:
            raise Fallback  # pydicom would read on as implicit VR
        vr = vr_of(tag, vr_name)
        if vr_name == "UN" and vr != "UN":
            raise Fallback  # pydicom converts such an element on access
        if mislabelled(tag, vr_name) is not None:
            raise Fallback  # the reference reads it as the dictionary's VR (engine.vrs)
    context, base = divmod(mode, len(MODES))
    rule = compiled.rule(tag, vr, MODES[base], CONTEXTS[context])
    code = CODE_OF.get(rule.op)
    name = rule.op.value
    if code is None:
        raise Fallback  # replace, hash: reference path
    if tag == CHARSET and code != KEEP:
        raise Fallback  # a new character set: the reference re-encodes text
    if code == KEEP and tag >> 16 < 0x0008:
        code = SKIP  # the writer never writes these
    if code == PRIVATE and not (
        compiled.policy.private_rules or compiled.has(Option.RETAIN_SAFE_PRIVATE)
    ):
        code = REMOVE  # no block can be kept: every private element goes, creators too
        name = "remove"
    if code == DUMMY and vr == "UI":
        code = UID  # a dummy UID is a keyed UID
    if code == DUMMY and (vr == "SQ" or tag == ENCAPSULATED_DOCUMENT):
        raise Fallback
    const = b""
    if tag >> 16 >= 0x0008 and code in (EMPTY, DUMMY):
        value = b"" if code == EMPTY else dummy_bytes(vr)
        const = element(tag, vr, value, vrb is None)
    look = tag in OBSERVED or vr == "SQ" or code in (PSEUDONYM, PRIVATE, RECURSE, SHIFT, SCRUB)
    mask = NUMBER_SIZES.get(vr, 1) - 1 if dictionary_vrs(tag) else 0
    return code, INNER.get(rule.op, -1), name, vr, look, const, mask


class Plan:
    """One compiled policy on this path: decisions per element and mode, and the encoded
    method attributes (built once per policy and process)."""

    __slots__ = (
        "compiled",
        "methods",
        "pseudonyms",
        "tables",
        "uid_keys",
        "uids",
        "undefined_codes",
    )

    def __init__(self, compiled: CompiledPolicy) -> None:
        self.compiled = compiled
        self.tables: list[Table] = [{} for _ in range(len(MODES) * len(CONTEXTS))]
        self.uids: dict[bytes, bytes] = {}  # raw UI value -> encoded keyed UIDs
        self.pseudonyms: dict[tuple[int, str], str] = {}
        self.uid_keys: PseudonymKeys | None = None
        policy, date_mode = compiled.policy, compiled.date_mode
        self.methods = {
            implicit: method_elements(policy, date_mode, implicit) for implicit in (False, True)
        }
        self.undefined_codes = {
            implicit: dict(method_elements(policy, date_mode, implicit, undefined=True))[
                METHOD_CODES
            ]
            for implicit in (False, True)
        }


_PLANS: dict[int, Plan] = {}


def plan_for(compiled: CompiledPolicy) -> Plan:
    plan = _PLANS.get(id(compiled))
    if plan is None or plan.compiled is not compiled:
        if len(_PLANS) > 32:
            _PLANS.clear()
        plan = _PLANS[id(compiled)] = Plan(compiled)
    return plan


def element_value(encoded: bytes, implicit: bool) -> bytes:
    """Return the value of one encoded element."""
    if implicit:
        return encoded[8:]
    return encoded[12:] if encoded[4:6] in LONG_BYTES else encoded[8:]


def sequence_header(tag: int, length: int, implicit: bool) -> bytes:
    if implicit:
        return PACK_IMPLICIT(tag >> 16, tag & 0xFFFF, length)
    return PACK_SEQUENCE(tag >> 16, tag & 0xFFFF, b"SQ", 0, length)
