"""The index on SQLAlchemy: SQLite (embedded default) or PostgreSQL, one implementation."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Select, Table, bindparam, func, select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from dicomveil.index import _writes
from dicomveil.index._filters import clause
from dicomveil.index.attributes import (
    BY_KEYWORD,
    COUNT_ATTRIBUTES,
    Attribute,
    Level,
    MatchKind,
    attributes_for,
    matchable_at,
)
from dicomveil.index.base import (
    HeaderSource,
    IndexCounts,
    Query,
    Row,
    RowValue,
    SearchResult,
    StoredInstance,
)
from dicomveil.index.db import (
    make_engine,
    map_index_errors,
    public_url,
    schema_transaction,
    write_transaction,
)
from dicomveil.index.matching import QueryError
from dicomveil.index.migrations import migrate
from dicomveil.index.records import InstanceRecord
from dicomveil.index.schema import (
    SCHEMA_VERSION,
    instances,
    metadata,
    patients,
    series,
    studies,
    upgrade,
)
from dicomveil.index.schema import settings as settings_table

__all__ = ["SqlStudyIndex"]

_TABLES: dict[Level, Table] = {
    Level.STUDY: studies,
    Level.SERIES: series,
    Level.INSTANCE: instances,
}
_PARENT_UIDS: dict[Level, tuple[str, ...]] = {
    Level.STUDY: (),
    Level.SERIES: ("StudyInstanceUID",),
    Level.INSTANCE: ("StudyInstanceUID", "SeriesInstanceUID"),
}
_RETRIES = 5


def _table_of(attribute: Attribute) -> Table:
    return patients if attribute.patient else _TABLES[attribute.level]


class SqlStudyIndex:
    """A :class:`~dicomveil.index.base.StudyIndex` in a SQL database.

    Parameters
    ----------
    url:
        A SQLAlchemy URL: ``sqlite:///path/index.sqlite`` or ``postgresql+psycopg://...``.
        The schema is created when missing.
    """

    def __init__(self, url: str) -> None:
        self.url = public_url(url)
        self._engine: Engine = make_engine(url)
        with map_index_errors("creating the schema"):
            with schema_transaction(self._engine) as connection:
                metadata.create_all(connection)
                upgrade(connection)
                version = connection.execute(
                    select(settings_table.c.value).where(settings_table.c.name == "schema")
                ).scalar()
                if version is None:
                    connection.execute(
                        settings_table.insert().values(name="schema", value=SCHEMA_VERSION)
                    )
                elif version != SCHEMA_VERSION:
                    version = migrate(connection, version)
        if version not in (None, SCHEMA_VERSION):
            from dicomveil.errors import ConfigError

            raise ConfigError(f"the index at {self.url} has schema {version}, not {SCHEMA_VERSION}")

    def __repr__(self) -> str:
        return f"SqlStudyIndex({self.url!r})"

    # -- writing -------------------------------------------------------------------------

    def add(self, records: Sequence[InstanceRecord]) -> int:
        """Insert or replace instances; return how many were new.

        The whole sequence is one transaction. On PostgreSQL, two writers creating the
        same study at once make one of them retry.
        """
        if not records:
            return 0
        with map_index_errors("adding instances"):
            for attempt in range(_RETRIES):
                try:
                    with write_transaction(self._engine) as connection:
                        writer = _writes.Writer(connection)
                        return writer.upsert_many(records)
                except IntegrityError:
                    if attempt == _RETRIES - 1:
                        raise
        return 0  # pragma: no cover - the loop returns or raises

    def set_metadata(self, headers: Mapping[str, str]) -> None:
        """Keep the DICOM JSON of instances indexed without it (one transaction)."""
        if not headers:
            return
        statement = (
            instances.update()
            .where(instances.c.sop_instance_uid == bindparam("uid"), instances.c.dicom_json == "")
            .values(dicom_json=bindparam("header"))
        )
        rows = [{"uid": uid, "header": text} for uid, text in headers.items()]
        with map_index_errors("keeping metadata"), write_transaction(self._engine) as connection:
            connection.execute(statement, rows)

    # -- reading -------------------------------------------------------------------------

    def search(self, query: Query) -> SearchResult:
        """Return one page of matches, ordered by when they were first indexed."""
        statement = self._select(query)
        with map_index_errors("searching"), self._engine.connect() as connection:
            fetched = list(connection.execute(statement).mappings())
            more = len(fetched) > query.limit
            fetched = fetched[: query.limit]
            extra = self._metadata(connection, query, fetched) if query.with_metadata else {}
        rows = []
        for record in fetched:
            text, source = extra.get(record["_pk"], (None, None))
            rows.append(Row(query.level, _values(query, record), text, source))
        return SearchResult(rows, more)

    def _select(self, query: Query) -> Select[Any]:
        level = query.level
        returned = list(attributes_for(level, with_parents=query.flat))
        returned += [BY_KEYWORD[k] for k in _PARENT_UIDS[level] if BY_KEYWORD[k] not in returned]
        own = _TABLES[level]
        columns: list[Any] = [own.c.pk.label("_pk")]
        for attribute in returned:
            columns.append(_table_of(attribute).c[attribute.column].label(attribute.keyword))
        if level is Level.STUDY or query.flat:
            columns.append(studies.c.modalities.label("_modalities"))
        for keyword, _tag, column in COUNT_ATTRIBUTES[level]:
            columns.append(own.c[column].label(keyword))
        joined: Any = own
        if level is Level.INSTANCE:
            joined = joined.join(series, series.c.pk == instances.c.series_pk)
            joined = joined.join(studies, studies.c.pk == instances.c.study_pk)
        elif level is Level.SERIES:
            joined = joined.join(studies, studies.c.pk == series.c.study_pk)
        joined = joined.join(patients, patients.c.pk == studies.c.patient_pk)
        statement = select(*columns).select_from(joined)
        allowed = matchable_at(level)
        for keyword, condition in query.conditions.items():
            found = allowed.get(keyword)
            if found is None:
                raise QueryError(f"{keyword}: cannot be matched at the {level} level")
            attribute = found
            table = studies if attribute.kind is MatchKind.MODALITIES else _table_of(attribute)
            statement = statement.where(clause(attribute, table, condition))
        if query.organisation is not None:
            statement = statement.where(studies.c.organisation == query.organisation)
        if query.study_uid is not None:
            statement = statement.where(studies.c.study_instance_uid == query.study_uid)
        if query.series_uid is not None and level is not Level.STUDY:
            statement = statement.where(series.c.series_instance_uid == query.series_uid)
        return statement.order_by(own.c.pk).limit(query.limit + 1).offset(query.offset)

    def _metadata(
        self, connection: Connection, query: Query, fetched: list[Any]
    ) -> dict[int, tuple[str, HeaderSource]]:
        keys = [record["_pk"] for record in fetched]
        if not keys:
            return {}
        header = (instances.c.dicom_json, instances.c.sop_instance_uid, instances.c.storage_key)
        if query.level is Level.INSTANCE:
            statement = select(instances.c.pk, *header).where(instances.c.pk.in_(keys))
        else:
            parent = instances.c.study_pk if query.level is Level.STUDY else instances.c.series_pk
            first = (
                select(func.min(instances.c.pk)).where(parent.in_(keys)).group_by(parent)
            ).scalar_subquery()
            statement = select(parent, *header).where(instances.c.pk.in_(first))
        return {
            int(pk): (str(text), HeaderSource(uid, storage_key))
            for pk, text, uid, storage_key in connection.execute(statement)
        }

    def instances(
        self,
        study_uid: str,
        series_uid: str | None = None,
        sop_uid: str | None = None,
        *,
        organisation: str | None = None,
    ) -> list[StoredInstance]:
        """Return the stored instances of a study, series or one instance, in series order
        (none when ``organisation`` is given and the study is not that organisation's)."""
        statement = (
            select(
                studies.c.study_instance_uid,
                series.c.series_instance_uid,
                instances.c.sop_instance_uid,
                instances.c.sop_class_uid,
                instances.c.transfer_syntax_uid,
                instances.c.storage_key,
                instances.c.size,
                instances.c.sha256,
                instances.c.number_of_frames,
                instances.c.dicom_json,
            )
            .select_from(
                instances.join(series, series.c.pk == instances.c.series_pk).join(
                    studies, studies.c.pk == instances.c.study_pk
                )
            )
            .where(studies.c.study_instance_uid == study_uid)
            .order_by(series.c.pk, instances.c.instance_number, instances.c.pk)
        )
        if series_uid is not None:
            statement = statement.where(series.c.series_instance_uid == series_uid)
        if sop_uid is not None:
            statement = statement.where(instances.c.sop_instance_uid == sop_uid)
        if organisation is not None:
            statement = statement.where(studies.c.organisation == organisation)
        with map_index_errors("listing instances"), self._engine.connect() as connection:
            return [
                StoredInstance(
                    study_instance_uid=r[0],
                    series_instance_uid=r[1],
                    sop_instance_uid=r[2],
                    sop_class_uid=r[3] or "",
                    transfer_syntax_uid=r[4] or "",
                    storage_key=r[5],
                    size=int(r[6]),
                    sha256=r[7],
                    number_of_frames=r[8],
                    metadata=r[9],
                )
                for r in connection.execute(statement)
            ]

    def owners(self, study_uids: Sequence[str]) -> dict[str, str | None]:
        """Return the organisation of each indexed study among ``study_uids``."""
        found: dict[str, str | None] = {}
        uids = list(dict.fromkeys(study_uids))
        with map_index_errors("reading study owners"), self._engine.connect() as connection:
            for start in range(0, len(uids), 500):
                statement = select(studies.c.study_instance_uid, studies.c.organisation).where(
                    studies.c.study_instance_uid.in_(uids[start : start + 500])
                )
                found.update({str(uid): org for uid, org in connection.execute(statement)})
        return found

    def counts(self, organisation: str | None = None) -> IndexCounts:
        """Return how many patients, studies, series and instances are indexed (of the
        studies of ``organisation`` only, when given)."""
        statements: list[Select[Any]]
        if organisation is None:
            statements = [
                select(func.count()).select_from(t) for t in (patients, studies, series, instances)
            ]
        else:
            own = studies.c.organisation == organisation
            statements = [
                select(func.count(studies.c.patient_pk.distinct())).where(own),
                select(func.count()).select_from(studies).where(own),
            ]
            for table in (series, instances):
                joined = table.join(studies, studies.c.pk == table.c.study_pk)
                statements.append(select(func.count()).select_from(joined).where(own))
        with map_index_errors("counting"), self._engine.connect() as connection:
            found = [int(connection.execute(s).scalar_one()) for s in statements]
        return IndexCounts(*found)

    def ping(self) -> None:
        """Run a trivial query; raise when the database cannot answer."""
        with map_index_errors("checking the database"), self._engine.connect() as connection:
            connection.execute(select(1)).scalar_one()

    def close(self) -> None:
        """Dispose of the connection pool."""
        self._engine.dispose()


def _values(query: Query, record: Any) -> dict[str, RowValue]:
    values: dict[str, RowValue] = {}
    for key, value in record.items():
        if key.startswith("_"):
            continue
        values[key] = value
    if "_modalities" in record:
        modalities = record["_modalities"]
        if query.level is Level.STUDY or query.flat:
            values["ModalitiesInStudy"] = modalities.split("\\") if modalities else []
    return values
