"""HIPAA Safe Harbor (``--option safe-harbor``) and ``verify --safe-harbor`` (#14).

A real CT from pydicom's test files gets planted values of the Safe Harbor categories (an age
over 89, full dates at two depths, a birth date 98 years before the study, a street address
with a ZIP code in a restricted area, a region, a telephone number) and goes through the real
``dicomveil deid`` with the options that *keep* dates, ages and (by override) the address;
the output must hold only what Safe Harbor allows, and ``verify --safe-harbor`` must pass on
it and fail on the same run without the option.
"""

from __future__ import annotations

import json
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from dicomveil.cli.main import main
from dicomveil.engine.safe_harbor import (
    apply_safe_harbor,
    cap_age,
    safe_harbor_findings,
    year_of_da,
    year_of_dt,
    zip3,
)

ADDRESS = "12 Quarry Lane^Jaffrey^NH^03452"  # a ZIP code in the last component
ADDRESS_WITH_ZIP = "77 Pilgrim Road, Plymouth, VT 05056-1234"
KEEP_ALL = ["retain-longitudinal-full-dates", "retain-patient-characteristics"]


@pytest.mark.parametrize(
    ("age", "expected"),
    [
        ("089Y", "089Y"),
        ("090Y", "090Y"),
        ("095Y", "090Y"),
        ("120Y", "090Y"),
        ("1079M", "1079M"),  # not an AS (4 digits): left to the profile
        ("999M", "999M"),
        ("030M", "030M"),
        ("080W", "080W"),
        ("999W", "999W"),
        ("", ""),
    ],
)
def test_ages(age: str, expected: str) -> None:
    assert cap_age(age) == expected


def test_dates_zip_codes() -> None:
    assert year_of_da("20180704") == "20180101"
    assert year_of_da("2018.07.04") == "20180101"
    assert year_of_da("garbage") == ""
    assert year_of_dt("20180704101530.5+0100") == "2018"
    assert zip3(ADDRESS_WITH_ZIP) == "050"
    assert zip3("1 Main St, Boston MA 02108") == "021"
    assert zip3("Box 1, Kodiak AK 99615") == "996"
    assert zip3("Wilton NH 03086 / 03601") == "000"  # the last code; 036 is restricted
    assert zip3(ADDRESS) == "034"
    assert zip3("no code here") == ""


def _planted(folder: Path) -> Path:
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.PatientAge = "098Y"
    ds.StudyDate = "20180704"
    ds.SeriesDate = "20180704"
    ds.AcquisitionDateTime = "20180704101530"
    ds.PatientBirthDate = "19200315"
    ds.PatientAddress = "4 Elm Street, Hartford CT 06103"
    ds.RegionOfResidence = "Hartford County"
    ds.PatientTelephoneNumbers = "+1 860 555 0199"
    item = Dataset()
    item.ScheduledProcedureStepStartDate = "20180705"  # a date at depth 1
    item.RequestedProcedureID = "RP1"
    ds.RequestAttributesSequence = Sequence([item])
    path = folder / "originals" / "ct.dcm"
    path.parent.mkdir(parents=True)
    ds.save_as(path, enforce_file_format=True)
    return path.parent


@pytest.fixture(autouse=True)
def _home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DICOMVEIL_HOME", str(tmp_path / "home"))


def _deid(originals: Path, out: Path, *options: str) -> None:
    policy = out.parent / "policy.toml"
    tags = 'PatientAddress = "keep"\nPatientBirthDate = "keep"\n'
    policy.write_text(f'name = "sh-test"\n[tags]\n{tags}')
    args = ["deid", str(originals), str(out), "--policy", str(policy)]
    for option in options:
        args += ["--option", option]
    assert main(args) == 0


def _verify(
    originals: Path, out: Path, capsys: pytest.CaptureFixture[str]
) -> tuple[int, dict[str, list[str]], str]:
    capsys.readouterr()
    code = main(["verify", str(originals), str(out), "--safe-harbor", "--json"])
    captured = capsys.readouterr()
    return code, json.loads(captured.out)["safe_harbor"], captured.out + captured.err


def _output(out: Path) -> Path:
    (found,) = list(out.rglob("*.dcm"))
    return found


def test_deid_with_safe_harbor_keeps_only_what_it_allows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    originals = _planted(tmp_path)
    out = tmp_path / "out"
    _deid(originals, out, *KEEP_ALL, "safe-harbor")
    path = _output(out)
    ds = pydicom.dcmread(path)
    assert ds.PatientAge == "090Y"
    assert ds.StudyDate == "20180101" and ds.SeriesDate == "20180101"
    assert ds.AcquisitionDateTime == "2018"
    assert ds.PatientBirthDate == ""  # kept by the policy, but 98 years before the study
    assert ds.PatientAddress == "061"
    assert "PatientTelephoneNumbers" not in ds or not ds.PatientTelephoneNumbers
    assert not ds.get("RegionOfResidence")
    assert ds.LongitudinalTemporalInformationModified == "MODIFIED"
    assert "safe-harbor" in list(ds.DeidentificationMethod)
    assert safe_harbor_findings(ds) == []
    data = path.read_bytes().split(b"\xe0\x7f\x10\x00")[0]  # up to the pixel data
    for planted in (b"20180704", b"20180705", b"098Y", b"1920", b"Elm Street", b"Hartford"):
        assert planted not in data, planted
    code, findings, output = _verify(originals, out, capsys)
    assert code == 0, output
    assert findings == {}


def test_verify_flags_what_safe_harbor_does_not_allow(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    originals = _planted(tmp_path)
    out = tmp_path / "out"
    _deid(originals, out, *KEEP_ALL)  # the same run without the option
    code, report, output = _verify(originals, out, capsys)
    assert code == 1
    (findings,) = report.values()
    assert "3 dates: StudyDate" in findings
    assert "3 ages over 89: PatientAge" in findings
    assert "2 geographic subdivisions: PatientAddress" in findings
    assert "3 ages over 89: PatientBirthDate" in findings
    for planted in ("20180704", "098Y", "Elm", "Hartford"):
        assert planted not in output


def test_findings_cover_direct_identifiers_and_ids() -> None:
    ds = Dataset()
    ds.PatientID = "MRN-12345"
    ds.AccessionNumber = "ACC1"
    ds.OtherPatientIDs = "123-45-6789"
    ds.PatientTelephoneNumbers = "555 0100"
    ds.DeviceSerialNumber = "SN-1"
    found = safe_harbor_findings(ds)
    assert found == [
        "13 device identifiers and serial numbers: DeviceSerialNumber",
        "18 other unique identifying numbers: AccessionNumber",
        "4-6 telephone, fax, email: PatientTelephoneNumbers",
        "7 social security numbers: OtherPatientIDs",
        "8 medical record numbers: PatientID",
    ]
    ds.PatientID = "HOSP1-P" + "A" * 15
    ds.AccessionNumber = "A" + "B" * 15
    assert "8 medical record numbers: PatientID" not in safe_harbor_findings(ds)
    ds.StudyInstanceUID = "1.2.840.113619.2.55.3.20180704"  # an original UID (retain-uids)
    assert "18 other unique identifying numbers: StudyInstanceUID" in safe_harbor_findings(ds)
    ds.StudyInstanceUID = "2.25.1234"
    assert "18 other unique identifying numbers: StudyInstanceUID" not in safe_harbor_findings(ds)


def test_a_birth_date_within_89_years_keeps_its_year() -> None:
    ds = Dataset()
    ds.StudyDate = "20200202"
    ds.PatientBirthDate = "19500607"
    ds.PatientAge = "069Y"
    notes = apply_safe_harbor(ds)
    assert ds.PatientBirthDate == "19500101" and ds.PatientAge == "069Y"
    assert notes and all("1950" not in note for note in notes)
