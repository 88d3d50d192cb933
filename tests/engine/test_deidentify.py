"""Engine behaviour: UIDs, pseudonyms, dates, private tags, pixel risks, method attributes."""

from __future__ import annotations

import re
from io import BytesIO

import pydicom
import pytest
from pydicom.data import get_charset_files
from pydicom.dataset import Dataset
from pydicom.filewriter import dcmwrite
from pydicom.sequence import Sequence

from dicomveil.engine.deidentify import deidentify
from dicomveil.engine.keys import PseudonymKeys
from dicomveil.engine.uids import remap_uid
from dicomveil.errors import UnsupportedInputError
from dicomveil.profile.policy import Override, OverrideAction, Policy, PrivateRule
from tests.canary import as_file_dataset

KEYS = PseudonymKeys(b"engine-test-secret-0123456789")
OTHER_KEYS = PseudonymKeys(b"another-secret-for-tests-987654")
UID_RE = re.compile(r"2\.25\.[1-9]\d{0,38}")


def image(patient_id: str = "MRN123", study: str = "1.2.3.4", sop: str = "1.2.3.4.5.6") -> Dataset:
    ds = Dataset()
    ds.PatientName = "DOE^JANE"
    ds.PatientID = patient_id
    ds.PatientBirthDate = "19700131"
    ds.StudyInstanceUID = study
    ds.SeriesInstanceUID = study + ".1"
    ds.SOPInstanceUID = sop
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.StudyDate = "20240301"
    ds.AcquisitionDateTime = "20240302101010.5"
    ds.StudyTime = "101010"
    ds.AccessionNumber = "ACC42"
    ds.StudyID = "77"
    ds.Modality = "CT"
    ds.InstanceNumber = 3
    ds.Rows = 2
    return ds


def to_bytes(ds: Dataset) -> bytes:
    buffer = BytesIO()
    dcmwrite(buffer, as_file_dataset(ds), enforce_file_format=True)
    return buffer.getvalue()


class TestUids:
    def test_format_and_determinism(self) -> None:
        new = remap_uid(KEYS, "1.2.3.4")
        assert UID_RE.fullmatch(new) and len(new) <= 64
        assert new == remap_uid(PseudonymKeys(b"engine-test-secret-0123456789"), "1.2.3.4")
        assert new != remap_uid(OTHER_KEYS, "1.2.3.4")

    def test_references_stay_consistent_across_files(self) -> None:
        first = image(sop="1.2.3.4.5.1")
        second = image(sop="1.2.3.4.5.2")
        ref = Dataset()
        ref.ReferencedSOPClassUID = first.SOPClassUID
        ref.ReferencedSOPInstanceUID = "1.2.3.4.5.1"
        second.SourceImageSequence = Sequence([ref])
        a = deidentify(first, Policy(), KEYS).dataset
        b = deidentify(second, Policy(), KEYS).dataset
        assert b.SourceImageSequence[0].ReferencedSOPInstanceUID == a.SOPInstanceUID
        assert b.SourceImageSequence[0].ReferencedSOPClassUID == "1.2.840.10008.5.1.4.1.1.2"
        assert a.StudyInstanceUID == b.StudyInstanceUID

    def test_unlisted_non_registry_uid_is_replaced(self) -> None:
        ds = image()
        ds.add_new(0x00400254, "LO", "x")  # irrelevant
        ds.ReferencedFrameOfReferenceUID = "9.8.7.6"  # (3006,0024), UI outside most logic
        out = deidentify(ds, Policy(), KEYS).dataset
        assert out.ReferencedFrameOfReferenceUID == remap_uid(KEYS, "9.8.7.6")

    def test_retain_uids(self) -> None:
        out = deidentify(image(), Policy.from_names(["retain-uids"]), KEYS).dataset
        assert out.SOPInstanceUID == "1.2.3.4.5.6"


class TestPseudonyms:
    def test_patient_pseudonym_is_stable_and_keyed(self) -> None:
        a = deidentify(image(), Policy(), KEYS).dataset
        b = deidentify(image(sop="1.9"), Policy(), KEYS).dataset
        c = deidentify(image(), Policy(), OTHER_KEYS).dataset
        assert a.PatientID == b.PatientID == str(a.PatientName)
        assert a.PatientID != c.PatientID
        assert re.fullmatch(r"P[A-Z2-7]{15}", a.PatientID)

    def test_organization_prefix(self) -> None:
        out = deidentify(image(), Policy(organization="HOSP1"), KEYS).dataset
        assert out.PatientID.startswith("HOSP1-P")

    def test_accession_and_study_id(self) -> None:
        out, _, identity = deidentify(image(), Policy(), KEYS)
        assert re.fullmatch(r"A[A-Z2-7]{15}", out.AccessionNumber)
        assert re.fullmatch(r"S[A-Z2-7]{15}", out.StudyID)
        assert identity.pseudonymous.study_id == out.StudyID
        assert identity.original.accession_number == "ACC42"

    def test_empty_accession_stays_empty(self) -> None:
        ds = image()
        ds.AccessionNumber = ""
        assert deidentify(ds, Policy(), KEYS).dataset.AccessionNumber == ""


class TestDates:
    def test_basic_profile_empties_dates(self) -> None:
        out = deidentify(image(), Policy(), KEYS).dataset
        assert out.StudyDate == "" and out.PatientBirthDate == ""
        assert out.LongitudinalTemporalInformationModified == "REMOVED"

    def test_full_dates_kept(self) -> None:
        policy = Policy.from_names(["retain-longitudinal-full-dates"])
        out = deidentify(image(), policy, KEYS).dataset
        assert out.StudyDate == "20240301"
        assert out.LongitudinalTemporalInformationModified == "UNMODIFIED"

    def test_modified_dates_keep_intervals_per_patient(self) -> None:
        policy = Policy.from_names(["retain-longitudinal-modified-dates"])
        first = deidentify(image(), policy, KEYS)
        later = image(study="1.2.3.9", sop="1.2.3.9.1")
        later.StudyDate = "20240310"
        second = deidentify(later, policy, KEYS)
        from datetime import date

        d1 = date.fromisoformat(first.dataset.StudyDate[:4] + "-" + first.dataset.StudyDate[4:6]
                                + "-" + first.dataset.StudyDate[6:])  # fmt: skip
        d2 = date.fromisoformat(second.dataset.StudyDate[:4] + "-"
                                + second.dataset.StudyDate[4:6] + "-"
                                + second.dataset.StudyDate[6:])  # fmt: skip
        assert (d2 - d1).days == 9  # interval preserved
        assert first.dataset.StudyDate != "20240301"
        assert first.identity.date_offset_days == second.identity.date_offset_days > 0
        assert first.dataset.AcquisitionDateTime.endswith("101010.5")
        assert first.dataset.StudyTime == "101010"
        assert first.dataset.LongitudinalTemporalInformationModified == "MODIFIED"

    def test_other_patient_gets_other_offset(self) -> None:
        policy = Policy.from_names(["retain-longitudinal-modified-dates"])
        offsets = {
            deidentify(image(patient_id=f"P{i}"), policy, KEYS).identity.date_offset_days
            for i in range(20)
        }
        assert len(offsets) > 15


class TestPrivate:
    def build(self) -> Dataset:
        ds = image()
        block = ds.private_block(0x0019, "SIEMENS MR HEADER", create=True)
        block.add_new(0x0C, "IS", "1000")  # safe: B value
        block.add_new(0x99, "LO", "PRIVATE-NAME-LEAK")  # not listed as safe
        acme = ds.private_block(0x0029, "ACME 1.0", create=True)
        acme.add_new(0x01, "LO", "ACME-VALUE")
        return ds

    def test_private_removed_by_default(self) -> None:
        out = deidentify(self.build(), Policy(), KEYS).dataset
        assert not any(elem.tag.is_private for elem in out)

    def test_retain_safe_private(self) -> None:
        out = deidentify(self.build(), Policy.from_names(["retain-safe-private"]), KEYS).dataset
        data = to_bytes(out)
        assert b"1000" in data and b"SIEMENS MR HEADER" in data
        assert b"PRIVATE-NAME-LEAK" not in data and b"ACME" not in data

    def test_private_creator_rule(self) -> None:
        rule = PrivateRule("ACME 1.0", OverrideAction.KEEP)
        out = deidentify(self.build(), Policy(private_rules=(rule,)), KEYS).dataset
        data = to_bytes(out)
        assert b"ACME-VALUE" in data and b"PRIVATE-NAME-LEAK" not in data


class TestOverrides:
    def test_keep_replace_hash_empty_remove(self) -> None:
        ds = image()
        ds.PatientSex = "F"
        ds.InstitutionName = "General Hospital"
        ds.StationName = "CT01"
        ds.StudyDescription = "CT HEAD"
        overrides = {
            0x00100040: Override(OverrideAction.KEEP),
            0x00080080: Override(OverrideAction.HASH),
            0x00081010: Override(OverrideAction.EMPTY),
            0x00081030: Override(OverrideAction.REPLACE, "CT STUDY"),
            0x00200013: Override(OverrideAction.REMOVE),
        }
        out = deidentify(ds, Policy(overrides=overrides), KEYS).dataset
        assert out.PatientSex == "F"
        assert re.fullmatch(r"H[A-Z2-7]{15}", out.InstitutionName)
        assert out.StationName == ""
        assert out.StudyDescription == "CT STUDY"
        assert "InstanceNumber" not in out


class TestPixelRisks:
    def test_burned_in_annotation_refused(self) -> None:
        ds = image()
        ds.BurnedInAnnotation = "YES"
        with pytest.raises(UnsupportedInputError, match="BurnedInAnnotation"):
            deidentify(ds, Policy(), KEYS, has_pixels=True)

    def test_burned_in_annotation_allowed_by_policy(self) -> None:
        ds = image()
        ds.BurnedInAnnotation = "YES"
        result = deidentify(ds, Policy(allow_burned_in_annotation=True), KEYS, has_pixels=True)
        assert "burned-in-annotation-allowed" in result.report.flags

    def test_ultrasound_flagged(self) -> None:
        ds = image()
        ds.Modality = "US"
        result = deidentify(ds, Policy(), KEYS, has_pixels=True)
        assert "possible-burned-in-annotation" in result.report.flags

    def test_clean_pixel_data_refuses_what_it_would_need(self) -> None:
        ds = image()
        ds.Modality = "US"
        with pytest.raises(UnsupportedInputError, match="clean-pixel-data"):
            deidentify(ds, Policy.from_names(["clean-pixel-data"]), KEYS, has_pixels=True)


class TestMethodAttributes:
    def test_codes(self) -> None:
        policy = Policy.from_names(["retain-uids", "clean-descriptors"])
        out = deidentify(image(), policy, KEYS).dataset
        codes = [item.CodeValue for item in out.DeidentificationMethodCodeSequence]
        assert codes == ["113100", "113105", "113110"]
        assert out.PatientIdentityRemoved == "YES"
        assert "PS3.15 2025b" in " ".join(out.DeidentificationMethod)


class TestCleaning:
    def test_descriptors_scrubbed_of_identifiers(self) -> None:
        ds = image()
        ds.StudyDescription = "CT for Jane Doe MRN123 born 31/01/1970"
        out = deidentify(ds, Policy.from_names(["clean-descriptors"]), KEYS).dataset
        assert out.StudyDescription.startswith("CT for")
        for fragment in ("Jane", "Doe", "MRN123", "1970"):
            assert fragment not in out.StudyDescription

    def test_report_has_no_values(self) -> None:
        result = deidentify(image(), Policy(), KEYS)
        text = repr(result.report.to_dict()) + repr(result.identity.original)
        for value in ("DOE", "JANE", "MRN123", "19700131", "1.2.3.4", "ACC42"):
            assert value not in text


class TestDocuments:
    def test_encapsulated_pdf_is_replaced(self) -> None:
        ds = image()
        ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.104.1"
        ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
        ds.EncapsulatedDocument = b"%PDF-1.4 PATIENT JANE DOE secret report" + b" " * 3
        out = deidentify(ds, Policy(), KEYS).dataset
        assert b"JANE" not in out.EncapsulatedDocument
        assert out.EncapsulatedDocument.startswith(b"%PDF-")


@pytest.mark.parametrize(
    "name",
    ["chrH31.dcm", "chrH32.dcm", "chrX1.dcm", "chrX2.dcm", "chrKoreanMulti.dcm",
     "chrJapMulti.dcm", "chrFren.dcm", "chrGerm.dcm", "chrRuss.dcm", "chrGreek.dcm"],
)  # fmt: skip
def test_names_in_any_character_set_do_not_survive(name: str) -> None:
    [path] = get_charset_files(name)
    raw = open(path, "rb").read()
    original = pydicom.dcmread(path)
    value = original.get_item("PatientName").value
    parts = [p for p in re.split(rb"[\^=]", value) if len(p.strip()) >= 2]
    assert parts and all(p in raw for p in parts)  # the planted bytes are there before
    out = deidentify(original, Policy(), KEYS).dataset
    data = to_bytes(out)
    assert [p for p in parts if p in data] == []
