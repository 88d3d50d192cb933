"""Events (issue #15): signed CloudEvents webhooks from a durable outbox.

- :mod:`~dicomveil.events.cloudevents`: the envelope (CloudEvents 1.0, structured JSON);
- :mod:`~dicomveil.events.signing`: HMAC-SHA256 signature with a timestamp (and verify);
- :mod:`~dicomveil.events.outbox`: the SQL outbox table;
- :mod:`~dicomveil.events.sender`: delivery with retries, backoff, dead after N;
- :mod:`~dicomveil.events.settings`: the ``[events]`` table;
- :mod:`~dicomveil.events.service`: wiring (ingest listener, study completion).

``docs/events.md`` is the receiver's guide (types, fields, how to verify).
"""

from __future__ import annotations

from dicomveil.events.service import Events, attach_events
from dicomveil.events.signing import SIGNATURE_HEADER, sign, verify

__all__ = ["SIGNATURE_HEADER", "Events", "attach_events", "sign", "verify"]
