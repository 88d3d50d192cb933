"""The policy's settings for burned-in text (``clean-pixel-data``): mode, device regions.

In a policy file::

    pixel_mode = "all-text"         # all-text (default) | sensitive | regions-only
    pixel_unsure = "refuse"         # refuse (default) | fill: a region the recogniser
                                    # cannot call text or not text
    [[pixel_regions]]               # a device's fixed annotation band, blanked without OCR
    manufacturer = "ACME*"          # each match key is optional; glob, case-insensitive
    model = "SONO 100"              # Manufacturer's Model Name
    modality = "US"
    sop_class = "1.2.840.10008.5.1.4.1.1.6.1"
    rows = 480
    columns = 640
    rectangles = [[0, 0, 640, 48]]  # x, y, width, height (pixels), as in RSNA CTP's scripts

A template applies to an image when every key it gives matches the image's header; its
rectangles are filled on every frame, in every mode, whether or not the OCR sees text there.
With ``regions-only`` the OCR is not run at all: only the templates' rectangles are filled (an
image no template matches is still marked as examined, so use it only for devices whose
annotation areas are all known).

References
----------
RSNA CTP ``DicomPixelAnonymizer`` (signature -> rectangles); PS3.15 E.3.1.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Final

from dicomveil.errors import ProfileError

if TYPE_CHECKING:  # pydicom is not imported to read a policy: fast start-up
    from pydicom.dataset import Dataset

__all__ = [
    "PixelMode",
    "PixelRegion",
    "PixelSettings",
    "Rectangle",
    "UnsureAction",
    "pixel_settings",
    "pixel_settings_to_mapping",
]

Rectangle = tuple[int, int, int, int]
"""``(top, left, bottom, right)`` in pixels, bottom and right excluded."""

SETTING_KEYS: Final = frozenset({"pixel_mode", "pixel_unsure", "pixel_regions"})
"""The policy file's keys read here."""

_MATCH_KEYS: Final = {
    "manufacturer": "Manufacturer",
    "model": "ManufacturerModelName",
    "modality": "Modality",
    "sop_class": "SOPClassUID",
}
_SIZE_KEYS: Final = {"rows": "Rows", "columns": "Columns"}


class PixelMode(StrEnum):
    """What ``clean-pixel-data`` fills."""

    ALL_TEXT = "all-text"
    """Every region the OCR reads as text, plus the matching device regions."""
    SENSITIVE = "sensitive"
    """The text that matches the instance's identifying values or patterns (dates, phone
    numbers, IDs), plus the matching device regions; other text is kept."""
    REGIONS_ONLY = "regions-only"
    """Only the matching device regions; the OCR is not run."""


class UnsureAction(StrEnum):
    """What happens to a region the recogniser can call neither text nor not text."""

    REFUSE = "refuse"
    """The image is refused (quarantined), unless the region touches text that is filled."""
    FILL = "fill"
    """The region is filled as if it were text."""


@dataclass(frozen=True, slots=True)
class PixelRegion:
    """A device region template: header values to match, rectangles to fill."""

    rectangles: tuple[tuple[int, int, int, int], ...]
    """``(x, y, width, height)`` each."""
    manufacturer: str | None = None
    model: str | None = None
    modality: str | None = None
    sop_class: str | None = None
    rows: int | None = None
    columns: int | None = None

    def matches(self, ds: Dataset) -> bool:
        """Whether every key this template gives matches ``ds``."""
        for key, keyword in _MATCH_KEYS.items():
            pattern = getattr(self, key)
            if pattern is None:
                continue
            value = str(ds.get(keyword, "") or "").strip().upper()
            if not fnmatch.fnmatchcase(value, pattern.strip().upper()):
                return False
        for key, keyword in _SIZE_KEYS.items():
            size = getattr(self, key)
            if size is not None and _int(ds.get(keyword)) != size:
                return False
        return True

    def to_mapping(self) -> dict[str, Any]:
        """This template as a policy file's table."""
        keys = {k: getattr(self, k) for k in (*_MATCH_KEYS, *_SIZE_KEYS)}
        return {
            **{k: v for k, v in keys.items() if v is not None},
            "rectangles": [list(r) for r in self.rectangles],
        }


def _int(value: object) -> int | None:
    try:
        return int(value)  # type: ignore[call-overload, no-any-return]
    except (TypeError, ValueError):
        return None


@dataclass(frozen=True, slots=True)
class PixelSettings:
    """The policy's settings for ``clean-pixel-data`` (defaults: all text, refuse unsure)."""

    mode: PixelMode = PixelMode.ALL_TEXT
    unsure: UnsureAction = UnsureAction.REFUSE
    regions: tuple[PixelRegion, ...] = ()

    def rectangles(self, ds: Dataset, rows: int, columns: int) -> list[Rectangle]:
        """The rectangles of every template matching ``ds``, clipped to the image."""
        found: list[Rectangle] = []
        for region in self.regions:
            if not region.matches(ds):
                continue
            for x, y, width, height in region.rectangles:
                top, left = min(max(0, y), rows), min(max(0, x), columns)
                bottom, right = min(rows, y + height), min(columns, x + width)
                if bottom > top and right > left:
                    found.append((top, left, bottom, right))
        return found


def _region(raw: Any, index: int) -> PixelRegion:
    where = f"[[pixel_regions]] #{index + 1}"
    if not isinstance(raw, dict):
        raise ProfileError(f"{where}: expected a table")
    unknown = set(raw) - {*_MATCH_KEYS, *_SIZE_KEYS, "rectangles"}
    if unknown:
        raise ProfileError(f"{where}: unknown key(s): {', '.join(sorted(unknown))}")
    for key in _MATCH_KEYS:
        if key in raw and not isinstance(raw[key], str):
            raise ProfileError(f"{where}: {key} must be a string")
    for key in _SIZE_KEYS:
        if key in raw and (type(raw[key]) is not int or raw[key] < 1):
            raise ProfileError(f"{where}: {key} must be a positive integer")
    rectangles = raw.get("rectangles")
    if not isinstance(rectangles, list) or not rectangles:
        raise ProfileError(f"{where}: 'rectangles' must be a list of [x, y, width, height]")
    parsed = []
    for rect in rectangles:
        if (
            not isinstance(rect, list)
            or len(rect) != 4
            or not all(type(v) is int for v in rect)
            or rect[0] < 0
            or rect[1] < 0
            or rect[2] < 1
            or rect[3] < 1
        ):
            raise ProfileError(
                f"{where}: each rectangle is [x, y, width, height] (integers, x, y >= 0, "
                "width, height >= 1)"
            )
        parsed.append((rect[0], rect[1], rect[2], rect[3]))
    return PixelRegion(
        tuple(parsed),
        **{k: raw[k] for k in (*_MATCH_KEYS, *_SIZE_KEYS) if k in raw},
    )


def _choice(data: Mapping[str, Any], key: str, kind: type[StrEnum], default: StrEnum) -> Any:
    raw = data.get(key, default.value)
    try:
        return kind(str(raw).strip().lower())
    except ValueError:
        known = ", ".join(m.value for m in kind)
        raise ProfileError(f"{key}: unknown value {raw!r} (known: {known})") from None


def pixel_settings(data: Mapping[str, Any]) -> PixelSettings:
    """Read ``pixel_mode``, ``pixel_unsure`` and ``[[pixel_regions]]`` of a policy file.

    Raises
    ------
    ProfileError
        A value is unknown or malformed (the message names the setting, never a header value).
    """
    regions = data.get("pixel_regions", [])
    if not isinstance(regions, list):
        raise ProfileError("[[pixel_regions]] must be an array of tables")
    return PixelSettings(
        mode=_choice(data, "pixel_mode", PixelMode, PixelMode.ALL_TEXT),
        unsure=_choice(data, "pixel_unsure", UnsureAction, UnsureAction.REFUSE),
        regions=tuple(_region(raw, i) for i, raw in enumerate(regions)),
    )


def pixel_settings_to_mapping(settings: PixelSettings) -> dict[str, Any]:
    """``settings`` as policy file keys (nothing for the defaults, so old journals match)."""
    out: dict[str, Any] = {}
    if settings.mode is not PixelMode.ALL_TEXT:
        out["pixel_mode"] = settings.mode.value
    if settings.unsure is not UnsureAction.REFUSE:
        out["pixel_unsure"] = settings.unsure.value
    if settings.regions:
        out["pixel_regions"] = [r.to_mapping() for r in settings.regions]
    return out
