"""Attributes Table E.1-1 removes but a sequence's module requires (Type 2) in its items.

A de-identified structured report gained a dciodvfy error: Requested Procedure ID is Type 2
in the Referenced Request Sequence of the SR Document General module, and the table's X
removed it. Inside those items it is now emptied (Z), on both paths; elsewhere it is still
removed.
"""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from dicomveil.engine.rules import compile_policy
from dicomveil.profile.policy import Policy
from tests.pipeline.test_corpus import _iod_errors
from tests.pipeline.test_fast_path import _both, _same
from tests.support.servers import require_binary

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _report_with_request(path: Path) -> Path:
    ds = pydicom.dcmread(get_testdata_file("test-SR.dcm"))
    request = Dataset()
    request.StudyInstanceUID = ds.StudyInstanceUID
    request.ReferencedStudySequence = Sequence()
    request.AccessionNumber = "ACC77"
    request.PlacerOrderNumberImagingServiceRequest = "PLACER1"
    request.FillerOrderNumberImagingServiceRequest = "FILLER1"
    request.RequestedProcedureID = "RP1234"
    request.RequestedProcedureDescription = "CT chest"
    request.RequestedProcedureCodeSequence = Sequence()
    ds.ReferencedRequestSequence = Sequence([request])
    ds.RequestedProcedureID = "RP1234"  # top level: not required there, removed
    ds.save_as(path)
    return path


@pytest.mark.parametrize("options", [[], ["clean-descriptors"]], ids=["basic", "clean"])
def test_a_structured_report_gains_no_iod_error(options: list[str], tmp_path: Path) -> None:
    dciodvfy = require_binary("dciodvfy")
    source = _report_with_request(tmp_path / "sr.dcm")
    reference, quick, fast = _both(source, tmp_path, Policy.from_names(options))
    _same(reference, quick, tmp_path)
    assert fast or options  # the fast path handles the context itself
    output = tmp_path / "reference" / str(reference.output)
    assert _iod_errors(output, dciodvfy) - _iod_errors(source, dciodvfy) == set()
    ds = pydicom.dcmread(output)
    assert ds.ReferencedRequestSequence[0].RequestedProcedureID == ""
    assert "RequestedProcedureID" not in ds
    assert b"RP1234" not in output.read_bytes()


def test_the_rule_names_its_context() -> None:
    compiled = compile_policy(Policy())
    inside = compiled.rule(0x00401001, "SH", within=0x0040A370)
    assert inside.op.value == "empty" and "(0040,A370)" in inside.source
    assert compiled.rule(0x00401001, "SH").op.value == "remove"
