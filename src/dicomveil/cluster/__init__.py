"""Cluster mode: received originals go to an incoming object store, queue workers ingest them.

The core of scale-out, shared by the edges that accept instances (the gateway, the DICOM
node, direct uploads) and by the queue workers (:mod:`dicomveil.worker`):

- :mod:`~dicomveil.cluster.queues`: the priority queues (STAT, URGENT, ROUTINE) and the
  queue for large instances;
- :mod:`~dicomveil.cluster.payload`: the task payload (JSON, names an incoming object, holds
  no attribute value) and the names of incoming objects (from their SHA-256);
- :mod:`~dicomveil.cluster.broker`: the Celery configuration every node shares (JSON only,
  late acknowledgement, redelivery on worker loss);
- :mod:`~dicomveil.cluster.submit`: :func:`~dicomveil.cluster.submit.enqueue_objects` and
  :class:`~dicomveil.cluster.submit.Submitter` (store durably, then enqueue);
- :mod:`~dicomveil.cluster.settings`: the ``[cluster]`` table (queue URL, incoming store).

``docs/cluster.md`` describes the topology and what "accepted" means in each mode.
"""
