"""The gateway application: ``create_app(settings)`` builds one FastAPI app.

Routes: health and metrics at the root, the gateway API under ``/api/v1``, DICOMweb
(STOW-RS, QIDO-RS, WADO-RS) under ``/dicomweb``; OpenAPI at ``/docs`` (local assets, see
:mod:`dicomveil.web.docs`) and ``/openapi.json`` unless the ``docs`` setting is off.
Resources (store, index, vault, audit log, tokens) are opened when the app is created and
closed when it shuts down (or by ``app.state.services.close()``).
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from dicomveil import __version__
from dicomveil.cluster.submit import attach_cluster
from dicomveil.events import attach_events
from dicomveil.forward.service import attach_forwarding
from dicomveil.pipeline.executor import silence_pydicom_log
from dicomveil.quiet import quiet_pydicom
from dicomveil.readiness import broker_check
from dicomveil.web.connections import GuardLimits, guard
from dicomveil.web.cors import OptionsAndCors
from dicomveil.web.docs import add_docs
from dicomveil.web.errors import install_error_handlers
from dicomveil.web.middleware import Observe
from dicomveil.web.routes import gateway, health, qido, reid, rendered, stow, uploads, wado
from dicomveil.web.routing import RouteTable
from dicomveil.web.services import Services
from dicomveil.web.settings import ENV_SETTINGS, Settings

__all__ = ["app_from_environment", "create_app", "quiet_pydicom"]

DESCRIPTION = """De-identifying DICOM gateway and DICOMweb archive of de-identified studies.

Every route but `/healthz` and `/readyz` needs a bearer token (`dicomveil tokens create
--role ROLE`): `ingest` (de-identify, STOW-RS, batches), `read` (QIDO-RS, WADO-RS),
`reidentify` (the way back, audited), `admin` (metrics; no data access). A token holds
`ingest` or `read`, not both.
"""


def create_app(settings: Settings) -> FastAPI:
    """Build the gateway for ``settings``.

    Raises
    ------
    ConfigError, ProfileError
        Bad settings, policy or key; storage, index or vault cannot be opened.
    """
    silence_pydicom_log()
    services = Services.open(settings)
    try:
        forwarding = attach_forwarding(services.runtime)
        submitter = attach_cluster(services.runtime)  # --queue: STOW-RS stores and queues
        if submitter is not None:
            queue_url = submitter.queue.settings.queue_url
            assert queue_url is not None  # a submitter exists only with a queue URL
            services.readiness.append(broker_check(queue_url))
    except BaseException:
        services.close()
        raise
    try:
        events = attach_events(services.runtime, forwarding)
    except BaseException:
        if forwarding is not None:
            forwarding.stop()
        services.close()
        raise
    if services.audit.key_beside_log:
        logging.getLogger("dicomveil.web").warning(
            "the audit key is a clear file in the state folder beside the audit log: whoever "
            "copies the folder can rewrite the chain. Keep it elsewhere "
            "(DICOMVEIL_AUDIT_KEY_FILE), wrap it with KMS (keys init --kms), and forward the "
            "log live (DICOMVEIL_AUDIT_SYSLOG)"
        )
    guard.configure(
        GuardLimits(settings.header_timeout, settings.body_timeout, settings.max_connections)
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            if forwarding is not None:
                forwarding.stop()
            if events is not None:
                events.stop()
            opened = getattr(app.state, "uploads", None)
            if opened is not None:
                opened.close()
            services.close()

    app = FastAPI(
        title="dicomveil gateway",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # served from local assets by add_docs (never from a CDN)
        redoc_url=None,
        openapi_url="/openapi.json" if settings.docs else None,
    )
    app.state.services = services
    app.state.forwarding = forwarding
    app.state.events = events
    install_error_handlers(app)
    for module in (health, gateway, reid, stow, qido, wado, rendered, uploads):
        app.include_router(module.router)
    _include_batches(app)
    _include_ui(app, services)
    if settings.docs:
        add_docs(app)
    table = RouteTable(
        app.router.routes,
        upload_limit=settings.max_body_bytes,
        json_limit=settings.max_json_bytes,
    )
    app.add_middleware(
        Observe,
        routes=table,
        tokens=services.tokens,
        metrics=services.metrics,
        audit=services.audit,
    )
    app.add_middleware(OptionsAndCors, origins=settings.cors_origins)  # outermost: preflights
    return app


def _include_batches(app: FastAPI) -> None:
    """Add the batch routes when the batch pipeline is installed."""
    try:
        batches = importlib.import_module("dicomveil.web.routes.batches")
    except ImportError:  # the batch pipeline is not part of this build
        return
    app.include_router(batches.router)


def _include_ui(app: FastAPI, services: Services) -> None:
    """Add the console and the installed viewer, as configured."""
    settings = services.settings
    if settings.console:
        from dicomveil.web.console import install_console

        install_console(app, services)
    if settings.viewer:
        from dicomveil.web.viewer.serve import mount_viewer

        mount_viewer(app, settings)


def app_from_environment() -> FastAPI:
    """Build the app from :data:`~dicomveil.web.settings.ENV_SETTINGS` (``serve`` workers)."""
    quiet_pydicom()
    return create_app(Settings.from_json(os.environ[ENV_SETTINGS]))
