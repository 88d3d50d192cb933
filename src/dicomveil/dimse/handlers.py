"""The node's pynetdicom event handlers: each translates one event into a call on the runtime.

Handlers never raise into pynetdicom (which would log the exception's text, possibly quoting
a value): every failure becomes a DIMSE status and a value-free log line naming its type.

- Association requested: :func:`~dicomveil.dimse.access.admit` decides; a refusal is an
  A-ASSOCIATE-RJ, audited; an accepted caller without the ``read`` role is not offered the
  Query/Retrieve contexts at all.
- C-ECHO: success.
- C-STORE: the dataset (written to the private spool as received, never decoded) goes through
  :meth:`IngestService.ingest` (instances arriving on several associations at once share one
  call: :mod:`~dicomveil.pipeline.group_commit`); the response is its PS3.4 status: success only
  once the de-identified instance is stored and its way back recorded.
- C-FIND / C-GET / C-MOVE: on the index and the archive (pseudonymous values only); every
  retrieve is audited with the studies it read.
- Connection closed: the association's :class:`~dicomveil.dimse.session.Session` becomes one
  audit entry.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from dicomveil.dimse import query, retrieve
from dicomveil.dimse.access import NOT_AUTHORIZED, Admission, Refusal, admit
from dicomveil.dimse.contexts import QUERY_RETRIEVE, requested_for
from dicomveil.dimse.session import (
    Session,
    Sessions,
    association_event,
    retrieve_event,
)
from dicomveil.dimse.settings import DimseSettings, Role
from dicomveil.index import QueryError
from dicomveil.pipeline.group_commit import GroupCommit

if TYPE_CHECKING:
    from dicomveil.runtime import Runtime

__all__ = ["Handlers"]

log = logging.getLogger("dicomveil.dimse")

OUT_OF_RESOURCES: Final = 0xA700
CANNOT_UNDERSTAND: Final = 0xC000
IDENTIFIER_MISMATCH: Final = 0xA900
UNABLE_TO_PROCESS: Final = 0xC001
RETRIEVE_OUT_OF_RESOURCES: Final = 0xA702
MOVE_DESTINATION_UNKNOWN: Final = 0xA801
_COMMENT: Final = 64  # ErrorComment is LO: 64 characters


def status(code: int, comment: str | None = None) -> Dataset:
    """A response status with an optional, value-free Error Comment."""
    answer = Dataset()
    answer.Status = code
    text = "".join(c if " " <= c <= "~" and c != "\\" else " " for c in comment or "").strip()
    if text:  # LO: default repertoire, no backslash, at most 64 characters
        answer.ErrorComment = text[:_COMMENT]
    return answer


def _peer(event: Any) -> str:
    return str(event.assoc.requestor.address)


class Handlers:
    """Every handler the node binds, sharing the runtime, the settings and the sessions."""

    def __init__(self, runtime: Runtime, settings: DimseSettings) -> None:
        self.runtime = runtime
        self.settings = settings
        self.sessions = Sessions()
        self.spool = Path(runtime.staging) / "dimse"
        self.spool.mkdir(mode=0o700, parents=True, exist_ok=True)
        submitter = runtime.submitter  # cluster mode: stored and queued, workers ingest
        self._ingest = runtime.ingest.ingest if submitter is None else submitter.ingest
        self.batcher = GroupCommit()

    def close(self) -> None:
        """Finish the ingest calls in progress (call once no association is left)."""
        self.batcher.close()

    def bindings(self) -> list[Any]:
        """The ``evt_handlers`` list for ``AE.make_server``."""
        from pynetdicom import evt

        return [
            (evt.EVT_CONN_OPEN, self.on_connected),
            (evt.EVT_REQUESTED, self.on_requested),
            (evt.EVT_CONN_CLOSE, self.on_closed),
            (evt.EVT_C_ECHO, self.on_echo),
            (evt.EVT_C_STORE, self.on_store),
            (evt.EVT_C_FIND, self.on_find),
            (evt.EVT_C_GET, self.on_get),
            (evt.EVT_C_MOVE, self.on_move),
        ]

    # -- association ---------------------------------------------------------------------

    def on_connected(self, event: Any) -> None:
        """Send small PDUs at once (TCP_NODELAY): without it each C-STORE or C-FIND response
        waits for the peer's delayed acknowledgement (tens of milliseconds on Linux)."""
        sock = getattr(getattr(event.assoc.dul, "socket", None), "socket", None)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def on_requested(self, event: Any) -> None:
        """Admit or reject an A-ASSOCIATE-RQ (calling AE, called AE, network, roles)."""
        assoc = event.assoc
        request = assoc.requestor.primitive
        calling = str(request.calling_ae_title).strip()
        session = self.sessions.open(assoc, calling, _peer(event))
        decision = admit(self.settings, calling, str(request.called_ae_title), session.peer)
        session.admission = decision
        if isinstance(decision, Refusal):
            log.warning(
                "association from %s (%s) refused: %s", calling, session.peer, decision.reason
            )
            assoc.acse.send_reject(0x01, 0x01, decision.diagnostic)
            assoc.kill()
            return
        if Role.READ not in decision.roles:
            assoc.acceptor.supported_contexts = [
                cx
                for cx in assoc.acceptor.supported_contexts
                if cx.abstract_syntax not in QUERY_RETRIEVE
            ]
        session.established = True

    def on_closed(self, event: Any) -> None:
        """Audit the association whose connection closed."""
        session = self.sessions.close(event.assoc)
        if session is None or session.admission is None:
            return  # a connection that never sent an A-ASSOCIATE-RQ
        assoc = event.assoc
        if isinstance(session.admission, Admission):
            if assoc.is_rejected:  # by pynetdicom: max_associations reached
                session.admission = Refusal("busy")
            elif not assoc.is_released:  # A-ABORT, A-P-ABORT or a dropped connection
                session.aborted = True
        try:
            self.runtime.audit.append(association_event(session, self.settings.ae_title))
        except Exception as exc:  # never into pynetdicom; the log says what failed
            log.error("the association could not be audited (%s)", type(exc).__name__)
        if isinstance(session.admission, Admission):
            counts = ", ".join(f"{k} {v}" for k, v in sorted(session.counts.items()))
            log.info(
                "association from %s (%s) %s: %s",
                session.calling_ae,
                session.peer,
                "aborted" if session.aborted else "ended",
                counts or "nothing done",
            )

    def _session(self, event: Any, service: str) -> Session | None:
        """The caller's session if it may use ``service``, else ``None``."""
        session = self.sessions.get(event.assoc)
        if session is None or not isinstance(session.admission, Admission):
            return None
        if not session.admission.may(service):
            session.count(f"{service.lower()}.refused")
            log.warning("%s refused to %s: no role for it", service, session.calling_ae)
            return None
        return session

    # -- services ------------------------------------------------------------------------

    def on_echo(self, event: Any) -> int:
        """C-ECHO: always success for an admitted caller."""
        session = self.sessions.get(event.assoc)
        if session is not None:
            session.count("echo")
        return 0x0000

    def _spooled(self, event: Any) -> Path:
        """Move (or write) the received dataset, as received, into the private spool."""
        target = self.spool / f"{uuid.uuid4().hex}.dcm"
        try:
            chunked = event.dataset_path  # None unless STORE_RECV_CHUNKED_DATASET
        except AttributeError:
            chunked = None
        received = Path(chunked) if chunked else None
        if received is not None and received.is_file():
            try:
                os.replace(received, target)
            except OSError:  # another file system: copy, then the original goes
                shutil.copyfile(received, target)
                received.unlink(missing_ok=True)
            return target
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(event.encoded_dataset(include_meta=True))
        return target

    def on_store(self, event: Any) -> int | Dataset:
        """C-STORE: spool, ingest, answer the real outcome."""
        from dicomveil.pipeline.ingest import Origin

        session = self._session(event, "C-STORE")
        if session is None:
            return status(NOT_AUTHORIZED, "the calling AE may not store here")
        path: Path | None = None
        try:
            path = self._spooled(event)
            origin = Origin(
                entry="dimse",
                actor=session.actor,
                calling_ae=session.calling_ae,
                peer=session.peer,
                organisation=session.organisation,
            )
            result = self.batcher.ingest(self._ingest, path, origin)
        except Exception as exc:
            log.error("C-STORE from %s failed (%s)", session.calling_ae, type(exc).__name__)
            session.count("store.failed")
            return status(OUT_OF_RESOURCES, "the node could not store the instance")
        finally:
            if path is not None:
                path.unlink(missing_ok=True)
        if result.ok:
            session.count("stored", studies=[result.study_uid])
            return int(result.status)
        session.count("store.failed")
        failure = result.failure
        reason = None if failure is None else f"{failure.kind}: {failure.reason}"
        log.warning(
            "C-STORE from %s refused: 0x%04X %s",
            session.calling_ae,
            result.status,
            getattr(failure, "kind", ""),
        )
        return status(int(result.status), reason)

    def on_find(self, event: Any) -> Iterator[tuple[int | Dataset, Dataset | None]]:
        """C-FIND: match the identifier in the index; yield one pending answer per match."""
        session = self._session(event, "C-FIND")
        if session is None:
            yield status(NOT_AUTHORIZED, "the calling AE may not query here"), None
            return
        _service, model = QUERY_RETRIEVE[str(event.context.abstract_syntax)]
        try:
            request = query.parse_identifier(event.identifier, model)
            found = list(
                query.answers(
                    self.runtime.index,
                    request,
                    ae_title=self.settings.ae_title,
                    most=self.settings.max_find_results,
                    organisation=session.organisation,
                    implicit=_implicit(event),
                )
            )
        except QueryError as exc:
            session.count("find.failed")
            yield status(IDENTIFIER_MISMATCH, str(exc)), None
            return
        except Exception as exc:
            log.error("C-FIND from %s failed (%s)", session.calling_ae, type(exc).__name__)
            session.count("find.failed")
            yield status(UNABLE_TO_PROCESS, "the archive could not be searched"), None
            return
        session.count("find")
        session.count("find.matches", len(found))
        for answer in found:
            if event.is_cancelled:
                yield 0xFE00, None
                return
            yield 0xFF00, answer
        if len(found) >= self.settings.max_find_results:
            yield 0xB001, None  # more matched than one answer may hold
            return
        yield 0x0000, None

    def _select(self, event: Any, session: Session, service: str) -> retrieve.Selection | Dataset:
        _service, model = QUERY_RETRIEVE[str(event.context.abstract_syntax)]
        try:
            return retrieve.select_instances(
                self.runtime.index, event.identifier, model, organisation=session.organisation
            )
        except QueryError as exc:
            session.count(f"{service.lower()}.failed")
            return status(IDENTIFIER_MISMATCH, str(exc))
        except Exception as exc:
            log.error("%s from %s failed (%s)", service, session.calling_ae, type(exc).__name__)
            session.count(f"{service.lower()}.failed")
            return status(UNABLE_TO_PROCESS, "the archive could not be searched")

    def _send(
        self, event: Any, session: Session, service: str, selection: retrieve.Selection
    ) -> Iterator[tuple[int, Dataset | None]]:
        """Yield each selected instance as a pending sub-operation (stop on cancel)."""
        sent = 0
        for instance in selection.instances:
            if event.is_cancelled:
                yield 0xFE00, None
                break
            try:
                dataset = retrieve.load(self.runtime.store, instance)
            except Exception as exc:
                kind = type(exc).__name__
                log.error("%s: an archived instance could not be read (%s)", service, kind)
                session.count(f"{service.lower()}.unreadable")
                dataset = Dataset()  # an empty dataset: the sub-operation fails
            sent += 1
            yield 0xFF00, dataset
        session.count(f"{service.lower()}.instances", sent, studies=selection.studies)

    def _audit_read(
        self,
        session: Session,
        service: str,
        selection: retrieve.Selection,
        destination: str | None = None,
    ) -> bool:
        """Audit the read before anything is sent; ``False`` when it cannot be audited."""
        try:
            self.runtime.audit.append(
                retrieve_event(
                    session,
                    service=service,
                    studies=selection.studies,
                    instances=len(selection.instances),
                    destination=destination,
                )
            )
        except Exception as exc:
            log.error("%s: the read could not be audited (%s)", service, type(exc).__name__)
            return False
        return True

    def on_get(self, event: Any) -> Iterator[Any]:
        """C-GET: send the named instances back over the same association."""
        session = self._session(event, "C-GET")
        if session is None:
            yield 1
            yield status(NOT_AUTHORIZED, "the calling AE may not retrieve here"), None
            return
        selection = self._select(event, session, "C-GET")
        if isinstance(selection, Dataset):
            yield 1
            yield selection, None
            return
        if not self._audit_read(session, "C-GET", selection):
            yield 1
            yield status(RETRIEVE_OUT_OF_RESOURCES, "the read could not be audited"), None
            return
        yield len(selection.instances)
        yield from self._send(event, session, "C-GET", selection)

    def on_move(self, event: Any) -> Iterator[Any]:
        """C-MOVE: send the named instances to a configured destination AE."""
        session = self._session(event, "C-MOVE")
        name = str(event.move_destination or "").strip()
        destination = self.settings.destinations.get(name)
        if session is None or destination is None:
            if session is not None:
                session.count("c-move.unknown-destination")
                log.warning("C-MOVE from %s to an unknown destination", session.calling_ae)
            yield None, None
            return
        selection = self._select(event, session, "C-MOVE")
        if isinstance(selection, Dataset):
            yield destination.host, destination.port
            yield 1
            yield selection, None
            return
        pairs = {(i.sop_class_uid, i.transfer_syntax_uid) for i in selection.instances}
        from pynetdicom import evt

        kwargs: dict[str, Any] = {"evt_handlers": [(evt.EVT_CONN_OPEN, self.on_connected)]}
        try:
            if pairs:
                kwargs["contexts"] = requested_for(pairs)
        except ValueError:  # more than 128 kinds of instance: one association cannot
            yield destination.host, destination.port
            yield 1
            yield status(RETRIEVE_OUT_OF_RESOURCES, "too many SOP classes for one move"), None
            return
        if destination.tls and self.settings.tls is not None:
            kwargs["tls_args"] = (_client_tls(self.settings), None)
        yield destination.host, destination.port, kwargs
        if not self._audit_read(session, "C-MOVE", selection, destination=name):
            yield 1
            yield status(RETRIEVE_OUT_OF_RESOURCES, "the read could not be audited"), None
            return
        yield len(selection.instances)
        yield from self._send(event, session, "C-MOVE", selection)


def _client_tls(settings: DimseSettings) -> Any:
    from dicomveil.dimse.tls import client_context

    assert settings.tls is not None
    return client_context(settings.tls)


def _implicit(event: Any) -> bool | None:
    """Whether the request's context is Implicit (``True``) or Explicit (``False``) VR Little
    Endian; ``None`` for any other transfer syntax (answers are then plain datasets)."""
    syntax = str(event.context.transfer_syntax)
    if syntax == ImplicitVRLittleEndian:
        return True
    if syntax == ExplicitVRLittleEndian:
        return False
    return None
