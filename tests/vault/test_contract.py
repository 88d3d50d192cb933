"""The vault contract, run on SQLite and on a real PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select, update

from dicomveil.errors import VaultError
from dicomveil.vault import Vault, pending_key_id, rotate_vault_key
from dicomveil.vault.schema import studies
from tests.vault.conftest import OTHER_SECRET, SECRET
from tests.vault.corpus import make_records, pseudo_uid

NEW_SECRET = b"the-next-vault-secret-abcdefghij"


@pytest.fixture
def vault(vault_url: str) -> Iterator[Vault]:
    with Vault.open(vault_url, SECRET) as opened:
        yield opened


def _studies(records):  # one record per study
    return list({r.pseudonymous.study_instance_uid: r for r in records}.values())


def _assert_all_resolve(vault: Vault, records) -> None:
    for record in _studies(records):
        (match,) = vault.find(study=record.pseudonymous.study_id)
        o = record.original
        assert match.original.as_dicom() == {
            "PatientID": o.patient_id,
            "PatientName": o.patient_name,
            "IssuerOfPatientID": o.issuer_of_patient_id,
            "PatientBirthDate": o.patient_birth_date,
            "StudyInstanceUID": o.study_instance_uid,
            "AccessionNumber": o.accession_number,
            "StudyDate": o.study_date,
        }


class TestRecordAndFind:
    def test_round_trip(self, vault: Vault) -> None:
        records = make_records(patients=3, studies=2, series=2, instances=3)
        result = vault.record(records, run_id="run-1")
        assert (result.studies, result.series, result.instances) == (6, 12, 36)
        _assert_all_resolve(vault, records)
        for record in _studies(records):
            p = record.pseudonymous
            by_uid = vault.find(study=p.study_instance_uid)
            by_accession = vault.find(accession=p.accession_number)
            assert by_uid == by_accession == vault.find(study=p.study_id)
            (match,) = by_uid
            assert (match.series_count, match.instance_count) == (2, 6)
            assert match.date_offset_days == record.date_offset_days
            assert match.run_id == "run-1" and match.recorded_at.tzinfo is not None
            assert match.pseudonymous_dicom()["StudyInstanceUID"] == p.study_instance_uid
        by_patient = vault.find(patient=records[0].pseudonymous.patient_id)
        assert len(by_patient) == 2
        assert {m.original.patient_id for m in by_patient} == {records[0].original.patient_id}

    def test_not_found_and_misuse(self, vault: Vault) -> None:
        vault.record(make_records(patients=1, studies=1, series=1, instances=1), "run")
        assert vault.find(patient="nobody") == []
        with pytest.raises(ValueError, match="exactly one"):
            vault.find(patient="a", study="b")
        with pytest.raises(ValueError, match="run_id"):
            vault.record(make_records(1, 1, 1, 1), "")

    def test_record_is_idempotent(self, vault: Vault) -> None:
        records = make_records(patients=2, studies=2, series=1, instances=2)
        vault.record(records, "run-1")
        again = vault.record(records + records, "run-2")
        assert (again.studies, again.series, again.instances, again.received) == (0, 0, 0, 16)
        more = make_records(patients=3, studies=2, series=1, instances=2)
        added = vault.record(more, "run-3")
        assert (added.studies, added.instances) == (2, 4)
        stats = vault.stats()
        assert (stats.patients, stats.studies, stats.series, stats.instances) == (3, 6, 6, 12)
        assert stats.runs == 2  # run-2 added nothing

    def test_same_instance_under_another_pseudonym_key(self, vault: Vault) -> None:
        first = make_records(1, 1, 1, 2, key_id="aaaaaaaaaaaa")
        second = make_records(1, 1, 1, 2, key_id="bbbbbbbbbbbb")
        vault.record(first, "run-a")
        assert vault.record(second, "run-b").instances == 2
        assert vault.stats().studies_by_pseudonym_key == {"aaaaaaaaaaaa": 1, "bbbbbbbbbbbb": 1}
        # pseudonym key rotated: both generations resolve to the same originals
        _assert_all_resolve(vault, first + second)


class TestBlindIndexAndUids:
    def test_seen_patient(self, vault: Vault) -> None:
        records = make_records(patients=2, studies=1, series=1, instances=1)
        vault.record(records, "run")
        original = records[0].original
        assert vault.seen_patient(original.patient_id, original.issuer_of_patient_id)
        assert vault.seen_patient(f" {original.patient_id} ", f"{original.issuer_of_patient_id} ")
        assert not vault.seen_patient(original.patient_id, "OTHER-ISSUER")
        assert not vault.seen_patient("PHI-PID-999", original.issuer_of_patient_id)

    def test_map_uid_back(self, vault: Vault) -> None:
        records = make_records(patients=2, studies=2, series=2, instances=2)
        vault.record(records, "run")
        for record in records:
            o, p = record.original, record.pseudonymous
            assert vault.map_uid_back(p.study_instance_uid) == o.study_instance_uid
            assert vault.map_uid_back(p.series_instance_uid) == o.series_instance_uid
            assert vault.map_uid_back(p.sop_instance_uid) == o.sop_instance_uid
        assert vault.map_uid_back("2.25.12345") is None
        everything = [r.pseudonymous.sop_instance_uid for r in records] + ["9.9"]
        assert len(vault.map_uids_back(everything)) == len(records)


class TestKeys:
    def test_wrong_key_is_refused_and_writes_nothing(self, vault_url: str) -> None:
        with Vault.open(vault_url, SECRET) as vault:
            vault.record(make_records(1, 1, 1, 2), "run")
            before = vault.stats()
        db_file = Path(vault_url.removeprefix("sqlite:///"))
        at_rest = db_file.read_bytes() if vault_url.startswith("sqlite") else b""
        with pytest.raises(VaultError, match="does not open this vault"):
            Vault.open(vault_url, OTHER_SECRET)
        if at_rest:
            assert db_file.read_bytes() == at_rest
        with Vault.open(vault_url, SECRET) as vault:
            assert vault.stats() == before

    def test_moved_sealed_value_does_not_open(self, vault: Vault) -> None:
        vault.record(make_records(patients=2, studies=1, series=1, instances=1), "run")
        with vault.engine.begin() as connection:
            first, second = connection.execute(
                select(studies.c.id, studies.c.sealed).order_by(studies.c.id)
            ).all()
            connection.execute(
                update(studies).where(studies.c.id == second.id).values(sealed=first.sealed)
            )
        with pytest.raises(VaultError, match="does not open"):
            vault.find(patient=make_records(2, 1, 1, 1)[-1].pseudonymous.patient_id)

    def test_relabelled_row_does_not_open(self, vault: Vault) -> None:
        records = make_records(patients=2, studies=1, series=1, instances=1)
        vault.record(records, "run")
        with vault.engine.begin() as connection:
            connection.execute(update(studies).values(pseudo_patient_id="ANON-STOLEN"))
        with pytest.raises(VaultError, match="does not open"):
            vault.find(patient="ANON-STOLEN")


class TestRotation:
    def test_rotation_keeps_readers_working(self, vault_url: str) -> None:
        records = make_records(patients=3, studies=2, series=2, instances=2)
        seen: list[int] = []

        def during(count: int) -> None:
            seen.append(count)
            if len(seen) == 1:  # half-way: rows under both keys; either key reads all
                for secret in (SECRET, NEW_SECRET):
                    with Vault.open(vault_url, secret, create=False) as reader:
                        _assert_all_resolve(reader, records)
                        assert reader.map_uid_back(records[-1].pseudonymous.sop_instance_uid)
                        assert len(reader.stats().vault_keys) == 2
                with Vault.open(vault_url, SECRET) as writer:  # writers seal under the new key
                    writer.record(make_records(1, 1, 1, 1, first_patient=50), "during")

        with Vault.open(vault_url, SECRET) as vault:
            vault.record(records, "run")
            report = rotate_vault_key(vault, SECRET, NEW_SECRET, batch_size=7, progress=during)
            assert report.resealed == 6 + 12 + 24 and not report.resumed
            assert len(seen) > 3
            _assert_all_resolve(vault, records)
        with pytest.raises(VaultError, match="does not open this vault"):
            Vault.open(vault_url, SECRET)
        with Vault.open(vault_url, NEW_SECRET) as vault:
            _assert_all_resolve(vault, records + make_records(1, 1, 1, 1, first_patient=50))
            stats = vault.stats()
            assert list(stats.vault_keys.values()) == ["active"]
            assert set(stats.rows_by_vault_key) == {vault.key_id}
            original = records[0].original
            assert vault.seen_patient(original.patient_id, original.issuer_of_patient_id)

    def test_interrupted_rotation_resumes(self, vault_url: str) -> None:
        records = make_records(patients=2, studies=2, series=1, instances=2)

        def crash(count: int) -> None:
            raise KeyboardInterrupt

        with Vault.open(vault_url, SECRET) as vault:
            vault.record(records, "run")
            with pytest.raises(KeyboardInterrupt):
                rotate_vault_key(vault, SECRET, NEW_SECRET, batch_size=3, progress=crash)
            assert pending_key_id(vault) is not None
            with pytest.raises(VaultError, match="in progress"):
                rotate_vault_key(vault, SECRET, OTHER_SECRET)
            report = rotate_vault_key(vault, SECRET, NEW_SECRET)
            assert report.resumed and report.resealed == 4 + 4 + 8 - 3
            assert pending_key_id(vault) is None
        with Vault.open(vault_url, NEW_SECRET) as vault:
            _assert_all_resolve(vault, records)

    def test_rotation_to_the_same_key_is_refused(self, vault: Vault) -> None:
        with pytest.raises(VaultError, match="same"):
            rotate_vault_key(vault, SECRET, SECRET)


def test_schema_matches_the_migrations(vault: Vault) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from dicomveil.vault.schema import metadata

    with vault.engine.connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"version_table": "vault_alembic_version"}
        )
        assert compare_metadata(context, metadata) == []
    assert vault.stats().revision == "0002"
    assert pseudo_uid("x") != pseudo_uid("y")
