"""Forward by webhook: tell an HTTP endpoint that a study (round) is complete.

The body is JSON with pseudonymous ids and counts only (stable keys, ``format_version`` 1)::

    {"format_version": 1, "event": "study.complete", "job": 12, "rule": "notify",
     "study_uid": "2.25....", "source": "CT_SCANNER", "round": 1, "priority": "STAT",
     "instances": 500, "new_instances": 500, "modalities": ["CT"]}

``source`` is the calling AE title (a device) or the entry (``stow``). A 2xx answer is
success; anything else is retried by the queue. An optional bearer token comes from the
environment variable the rule names.
"""

from __future__ import annotations

import json
from typing import Any

from dicomveil._optional import require
from dicomveil.forward.queue import Job
from dicomveil.forward.sender import Delivery, ForwardFailed
from dicomveil.forward.settings import Rank, Target

__all__ = ["WebhookSender", "webhook_body"]


def webhook_body(delivery: Delivery) -> dict[str, Any]:
    """Return the JSON body for ``delivery`` (see the module docstring)."""
    job = delivery.job
    return {
        "format_version": 1,
        "event": "study.complete",
        "job": job.id,
        "rule": job.rule,
        "study_uid": job.study_uid,
        "source": job.source,
        "round": job.round,
        "priority": Rank(job.rank).name,
        "instances": len(delivery.covered),
        "new_instances": len(delivery.pending),
        "modalities": sorted({x.modality for x in delivery.covered if x.modality}),
    }


class WebhookSender:
    """POST :func:`webhook_body` to the ``url`` of ``target``."""

    def __init__(self, target: Target, timeout: float) -> None:
        self._target, self._timeout = target, timeout

    def scope(self, job: Job) -> str:
        """A webhook acknowledges a round, not instances: one scope per job."""
        return f"webhook:{job.id}"

    def send(self, delivery: Delivery) -> None:
        """POST the notification; raise :class:`ForwardFailed` unless answered 2xx."""
        httpx = require("httpx", "webhook routing", "routing")
        headers = {"Content-Type": "application/json"}
        token = self._target.token()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        body = json.dumps(webhook_body(delivery), separators=(",", ":")).encode()
        try:
            answer = httpx.post(
                self._target.url, content=body, headers=headers, timeout=self._timeout
            )
        except httpx.HTTPError as exc:
            raise ForwardFailed(f"webhook request failed ({type(exc).__name__})") from None
        if not 200 <= answer.status_code < 300:
            raise ForwardFailed(f"webhook answered HTTP {answer.status_code}")
        delivery.sent([x.sop_instance_uid for x in delivery.pending])
