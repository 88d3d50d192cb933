"""Burned-in text in the pixels: found, filled, written back losslessly (clean-pixel-data).

The core of PS3.15's Clean Pixel Data Option, used by every entry point through
:func:`~dicomveil.pipeline.files.deidentify_file`:

- :func:`clean_instance` examines every frame of an instance, fills the text it finds and
  changes the instance's dataset (pixels, Burned In Annotation ``NO``);
- :func:`record_cleaning` adds code 113101 to the de-identified dataset and counts the
  cleaned image and its regions in the report (never the text read).

It needs the ``redaction`` extra (``pip install 'dicomveil[redaction]'``): RapidOCR's ONNX
text detector and recogniser, whose models ship in the wheel (nothing is downloaded).
"""

from __future__ import annotations

from dicomveil.redaction._ocr import Box, TextFinder, text_finder
from dicomveil.redaction.clean import CleanResult, clean_instance, find_regions, record_cleaning

__all__ = [
    "Box",
    "CleanResult",
    "TextFinder",
    "clean_instance",
    "find_regions",
    "record_cleaning",
    "text_finder",
]
