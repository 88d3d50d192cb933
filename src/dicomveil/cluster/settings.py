"""The ``[cluster]`` table: the queue (broker) URL and the incoming object store.

Later sources win: defaults, the ``[cluster]`` table of the ``--config`` file, the environment
(``DICOMVEIL_QUEUE``, ``DICOMVEIL_INCOMING_URL``), then command-line flags (``--queue``).
No ``queue_url``: single-process mode (every instance is ingested where it is received).

Example TOML::

    [cluster]
    queue_url = "redis://queue.internal:6379/0"
    incoming_url = "s3://dicomveil-incoming/in"
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dicomveil.cluster.queues import LARGE_BYTES
from dicomveil.errors import ConfigError

__all__ = ["ClusterSettings"]


@dataclass(frozen=True, slots=True)
class ClusterSettings:
    """Where queued work goes.

    Attributes
    ----------
    queue_url:
        The broker: ``redis://``, ``rediss://``, ``amqp://`` (RabbitMQ); ``None``: no cluster.
    incoming_url:
        The storage URL of received originals waiting for a worker (any ``storage`` URL all
        nodes reach); default ``file://<home>/incoming`` (one machine only).
    large_bytes:
        Instances this large or larger go to the ``large`` queue.
    visibility_timeout:
        Seconds (Redis broker) before a message taken by a worker that vanished is given
        to another: longer than the longest task, or a running task is handed out twice.
    max_retries:
        Attempts of a task that failed for a passing reason (database or storage down)
        before its instance is dead-lettered into the quarantine.
    """

    queue_url: str | None = None
    incoming_url: str | None = None
    large_bytes: int = LARGE_BYTES
    visibility_timeout: float = 3600.0
    max_retries: int = 8

    ENV = {"queue_url": "DICOMVEIL_QUEUE", "incoming_url": "DICOMVEIL_INCOMING_URL"}

    def incoming(self, home: Path) -> str:
        """The incoming store URL in use."""
        return self.incoming_url or f"file://{home / 'incoming'}"

    @classmethod
    def load(
        cls,
        config: Path | None = None,
        *,
        environ: Mapping[str, str] | None = None,
        **overrides: Any,
    ) -> ClusterSettings:
        """Build the settings (see the module's documentation).

        Raises
        ------
        ConfigError
            Unknown or malformed keys.
        """
        from dicomveil.settings import read_section

        values: dict[str, Any] = dict(read_section(config, "cluster")) if config else {}
        known = {"queue_url", "incoming_url", "large_bytes", "visibility_timeout", "max_retries"}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown [cluster] settings: {', '.join(unknown)}")
        env = os.environ if environ is None else environ
        for name, variable in cls.ENV.items():
            if env.get(variable):
                values[name] = env[variable]
        values.update({k: v for k, v in overrides.items() if v is not None})
        try:
            settings = cls(**values)
        except TypeError:
            raise ConfigError("malformed [cluster] settings") from None
        if settings.large_bytes <= 0 or settings.visibility_timeout <= 0:
            raise ConfigError("[cluster] large_bytes and visibility_timeout must be positive")
        if settings.max_retries < 0:
            raise ConfigError("[cluster] max_retries must be 0 or more")
        if settings.queue_url is not None:
            scheme = settings.queue_url.partition("://")[0]
            if scheme not in {"redis", "rediss", "amqp", "amqps", "pyamqp", "memory"}:
                raise ConfigError("the queue URL must be redis://, rediss:// or amqp://")
        return settings
