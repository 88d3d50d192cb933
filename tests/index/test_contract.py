"""The StudyIndex contract, run on SQLite and on a real PostgreSQL."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from dicomveil.index import Level, Query, QueryError, StudyIndex, parse_condition
from dicomveil.index.attributes import BY_KEYWORD
from dicomveil.index.base import SearchResult
from tests.index.conftest import make_record


def corpus(index: StudyIndex) -> None:
    """Three patients, four studies, CT and MR series."""
    records = [
        # patient 1: two studies
        make_record(),
        make_record(SOPInstanceUID="2.25.1.1.2", InstanceNumber=2),
        make_record(
            SeriesInstanceUID="2.25.1.2",
            Modality="MR",
            SeriesNumber=2,
            SOPInstanceUID="2.25.1.2.1",
        ),
        make_record(
            StudyInstanceUID="2.25.2",
            StudyDate="20210615",
            StudyTime="143000",
            AccessionNumber="A2",
            StudyDescription="CT HEAD",
            SeriesInstanceUID="2.25.2.1",
            SOPInstanceUID="2.25.2.1.1",
        ),
        # patient 2
        make_record(
            PatientID="P2",
            PatientName="Smith^Anna",
            StudyInstanceUID="2.25.3",
            StudyDate="20191231",
            AccessionNumber="A3_x",
            ReferringPhysicianName="HOUSE^G",
            SeriesInstanceUID="2.25.3.1",
            Modality="MR",
            SOPInstanceUID="2.25.3.1.1",
        ),
        # patient 3
        make_record(
            PatientID="P3",
            PatientName="JONES^SMITHSON",
            StudyInstanceUID="2.25.4",
            StudyDate="20220101",
            StudyTime="080000",
            AccessionNumber="A%4",
            SeriesInstanceUID="2.25.4.1",
            Modality="US",
            SOPInstanceUID="2.25.4.1.1",
            NumberOfFrames=3,
        ),
    ]
    assert index.add(records) == len(records)


def study_query(index: StudyIndex, **filters: str) -> SearchResult:
    return index.search(Query(Level.STUDY, conditions=conditions(Level.STUDY, filters)))


def conditions(level: Level, filters: dict[str, str], **options: bool) -> dict[str, Any]:
    found = {}
    for keyword, value in filters.items():
        condition = parse_condition(BY_KEYWORD[keyword], value, **options)
        if condition is not None:
            found[keyword] = condition
    return found


def uids(result: SearchResult, keyword: str = "StudyInstanceUID") -> list[Any]:
    return [row.values[keyword] for row in result.rows]


class TestAdd:
    def test_counts_and_replace(self, index: StudyIndex) -> None:
        corpus(index)
        counts = index.counts()
        assert (counts.patients, counts.studies, counts.series, counts.instances) == (3, 4, 5, 6)
        # storing the same instance again replaces it: no new row, counts unchanged
        again = make_record(SOPInstanceUID="2.25.1.1.2", InstanceNumber=2, Rows=8)
        assert index.add([again]) == 0
        assert index.counts().instances == 6
        (row,) = index.search(
            Query(Level.INSTANCE, study_uid="2.25.1", series_uid="2.25.1.1", offset=1)
        ).rows
        assert row.values["Rows"] == 8

    def test_mixed_batch_keeps_counts(self, index: StudyIndex) -> None:
        index.add([make_record(SOPInstanceUID="2.25.1.1.1")])
        batch = [
            make_record(SOPInstanceUID="2.25.1.1.1", Rows=4),  # already there: replaced
            make_record(SOPInstanceUID="2.25.1.1.2"),
            make_record(SOPInstanceUID="2.25.1.2.1", SeriesInstanceUID="2.25.1.2"),
            make_record(SOPInstanceUID="2.25.1.1.3"),
        ]
        assert index.add(batch) == 3
        counts = index.counts()
        assert (counts.studies, counts.series, counts.instances) == (1, 2, 4)
        (study,) = study_query(index, StudyInstanceUID="2.25.1").rows
        assert study.values["NumberOfStudyRelatedSeries"] == 2
        assert study.values["NumberOfStudyRelatedInstances"] == 4
        series = index.search(Query(Level.SERIES, study_uid="2.25.1")).rows
        assert [r.values["NumberOfSeriesRelatedInstances"] for r in series] == [3, 1]
        # the same instance twice in one batch: the last one wins, counted once
        twice = [make_record(SOPInstanceUID="2.25.1.1.9", Rows=n) for n in (1, 2)]
        assert index.add(twice) == 1
        assert index.counts().instances == 5
        (row,) = index.search(
            Query(
                Level.INSTANCE,
                conditions=conditions(Level.INSTANCE, {"SOPInstanceUID": "2.25.1.1.9"}),
                flat=True,
            )
        ).rows
        assert row.values["Rows"] == 2

    def test_empty_add(self, index: StudyIndex) -> None:
        assert index.add([]) == 0
        assert index.search(Query(Level.STUDY)).rows == []

    def test_study_values_and_counts(self, index: StudyIndex) -> None:
        corpus(index)
        (row,) = study_query(index, StudyInstanceUID="2.25.1").rows
        assert row.values["PatientID"] == "P1"
        assert row.values["PatientName"] == "PSEUDO^ONE"
        assert row.values["StudyDate"] == "20200101"
        assert row.values["StudyTime"] == "101500"
        assert row.values["ModalitiesInStudy"] == ["CT", "MR"]
        assert row.values["NumberOfStudyRelatedSeries"] == 2
        assert row.values["NumberOfStudyRelatedInstances"] == 3
        assert row.metadata is None

    def test_ping(self, index: StudyIndex) -> None:
        index.ping()


class TestStudyMatching:
    @pytest.mark.parametrize(
        ("filters", "expected"),
        [
            ({}, ["2.25.1", "2.25.2", "2.25.3", "2.25.4"]),
            ({"PatientID": "P1"}, ["2.25.1", "2.25.2"]),
            ({"PatientID": "p1"}, []),  # case-sensitive
            ({"PatientName": "PSEUDO*"}, ["2.25.1", "2.25.2"]),
            ({"PatientName": "?MITH^ANNA"}, []),
            ({"PatientName": "?mith^Anna"}, ["2.25.3"]),
            ({"AccessionNumber": "A3_x"}, ["2.25.3"]),
            ({"AccessionNumber": "A_*"}, []),  # SQL wild cards in the value are literal
            ({"AccessionNumber": "A%4"}, ["2.25.4"]),
            ({"StudyDate": "20200101"}, ["2.25.1"]),
            ({"StudyDate": "20200101-20211231"}, ["2.25.1", "2.25.2"]),
            ({"StudyDate": "-20200101"}, ["2.25.1", "2.25.3"]),
            ({"StudyDate": "20210101-"}, ["2.25.2", "2.25.4"]),
            ({"StudyTime": "10"}, ["2.25.1", "2.25.3"]),
            ({"StudyTime": "1200-"}, ["2.25.2"]),
            ({"StudyTime": "-0800"}, ["2.25.4"]),
            ({"StudyInstanceUID": "2.25.2,2.25.4"}, ["2.25.2", "2.25.4"]),
            ({"ModalitiesInStudy": "MR"}, ["2.25.1", "2.25.3"]),
            ({"ModalitiesInStudy": "US\\MR"}, ["2.25.1", "2.25.3", "2.25.4"]),
            ({"ModalitiesInStudy": "C*"}, ["2.25.1", "2.25.2"]),
            ({"ReferringPhysicianName": "HOUSE^G"}, ["2.25.3"]),
            ({"StudyDescription": "CT HEAD"}, ["2.25.2"]),
            ({"StudyID": "S1"}, ["2.25.1", "2.25.2", "2.25.3", "2.25.4"]),
            ({"PatientID": "P1", "StudyDate": "2021*"}, None),
        ],
    )
    def test_matching(
        self, index: StudyIndex, filters: dict[str, str], expected: list[str] | None
    ) -> None:
        corpus(index)
        if expected is None:
            with pytest.raises(QueryError):
                study_query(index, **filters)
            return
        assert uids(study_query(index, **filters)) == expected

    def test_case_insensitive_names(self, index: StudyIndex) -> None:
        corpus(index)
        query = conditions(Level.STUDY, {"PatientName": "smith^anna"}, case_insensitive_names=True)
        assert uids(index.search(Query(Level.STUDY, conditions=query))) == ["2.25.3"]
        query = conditions(Level.STUDY, {"PatientName": "pseudo*"}, case_insensitive_names=True)
        assert uids(index.search(Query(Level.STUDY, conditions=query))) == ["2.25.1", "2.25.2"]

    def test_fuzzy_names(self, index: StudyIndex) -> None:
        corpus(index)
        query = conditions(Level.STUDY, {"PatientName": "smith"}, fuzzy=True)
        # a prefix of any name component, regardless of case
        assert uids(index.search(Query(Level.STUDY, conditions=query))) == ["2.25.3", "2.25.4"]

    def test_lower_level_attribute_refused(self, index: StudyIndex) -> None:
        query = conditions(Level.SERIES, {"Modality": "CT"})
        with pytest.raises(QueryError, match="Modality: cannot be matched at the study level"):
            index.search(Query(Level.STUDY, conditions=query))


class TestPaging:
    def test_limit_offset(self, index: StudyIndex) -> None:
        corpus(index)
        first = index.search(Query(Level.STUDY, limit=3))
        assert uids(first) == ["2.25.1", "2.25.2", "2.25.3"] and first.more
        last = index.search(Query(Level.STUDY, limit=3, offset=3))
        assert uids(last) == ["2.25.4"] and not last.more
        assert index.search(Query(Level.STUDY, limit=2, offset=10)).rows == []

    @pytest.mark.parametrize(("limit", "offset"), [(-1, 0), (1, -1), (2**40, 0), (1, 2**63)])
    def test_out_of_range_refused(self, limit: int, offset: int) -> None:
        with pytest.raises(QueryError):
            Query(Level.STUDY, limit=limit, offset=offset)


class TestSeriesAndInstances:
    def test_series_of_study(self, index: StudyIndex) -> None:
        corpus(index)
        result = index.search(Query(Level.SERIES, study_uid="2.25.1"))
        assert uids(result, "SeriesInstanceUID") == ["2.25.1.1", "2.25.1.2"]
        row = result.rows[0]
        assert row.values["StudyInstanceUID"] == "2.25.1"
        assert row.values["NumberOfSeriesRelatedInstances"] == 2
        assert "PatientName" not in row.values  # hierarchical: no parent attributes

    def test_flat_series(self, index: StudyIndex) -> None:
        corpus(index)
        with pytest.raises(QueryError):  # wild cards are not allowed in dates
            conditions(Level.SERIES, {"Modality": "MR", "StudyDate": "2019*"})
        query = conditions(Level.SERIES, {"Modality": "MR", "PatientID": "P2"})
        (row,) = index.search(Query(Level.SERIES, conditions=query, flat=True)).rows
        assert row.values["SeriesInstanceUID"] == "2.25.3.1"
        assert row.values["PatientName"] == "Smith^Anna"
        assert row.values["ModalitiesInStudy"] == ["MR"]

    def test_instances(self, index: StudyIndex) -> None:
        corpus(index)
        result = index.search(Query(Level.INSTANCE, study_uid="2.25.1", series_uid="2.25.1.1"))
        assert uids(result, "SOPInstanceUID") == ["2.25.1.1.1", "2.25.1.1.2"]
        assert result.rows[1].values["InstanceNumber"] == 2
        query = conditions(Level.INSTANCE, {"NumberOfFrames": "3"})
        flat = index.search(Query(Level.INSTANCE, conditions=query, flat=True))
        assert uids(flat, "SOPInstanceUID") == ["2.25.4.1.1"]
        assert flat.rows[0].values["StudyDate"] == "20220101"
        query = conditions(Level.INSTANCE, {"SOPClassUID": "1.2.840.10008.5.1.4.1.1.2"})
        assert len(index.search(Query(Level.INSTANCE, conditions=query, flat=True)).rows) == 6

    def test_metadata(self, index: StudyIndex) -> None:
        corpus(index)
        (study,) = index.search(Query(Level.STUDY, study_uid="2.25.1", with_metadata=True)).rows
        assert study.metadata is not None
        document = json.loads(study.metadata)
        assert document["0020000D"]["Value"] == ["2.25.1"]
        assert document["7FE00010"] == {"vr": "OW", "BulkDataURI": "dicomveil-bulk:7FE00010"}
        series = index.search(Query(Level.SERIES, study_uid="2.25.1", with_metadata=True))
        assert [json.loads(r.metadata or "")["0020000E"]["Value"][0] for r in series.rows] == [
            "2.25.1.1",
            "2.25.1.2",
        ]
        (instance,) = index.search(
            Query(
                Level.INSTANCE,
                conditions=conditions(Level.INSTANCE, {"SOPInstanceUID": "2.25.1.1.2"}),
                flat=True,
                with_metadata=True,
            )
        ).rows
        assert json.loads(instance.metadata or "")["00200013"]["Value"] == [2]

    def test_stored_instances(self, index: StudyIndex) -> None:
        corpus(index)
        found = index.instances("2.25.1")
        assert [i.sop_instance_uid for i in found] == ["2.25.1.1.1", "2.25.1.1.2", "2.25.1.2.1"]
        assert found[0].storage_key == "P1/2.25.1/2.25.1.1/2.25.1.1.1.dcm"
        assert [i.sop_instance_uid for i in index.instances("2.25.1", "2.25.1.2")] == ["2.25.1.2.1"]
        (one,) = index.instances("2.25.4", "2.25.4.1", "2.25.4.1.1")
        assert one.number_of_frames == 3 and one.size == 100
        assert index.instances("2.25.9") == []
        assert index.instances("2.25.1", "2.25.4.1") == []


class TestSetMetadata:
    def test_fills_only_headers_left_to_first_read(self, index: StudyIndex) -> None:
        lazy = dataclasses.replace(make_record(SOPInstanceUID="2.25.1.1.1"), metadata="")
        eager = make_record(SOPInstanceUID="2.25.1.1.2", InstanceNumber=2)
        index.add([lazy, eager])
        query = Query(Level.INSTANCE, study_uid="2.25.1", with_metadata=True)
        rows = index.search(query).rows
        assert [r.metadata == "" for r in rows] == [True, False]
        assert rows[0].source is not None and rows[0].source.storage_key == lazy.storage_key
        index.set_metadata({"2.25.1.1.1": '{"x":1}', "2.25.1.1.2": '{"y":2}', "2.25.9": "{}"})
        found = {i.sop_instance_uid: i.metadata for i in index.instances("2.25.1")}
        assert found == {"2.25.1.1.1": '{"x":1}', "2.25.1.1.2": eager.metadata}
        index.set_metadata({})  # nothing to do
