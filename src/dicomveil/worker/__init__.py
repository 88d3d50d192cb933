"""The queue worker: an edge, like ``cli``, ``web`` and ``dimse``.

``dicomveil worker --queue URL`` (:mod:`dicomveil.cli.worker`) runs :func:`app.run_worker`:
a Celery worker whose one task (:mod:`~dicomveil.worker.tasks`) reads a queued original from
the incoming store, runs :meth:`~dicomveil.pipeline.ingest.IngestService.ingest` on it (the
one pipeline every edge calls), and deletes the original once it is de-identified and
recorded. Failures that may pass (database, storage) are retried with backoff inside the
task; the others, and the ones that never pass, are dead-lettered into the quarantine
(:mod:`~dicomveil.worker.deadletter`).
"""
