"""A returned object built in code: a Comprehensive SR made by the remote reader.

It sits in the de-identified study (or in a new study of its own) and references the
de-identified images at several sequence depths; its own series and instance UIDs are new.
"""

from __future__ import annotations

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import UID, ExplicitVRLittleEndian

from dicomveil.engine.identity import IdentityRecord

COMPREHENSIVE_SR = "1.2.840.10008.5.1.4.1.1.88.33"
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
NEW_ROOT = "1.2.826.0.1.3680043.10.555"


def _item(**values: object) -> Dataset:
    item = Dataset()
    for keyword, value in values.items():
        setattr(item, keyword, value)
    return item


def _image_item(record: IdentityRecord) -> Dataset:
    reference = _item(
        ReferencedSOPClassUID=CT_IMAGE,
        ReferencedSOPInstanceUID=record.pseudonymous.sop_instance_uid,
    )
    return _item(
        RelationshipType="CONTAINS",
        ValueType="IMAGE",
        ReferencedSOPSequence=Sequence([reference]),
    )


def returned_sr(records: list[IdentityRecord], *, own_study: bool = True) -> Dataset:
    """An SR on the study of ``records`` (all from one study) referencing every instance."""
    p = records[0].pseudonymous
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = UID(COMPREHENSIVE_SR)
    ds.file_meta.MediaStorageSOPInstanceUID = UID(f"{NEW_ROOT}.3")
    ds.SOPClassUID = COMPREHENSIVE_SR
    ds.SOPInstanceUID = f"{NEW_ROOT}.3"
    ds.StudyInstanceUID = p.study_instance_uid if own_study else f"{NEW_ROOT}.1"
    ds.SeriesInstanceUID = f"{NEW_ROOT}.2"
    ds.PatientID = p.patient_id
    ds.PatientName = "ANONYMIZED"
    ds.PatientBirthDate = ""
    ds.AccessionNumber = p.accession_number if own_study else ""
    ds.StudyDate = "20230101"
    ds.StudyID = p.study_id
    ds.Modality = "SR"
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = "dicomveil"
    by_series: dict[str, list[IdentityRecord]] = {}
    for record in records:
        by_series.setdefault(record.pseudonymous.series_instance_uid, []).append(record)
    series_items = [
        _item(
            SeriesInstanceUID=series_uid,
            ReferencedSOPSequence=Sequence(
                [
                    _item(
                        ReferencedSOPClassUID=CT_IMAGE,
                        ReferencedSOPInstanceUID=r.pseudonymous.sop_instance_uid,
                    )
                    for r in members
                ]
            ),
        )
        for series_uid, members in by_series.items()
    ]
    ds.CurrentRequestedProcedureEvidenceSequence = Sequence(
        [
            _item(
                StudyInstanceUID=p.study_instance_uid,
                ReferencedSeriesSequence=Sequence(series_items),
            )
        ]
    )
    ds.ReferencedRequestSequence = Sequence(
        [
            _item(
                StudyInstanceUID=p.study_instance_uid,
                AccessionNumber=p.accession_number,
                RequestedProcedureID="RP1",
            )
        ]
    )
    uid_ref = _item(RelationshipType="CONTAINS", ValueType="UIDREF", UID=p.study_instance_uid)
    new_ref = _item(RelationshipType="CONTAINS", ValueType="UIDREF", UID=f"{NEW_ROOT}.9")
    container = _item(
        RelationshipType="CONTAINS",
        ValueType="CONTAINER",
        ContentSequence=Sequence([_image_item(r) for r in records] + [uid_ref, new_ref]),
    )
    ds.ValueType = "CONTAINER"
    ds.ContentSequence = Sequence([container])
    return ds
