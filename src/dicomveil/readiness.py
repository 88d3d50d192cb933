"""Readiness checks: can this node do its work right now (databases, broker, storage)?

A :class:`Check` is a name and a probe, a function that returns when the backing service
answers and raises otherwise. :func:`run_checks` runs probes concurrently, each bounded by a
timeout, and reports only pass or fail per name: never a URL, a message or a value, so the
answer can be served without a token (``GET /readyz``).

>>> run_checks([Check("ok", lambda: None)], timeout=1.0)
{'ok': True}
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import text
from sqlalchemy.engine import Engine

from dicomveil._optional import require
from dicomveil.threads import ProcessThreads

__all__ = ["DEFAULT_TIMEOUT", "Check", "broker_check", "engine_check", "run_checks"]

DEFAULT_TIMEOUT: Final = 2.0
"""Seconds a probe may take before its service counts as not ready."""

_probes = ProcessThreads("dicomveil-ready", 8)
"""The probes' threads (a few: a probe stuck past its timeout keeps one until it ends; per
process, so a forked server's probes still run)."""


@dataclass(frozen=True, slots=True)
class Check:
    """One readiness check: ``probe()`` returns when ``name``'s service is usable."""

    name: str
    probe: Callable[[], object]


def run_checks(checks: Sequence[Check], timeout: float = DEFAULT_TIMEOUT) -> dict[str, bool]:
    """Run every probe at once; return ``{name: passed}`` within about ``timeout`` seconds.

    A probe that raises anything, or has not returned after ``timeout`` seconds, fails.
    """
    deadline = time.monotonic() + timeout
    futures: list[tuple[str, Future[object]]] = [
        (check.name, _probes.get().submit(check.probe)) for check in checks
    ]
    results: dict[str, bool] = {}
    for name, future in futures:
        try:
            future.result(timeout=max(0.0, deadline - time.monotonic()))
        except (Exception, FutureTimeout):
            results[name] = False
        else:
            results[name] = True
    return results


def engine_check(name: str, engine: Engine) -> Check:
    """A check running ``SELECT 1`` on ``engine`` (a connection from its pool)."""

    def probe() -> None:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1")).scalar_one()

    return Check(name, probe)


def broker_check(url: str, timeout: float = DEFAULT_TIMEOUT, name: str = "broker") -> Check:
    """A check pinging the task broker at ``url``: Redis ``PING`` (``redis://``,
    ``rediss://``), or an AMQP connection opened and closed (``amqp://``, RabbitMQ).

    The client is made on first use and kept (Redis reconnects by itself).
    """
    scheme = url.split("://", 1)[0].lower()
    if scheme in ("redis", "rediss"):
        client: list[Any] = []

        def ping_redis() -> None:
            if not client:
                redis = require("redis", "the broker readiness check", "worker")
                client.append(
                    redis.Redis.from_url(
                        url, socket_timeout=timeout, socket_connect_timeout=timeout
                    )
                )
            client[0].ping()

        return Check(name, ping_redis)

    def connect_amqp() -> None:
        kombu = require("kombu", "the broker readiness check", "worker")
        with kombu.Connection(url, connect_timeout=timeout) as connection:
            connection.ensure_connection(max_retries=1, timeout=timeout)

    return Check(name, connect_amqp)
