"""What happened on one association, kept while it lasts and audited when it ends.

Each association gets a :class:`Session` when it is requested; services count into it
(instances stored or refused, queries answered, instances retrieved, the pseudonymous
studies touched) and the closing connection turns it into one ``dimse.association`` audit
entry. Nothing here holds a value from a received instance: counts, AE titles, the peer's
address and pseudonymous Study Instance UIDs only.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

from dicomveil.audit.entry import AuditEvent, Outcome
from dicomveil.dimse.access import Admission, Refusal

__all__ = [
    "ASSOCIATION",
    "RETRIEVE",
    "Session",
    "Sessions",
    "association_event",
    "retrieve_event",
]

ASSOCIATION: Final = "dimse.association"
RETRIEVE: Final = "dimse.retrieve"
_MAX_STUDIES: Final = 200
"""Study UIDs listed in one audit entry (the count is always complete)."""


@dataclass
class Session:
    """One association's record (mutated only under :attr:`lock`)."""

    calling_ae: str
    peer: str
    admission: Admission | Refusal | None = None
    established: bool = False
    aborted: bool = False
    counts: Counter[str] = field(default_factory=Counter)
    studies: dict[str, None] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def organisation(self) -> str | None:
        """The organisation the admitted caller is bound to (``None``: none)."""
        admission = self.admission
        return admission.organisation if isinstance(admission, Admission) else None

    @property
    def actor(self) -> str:
        """The audit actor: ``ae:<CALLING_AE>``."""
        return f"ae:{self.calling_ae}"

    def count(self, what: str, n: int = 1, studies: Iterable[str | None] = ()) -> None:
        """Add ``n`` to the counter ``what`` and note pseudonymous ``studies``."""
        with self.lock:
            self.counts[what] += n
            for study in studies:
                if study:
                    self.studies[study] = None


class Sessions:
    """The sessions of the associations in progress, by association (thread-safe)."""

    def __init__(self) -> None:
        self._sessions: dict[int, Session] = {}
        self._lock = threading.Lock()

    def open(self, key: object, calling_ae: str, peer: str) -> Session:
        """Start the session of a newly requested association."""
        session = Session(calling_ae, peer)
        with self._lock:
            self._sessions[id(key)] = session
        return session

    def get(self, key: object) -> Session | None:
        """The session of an association in progress."""
        with self._lock:
            return self._sessions.get(id(key))

    def close(self, key: object) -> Session | None:
        """End and return the session of an association (``None`` if none was opened)."""
        with self._lock:
            return self._sessions.pop(id(key), None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._sessions)


def association_event(session: Session, node_ae: str) -> AuditEvent:
    """The audit entry of a finished (or refused) association."""
    outcome: Outcome = "success"
    details: dict[str, object] = {
        "calling_ae": session.calling_ae,
        "called_ae": node_ae,
        "peer": session.peer,
        "seconds": round(time.monotonic() - session.started, 3),
    }
    if isinstance(session.admission, Refusal):
        outcome = "denied"
        details["refused"] = session.admission.reason
    else:
        if session.aborted:
            outcome = "failure"
            details["aborted"] = True
        with session.lock:
            details["counts"] = dict(sorted(session.counts.items()))
            studies = list(session.studies)
        details["studies"] = len(studies)
        details["pseudo_study_uids"] = studies[:_MAX_STUDIES]
    return AuditEvent(ASSOCIATION, session.actor, outcome, details)


def retrieve_event(
    session: Session,
    *,
    service: str,
    studies: Iterable[str],
    instances: int,
    destination: str | None = None,
    outcome: Outcome = "success",
    reason: str | None = None,
) -> AuditEvent:
    """The audit entry of one C-GET or C-MOVE: a read of the studies it names."""
    listed = list(studies)
    details: dict[str, object] = {
        "service": service,
        "calling_ae": session.calling_ae,
        "peer": session.peer,
        "instances": instances,
        "studies": len(listed),
        "pseudo_study_uids": listed[:_MAX_STUDIES],
    }
    if destination is not None:
        details["destination_ae"] = destination
    if reason is not None:
        details["reason"] = reason
    return AuditEvent(RETRIEVE, session.actor, outcome, details)
