"""``dicomveil scp``: dicomveil as a DICOM node alone (no HTTP gateway).

pynetdicom is imported only when the command runs; without it the command names the
``pip install 'dicomveil[dimse]'`` that fixes it. The node itself lives in
:mod:`dicomveil.dimse.server`, imported lazily: the only place the ``cli`` edge reaches into
the ``dimse`` edge (an allowed launcher in the import contract).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from dicomveil.cli.common import err_console, fail, get_key
from dicomveil.errors import DicomveilError

if TYPE_CHECKING:
    from dicomveil.settings import CoreSettings

__all__ = ["dimse_settings", "register", "scp", "start_beside", "use_queue"]

HELP = r"""Run dicomveil as a DICOM node: receive by C-STORE, answer C-FIND / C-GET / C-MOVE.

Every instance received by C-STORE is de-identified, archived, recorded (the way back) and
indexed before the sender gets success (0000H); a refusal carries a PS3.4 status and a
value-free reason. Queries and retrieves see the de-identified archive only (pseudonymous
values and UIDs), the same archive `dicomveil serve` serves over DICOMweb.

Who may call, and what each caller may do, is set in the --config file's \[dimse] table
(allowed_ae_titles, roles per AE: ingest = C-STORE, read = C-FIND/C-GET/C-MOVE, networks,
limits, TLS, C-MOVE destinations); docs/dimse.md describes every key. With no
allowed_ae_titles any caller is accepted, with a warning. Stops cleanly on SIGTERM/Ctrl-C.

Examples:

  dicomveil scp --port 11112

  dicomveil scp --port 11112 --ae-title GATEWAY --config /etc/dicomveil/dicomveil.toml

  echoscu -aet CT01 -aec GATEWAY localhost 11112

  storescu -aet CT01 -aec GATEWAY +sd +r localhost 11112 /path/to/study
"""


def _require_dimse_stack() -> None:
    from dicomveil._optional import require

    require("pynetdicom", "dicomveil scp", "dimse")


def dimse_settings(
    config: Path | None, *, port: int | None, ae_title: str | None, host: str | None
) -> Any:
    """The ``[dimse]`` settings of ``config`` with the command line's overrides.

    Raises
    ------
    ConfigError
        Malformed settings.
    """
    from dicomveil.dimse import server  # the one import of the DICOM node

    return server.load_settings(config, port=port, ae_title=ae_title, host=host)


def scp(
    port: int | None = typer.Option(
        None, "--port", min=0, max=65535, help="DICOM port (default: [dimse] port, else 11112)."
    ),
    ae_title: str | None = typer.Option(
        None, "--ae-title", help="The node's AE title (default: [dimse] ae_title, DICOMVEIL)."
    ),
    host: str | None = typer.Option(
        None, "--host", help="Address to listen on (default: [dimse] host, else 127.0.0.1)."
    ),
    config: Path | None = typer.Option(
        None,
        "--config",
        help="TOML settings file: \\[server] (archive, index, vault, policy) and \\[dimse].",
    ),
    key_file: Path | None = typer.Option(
        None,
        "--key-file",
        help="Pseudonym key file. Default: $DICOMVEIL_KEY, else the state folder's key.",
    ),
    database: str | None = typer.Option(
        None,
        "--database",
        help="Shared database URL (also DICOMVEIL_DATABASE_URL): vault, index, audit chain, "
        "routing queue (docs/deploy-state.md).",
    ),
    log_level: str = typer.Option("info", "--log-level", help="debug, info, warning, error."),
    queue: str | None = typer.Option(
        None,
        "--queue",
        help="Cluster mode: store received originals and queue them for `dicomveil worker`s "
        "(redis:// or amqp:// broker URL; also DICOMVEIL_QUEUE, [cluster] queue_url).",
    ),
) -> None:
    try:
        _require_dimse_stack()
        settings = dimse_settings(config, port=port, ae_title=ae_title, host=host)
        from dicomveil.settings import CoreSettings

        core = CoreSettings.load(config=config, key_file=key_file, database_url=database)
        core.policy()
    except DicomveilError as exc:
        fail(str(exc))
    get_key("pseudonym", key_file)  # created now, once
    logging.basicConfig(level=log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    use_queue(queue)
    from dicomveil.cluster.submit import attach_cluster
    from dicomveil.dimse.server import run_node
    from dicomveil.events import attach_events
    from dicomveil.forward.service import attach_forwarding
    from dicomveil.runtime import Runtime

    err_console.print(
        f"dicomveil DICOM node {settings.ae_title} on {settings.host}:{settings.port}"
    )
    try:
        with Runtime.open(core) as runtime:
            forwarding = attach_forwarding(runtime)  # [routing] of --config, if any rules
            attach_cluster(runtime)  # --queue / [cluster]: store, queue, answer
            try:
                events = attach_events(runtime, forwarding)  # [events] of --config
                try:
                    run_node(runtime, settings)
                finally:
                    if events is not None:
                        events.stop()
            finally:
                if forwarding is not None:
                    forwarding.stop()
    except DicomveilError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"cannot listen on {settings.host}:{settings.port}: {exc.strerror}")


def use_queue(queue: str | None) -> None:
    """``--queue URL``: cluster mode for what this process starts (the runtimes read it as
    ``DICOMVEIL_QUEUE``, in this process and in the gateway's server processes)."""
    if queue:
        os.environ["DICOMVEIL_QUEUE"] = queue


def start_beside(
    core: CoreSettings,
    config: Path | None,
    *,
    port: int,
    ae_title: str | None,
    host: str,
) -> Callable[[], None]:
    """Start the DICOM node in this process beside the gateway (``serve --dimse-port``).

    The node gets a runtime of its own on the same settings (same archive, index, vault and
    audit log: an instance answered success is visible to QIDO-RS at once; its routing and
    its events read the same ``[routing]`` and ``[events]`` tables and queues), so it
    outlives the gateway's shutdown: the returned function stops the node (associations in
    progress finish first), then its event delivery and routing, then closes that runtime.
    """
    _require_dimse_stack()
    settings = dimse_settings(config, port=port, ae_title=ae_title, host=host)
    from dicomveil.cluster.submit import attach_cluster
    from dicomveil.dimse.server import start_node
    from dicomveil.events import attach_events
    from dicomveil.forward.service import attach_forwarding
    from dicomveil.runtime import Runtime

    runtime = Runtime.open(core)
    forwarding = events = None
    try:
        forwarding = attach_forwarding(runtime)  # [routing] of --config, if any rules
        attach_cluster(runtime)  # --queue / [cluster]: store, queue, answer
        events = attach_events(runtime, forwarding)  # [events]: C-STORE'd instances too
        node = start_node(runtime, settings)
    except BaseException:
        _stop_services(events, forwarding)
        runtime.close()
        raise
    err_console.print(f"dicomveil DICOM node {settings.ae_title} on {host}:{port}")

    def stop() -> None:
        try:
            node.stop()
            _stop_services(events, forwarding)
        finally:
            runtime.close()

    return stop


def _stop_services(events: Any, forwarding: Any) -> None:
    """Stop the event delivery, then the routing, of a node's runtime (either may be
    ``None``)."""
    try:
        if events is not None:
            events.stop()
    finally:
        if forwarding is not None:
            forwarding.stop()


def register(app: typer.Typer) -> None:
    """Add ``scp`` to ``app``."""
    app.command("scp", help=HELP)(scp)
