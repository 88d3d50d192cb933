"""``dicomveil serve``: the de-identifying gateway and DICOMweb archive (FastAPI on uvicorn).

The web stack is imported only when the command runs; without it the command names the
``pip install 'dicomveil[server]'`` that fixes it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from dicomveil.cli.common import err_console, fail, get_key
from dicomveil.errors import DicomveilError

if TYPE_CHECKING:
    from dicomveil.settings import CoreSettings

__all__ = ["register", "serve"]

HELP = r"""Serve the gateway: de-identify over HTTP, batches, re-identification, DICOMweb.

Needs no other server: SQLite index and archive folder under $DICOMVEIL_HOME by default;
--storage and --index (or a --config TOML file, or DICOMVEIL_STORAGE_URL /
DICOMVEIL_INDEX_URL) select S3/Azure/GCS and PostgreSQL; every setting of the --config file's
\[server] table is described, with an example, in docs/gateway.md. Every route but /healthz
and /readyz needs a bearer token from `dicomveil tokens create --role ROLE`.

DICOMweb root: /dicomweb   API: /api/v1   OpenAPI: /docs   Console: /console/
Viewer: /viewer/ once installed with `dicomveil viewer install`.

Examples:

  dicomveil serve --port 8080

  dicomveil serve --host 0.0.0.0 --port 8443 --ssl-certfile cert.pem --ssl-keyfile key.pem

  dicomveil serve --port 8080 --dimse-port 11112    (also a DICOM node: docs/dimse.md)
"""


def _require_server_stack() -> None:
    from dicomveil._optional import require

    for module, dist in (
        ("fastapi", "fastapi"),
        ("uvicorn", "uvicorn"),
        ("python_multipart", "python-multipart"),
        ("prometheus_client", "prometheus-client"),
    ):
        require(module, "dicomveil serve", "server", distribution=dist)


def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(8000, "--port", min=0, max=65535, help="Port to listen on."),
    key_file: Path | None = typer.Option(
        None,
        "--key-file",
        help="Pseudonym key file. Default: $DICOMVEIL_KEY, else the state folder's key.",
    ),
    config: Path | None = typer.Option(
        None,
        "--config",
        help="TOML file with a \\[server] table of settings (every key: docs/gateway.md).",
    ),
    storage: str | None = typer.Option(
        None, "--storage", help="Archive URL (default: file://$DICOMVEIL_HOME/archive)."
    ),
    index: str | None = typer.Option(
        None, "--index", help="Index database URL (default: SQLite under $DICOMVEIL_HOME)."
    ),
    vault: str | None = typer.Option(None, "--vault", help="Vault database URL."),
    database: str | None = typer.Option(
        None,
        "--database",
        help="Shared database URL (also DICOMVEIL_DATABASE_URL): the default home of every "
        "shared table: vault, index, tokens, audit chain, routing queue (docs/deploy-state.md).",
    ),
    option: list[str] = typer.Option(
        [], "--option", "-o", help="A PS3.15 option, repeatable (as for `deid`)."
    ),
    policy_file: Path | None = typer.Option(None, "--policy", help="TOML policy file."),
    organization: str | None = typer.Option(None, "--org", help="Patient pseudonym prefix."),
    import_root: Path | None = typer.Option(
        None, "--import-root", help="The only folder server-side batches may read."
    ),
    batch_dest: str | None = typer.Option(
        None, "--batch-dest", help="Where batches go (default: $DICOMVEIL_HOME-outbox)."
    ),
    max_body_bytes: int | None = typer.Option(
        None, "--max-body-bytes", min=1, help="Largest request body (413 beyond)."
    ),
    public_url: str | None = typer.Option(
        None, "--public-url", help="External base URL (behind a proxy), for RetrieveURL."
    ),
    no_vault: bool = typer.Option(False, "--no-vault", help="Do not record the way back."),
    no_archive_fsync: bool = typer.Option(
        False,
        "--no-archive-fsync",
        help="Do not fsync archived files (faster ingest; a power loss may lose the newest).",
    ),
    ssl_certfile: Path | None = typer.Option(None, "--ssl-certfile", help="TLS certificate."),
    ssl_keyfile: Path | None = typer.Option(None, "--ssl-keyfile", help="TLS private key."),
    workers: int = typer.Option(1, "--workers", min=1, help="Server processes."),
    deid_processes: int | None = typer.Option(
        None,
        "--deid-processes",
        min=0,
        help="Processes de-identifying uploads, per server process (default 0: one per "
        "core; 1: in the server process).",
    ),
    log_level: str = typer.Option("info", "--log-level", help="debug, info, warning, error."),
    queue: str | None = typer.Option(
        None,
        "--queue",
        help="Cluster mode: STOW-RS (and --dimse-port C-STORE) store received originals and "
        "queue them for `dicomveil worker`s (redis:// or amqp:// URL; also DICOMVEIL_QUEUE).",
    ),
    dimse_port: int | None = typer.Option(
        None,
        "--dimse-port",
        min=0,
        max=65535,
        help="Also be a DICOM node on this port (C-STORE in, C-FIND/C-GET/C-MOVE out; the "
        "\\[dimse] table of --config: docs/dimse.md).",
    ),
    ae_title: str | None = typer.Option(
        None, "--ae-title", help="The DICOM node's AE title (default DICOMVEIL)."
    ),
) -> None:
    if (ssl_certfile is None) != (ssl_keyfile is None):
        fail("--ssl-certfile and --ssl-keyfile go together")
    if ae_title is not None and dimse_port is None:
        fail("--ae-title goes with --dimse-port")
    try:
        _require_server_stack()
        from dicomveil.web import launch  # the one import of the gateway (docs/architecture.md)

        settings = launch.load_settings(
            config,
            storage_url=storage,
            database_url=database,
            index_url=index,
            vault_url=vault,
            key_file=key_file,
            policy_file=policy_file,
            options=tuple(option) or None,
            organization=organization,
            import_root=import_root,
            batch_url=batch_dest,
            max_body_bytes=max_body_bytes,
            public_url=public_url,
            use_vault=False if no_vault else None,
            archive_fsync=False if no_archive_fsync else None,
            deid_processes=deid_processes,
        )
    except DicomveilError as exc:
        fail(str(exc))
    get_key("pseudonym", key_file)  # created now, once, before any worker starts
    if queue:  # read by every server process's runtime (docs/cluster.md)
        os.environ["DICOMVEIL_QUEUE"] = queue
    stop_node = _start_node(settings, config, dimse_port, ae_title, host)
    try:
        launch.run_gateway(
            settings,
            host=host,
            port=port,
            ssl_certfile=ssl_certfile,
            ssl_keyfile=ssl_keyfile,
            workers=workers,
            log_level=log_level,
            announce=err_console.print,
        )
    except DicomveilError as exc:
        fail(str(exc))
    finally:
        if stop_node is not None:
            stop_node()


def _start_node(
    settings: CoreSettings,
    config: Path | None,
    port: int | None,
    ae_title: str | None,
    host: str,
) -> Callable[[], None] | None:
    """Start the DICOM node beside the gateway (``--dimse-port``); return its stop."""
    if port is None:
        return None
    from dicomveil.cli.scp import start_beside

    try:
        return start_beside(settings, config, port=port, ae_title=ae_title, host=host)
    except DicomveilError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"cannot listen for DICOM on {host}:{port}: {exc.strerror}")


def register(app: typer.Typer) -> None:
    """Add ``serve`` to ``app``."""
    app.command("serve", help=HELP)(serve)
