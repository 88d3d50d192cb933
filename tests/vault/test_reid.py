"""Re-identification services: lookups and returned objects, always audited, never leaking."""

from __future__ import annotations

from collections.abc import Iterator
from io import BytesIO
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset

from dicomveil.audit import AuditLog
from dicomveil.engine.identity import IdentityRecord
from dicomveil.errors import AccessDenied, ConfigError, VaultError
from dicomveil.reid import default_actor, reidentify, reidentify_dataset
from dicomveil.vault import Vault
from tests.vault.conftest import OTHER_SECRET, SECRET
from tests.vault.corpus import make_records, planted_values
from tests.vault.sr import NEW_ROOT, returned_sr

AUDIT_SECRET = b"audit-secret-for-tests-0123456789"
RECORDS = make_records(patients=2, studies=2, series=2, instances=2)


@pytest.fixture
def url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'vault.sqlite'}"
    with Vault.open(url, SECRET) as vault:
        vault.record(RECORDS, "run-1")
    return url


@pytest.fixture
def vault(url: str) -> Iterator[Vault]:
    with Vault.open(url, SECRET) as opened:
        yield opened


@pytest.fixture
def audit(tmp_path: Path) -> AuditLog:
    return AuditLog(tmp_path / "audit", AUDIT_SECRET)


def _events(audit: AuditLog) -> list[tuple[str, str]]:
    return [(e.event, e.outcome) for e in audit.entries()]


def _assert_no_phi(audit: AuditLog) -> None:
    data = audit.path.read_bytes()
    assert sorted(v for v in planted_values(RECORDS) if v.encode() in data) == []
    assert audit.verify().ok


class TestReidentify:
    def test_found_for_every_kind_of_pseudonym(self, vault: Vault, audit: AuditLog) -> None:
        record = RECORDS[0]
        p = record.pseudonymous
        for query in (
            {"patient": p.patient_id},
            {"study": p.study_id},
            {"study": p.study_instance_uid},
            {"accession": p.accession_number},
        ):
            matches = reidentify(vault, audit, actor="alice", purpose="report", **query)
            assert matches and matches[0].original.patient_id == record.original.patient_id
        entries = list(audit.entries())
        assert [e.event for e in entries] == ["reid.lookup"] * 4
        assert entries[0].details["pseudonym"] == p.patient_id
        assert entries[0].details["matches"] == 2 and entries[0].actor == "alice"
        assert entries[0].details["purpose"] == "report"
        _assert_no_phi(audit)

    def test_not_found_records_only_a_fingerprint(self, vault: Vault, audit: AuditLog) -> None:
        typed_by_mistake = RECORDS[0].original.patient_id
        assert reidentify(vault, audit, actor="bob", purpose="qa", patient=typed_by_mistake) == []
        (entry,) = audit.entries()
        assert (entry.event, entry.outcome) == ("reid.lookup", "not-found")
        assert entry.details["query_fingerprint"] == audit.fingerprint(typed_by_mistake)
        _assert_no_phi(audit)

    @pytest.mark.parametrize(
        ("actor", "purpose", "reason"),
        [("", "report", "no actor"), ("alice", "  ", "no purpose"), ("alice", "x" * 501, "longer")],
    )
    def test_refused_without_actor_or_purpose(
        self, vault: Vault, audit: AuditLog, actor: str, purpose: str, reason: str
    ) -> None:
        with pytest.raises(AccessDenied, match=reason):
            reidentify(vault, audit, actor=actor, purpose=purpose, study="S1")
        assert _events(audit) == [("access.denied", "denied")]

    def test_refused_without_the_vault_key(self, url: str, audit: AuditLog) -> None:
        def no_key() -> Vault:
            raise ConfigError("vault key: none found")

        def wrong_key() -> Vault:
            return Vault.open(url, OTHER_SECRET, create=False)

        for opener in (no_key, wrong_key):
            with pytest.raises(AccessDenied, match="cannot be opened"):
                reidentify(opener, audit, actor="eve", purpose="curious", patient="ANON")
        assert _events(audit) == [("access.denied", "denied")] * 2

    def test_opener_is_used_and_closed(self, url: str, audit: AuditLog) -> None:
        p = RECORDS[0].pseudonymous
        matches = reidentify(
            lambda: Vault.open(url, SECRET, create=False),
            audit,
            actor=default_actor(),
            purpose="report",
            study=p.study_id,
        )
        assert len(matches) == 1
        with pytest.raises(ValueError, match="exactly one"):
            reidentify(lambda: Vault.open(url, SECRET), audit, actor="a", purpose="b")


def _study(index: int) -> list[IdentityRecord]:
    uid = RECORDS[index].pseudonymous.study_instance_uid
    return [r for r in RECORDS if r.pseudonymous.study_instance_uid == uid]


def _ui_values(ds: Dataset) -> set[str]:
    found: set[str] = set()

    def visit(dataset: Dataset, element: object) -> None:
        if getattr(element, "VR", None) == "UI" and element.value:  # type: ignore[attr-defined]
            found.add(str(element.value))  # type: ignore[attr-defined]

    ds.walk(visit)
    return found


class TestReidentifyDataset:
    def test_returned_sr_points_at_the_originals(self, vault: Vault, audit: AuditLog) -> None:
        study = _study(0)
        sr = returned_sr(study)
        before = sr.to_json_dict()
        out = reidentify_dataset(sr, vault, audit, actor="alice", purpose="import report")
        assert sr.to_json_dict() == before  # the input is untouched
        o = study[0].original
        assert (out.PatientID, str(out.PatientName), out.IssuerOfPatientID) == (
            o.patient_id,
            o.patient_name,
            o.issuer_of_patient_id,
        )
        assert (out.PatientBirthDate, out.StudyInstanceUID) == (
            o.patient_birth_date,
            o.study_instance_uid,
        )
        assert (out.AccessionNumber, out.StudyDate) == (o.accession_number, o.study_date)
        assert out.PatientIdentityRemoved == "NO"
        assert out.ReferencedRequestSequence[0].AccessionNumber == o.accession_number
        uids = _ui_values(out)
        originals = {r.original.sop_instance_uid for r in study}
        originals |= {r.original.series_instance_uid for r in study}
        assert originals <= uids
        assert not {r.pseudonymous.sop_instance_uid for r in study} & uids
        assert not {r.pseudonymous.series_instance_uid for r in study} & uids
        assert o.study_instance_uid in uids and study[0].pseudonymous.study_instance_uid not in uids
        for new in (
            out.SOPInstanceUID,
            out.SeriesInstanceUID,
            out.file_meta.MediaStorageSOPInstanceUID,
        ):
            assert new.startswith(NEW_ROOT)
        assert f"{NEW_ROOT}.9" in uids
        image = out.ContentSequence[0].ContentSequence[0].ReferencedSOPSequence[0]
        assert image.ReferencedSOPInstanceUID == study[0].original.sop_instance_uid
        buffer = BytesIO()
        out.save_as(buffer, enforce_file_format=True)
        assert dcmread(BytesIO(buffer.getvalue())).PatientID == o.patient_id
        (entry,) = audit.entries()
        assert (
            entry.event == "reid.dataset" and entry.details["mapped_uids"] == 2 * len(study) + 2 + 4
        )
        _assert_no_phi(audit)

    def test_object_in_a_new_study_keeps_its_study(self, vault: Vault, audit: AuditLog) -> None:
        study = _study(0)
        out = reidentify_dataset(
            returned_sr(study, own_study=False), vault, audit, actor="alice", purpose="import"
        )
        assert out.StudyInstanceUID == f"{NEW_ROOT}.1"
        assert out.PatientID == study[0].original.patient_id
        evidence = out.CurrentRequestedProcedureEvidenceSequence[0]
        assert evidence.StudyInstanceUID == study[0].original.study_instance_uid

    def test_unknown_object_is_not_found(self, vault: Vault, audit: AuditLog) -> None:
        sr = returned_sr(make_records(1, 1, 1, 1, first_patient=77))
        with pytest.raises(VaultError, match="no de-identified study"):
            reidentify_dataset(sr, vault, audit, actor="alice", purpose="import")
        assert _events(audit) == [("reid.dataset", "not-found")]

    def test_refused_without_purpose(self, vault: Vault, audit: AuditLog) -> None:
        with pytest.raises(AccessDenied):
            reidentify_dataset(returned_sr(_study(0)), vault, audit, actor="alice", purpose="")
        assert _events(audit) == [("access.denied", "denied")]
