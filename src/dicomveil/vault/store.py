"""The re-identification vault: original identifiers sealed against their pseudonyms.

The vault is for going *back* only: pseudonyms are produced without it (keyed HMAC, see
:mod:`dicomveil.engine`), and it is never shipped with de-identified data.

Keys
----
Original values are sealed with AES-256-GCM under a key derived from the *vault* secret,
which is kept apart from the *pseudonym* secret. Rotating the vault key
(:func:`dicomveil.vault.rotate_vault_key`) re-seals every row without downtime. Rotating the
*pseudonym* key is a different thing: every pseudonym made from then on is new (the same
patient gets a new pseudonymous id, the same study new UIDs), while everything recorded
before stays resolvable, because each row keeps the id of the pseudonym key that made it
and lookups search rows of every pseudonym key.

Concurrency
-----------
One :class:`Vault` per process (open it after forking). Recording is idempotent: a row is
unique on its pseudonymous UID and pseudonym key id, and inserts skip rows that exist, so
several processes may record the same instances at once.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

from sqlalchemy import ColumnElement, Table, func, or_, select
from sqlalchemy.engine import Connection, Engine

from dicomveil.engine.identity import IdentityRecord
from dicomveil.vault import db
from dicomveil.vault.crypto import VaultKey
from dicomveil.vault.keyring import Keyring
from dicomveil.vault.models import OriginalStudy, RecordResult, StudyMatch, VaultStats
from dicomveil.vault.recording import RowBuilder, check_record, insert_new
from dicomveil.vault.schema import (
    SEALED_TABLES,
    frames_of_reference,
    instances,
    keys,
    series,
    studies,
)
from dicomveil.vault.sealing import open_row, patient_index

__all__ = ["Vault"]

_CHUNK = 500
_UID_SOURCES: tuple[tuple[Table, str, str], ...] = (
    (studies, "pseudo_study_uid", "StudyInstanceUID"),
    (series, "pseudo_series_uid", "SeriesInstanceUID"),
    (instances, "pseudo_sop_instance_uid", "SOPInstanceUID"),
    (frames_of_reference, "pseudo_frame_of_reference_uid", "FrameOfReferenceUID"),
)


def _chunks(values: Sequence[str]) -> Iterable[Sequence[str]]:
    for start in range(0, len(values), _CHUNK):
        yield values[start : start + _CHUNK]


class Vault:
    """A re-identification vault on SQLite or PostgreSQL.

    Use :meth:`open` (or :func:`dicomveil.vault.open_vault`, which finds URL and key).

    Parameters
    ----------
    engine:
        A migrated engine (see :func:`dicomveil.vault.db.migrate`).
    keyring:
        The keys held, already checked against the vault.
    url:
        The URL, for messages (its password is masked).
    """

    def __init__(self, engine: Engine, keyring: Keyring, url: str, revision: str | None) -> None:
        self._engine = engine
        self._keyring = keyring
        self._url = db.public_url(url)
        self._revision = revision

    @classmethod
    def open(cls, url: str, secret: bytes | Sequence[bytes], *, create: bool = True) -> Vault:
        """Open (and migrate) the vault at ``url`` with the vault secret(s).

        Parameters
        ----------
        url:
            ``sqlite:///path`` or ``postgresql+psycopg://user@host:port/db``.
        secret:
            The vault secret, or several (any one that opens the vault will do).
        create:
            Create a missing SQLite file; the first secret becomes a new vault's key.

        Raises
        ------
        VaultError
            No vault at ``url`` (``create`` false), or the key does not open it. Nothing is
            written when the key is wrong.
        ConfigError
            The URL is invalid or its driver is missing.
        """
        secrets = [secret] if isinstance(secret, bytes) else list(secret)
        keyring = Keyring([VaultKey.from_secret(s) for s in secrets])
        engine = db.make_engine(url, create=create)
        try:
            revision = db.migrate(engine)
            with db.map_database_errors("reading the vault keys"):
                with engine.connect() as connection:
                    empty = connection.execute(select(keys.c.key_id).limit(1)).first() is None
                if empty:
                    with db.write_transaction(engine) as connection:
                        db.lock(connection)
                        keyring.initialize(connection)
                with engine.connect() as connection:
                    keyring.refresh(connection)
        except BaseException:
            engine.dispose()
            raise
        return cls(engine, keyring, url, revision)

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The vault URL with any password masked."""
        return self._url

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine (for maintenance tasks such as rotation)."""
        return self._engine

    @property
    def keyring(self) -> Keyring:
        """The vault keys this process holds."""
        return self._keyring

    @property
    def key_id(self) -> str:
        """Id of the vault key new values are sealed with."""
        return self._keyring.sealing_key().id

    def close(self) -> None:
        """Release the database connections."""
        self._engine.dispose()

    def __enter__(self) -> Vault:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- recording ---------------------------------------------------------------------------

    def record(self, records: Iterable[IdentityRecord], run_id: str) -> RecordResult:
        """Record the way back for de-identified instances (idempotent).

        Parameters
        ----------
        records:
            What the engine produced per instance.
        run_id:
            The opaque id of the de-identification run.

        Returns
        -------
        RecordResult
            How many instance, series and study rows were new.
        """
        if not run_id:
            raise ValueError("run_id is required")
        batch = list(records)
        for record in batch:
            check_record(record)
        if not batch:
            return RecordResult()
        now = datetime.now(UTC)
        with db.map_database_errors("recording identities"):
            with db.write_transaction(self._engine) as connection:
                db.lock(connection, shared=True)
                self._keyring.refresh(connection)
                builder = RowBuilder(self._keyring.sealing_key(), run_id, now)
                for record in batch:
                    builder.add(record)
                added = {
                    table.name: insert_new(connection, table, builder.rows(table))
                    for table in SEALED_TABLES
                }
        return RecordResult(
            instances=added[instances.name],
            series=added[series.name],
            studies=added[studies.name],
            received=len(batch),
        )

    # -- lookups -----------------------------------------------------------------------------

    def find(
        self,
        *,
        patient: str | None = None,
        study: str | None = None,
        accession: str | None = None,
    ) -> list[StudyMatch]:
        """Return the studies matching one pseudonymous identifier (oldest first).

        Parameters
        ----------
        patient:
            A pseudonymous patient id.
        study:
            A pseudonymous study id (the short id) or pseudonymous Study Instance UID.
        accession:
            A pseudonymous accession number.
        """
        condition = _condition(patient=patient, study=study, accession=accession)
        with db.map_database_errors("looking up studies"), self._engine.connect() as connection:
            rows = connection.execute(
                select(studies).where(condition).order_by(studies.c.recorded_at, studies.c.id)
            ).mappings()
            found = [dict(row) for row in rows]
            counts = _counts(connection, [row["pseudo_study_uid"] for row in found])
            return [self._match(connection, row, counts) for row in found]

    def _match(
        self, connection: Connection, row: dict[str, Any], counts: dict[tuple[str, ...], int]
    ) -> StudyMatch:
        key = self._keyring.key(row["vault_key_id"], connection)
        original = open_row(key, studies, row)
        natural = row["pseudo_study_uid"], row["pseudonym_key_id"]
        return StudyMatch(
            pseudo_patient_id=row["pseudo_patient_id"],
            pseudo_study_id=row["pseudo_study_id"],
            pseudo_study_uid=row["pseudo_study_uid"],
            pseudo_accession=row["pseudo_accession"],
            pseudonym_key_id=row["pseudonym_key_id"],
            run_id=row["run_id"],
            recorded_at=_utc(row["recorded_at"]),
            date_offset_days=int(original["date_offset_days"]),
            series_count=counts.get((series.name, *natural), 0),
            instance_count=counts.get((instances.name, *natural), 0),
            original=OriginalStudy.from_dicom(original),
        )

    def seen_patient(self, original_patient_id: str, issuer: str = "") -> bool:
        """Whether a patient was recorded before, by original id and issuer.

        The original values are compared through the keyed blind index only, never in clear.
        """
        indexes = [patient_index(k, original_patient_id, issuer) for k in self._keyring.all_keys()]
        query = select(studies.c.id).where(studies.c.patient_index.in_(indexes)).limit(1)
        with db.map_database_errors("looking up a patient"), self._engine.connect() as connection:
            return connection.execute(query).first() is not None

    def map_uid_back(self, pseudo_uid: str) -> str | None:
        """Return the original study, series or instance UID for a pseudonymous one."""
        return self.map_uids_back([pseudo_uid]).get(pseudo_uid)

    def map_uids_back(self, pseudo_uids: Iterable[str]) -> dict[str, str]:
        """Map every pseudonymous UID the vault knows back to its original (others omitted)."""
        wanted = sorted({uid for uid in pseudo_uids if uid})
        mapped: dict[str, str] = {}
        with db.map_database_errors("mapping UIDs back"), self._engine.connect() as connection:
            for table, column, keyword in _UID_SOURCES:
                todo = [uid for uid in wanted if uid not in mapped]
                for chunk in _chunks(todo):
                    rows = connection.execute(select(table).where(table.c[column].in_(chunk)))
                    for row in rows.mappings():
                        key = self._keyring.key(row["vault_key_id"], connection)
                        mapped.setdefault(row[column], open_row(key, table, row)[keyword])
        return mapped

    def stats(self) -> VaultStats:
        """Return counts and key ids (no PHI)."""
        with db.map_database_errors("counting"), self._engine.connect() as connection:
            self._keyring.refresh(connection)

            def scalar(query: Any) -> int:
                return int(connection.execute(query).scalar_one())

            by_vault_key: dict[str, int] = {}
            for table in SEALED_TABLES:
                grouped = select(table.c.vault_key_id, func.count()).group_by(table.c.vault_key_id)
                for key_id, count in connection.execute(grouped):
                    by_vault_key[key_id] = by_vault_key.get(key_id, 0) + int(count)
            by_pseudonym = select(studies.c.pseudonym_key_id, func.count()).group_by(
                studies.c.pseudonym_key_id
            )
            run_ids = select(studies.c.run_id).union(select(instances.c.run_id)).subquery()
            return VaultStats(
                url=self._url,
                revision=self._revision,
                patients=scalar(select(func.count(studies.c.pseudo_patient_id.distinct()))),
                studies=scalar(select(func.count()).select_from(studies)),
                series=scalar(select(func.count()).select_from(series)),
                instances=scalar(select(func.count()).select_from(instances)),
                runs=scalar(select(func.count()).select_from(run_ids)),
                vault_keys=self._keyring.states,
                rows_by_vault_key=by_vault_key,
                studies_by_pseudonym_key={k: int(n) for k, n in connection.execute(by_pseudonym)},
            )


def _condition(
    *, patient: str | None, study: str | None, accession: str | None
) -> ColumnElement[bool]:
    given = [v for v in (patient, study, accession) if v is not None]
    if len(given) != 1 or not given[0]:
        raise ValueError("give exactly one of patient, study or accession (non-empty)")
    if patient is not None:
        return studies.c.pseudo_patient_id == patient
    if study is not None:
        return or_(studies.c.pseudo_study_id == study, studies.c.pseudo_study_uid == study)
    return studies.c.pseudo_accession == accession


def _counts(connection: Connection, study_uids: Sequence[str]) -> dict[tuple[str, ...], int]:
    """Count series and instances per (table, pseudonymous study UID, pseudonym key id)."""
    counts: dict[tuple[str, ...], int] = {}
    for table in (series, instances):
        for chunk in _chunks(sorted(set(study_uids))):
            query = (
                select(table.c.pseudo_study_uid, table.c.pseudonym_key_id, func.count())
                .where(table.c.pseudo_study_uid.in_(chunk))
                .group_by(table.c.pseudo_study_uid, table.c.pseudonym_key_id)
            )
            for uid, kid, count in connection.execute(query):
                counts[(table.name, uid, kid)] = int(count)
    return counts


def _utc(moment: datetime) -> datetime:
    """SQLite returns naive datetimes; every time the vault stores is UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
