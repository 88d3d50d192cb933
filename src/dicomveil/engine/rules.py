"""A policy compiled into one operation per attribute.

The table's action codes, the options and the per-tag overrides are resolved once per
``(tag, VR, context)`` and cached, so the walk over a dataset is a dictionary lookup per element.

How each action code becomes an operation (PS3.15 Table E.1-1a, with the compound codes
resolved so that the output stays a valid instance of its IOD whenever the input was):

========  =========================================================================
X         remove
Z         empty value (an empty sequence for SQ)
D         dummy value of the VR; a sequence is kept and its items made anonymous
K         keep (a sequence is kept and its items processed by the same rules)
C         dates: shift (modified dates option); text: scrub; sequences: process
          items with structured-content cleaning; bitmaps (overlays, curves): remove
U         replace UIDs by keyed UIDs (a sequence: process items)
X/Z       empty value: valid whether the attribute is Type 2 or 3
X/D, Z/D, dummy value: valid whether the attribute is Type 1, 2 or 3
X/Z/D
X/Z/U*    replace UIDs (sequences: process items)
========  =========================================================================

Attributes the table does not list follow :func:`_default_op`, which never keeps person names
or free text just because the table is silent.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from pydicom.datadict import dictionary_has_tag, dictionary_VR

from dicomveil.engine.vrs import mislabelled
from dicomveil.profile.options import Action, Option
from dicomveil.profile.policy import OverrideAction, Policy
from dicomveil.profile.table import is_safe_private, row_for, rows

__all__ = ["TYPE2_WITHIN", "CompiledPolicy", "Mode", "Op", "Rule", "compile_policy"]


class Op(Enum):
    """What the engine does with one element."""

    REMOVE = "remove"
    EMPTY = "empty"
    DUMMY = "dummy"
    KEEP = "keep"
    UID = "uid"
    SHIFT = "shift"
    SCRUB = "scrub"
    PSEUDONYM = "pseudonym"
    REPLACE = "replace"
    HASH = "hash"
    RECURSE = "recurse"
    RECURSE_CLEAN = "recurse-clean"
    RECURSE_DUMMY = "recurse-dummy"
    PRIVATE = "private"


class Mode(Enum):
    """The context a sequence item is processed in."""

    NORMAL = 0
    CLEAN = 1  # inside structured content being cleaned: free text is scrubbed
    DUMMY = 2  # inside a sequence replaced by a dummy: every string becomes a dummy


@dataclass(frozen=True, slots=True)
class Rule:
    """The resolved operation for one attribute, and why (for ``profile show``)."""

    op: Op
    source: str
    value: str | None = None


#: Sequences whose structure carries meaning (SR trees, annotations, acquisition context):
#: a D keeps the tree and applies the rules inside rather than dummying every string.
STRUCTURE_SEQUENCES = frozenset({0x0040A730, 0x00700001, 0x00400555, 0x00400610})
#: Attributes that get keyed pseudonyms where the table empties or dummies them.
PSEUDONYM_TAGS = frozenset({0x00100010, 0x00100020, 0x00080050, 0x00200010})
TEXT_VRS = frozenset({"LT", "ST", "UT", "UC"})
#: Attributes Table E.1-1 removes (X) that the module of a sequence requires, Type 2, in its
#: items: there they are emptied instead (Z), so that the output stays a valid instance of
#: its IOD. Referenced Request Sequence: SR Document General and Key Object Document
#: modules (PS3.3 C.17.2, C.17.6.2), Requested Procedure ID.
TYPE2_WITHIN: dict[int, frozenset[int]] = {0x0040A370: frozenset({0x00401001})}
STRING_VRS = frozenset(
    {"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UR", "UT"}
)
#: When several options change one attribute, the one that keeps the most wins.
_PRECEDENCE = {"K": 0, "C": 1, "U": 2, "D": 3, "Z": 4, "X": 5}


def effective_action(
    basic: str, options: tuple[tuple[str, str], ...], chosen: frozenset[Option]
) -> str:
    """Return the action code of a table row once the chosen options are applied."""
    codes = [code for name, code in options if Option(name) in chosen]
    if not codes:
        return basic
    return min(codes, key=lambda c: _PRECEDENCE.get(c, 9))


def vr_of(tag: int, vr: str | None) -> str:
    """Return the VR of an element: the file's explicit VR, else the dictionary's, else UN.

    An explicit ``UN`` for a tag the dictionary knows is resolved to the dictionary's VR, as
    pydicom does when it reads the value (PS3.5 6.2.2): a sequence sent as UN is a sequence.
    An explicit VR the dictionary does not allow for a public tag is not trusted either: the
    element is judged as the dictionary's VR (see :mod:`dicomveil.engine.vrs`).
    """
    if vr and vr != "UN":
        return mislabelled(tag, vr) or vr
    try:
        found = dictionary_VR(tag)
    except KeyError:
        return "UN"
    return found.split(" or ")[0]


class CompiledPolicy:
    """A :class:`Policy` resolved per attribute, with a cache; one per process and run."""

    __slots__ = ("_cache", "can_clean_text", "date_mode", "policy")

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self._cache: dict[tuple[int, str, Mode, int], Rule] = {}
        #: Whether any rule can scrub free text (so identifying values must be collected).
        self.can_clean_text = bool(
            policy.options & {Option.CLEAN_DESCRIPTORS, Option.CLEAN_STRUCTURED_CONTENT}
        ) or any(
            code == "C" and Option(name) in policy.options
            for row in rows()
            for name, code in row.options
        )
        if Option.RETAIN_LONGITUDINAL_FULL_DATES in policy.options:
            self.date_mode = "keep"
        elif Option.RETAIN_LONGITUDINAL_MODIFIED_DATES in policy.options:
            self.date_mode = "shift"
        else:
            self.date_mode = "remove"

    def has(self, option: Option) -> bool:
        """Tell whether ``option`` is applied."""
        return option in self.policy.options

    def keeps_private(self, creator: str, group: int, offset: int) -> bool:
        """Tell whether a private element is kept, from its block's creator, its group and
        its offset in the block: the first matching private rule of the policy decides,
        else the safe-private table under Retain Safe Private. Without a creator, never."""
        if not creator:
            return False
        for rule in self.policy.private_rules:
            if rule.matches(creator, group, offset):
                return rule.action is OverrideAction.KEEP
        return self.has(Option.RETAIN_SAFE_PRIVATE) and is_safe_private(creator, group, offset)

    def rule(self, tag: int, vr: str, mode: Mode = Mode.NORMAL, within: int = 0) -> Rule:
        """Return the rule for an element of ``tag`` and ``vr`` in ``mode`` (cached), in an
        item of the sequence ``within`` when it is one of :data:`TYPE2_WITHIN` (else 0)."""
        key = (tag, vr, mode, within)
        found = self._cache.get(key)
        if found is None:
            found = self._cache[key] = self._resolve(tag, vr, mode, within)
        return found

    def _resolve(self, tag: int, vr: str, mode: Mode, within: int = 0) -> Rule:
        override = self.policy.overrides.get(tag)
        if override is not None:
            return _override_rule(override.action, override.value, vr)
        group, element = tag >> 16, tag & 0xFFFF
        if element == 0 or group == 0x0002:
            return Rule(Op.REMOVE, "group length / file meta")
        if group % 2 == 1:
            return Rule(Op.PRIVATE, "private")
        row = row_for(tag)
        if row is not None:
            code = effective_action(row.basic, row.options, self.policy.options)
            if code == Action.REMOVE.value and tag in TYPE2_WITHIN.get(within, ()):
                return Rule(
                    Op.EMPTY,
                    f"E.1-1 {code}, Type 2 in ({within >> 16:04X},{within & 0xFFFF:04X}) items: Z",
                )
            return self._from_code(tag, vr, code, f"E.1-1 {code}")
        return self._default(tag, vr, mode)

    def _from_code(self, tag: int, vr: str, code: str, source: str) -> Rule:
        is_sq = vr == "SQ"
        if code == Action.REMOVE.value:
            return Rule(Op.REMOVE, source)
        if code in ("Z", "X/Z"):
            if tag in PSEUDONYM_TAGS:
                return Rule(Op.PSEUDONYM, source)
            return Rule(Op.EMPTY, source)
        if code in ("D", "X/D", "X/Z/D", "Z/D"):
            if is_sq:
                op = Op.RECURSE if tag in STRUCTURE_SEQUENCES else Op.RECURSE_DUMMY
                return Rule(op, source)
            return Rule(Op.PSEUDONYM if tag in PSEUDONYM_TAGS else Op.DUMMY, source)
        if code == "K":
            return Rule(Op.RECURSE if is_sq else Op.KEEP, source)
        if code in ("U", "X/Z/U*"):
            if is_sq:
                return Rule(Op.RECURSE, source)
            return Rule(Op.UID if vr == "UI" else Op.DUMMY, source)
        if code == "C":
            return self._clean(tag, vr, source)
        raise AssertionError(f"unhandled action code {code}")  # the generator forbids others

    def _clean(self, tag: int, vr: str, source: str) -> Rule:
        group = tag >> 16
        if vr == "SQ":
            return Rule(Op.RECURSE_CLEAN, source)
        if 0x5000 <= group <= 0x50FF or 0x6000 <= group <= 0x60FF:
            return Rule(Op.REMOVE, source + " (bitmaps cannot be cleaned without pixel work)")
        if vr in ("DA", "DT"):
            return Rule(Op.SHIFT, source)
        if vr == "TM":
            return Rule(Op.KEEP, source + " (whole-day shift keeps times)")
        if vr in STRING_VRS:
            return Rule(Op.SCRUB, source)
        return Rule(Op.REMOVE, source + " (binary value cannot be cleaned)")

    def _default(self, tag: int, vr: str, mode: Mode) -> Rule:
        """Rule for attributes the table does not list (documented in the module docstring)."""
        if not dictionary_has_tag(tag):
            return Rule(Op.REMOVE, "not in the data dictionary")
        if vr == "SQ":
            op = {
                Mode.NORMAL: Op.RECURSE,
                Mode.CLEAN: Op.RECURSE_CLEAN,
                Mode.DUMMY: Op.RECURSE_DUMMY,
            }
            return Rule(op[mode], "default: sequence")
        if vr == "UI":
            keep = self.has(Option.RETAIN_UIDS)
            return Rule(Op.KEEP if keep else Op.UID, "default: UID")
        if vr in ("DA", "DT", "TM"):
            if self.date_mode == "keep" or (self.date_mode == "shift" and vr == "TM"):
                return Rule(Op.KEEP, "default: date/time")
            if self.date_mode == "shift":
                return Rule(Op.SHIFT, "default: date/time")
            return Rule(Op.EMPTY, "default: date/time")
        if mode is Mode.DUMMY and vr in STRING_VRS:
            return Rule(Op.DUMMY, "default: inside a dummied sequence")
        if vr == "PN":
            return Rule(Op.EMPTY, "default: person name")
        if vr in TEXT_VRS:
            cleaning = self.has(Option.CLEAN_DESCRIPTORS) or (
                mode is Mode.CLEAN and self.has(Option.CLEAN_STRUCTURED_CONTENT)
            )
            # a dummy, not an empty value: free text can be Type 1C (an SR TEXT item's value)
            return Rule(Op.SCRUB if cleaning else Op.DUMMY, "default: free text")
        return Rule(Op.KEEP, "default: identifies nobody")


def _override_rule(action: OverrideAction, value: str | None, vr: str) -> Rule:
    source = f"policy {action.value}"
    if action is OverrideAction.KEEP:
        return Rule(Op.RECURSE if vr == "SQ" else Op.KEEP, source)
    if action is OverrideAction.REMOVE:
        return Rule(Op.REMOVE, source)
    if action is OverrideAction.EMPTY:
        return Rule(Op.EMPTY, source)
    if action is OverrideAction.REPLACE:
        return Rule(Op.REPLACE, source, value)
    return Rule(Op.HASH, source)


def compile_policy(policy: Policy) -> CompiledPolicy:
    """Compile ``policy`` for the engine (cheap; the cache fills as elements are seen)."""
    return CompiledPolicy(policy)
