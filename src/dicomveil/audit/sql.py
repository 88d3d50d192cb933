"""The audit chain in the shared database (``--database``): one chain for every host.

The entries are exactly those of the file log (:mod:`dicomveil.audit.log`: same JSON, same
MAC, same ``prev`` hash chain), one per row of ``dicomveil_audit`` (``position``, the
entry's ``seq``; ``line``, its JSON text); ``dicomveil_audit_head`` holds one row, the
authenticated head (last ``seq``, its hash, their MAC), which anchors the end as the head
file does.

Appends are serialised across processes *and* hosts: each runs in one transaction that
first locks the head row (``SELECT ... FOR UPDATE`` on PostgreSQL; ``BEGIN IMMEDIATE`` on
SQLite), reads the last entry to chain to, inserts the new rows and updates the head, so
concurrent writers queue and one chain verifies. ``position`` is the primary key: even a
writer that somehow skipped the lock could not fork the chain, its insert would fail.

When the database is unreachable (a PostgreSQL restart) an append raises
:class:`~dicomveil.errors.AuditError` naming the error's type only, and nothing is
recorded: the caller fails closed, as when the file log cannot be written. The engine
checks connections before use (``pool_pre_ping``), so the first append after the database
is back reconnects and chains to the last committed entry.

:meth:`AuditLog.verify` and :meth:`AuditLog.entries` (``dicomveil audit verify`` and
``export``) work unchanged: they read the rows in ``position`` order, and the reported
"line" of a bad entry is its row's ``position``.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Generator, Iterable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Final

from sqlalchemy import BigInteger, Column, Integer, MetaData, String, Table, Text, insert, select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from dicomveil.audit.entry import GENESIS, AuditEntry, AuditEvent, sha256
from dicomveil.audit.log import _BAD_HEAD, AuditLog
from dicomveil.audit.syslog import SyslogForwarder
from dicomveil.database import database_errors, open_state_tables, write_transaction
from dicomveil.errors import AuditError
from dicomveil.ports import Clock

__all__ = ["SqlAuditLog", "metadata"]

metadata: Final = MetaData()

entries_table: Final = Table(
    "dicomveil_audit",
    metadata,
    Column("position", BigInteger, primary_key=True, autoincrement=False),
    Column("line", Text, nullable=False),
)

head_table: Final = Table(
    "dicomveil_audit_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("seq", BigInteger, nullable=False),
    Column("hash", String(64), nullable=False),
    Column("mac", String(64), nullable=False),
)


class SqlAuditLog(AuditLog):
    """:class:`~dicomveil.audit.AuditLog` whose chain lives in a database (see the module).

    Parameters
    ----------
    engine:
        The shared database (its state store).
    directory:
        The audit folder of this host (nothing of the chain is written there).
    secret, clock, forwarder:
        As for :class:`~dicomveil.audit.AuditLog`.
    """

    def __init__(
        self,
        engine: Engine,
        directory: Path,
        secret: bytes,
        *,
        clock: Clock | None = None,
        forwarder: SyslogForwarder | None = None,
    ) -> None:
        super().__init__(directory, secret, clock=clock, forwarder=forwarder)
        self.engine = engine

    @classmethod
    def connect(
        cls,
        url: str,
        directory: Path,
        secret: bytes,
        *,
        clock: Clock | None = None,
        forwarder: SyslogForwarder | None = None,
    ) -> SqlAuditLog:
        """Open the chain at ``url``, creating its tables on first use.

        Raises
        ------
        ConfigError
            Bad URL or no driver.
        AuditError
            The database cannot be reached.
        """
        engine = open_state_tables(
            url,
            what="audit database",
            metadata=metadata,
            head=head_table,
            first_row={"seq": 0, "hash": GENESIS, "mac": ""},
            error=_error("opening"),
        )
        return cls(engine, directory, secret, clock=clock, forwarder=forwarder)

    def close(self) -> None:
        """Release the database connections."""
        self.engine.dispose()

    def append_many(self, events: Iterable[AuditEvent]) -> list[AuditEntry]:
        """Append several events in one transaction, after every other writer's.

        Raises
        ------
        AuditError
            The database is unreachable (nothing was recorded), or its last entry is
            unreadable.
        """
        todo = list(events)
        if not todo:
            return []
        written: list[AuditEntry] = []
        with _failing("appending"), write_transaction(self.engine) as conn:
            conn.execute(select(head_table.c.seq).with_for_update()).first()
            seq, prev = self._last_row(conn)
            for event in todo:
                line = self._encode(seq + 1, event, prev)
                entry = AuditEntry.parse(line)
                conn.execute(
                    insert(entries_table).values(position=entry.seq, line=line.decode("utf-8"))
                )
                seq, prev = entry.seq, entry.hash
                written.append(entry)
            mac = self._head_mac(seq, prev)
            conn.execute(head_table.update().values(seq=seq, hash=prev, mac=mac))
        if self.forwarder is not None:
            self.forwarder.send(written)
        return written

    def _last_row(self, conn: Connection) -> tuple[int, str]:
        """``(seq, hash)`` of the last entry (``(0, GENESIS)`` when there is none)."""
        last = select(entries_table.c.line).order_by(entries_table.c.position.desc()).limit(1)
        text = conn.execute(last).scalar()
        if text is None:
            return 0, GENESIS
        line = str(text).encode("utf-8")
        try:
            return AuditEntry.parse(line).seq, sha256(line)
        except ValueError:
            raise AuditError(
                "the last audit entry is unreadable; run `dicomveil audit verify`"
            ) from None

    def _lines(self) -> Generator[tuple[int, bytes | None], None, None]:
        """Yield ``(position, line)`` of every row in order (rows are never torn)."""
        query = select(entries_table.c.position, entries_table.c.line).order_by(
            entries_table.c.position
        )
        with _failing("reading"), self.engine.connect() as conn:
            for position, text in conn.execute(query).yield_per(1000):
                yield int(position), str(text).encode("utf-8")

    def _read_head(self) -> tuple[int, str] | None:
        with _failing("reading the head"), self.engine.connect() as conn:
            head = head_table.c
            row = conn.execute(select(head.seq, head.hash, head.mac)).first()
        if row is None or (row.seq == 0 and not row.mac):
            return None
        seq, digest, mac = int(row.seq), str(row.hash), str(row.mac)
        if not hmac.compare_digest(self._head_mac(seq, digest), mac):
            return _BAD_HEAD
        return seq, digest

    def ready(self) -> bool:
        """Whether the database answers (``/readyz``)."""
        try:
            with self.engine.connect() as conn:
                conn.execute(select(head_table.c.seq)).first()
        except SQLAlchemyError:
            return False
        return True

    def newest_lines(self) -> Iterator[bytes]:
        """The entries' rows, newest first (read in pages)."""
        query = select(entries_table.c.line).order_by(entries_table.c.position.desc())
        with _failing("reading"), self.engine.connect() as conn:
            for (line,) in conn.execute(query).yield_per(200):
                yield str(line).encode("utf-8")

    def written(self) -> bool:
        """Whether any entry was ever appended."""
        with _failing("reading the head"), self.engine.connect() as conn:
            seq = conn.execute(select(head_table.c.seq)).scalar()
        return bool(seq)


def _error(operation: str) -> Callable[[str], AuditError]:
    """The :class:`AuditError` of a database error while ``operation``, by its reason."""
    closing = "; nothing was recorded" if operation == "appending" else ""
    return lambda reason: AuditError(f"audit database error while {operation} ({reason}){closing}")


def _failing(operation: str) -> AbstractContextManager[None]:
    """Turn database errors into an :class:`AuditError` naming ``operation`` only."""
    return database_errors(_error(operation))
