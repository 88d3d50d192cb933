"""Defects the fuzz campaign found, each reduced to the mutant that shows it (both engines).

Each test plants a name, de-identifies under the option that cleans text, and searches the
output's bytes for the planted name. The recipe in each docstring reproduces the mutant:
``python -m tests.fuzz.mutator --seed S --index I --out DIR``.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from dicomveil.pipeline.files import deidentify_file
from tests.fuzz.agree import _engine
from tests.fuzz.encoded import layout, set_value
from tests.fuzz.mutator import (
    CHARSET,
    FAMILY,
    GIVEN,
    PATIENT_COMMENTS,
    PATIENT_NAME,
    STUDY_DESCRIPTION,
    _start,
    bases,
)

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _outputs(data: bytes, tmp_path: Path, options: tuple[str, ...]) -> list[bytes]:
    source = tmp_path / "in.dcm"
    source.write_bytes(data)
    compiled, keys = _engine(options)
    found = []
    for fast in (False, True):
        outcome = deidentify_file(source, tmp_path / str(fast), compiled, keys, fast=fast)
        assert outcome.status == "ok", outcome.reason
        found.append((tmp_path / str(fast) / outcome.output).read_bytes())
    return found


def test_escape_glued_to_a_name_in_free_text(tmp_path: Path) -> None:
    """``charset:charset3-name0`` (seed 20261203, index 197): UTF-8 declared, the name
    ``=ESC$)CQUIXOTEFZ`` (an ideographic group opened by a stray ISO 2022 escape whose final
    byte ``C`` is a letter), and a Study Description quoting it: the text was matched with
    the ``C`` glued to the name, and the name survived Clean Descriptors."""
    base = next(b for b in bases() if b.label == "test_files/CT_small.dcm")
    name = b"=\x1b$)C" + FAMILY.encode()
    data = set_value(_start(random.Random(1), base), CHARSET, b"ISO_IR 192", b"CS")
    data = set_value(data, PATIENT_NAME, name, b"PN")
    data = set_value(data, STUDY_DESCRIPTION, b"Study of " + name, b"LO")
    assert layout(data).find(STUDY_DESCRIPTION) is not None
    for output in _outputs(data, tmp_path, ("clean-descriptors",)):
        assert FAMILY.encode() not in output


def test_name_shifted_by_a_stray_escape(tmp_path: Path) -> None:
    """``charset:charset0-name3`` (seed 20261203, index 202): ISO 2022 IR 87 declared and a
    name ``ESC $ B QUIXOTEFZ^ZEBULONFZ``: pydicom decodes the letters as JIS X 0208 (kanji),
    so the name the scrubber knew was no longer the one Patient Comments quoted in ASCII,
    and it survived Clean Descriptors."""
    base = next(b for b in bases() if b.label == "test_files/CT_small.dcm")
    data = set_value(_start(random.Random(2), base), CHARSET, b"ISO 2022 IR 87", b"CS")
    data = set_value(data, PATIENT_NAME, b"\x1b$B" + f"{FAMILY}^{GIVEN}".encode(), b"PN")
    data = set_value(data, PATIENT_COMMENTS, f"Call {FAMILY} today".encode(), b"LT")
    for output in _outputs(data, tmp_path, ("clean-descriptors",)):
        assert FAMILY.encode() not in output
