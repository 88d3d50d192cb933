"""Studies belong to an organisation (tenant): scoped searches and listings, and the
migration that adds the column to an index written before tenants existed."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import sqlalchemy as sa

from dicomveil.index import IndexCounts, InstanceRecord, Query, StudyIndex, open_index
from dicomveil.index.attributes import Level
from dicomveil.index.schema import SCHEMA_VERSION
from tests.index.conftest import make_record


def _of(organisation: str | None, **values: str) -> InstanceRecord:
    series = values["SOPInstanceUID"].rsplit(".", 1)[0] + ".9"
    record = make_record(SeriesInstanceUID=series, **values)
    return dataclasses.replace(record, organisation=organisation)


def _fill(index: StudyIndex) -> None:
    index.add(
        [
            _of("NORTH", PatientID="N-1", StudyInstanceUID="2.25.10", SOPInstanceUID="2.25.10.1"),
            _of("SOUTH", PatientID="S-1", StudyInstanceUID="2.25.20", SOPInstanceUID="2.25.20.1"),
            _of(None, PatientID="P-1", StudyInstanceUID="2.25.30", SOPInstanceUID="2.25.30.1"),
        ]
    )


def _studies(index: StudyIndex, organisation: str | None, level: Level = Level.STUDY) -> set[str]:
    rows = index.search(Query(level, flat=True, organisation=organisation)).rows
    return {str(row.values["StudyInstanceUID"]) for row in rows}


def test_a_scoped_search_sees_only_its_organisations_studies(index: StudyIndex) -> None:
    _fill(index)
    for level in Level:
        assert _studies(index, "NORTH", level) == {"2.25.10"}
        assert _studies(index, "SOUTH", level) == {"2.25.20"}
        assert _studies(index, None, level) == {"2.25.10", "2.25.20", "2.25.30"}
    scoped = Query(Level.SERIES, study_uid="2.25.20", organisation="NORTH")
    assert index.search(scoped).rows == []


def test_counts_of_one_organisation(index: StudyIndex) -> None:
    _fill(index)
    index.add(
        [_of("NORTH", PatientID="N-1", StudyInstanceUID="2.25.11", SOPInstanceUID="2.25.11.1")]
    )
    assert index.counts("NORTH") == IndexCounts(patients=1, studies=2, series=2, instances=2)
    assert index.counts("SOUTH") == IndexCounts(1, 1, 1, 1)
    assert index.counts("EAST") == IndexCounts(0, 0, 0, 0)
    assert index.counts() == IndexCounts(3, 4, 4, 4)


def test_a_scoped_listing_is_empty_for_another_organisations_study(index: StudyIndex) -> None:
    _fill(index)
    assert [i.sop_instance_uid for i in index.instances("2.25.10", organisation="NORTH")] == [
        "2.25.10.1"
    ]
    assert index.instances("2.25.10", organisation="SOUTH") == []
    assert index.instances("2.25.10", sop_uid="2.25.10.1", organisation="SOUTH") == []
    assert len(index.instances("2.25.10")) == 1


def test_a_study_stays_with_the_organisation_that_sent_it_first(index: StudyIndex) -> None:
    index.add([_of("NORTH", StudyInstanceUID="2.25.40", SOPInstanceUID="2.25.40.1")])
    index.add([_of("SOUTH", StudyInstanceUID="2.25.40", SOPInstanceUID="2.25.40.2")])
    assert len(index.instances("2.25.40", organisation="NORTH")) == 2
    assert _studies(index, "SOUTH") == set()
    assert _studies(index, "NORTH") == {"2.25.40"}


def test_a_schema_1_index_is_migrated_in_place(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.sqlite'}"
    index = open_index(url)
    index.add([make_record()])
    index.close()
    engine = sa.create_engine(url)
    with engine.begin() as connection:  # as dicomveil before tenants left it
        connection.execute(sa.text("DROP INDEX ix_index_studies_organisation"))
        connection.execute(sa.text("ALTER TABLE index_studies DROP COLUMN organisation"))
        connection.execute(sa.text("UPDATE index_settings SET value = '1' WHERE name = 'schema'"))
    migrated = open_index(url)
    try:
        assert _studies(migrated, None) == {"2.25.1"}
        assert _studies(migrated, "NORTH") == set()
        migrated.add([_of("NORTH", StudyInstanceUID="2.25.2", SOPInstanceUID="2.25.2.1")])
        assert _studies(migrated, "NORTH") == {"2.25.2"}
    finally:
        migrated.close()
    with engine.connect() as connection:
        version = connection.execute(sa.text("SELECT value FROM index_settings")).scalar()
    engine.dispose()
    assert version == SCHEMA_VERSION == "2"
