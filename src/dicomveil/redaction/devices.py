"""Device region templates shipped with dicomveil (``device_regions.toml`` beside this
module): public facts about where ultrasound devices burn patient data into their header
bands, each entry citing its source. They apply to every instance cleaned with
``clean-pixel-data``, before the policy's own ``[[pixel_regions]]``.
"""

from __future__ import annotations

import functools
import tomllib
from importlib import resources

from dicomveil.profile.pixel_regions import PixelRegion, pixel_settings

__all__ = ["shipped_regions"]


@functools.cache
def shipped_regions() -> tuple[PixelRegion, ...]:
    """The shipped templates, checked like a policy file's (read once per process)."""
    text = resources.files(__package__).joinpath("device_regions.toml").read_text("utf-8")
    return pixel_settings({"pixel_regions": tomllib.loads(text)["pixel_regions"]}).regions
