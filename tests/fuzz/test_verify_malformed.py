"""``verify`` on malformed originals: a value pydicom cannot decode is still looked for.

The fuzz campaign found ``dicomveil verify`` ending with a traceback (``NotImplementedError``,
``BytesLengthException``) when an original held an element pydicom cannot decode: an unknown
VR, or a name sent under a numeric VR with a length that VR does not allow. Such files are the
ones most worth checking (the engine may have copied the element verbatim).
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from pydicom.datadict import keyword_for_tag

from dicomveil.pipeline.verify import verify_folders
from tests.fuzz.encoded import encode_element, layout
from tests.fuzz.mutator import GIVEN, PATIENT_ID_TAG, PATIENT_NAME, _start, bases

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _with_vr(data: bytes, tag: int, vr: bytes) -> bytes:
    element = layout(data).find(tag)
    assert element is not None
    value = data[element.value_at : element.end]
    encoded = encode_element(tag, vr, value, implicit=False)
    return data[: element.start] + encoded + data[element.end :]


@pytest.mark.parametrize(
    ("tag", "vr"),
    [
        (PATIENT_NAME, b"FD"),  # 20 bytes under FD: not a multiple of 8
        (PATIENT_ID_TAG, b"ZZ"),  # no such VR
    ],
    ids=["name-as-FD", "id-unknown-VR"],
)
def test_undecodable_value_is_looked_for(tmp_path: Path, tag: int, vr: bytes) -> None:
    base = next(b for b in bases() if b.label == "test_files/CT_small.dcm")
    data = _with_vr(_start(random.Random(1), base), tag, vr)
    originals, outputs = tmp_path / "originals", tmp_path / "outputs"
    originals.mkdir()
    outputs.mkdir()
    (originals / "in.dcm").write_bytes(data)
    (outputs / "out.dcm").write_bytes(data)  # the worst output: nothing removed
    result = verify_folders(originals, outputs)
    assert result.originals == 1
    found = {leak.attribute for leak in result.leaks}  # no traceback, and:
    assert keyword_for_tag(tag) in found  # the undecodable element's value is looked for
    assert GIVEN not in repr(result.leaks)
