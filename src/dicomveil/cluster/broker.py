"""The Celery configuration every node of a cluster shares, and the sending side.

- JSON only (``accept_content=["json"]``): no pickle on the wire, in either direction.
- At-least-once: ``task_acks_late`` (a message is acknowledged when its task ends) and
  ``task_reject_on_worker_lost`` (a worker killed mid-task gives its message back);
  ``worker_prefetch_multiplier = 1`` (a worker holds one message at a time, so a long task
  does not sit on messages other workers could take). Tasks are idempotent
  (:mod:`dicomveil.worker.tasks`).
- Redis: priority queues taken in order (``queue_order_strategy = "priority"``), and
  messages of a vanished worker restored after ``visibility_timeout`` (the sweep runs every
  second; kombu's default would wait up to 100 s whatever the timeout).
- RabbitMQ: publisher confirms, so a send returns once the broker has the message.
- No result backend: a worker's outcome is in the archive, index, audit log or quarantine.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from dicomveil._optional import require
from dicomveil.cluster.queues import ALL_QUEUES

if TYPE_CHECKING:
    from celery import Celery

    from dicomveil.cluster.settings import ClusterSettings

__all__ = ["TASK_NAME", "celery_config", "make_app", "public_queue_url"]

TASK_NAME: Final = "dicomveil.ingest_object"


def public_queue_url(url: str) -> str:
    """``url`` without its password (for messages and logs)."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    userinfo, _, host = rest.rpartition("@")
    user = userinfo.partition(":")[0]
    return f"{scheme}://{user + ':***@' if user else '***@'}{host}"


def celery_config(settings: ClusterSettings) -> dict[str, Any]:
    """The Celery settings of a cluster (see the module's documentation)."""
    url = settings.queue_url or "memory://"
    redis = url.startswith(("redis://", "rediss://"))
    transport: dict[str, Any] = {}
    if redis:
        transport = {
            "visibility_timeout": settings.visibility_timeout,
            "queue_order_strategy": "priority",
            "unacked_restore_interval": 1,
            "unacked_restore_throttle": 1,
        }
    elif url.startswith(("amqp://", "amqps://", "pyamqp://")):
        transport = {"confirm_publish": True}
    return {
        "broker_url": url,
        "broker_transport_options": transport,
        "broker_connection_retry_on_startup": True,
        "broker_connection_max_retries": 3,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        "event_serializer": "json",
        "task_ignore_result": True,
        "result_backend": None,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_acks_on_failure_or_timeout": True,
        "worker_prefetch_multiplier": 1,
        "task_default_queue": ALL_QUEUES[-2],
        "task_create_missing_queues": True,
        "worker_hijack_root_logger": False,
        "worker_send_task_events": False,
        "worker_enable_remote_control": False,
        "broker_connection_timeout": 5,
    }


def make_app(settings: ClusterSettings, name: str = "dicomveil") -> Celery:
    """A Celery app configured for the cluster (the sender's, or the worker's).

    Raises
    ------
    ConfigError
        Celery is not installed (names ``pip install 'dicomveil[worker]'``).
    """
    celery = require("celery", "cluster mode (--queue)", "worker")
    app: Celery = celery.Celery(name, set_as_current=False)
    app.conf.update(celery_config(settings))
    return app
