"""Direct uploads handed on by S3 bucket notifications (SQS) instead of the ``complete`` call.

The incoming bucket sends an event to an SQS queue for every object created under the
incoming prefix (``QueueConfigurations`` with ``s3:ObjectCreated:*``); a
:class:`NotificationWatcher` (``dicomveil worker --upload-events URL``) reads the queue and
hands each object on as ``complete`` would, as soon as it is there:

1. :func:`parse_event` reads the message (S3's event JSON; the key is URL-encoded there);
2. :func:`upload_object` maps the key to an upload and one of its object names, only when
   the key is exactly ``<store prefix>incoming/<upload id>/<generated name>`` of the
   incoming store's bucket. Object keys are chosen by whoever holds a signed URL, so they are
   matched against the names this service generated, never turned into a path, and never
   logged: an unknown key is counted and dropped;
3. :meth:`UploadNotices.object_created` enqueues the object once: only an object still
   ``pending`` in the uploads database is enqueued (then recorded ``queued``), so a
   repeated notification (SQS delivers at least once; a client may ``PUT`` twice) or a
   later ``complete`` call changes nothing. Two watchers taking the same message at once
   can enqueue it twice; the workers are idempotent (``docs/cluster.md``), so the instance
   is still stored once;
4. the SQS message is deleted only after every record in it was handled; a failure (the
   broker or the database away) leaves it in the queue, and SQS hands it out again once
   its visibility timeout has passed.

When no object of an upload is pending any more the upload is marked ``done`` (what
``complete`` would have left), so the stale sweep does not touch it. ``complete`` still
works beside the notifications: it hands on what is still pending.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import unquote_plus, urlsplit

from dicomveil.errors import ConfigError
from dicomveil.uploads import registry as reg
from dicomveil.uploads.service import ENTRY, PREFIX, admit_object, enqueue_object

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from pathlib import Path

    from dicomveil.cluster.settings import ClusterSettings
    from dicomveil.cluster.submit import Queue
    from dicomveil.storage import BaseBlobStore
    from dicomveil.uploads.registry import UploadRegistry
    from dicomveil.uploads.settings import UploadSettings

__all__ = [
    "NotificationWatcher",
    "ObjectEvent",
    "UploadNotices",
    "open_watcher",
    "parse_event",
    "upload_object",
]

log = logging.getLogger(__name__)

_UPLOAD_ID: Final = re.compile(r"[0-9a-f]{32}")
_NAME: Final = re.compile(r"[0-9]{5}\.dcm")

#: What became of one notified object (the watcher counts them; tests read them).
HANDED_ON: Final = "handed_on"
ALREADY: Final = "already"
"""Not pending any more (a repeated notification, or ``complete`` came first)."""
UNKNOWN: Final = "unknown"
"""No upload of ours has this key (another prefix or bucket, a closed upload)."""
NOT_THERE: Final = "not_there"
"""The object is gone again (deleted since): left pending for ``complete``."""
TOO_LARGE: Final = "too_large"


@dataclass(frozen=True, slots=True)
class ObjectEvent:
    """One ``ObjectCreated`` record: the bucket and the object key (decoded)."""

    bucket: str
    key: str


def parse_event(body: str) -> list[ObjectEvent] | None:
    """The ``ObjectCreated`` records of an S3 event message (``[]``: a test event or other
    event kinds, nothing to do); ``None`` when the message is no S3 event at all.

    The key in an S3 event is URL-encoded (``+`` for a space); it is decoded here.
    """
    try:
        message = json.loads(body)
    except (TypeError, ValueError):
        return None
    if not isinstance(message, dict):
        return None
    if message.get("Event") == "s3:TestEvent":  # sent once when the configuration is set
        return []
    records = message.get("Records")
    if not isinstance(records, list):
        return None
    events = []
    for record in records:
        event = _object_event(record)
        if event is not None:
            events.append(event)
    return events


def _object_event(record: object) -> ObjectEvent | None:
    if not isinstance(record, dict) or record.get("eventSource") != "aws:s3":
        return None
    if not str(record.get("eventName", "")).startswith("ObjectCreated:"):
        return None
    s3: Any = record.get("s3")
    try:
        bucket, key = s3["bucket"]["name"], s3["object"]["key"]
    except (TypeError, KeyError):
        return None
    if not isinstance(bucket, str) or not isinstance(key, str):
        return None
    return ObjectEvent(bucket, unquote_plus(key))


def upload_object(event: ObjectEvent, bucket: str, prefix: str) -> tuple[str, str] | None:
    """``(upload id, object name)`` when ``event`` names an object this service generated
    in the incoming store (``bucket``, key prefix ``prefix``); ``None`` otherwise.

    Only the exact shape ``<prefix>incoming/<32 hex>/<5 digits>.dcm`` is taken: no other
    segment, no ``..``, no encoding trick can reach another upload or a path.
    """
    if event.bucket != bucket or not event.key.startswith(prefix):
        return None
    parts = event.key[len(prefix) :].split("/")
    if len(parts) != 3 or parts[0] != PREFIX:
        return None
    upload_id, name = parts[1], parts[2]
    if _UPLOAD_ID.fullmatch(upload_id) is None or _NAME.fullmatch(name) is None:
        return None
    return upload_id, name


class UploadNotices:
    """Hand on the objects notifications report (cluster mode: enqueue for the workers).

    Parameters
    ----------
    settings
        ``[uploads]``: the uploads database (shared with the gateways) and the size limit.
    incoming
        The incoming store (a bucket: :attr:`bucket` and :attr:`prefix` come from it).
    queue
        The broker.
    """

    def __init__(
        self,
        settings: UploadSettings,
        registry: UploadRegistry,
        incoming: BaseBlobStore,
        queue: Queue,
    ) -> None:
        bucket = getattr(incoming, "bucket", None)
        if not isinstance(bucket, str):
            raise ValueError("bucket notifications need an incoming store in a bucket (s3://)")
        self.bucket, self.prefix = bucket, str(getattr(incoming, "prefix", ""))
        self.settings, self.registry = settings, registry
        self.incoming, self.queue = incoming, queue
        self._lock = threading.Lock()

    def handle(self, event: ObjectEvent) -> str:
        """Hand on the object of one record; return what became of it (value-free)."""
        found = upload_object(event, self.bucket, self.prefix)
        if found is None:
            return UNKNOWN
        return self.object_created(*found)

    def object_created(self, upload_id: str, name: str) -> str:
        """Enqueue object ``name`` of ``upload_id`` if it is still pending (see the module)."""
        from dicomveil.pipeline.ingest import Origin

        with self._lock:  # one at a time in this process: no double enqueue here
            row = self.registry.get(upload_id)
            if row is None or row.state != "open":
                return UNKNOWN if row is None or row.state != "done" else ALREADY
            states = {item.name: item.state for item in row.objects}
            if name not in states:
                return UNKNOWN
            if states[name] != reg.PENDING:
                return ALREADY
            limit = self.settings.max_object_bytes
            admitted = admit_object(self.incoming, self.registry, limit, upload_id, name)
            if admitted == reg.MISSING:
                return NOT_THERE  # left pending: `complete` records it missing
            if admitted == reg.TOO_LARGE:
                outcome = TOO_LARGE
            else:
                assert isinstance(admitted, int)
                origin = Origin(entry=ENTRY, actor=row.actor, organisation=row.organisation)
                enqueue_object(
                    self.queue, self.registry, upload_id, name, admitted, origin, row.priority
                )
                outcome = HANDED_ON
            if all(s != reg.PENDING for n, s in states.items() if n != name):
                if self.registry.start_completing(upload_id):  # not taken by `complete`
                    self.registry.finish(upload_id)
            return outcome


class NotificationWatcher:
    """Read S3 event notifications from an SQS queue in a thread of its own.

    Parameters
    ----------
    queue_url
        The SQS queue's URL (``https://sqs.<region>.amazonaws.com/<account>/<name>``); the
        endpoint follows ``AWS_ENDPOINT_URL_SQS`` / ``AWS_ENDPOINT_URL`` as boto3 does.
    notices
        What hands the objects on.
    wait_seconds
        Long-poll time of one receive (1 to 20).
    """

    def __init__(self, queue_url: str, notices: UploadNotices, *, wait_seconds: int = 20) -> None:
        import boto3

        self.queue_url, self.notices = queue_url, notices
        self.wait_seconds = max(1, min(20, wait_seconds))
        self._client: Any = boto3.client("sqs", region_name=_region(queue_url))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.counts: Counter[str] = Counter()
        """Records handled, by outcome; ``dropped``: messages that were no S3 event;
        ``kept``: messages left for SQS to send again after a failure."""

    def start(self) -> None:
        """Start reading (in a daemon thread)."""
        self._thread = threading.Thread(
            target=self._loop, name="dicomveil-upload-events", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop after the receive in progress (at most ``wait_seconds``)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.wait_seconds + 10)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll()
            except Exception as exc:  # noqa: BLE001 - SQS away: try again shortly
                log.warning("reading upload notifications failed (%s)", type(exc).__name__)
                self._stop.wait(5)

    def poll(self) -> int:
        """Receive once and handle what came; return the messages deleted."""
        answer = self._client.receive_message(
            QueueUrl=self.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=self.wait_seconds
        )
        deleted = 0
        for message in answer.get("Messages", []):
            if self._handle(message):
                self._client.delete_message(
                    QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"]
                )
                deleted += 1
        return deleted

    def _handle(self, message: Mapping[str, Any]) -> bool:
        """Handle every record of one message; ``False``: keep it (SQS sends it again)."""
        events = parse_event(message.get("Body", ""))
        if events is None:
            self.counts["dropped"] += 1
            log.warning("dropped a notification that is not an S3 event")
            return True
        try:
            outcomes = [self.notices.handle(event) for event in events]
        except Exception as exc:  # noqa: BLE001 - broker or database away: redelivered
            self.counts["kept"] += 1
            log.warning("an upload notification failed (%s): kept", type(exc).__name__)
            return False
        self.counts.update(outcomes)
        if UNKNOWN in outcomes:  # the key is not logged: a client chooses it
            log.info("ignored %d notified object(s) of no open upload", outcomes.count(UNKNOWN))
        return True


def _region(queue_url: str) -> str | None:
    """The region in an AWS queue URL's host (``sqs.<region>.amazonaws.com``), else ``None``
    (the environment's)."""
    host = urlsplit(queue_url).hostname or ""
    parts = host.split(".")
    if len(parts) >= 4 and parts[0] == "sqs" and parts[-2:] == ["amazonaws", "com"]:
        return parts[1]
    return None


def open_watcher(
    queue_url: str,
    *,
    config: Path | None,
    home: Path,
    shared: str | None,
    cluster: ClusterSettings,
    wait_seconds: int = 20,
) -> tuple[NotificationWatcher, Callable[[], None]]:
    """A started watcher for a queue worker, and what closes it and what it opened.

    Raises
    ------
    ConfigError
        No uploads database shared with the gateways (``[uploads] database_url`` or the
        shared ``--database``), or an incoming store that is no bucket.
    """
    from dicomveil.cluster.submit import Queue
    from dicomveil.storage import open_store
    from dicomveil.uploads.registry import UploadRegistry
    from dicomveil.uploads.settings import UploadSettings

    settings = UploadSettings.load(config, home=home, shared=shared)
    if settings.database_url == UploadSettings.load(None, home=home).database_url:
        raise ConfigError(
            "upload notifications need the uploads database the gateways use: "
            "DICOMVEIL_DATABASE_URL (--database) or [uploads] database_url"
        )
    incoming = open_store(cluster.incoming(home))
    registry = UploadRegistry(settings.database_url)
    queue = Queue(cluster)
    try:
        notices = UploadNotices(settings, registry, incoming, queue)
        watcher = NotificationWatcher(queue_url, notices, wait_seconds=wait_seconds)
    except ValueError as exc:
        registry.close()
        incoming.close()
        queue.close()
        raise ConfigError(str(exc)) from None
    watcher.start()

    def close() -> None:
        watcher.stop()
        registry.close()
        incoming.close()
        queue.close()

    return watcher, close
