"""Routing on study completion: rules, the durable outbound queue and its senders.

A core service (it imports pipeline, storage and audit, never an edge): the ingest service's
listener records arrivals, a study is complete after N quiet seconds, matching rules queue
forwards (C-STORE, STOW-RS, webhook, teleradiology batch), and worker threads send them with
retries, backoff and dead letters. See ``docs/routing.md``.
"""

from __future__ import annotations

__all__: list[str] = []
