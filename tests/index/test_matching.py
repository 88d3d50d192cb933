"""Query values to conditions (pure, no database)."""

from __future__ import annotations

import pytest

from dicomveil.index import QueryError
from dicomveil.index._filters import like_pattern
from dicomveil.index.attributes import BY_KEYWORD, Level, attributes_for, matchable_at
from dicomveil.index.matching import (
    AnyOf,
    Range,
    Single,
    Wildcard,
    normalize_date,
    normalize_time,
    parse_condition,
)


def parse(keyword: str, value: str, **options: bool) -> object:
    return parse_condition(BY_KEYWORD[keyword], value, **options)


class TestParseCondition:
    @pytest.mark.parametrize("value", ["", "*", "  "])
    def test_universal(self, value: str) -> None:
        assert parse("PatientName", value) is None
        assert parse("StudyDate", value) is None

    def test_single_and_wildcard(self) -> None:
        assert parse("PatientID", "P1") == Single("P1")
        assert parse("PatientID", "P*") == Wildcard("P*")
        assert parse("AccessionNumber", "A?1") == Wildcard("A?1")

    def test_person_name_case(self) -> None:
        assert parse("PatientName", "doe") == Single("doe")
        assert parse("PatientName", "doe", case_insensitive_names=True) == Single("doe", True)
        # only PN folds case
        assert parse("PatientID", "p1", case_insensitive_names=True) == Single("p1")

    def test_fuzzy(self) -> None:
        assert parse("PatientName", "smi", fuzzy=True) == Wildcard("smi*", True, True)
        assert parse("PatientID", "smi", fuzzy=True) == Single("smi")

    def test_uid_list(self) -> None:
        assert parse("StudyInstanceUID", "1.2.3") == Single("1.2.3")
        assert parse("StudyInstanceUID", "1.2.3,1.2.4") == AnyOf(("1.2.3", "1.2.4"))
        assert parse("SOPInstanceUID", "1.2\\1.3") == AnyOf(("1.2", "1.3"))

    @pytest.mark.parametrize("value", ["1.2.x", "1..2", "1.2*", "abc"])
    def test_bad_uid(self, value: str) -> None:
        with pytest.raises(QueryError, match="StudyInstanceUID: not a valid UID"):
            parse("StudyInstanceUID", value)

    def test_date(self) -> None:
        assert parse("StudyDate", "20200101") == Single("20200101")
        assert parse("StudyDate", "20200101-20201231") == Range("20200101", "20201231")
        assert parse("StudyDate", "-20201231") == Range(None, "20201231")
        assert parse("StudyDate", "20200101-") == Range("20200101", None)
        assert parse("StudyDate", "2020.01.01") == Single("20200101")

    @pytest.mark.parametrize("value", ["2020", "2020*", "20200101-x", "-", "DOE"])
    def test_bad_date(self, value: str) -> None:
        with pytest.raises(QueryError, match="StudyDate"):
            parse("StudyDate", value)

    def test_time(self) -> None:
        assert parse("StudyTime", "10") == Range("100000.000000", "105959.999999")
        assert parse("StudyTime", "1015-1200") == Range("101500.000000", "120059.999999")
        assert parse("StudyTime", "-0900") == Range(None, "090059.999999")

    def test_integer(self) -> None:
        assert parse("SeriesNumber", "007") == Single("7")
        with pytest.raises(QueryError, match="SeriesNumber: not an integer"):
            parse("SeriesNumber", "1*")

    def test_modalities_list(self) -> None:
        assert parse("ModalitiesInStudy", "CT\\MR") == AnyOf(("CT", "MR"))
        assert parse("ModalitiesInStudy", "CT,MR") == AnyOf(("CT", "MR"))
        assert parse("ModalitiesInStudy", "CT") == Single("CT")

    def test_overlong_value(self) -> None:
        with pytest.raises(QueryError, match="longer than"):
            parse("PatientID", "x" * 2000)

    def test_message_never_quotes_the_value(self) -> None:
        with pytest.raises(QueryError) as caught:
            parse("StudyDate", "DOE^JOHN")
        assert "DOE" not in str(caught.value)


class TestNormalize:
    def test_dates(self) -> None:
        assert normalize_date("20200131") == "20200131"
        assert normalize_date("2020.01.31") == "20200131"
        assert normalize_date("2020013") is None

    def test_times(self) -> None:
        assert normalize_time("1015") == "101500.000000"
        assert normalize_time("10:15", high=True) == "101559.999999"
        assert normalize_time("101530.5") == "101530.500000"
        assert normalize_time("1") is None


class TestLikePattern:
    def test_translation_and_escapes(self) -> None:
        assert like_pattern("A*B?") == "A%B_"
        assert like_pattern("50%_\\") == "50\\%\\_\\\\"


class TestAttributes:
    def test_levels(self) -> None:
        assert "Modality" not in matchable_at(Level.STUDY)
        assert "StudyDate" in matchable_at(Level.INSTANCE)
        study = {a.keyword for a in attributes_for(Level.STUDY, with_parents=False)}
        assert {"PatientName", "StudyInstanceUID", "ModalitiesInStudy"} <= study
        flat = {a.keyword for a in attributes_for(Level.SERIES, with_parents=True)}
        assert {"StudyDate", "Modality"} <= flat
        assert "SOPInstanceUID" not in flat
