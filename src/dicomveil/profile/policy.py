"""A de-identification policy: the Basic Profile, chosen options, and per-tag overrides.

A policy file is TOML::

    name = "teleradiology"
    options = ["retain-longitudinal-modified-dates", "clean-descriptors"]
    organization = "HOSP1"          # prefix of patient pseudonyms
    allow_burned_in_annotation = false

    [tags]                          # by keyword or "(gggg,eeee)"
    PatientSex = "keep"
    "(0008,1030)" = { action = "replace", value = "CT CHEST" }
    InstitutionName = "hash"

    [[private]]                     # private-creator rules, applied before the safe list
    creator = "ACME 1.0"
    group = "0x0029"                # optional: any odd group when absent
    element = "0x10"                # optional: the block offset (low byte); whole block if absent
    action = "keep"                 # keep | remove

Override actions: ``keep``, ``remove``, ``empty``, ``replace`` (with ``value``), ``hash`` (a keyed
pseudonym of the original value). Overrides win over the table; options change the table's
action only where PS3.15 says they do.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from dicomveil.errors import ProfileError
from dicomveil.profile.options import Option
from dicomveil.profile.pixel_regions import SETTING_KEYS, PixelSettings, pixel_settings

__all__ = ["Override", "OverrideAction", "Policy", "PrivateRule", "load_policy", "parse_tag"]


class OverrideAction(StrEnum):
    """What a policy override does with one attribute."""

    KEEP = "keep"
    REMOVE = "remove"
    EMPTY = "empty"
    REPLACE = "replace"
    HASH = "hash"


@dataclass(frozen=True, slots=True)
class Override:
    """A per-tag override from a policy file."""

    action: OverrideAction
    value: str | None = None


@dataclass(frozen=True, slots=True)
class PrivateRule:
    """A private-creator rule: keep or remove a private block, or one element of it."""

    creator: str
    action: OverrideAction
    group: int | None = None
    element: int | None = None

    def matches(self, creator: str, group: int, element_offset: int) -> bool:
        """Tell whether the rule applies to a private element."""
        return (
            creator.rstrip() == self.creator
            and (self.group is None or self.group == group)
            and (self.element is None or self.element == element_offset)
        )


_EXCLUSIVE = frozenset(
    {Option.RETAIN_LONGITUDINAL_FULL_DATES, Option.RETAIN_LONGITUDINAL_MODIFIED_DATES}
)


@dataclass(frozen=True, slots=True)
class Policy:
    """Everything that decides what happens to each attribute.

    Attributes
    ----------
    options:
        The PS3.15 options applied on top of the Basic Profile.
    overrides:
        Per-tag overrides (tag as an ``int``), winning over the table.
    private_rules:
        Private-creator rules, checked before the safe-private list.
    organization:
        Prefix of patient pseudonyms (letters, digits, ``-``), or empty.
    allow_burned_in_annotation:
        Process images that declare BurnedInAnnotation = YES (otherwise they are refused).
    trust_burned_in_annotation_no:
        Under clean-pixel-data, do not examine images that declare BurnedInAnnotation = NO
        (faster; by default every image is examined, as the attribute is often wrong).
    pixels:
        Under clean-pixel-data: the mode, unsure regions, device region templates
        (:mod:`dicomveil.profile.pixel_regions`).
    name:
        A label recorded in reports and the audit log.
    """

    options: frozenset[Option] = frozenset()
    overrides: Mapping[int, Override] = field(default_factory=dict)
    private_rules: tuple[PrivateRule, ...] = ()
    organization: str = ""
    allow_burned_in_annotation: bool = False
    name: str = "basic"
    trust_burned_in_annotation_no: bool = False
    pixels: PixelSettings = PixelSettings()

    def __post_init__(self) -> None:
        if _EXCLUSIVE <= self.options:
            raise ProfileError(
                "retain-longitudinal-full-dates and retain-longitudinal-modified-dates "
                "exclude each other"
            )
        if not re.fullmatch(r"[A-Za-z0-9-]{0,16}", self.organization):
            raise ProfileError("organization must be up to 16 letters, digits or '-'")

    @classmethod
    def from_names(cls, names: Iterable[str], **kwargs: Any) -> Policy:
        """Build a policy from option names such as ``"retain-uids"``."""
        return cls(options=parse_options(names), **kwargs)

    def with_options(self, names: Iterable[str]) -> Policy:
        """Return a copy with more options."""
        return Policy(
            options=self.options | parse_options(names),
            overrides=self.overrides,
            private_rules=self.private_rules,
            organization=self.organization,
            allow_burned_in_annotation=self.allow_burned_in_annotation,
            name=self.name,
            trust_burned_in_annotation_no=self.trust_burned_in_annotation_no,
            pixels=self.pixels,
        )


def parse_options(names: Iterable[str]) -> frozenset[Option]:
    """Turn option names into :class:`Option` members; unknown names raise ProfileError."""
    result = set()
    for name in names:
        try:
            result.add(Option(name.strip().lower()))
        except ValueError:
            known = ", ".join(o.value for o in Option)
            raise ProfileError(f"unknown option {name!r} (known: {known})") from None
    return frozenset(result)


_TAG_RE = re.compile(r"\(?\s*([0-9A-Fa-f]{4})\s*,?\s*([0-9A-Fa-f]{4})\s*\)?")


def parse_tag(text: str) -> int:
    """Parse a keyword (``PatientSex``) or a tag (``(0010,0040)``, ``00100040``) to an int.

    Examples
    --------
    >>> hex(parse_tag("PatientSex")), hex(parse_tag("(0010,0040)")), hex(parse_tag("00100040"))
    ('0x100040', '0x100040', '0x100040')
    """
    match = _TAG_RE.fullmatch(text.strip())
    if match:
        return int(match.group(1) + match.group(2), 16)
    from pydicom.datadict import tag_for_keyword  # pydicom only for keywords: fast start-up

    tag = tag_for_keyword(text.strip())
    if tag is None:
        raise ProfileError(f"unknown attribute {text!r} (use a DICOM keyword or '(gggg,eeee)')")
    return tag


def _parse_override(key: str, raw: Any) -> Override:
    if isinstance(raw, str):
        raw = {"action": raw}
    if not isinstance(raw, dict) or "action" not in raw:
        raise ProfileError(
            f"[tags] {key}: expected an action name or {{action = ..., value = ...}}"
        )
    try:
        action = OverrideAction(str(raw["action"]).lower())
    except ValueError:
        known = ", ".join(a.value for a in OverrideAction)
        raise ProfileError(f"[tags] {key}: unknown action {raw['action']!r} ({known})") from None
    value = raw.get("value")
    if action is OverrideAction.REPLACE and not isinstance(value, str):
        raise ProfileError(f"[tags] {key}: 'replace' needs a string 'value'")
    if action is not OverrideAction.REPLACE and value is not None:
        raise ProfileError(f"[tags] {key}: only 'replace' takes a value")
    return Override(action, value)


def _parse_int(raw: Any, what: str) -> int | None:
    if raw is None:
        return None
    try:
        return int(raw, 0) if isinstance(raw, str) else int(raw)
    except (TypeError, ValueError):
        raise ProfileError(f"[[private]] {what}: not a number") from None


def _parse_private(raw: Any) -> PrivateRule:
    if not isinstance(raw, dict) or not isinstance(raw.get("creator"), str):
        raise ProfileError("[[private]]: each rule needs a 'creator' string")
    action = _parse_override(f"private {raw['creator']}", raw.get("action", "")).action
    if action not in (OverrideAction.KEEP, OverrideAction.REMOVE):
        raise ProfileError("[[private]]: action must be 'keep' or 'remove'")
    group = _parse_int(raw.get("group"), "group")
    if group is not None and group % 2 == 0:
        raise ProfileError("[[private]] group: private groups are odd")
    element = _parse_int(raw.get("element"), "element")
    if element is not None and not 0 <= element <= 0xFF:
        raise ProfileError("[[private]] element: the block offset is 0x00-0xFF")
    return PrivateRule(raw["creator"].rstrip(), action, group, element)


_KNOWN_KEYS = frozenset(
    {
        "name",
        "options",
        "organization",
        "allow_burned_in_annotation",
        "trust_burned_in_annotation_no",
        "tags",
        "private",
        *SETTING_KEYS,
    }
)


def policy_from_mapping(data: Mapping[str, Any]) -> Policy:
    """Build a policy from the parsed content of a policy file."""
    unknown = set(data) - _KNOWN_KEYS
    if unknown:
        raise ProfileError(f"unknown policy setting(s): {', '.join(sorted(unknown))}")
    options = data.get("options", [])
    if not isinstance(options, list) or not all(isinstance(o, str) for o in options):
        raise ProfileError("'options' must be a list of option names")
    tags = data.get("tags", {})
    if not isinstance(tags, dict):
        raise ProfileError("[tags] must be a table")
    private = data.get("private", [])
    if not isinstance(private, list):
        raise ProfileError("[[private]] must be an array of tables")
    return Policy(
        options=parse_options(options),
        overrides={parse_tag(k): _parse_override(k, v) for k, v in tags.items()},
        private_rules=tuple(_parse_private(r) for r in private),
        organization=str(data.get("organization", "")),
        allow_burned_in_annotation=bool(data.get("allow_burned_in_annotation", False)),
        name=str(data.get("name", "custom")),
        trust_burned_in_annotation_no=bool(data.get("trust_burned_in_annotation_no", False)),
        pixels=pixel_settings(data),
    )


def load_policy(path: Path) -> Policy:
    """Read a TOML policy file.

    Raises
    ------
    ProfileError
        If the file cannot be read or holds anything unknown.
    """
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ProfileError(f"policy file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"policy file {path}: {exc}") from None
    return policy_from_mapping(data)
