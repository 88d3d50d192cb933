"""``dicomveil batch``: de-identified, manifested, resumable batches to disk or the cloud."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from typer.core import TyperGroup

from dicomveil.cli.batch_progress import RichBatchEvents
from dicomveil.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    err_console,
    fail,
    get_key,
    out_console,
    show,
    state_folder,
)
from dicomveil.cli.organisations import CONFIG_OPTION, declared_organisation, organisation_of
from dicomveil.cli.runs import build_policy, open_records
from dicomveil.errors import ConfigError
from dicomveil.keystore import key_id
from dicomveil.pipeline.batch import BatchResult, create_batch, load_batch, resume_batch
from dicomveil.pipeline.batch_state import (
    BatchInfo,
    BatchStatus,
    Priority,
    batch_status,
    list_batches,
)
from dicomveil.pipeline.batch_upload import RetryPolicy
from dicomveil.pipeline.destination import local_root, open_destination

__all__ = ["batch_app", "register"]

HELP = """Make a de-identified batch of a study folder and ship it to disk or the cloud.

  dicomveil batch SOURCE --dest URL [--priority STAT|URGENT|ROUTINE] [--org CODE]

de-identifies every file of SOURCE (as `deid` does, with the same options and key), stages
the result under $DICOMVEIL_HOME/batches/ID, uploads it to URL under ID/STUDY/SERIES/INSTANCE.dcm
(Content-Type application/dicom, metadata batch_id, priority, study_id; each object verified
by size and SHA-256), then uploads ID/manifest.json last. The way back goes to the vault,
never into the batch.

Destinations: file:///path (or a path), s3://bucket/prefix (AWS credentials the usual ways;
--endpoint-url or AWS_ENDPOINT_URL for MinIO and other S3-compatible stores),
az://container/prefix (AZURE_STORAGE_CONNECTION_STRING), gs://bucket/prefix (application
default credentials; STORAGE_EMULATOR_HOST for an emulator).

Organisations (tenants): with --org CODE and a --config file declaring
\\[organisations.CODE], the batch takes that organisation's pseudonym prefix and its own key,
as the gateway does for a token of CODE (resume it with the same --config); a code no
--config declares is only the pseudonym prefix (a warning says so), and one missing from a
--config that declares others is refused.

A batch interrupted for any reason (kill -9, power cut, destination down) is finished with
`dicomveil batch resume ID`: every input ends up exactly once at the destination.

Examples:

  dicomveil batch ./incoming --dest s3://telerad-in/hosp1 --priority STAT --org HOSP1

  dicomveil batch status 01JD3QZ5V6W7X8Y9Z0ABCDEFGH

Exit codes: 0 every input uploaded, 1 some inputs failed or the batch stopped (resumable),
2 usage error.
"""


def _unwrap(text: str) -> str:
    """Join the lines of each prose paragraph (the terminal wraps them); keep indented ones."""
    paragraphs = []
    for block in text.strip().split("\n\n"):
        lines = block.splitlines()
        indented = any(line.startswith("  ") for line in lines)
        paragraphs.append(block if indented else " ".join(line.strip() for line in lines))
    return "\n\n".join(paragraphs)


class _SourceOrCommand(TyperGroup):
    """``batch SOURCE ...`` runs ``batch start SOURCE ...``; ``batch status ID`` etc. as usual."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:  # typer's own click Context
        if args and args[0] not in self.commands and args[0] not in ctx.help_option_names:
            args = ["start", *args]
        return super().parse_args(ctx, args)


batch_app = typer.Typer(
    name="batch",
    cls=_SourceOrCommand,
    help=_unwrap(HELP),
    no_args_is_help=True,
    add_completion=False,
)

_KEY_FILE = typer.Option(
    None,
    "--key-file",
    help="Pseudonym key file (one line). Default: $DICOMVEIL_KEY, else the state folder's key.",
)
_WORKERS = typer.Option(
    0, "--workers", "-j", min=0, help="De-identification processes (0 = one per core)."
)
_ENDPOINT = typer.Option(
    None, "--endpoint-url", help="S3-compatible endpoint (default: AWS_ENDPOINT_URL, else AWS)."
)
_TRANSFERS = typer.Option(8, "--transfers", min=1, help="Concurrent uploads.")
_RETRIES = typer.Option(
    5,
    "--retries",
    min=0,
    help="Retries of an upload while the destination is unavailable (backoff 0.5 s, doubling, "
    "up to 30 s); then the batch stops, resumable.",
)
_TIMEOUT = typer.Option(60.0, "--timeout", min=0.1, help="Seconds per network request.")
_JSON = typer.Option(False, "--json", help="Print the result as JSON on stdout.")


@batch_app.command("start", help="Create a batch from SOURCE and run it (same as `batch SOURCE`).")
def start(
    source: Path = typer.Argument(
        ..., help="A DICOM file or a folder of them.", show_default=False
    ),
    dest: str = typer.Option(..., "--dest", help="Destination URL (file://, s3://, az://, gs://)."),
    priority: str = typer.Option("ROUTINE", "--priority", help="STAT, URGENT or ROUTINE."),
    organization: str | None = typer.Option(
        None,
        "--org",
        metavar="CODE",
        help="Organization: in the manifest and the patient pseudonyms. An organisation "
        "--config declares (\\[organisations.CODE]) brings its pseudonym prefix and its own key; "
        "a code no configuration declares is only the prefix (with a warning).",
    ),
    config: Path | None = CONFIG_OPTION,
    option: list[str] = typer.Option(
        [], "--option", "-o", help="A PS3.15 option, repeatable (see `dicomveil deid --help`)."
    ),
    policy_file: Path | None = typer.Option(None, "--policy", help="TOML policy file."),
    key_file: Path | None = _KEY_FILE,
    workers: int = _WORKERS,
    endpoint_url: str | None = _ENDPOINT,
    transfers: int = _TRANSFERS,
    retries: int = _RETRIES,
    timeout: float = _TIMEOUT,
    as_json: bool = _JSON,
) -> None:
    if not source.exists():
        fail(f"{source}: no such file or folder")
    key = get_key("pseudonym", key_file)
    org = organisation_of(organization, config) if organization is not None else None
    policy = build_policy(option, policy_file, org.prefix if org is not None else None)
    secret = org.secret(key.secret) if org is not None else key.secret
    home = state_folder()
    try:
        level = Priority.parse(priority)
        local = local_root(dest)
        store = open_destination(dest, endpoint_url=endpoint_url, timeout=timeout)
        info = create_batch(
            source,
            store.url,  # canonical: a relative path becomes an absolute file:// URL
            policy=policy,
            key_id=key_id(secret),
            priority=level,
            endpoint_url=endpoint_url,
            home=home,
            local_dest=local,
            on_skip=lambda s: err_console.print(
                f"[yellow]not read:[/] {show(s.path)}: {show(s.reason)}"
            ),
            tenant=org.code if org is not None else None,
        )
    except ConfigError as exc:
        fail(str(exc))
    err_console.print(
        f"batch {show(info.batch_id)} ({info.priority.value}) -> {show(info.dest_url)}; "
        f"if interrupted: dicomveil batch resume {info.batch_id}"
    )
    with store:
        result = _drive(info.batch_id, store, secret, home, workers, transfers, retries)
    _report(result, as_json)


def _resume_secret(info: BatchInfo, key: bytes, config: Path | None) -> bytes:
    """The pseudonym secret batch ``info`` resumes with: its organisation's own key when it
    was made for one that has it (``--config`` must declare it), else ``key``."""
    if info.tenant is None:
        return key
    found = declared_organisation(info.tenant, config) if config is not None else None
    if found is None:
        fail(
            f"batch {info.batch_id} is organisation {info.tenant}'s: resume it with the "
            "--config that declares it"
        )
    return found[1].secret or key


@batch_app.command("resume", help="Finish an interrupted or stopped batch.")
def resume(
    batch_id: str = typer.Argument(..., help="The batch id.", show_default=False),
    key_file: Path | None = _KEY_FILE,
    workers: int = _WORKERS,
    endpoint_url: str | None = _ENDPOINT,
    transfers: int = _TRANSFERS,
    retries: int = _RETRIES,
    timeout: float = _TIMEOUT,
    as_json: bool = _JSON,
    config: Path | None = CONFIG_OPTION,
) -> None:
    home = state_folder()
    try:
        status = batch_status(batch_id, home)
        if not status.resumable:
            err_console.print(
                f"batch {show(status.batch_id)} is {show(status.state)}; nothing to resume"
            )
            _report(BatchResult(status), as_json)
        info = load_batch(batch_id, home)
        secret = _resume_secret(info, get_key("pseudonym", key_file).secret, config)
        store = open_destination(
            info.dest_url, endpoint_url=endpoint_url or info.endpoint_url, timeout=timeout
        )
    except ConfigError as exc:
        fail(str(exc))
    with store:
        result = _drive(info.batch_id, store, secret, home, workers, transfers, retries)
    _report(result, as_json)


@batch_app.command("status", help="Show a batch's state, counts and errors.")
def status(
    batch_id: str = typer.Argument(..., help="The batch id.", show_default=False),
    as_json: bool = _JSON,
) -> None:
    try:
        found = batch_status(batch_id, state_folder())
    except ConfigError as exc:
        fail(str(exc))
    if as_json:
        out_console.print_json(data=found.to_dict())
    else:
        _print_status(found)


@batch_app.command("list", help="List the batches of this state folder, oldest first.")
def list_(as_json: bool = _JSON) -> None:
    found = list_batches(state_folder())
    if as_json:
        out_console.print_json(data=[s.to_dict() for s in found])
        return
    from rich.table import Column, Table

    # ids are printed whole (they are what `batch status/resume` take): the other columns
    # wrap on a narrow terminal, never the id
    width = max((len(item.batch_id) for item in found), default=5)
    batch = Column("batch", no_wrap=True, min_width=width)
    table = Table(batch, "created", "priority", "org", "state", "images", "destination")
    for item in found:
        table.add_row(
            show(item.batch_id),
            show(item.created_at),
            show(item.priority),
            show(item.organization),
            show(item.state),
            str(item.images),
            show(item.destination),
        )
    out_console.print(table)


def _drive(
    batch_id: str,
    store: Any,
    secret: bytes,
    home: Path,
    workers: int,
    transfers: int,
    retries: int,
) -> BatchResult:
    from dicomveil.reid import default_actor

    vault, audit = open_records()
    events = RichBatchEvents(err_console)
    try:
        with events:
            return resume_batch(
                batch_id,
                store=store,
                secret=secret,
                home=home,
                vault=vault,
                audit=audit,
                actor=default_actor(),
                workers=workers or None,
                threads=transfers,
                retry=RetryPolicy(retries=retries),
                events=events,
            )
    except ConfigError as exc:
        fail(str(exc))
    finally:
        if vault is not None:
            vault.close()


def _report(result: BatchResult, as_json: bool) -> None:
    found = result.status
    if as_json:
        data = found.to_dict()
        data["seconds"] = {name: round(value, 3) for name, value in result.seconds.items()}
        out_console.print_json(data=data)
    else:
        _print_status(found, result.seconds)
    raise typer.Exit(EXIT_OK if result.ok else EXIT_FAILED)


def _print_status(found: BatchStatus, seconds: dict[str, float] | None = None) -> None:
    inputs = found.inputs
    megabytes = found.bytes / 1e6
    line = (
        f"batch {show(found.batch_id)} {show(found.state)}: {found.images} image(s) in "
        f"{found.studies} study(ies), {megabytes:.1f} MB -> {show(found.destination)}"
    )
    if seconds and seconds.get("total"):
        rate = found.images / seconds["total"]
        line += f" in {seconds['total']:.1f} s ({rate:.0f} images/s)"
    err_console.print(line)
    err_console.print(
        "inputs: " + ", ".join(f"{count} {show(state)}" for state, count in inputs.items() if count)
    )
    if found.manifest_sha256:
        err_console.print(
            f"manifest: {show(found.manifest_key)} (sha256 {show(found.manifest_sha256)})"
        )
    if inputs.get("failed"):
        err_console.print(
            f"[red]{inputs['failed']} input(s) failed[/], copied to {show(found.quarantine)}"
        )
        for failure in found.failures:
            err_console.print(f"  {show(failure['input_sha256'][:16])}: {show(failure['reason'])}")
    if found.error:
        err_console.print(f"[bold red]error:[/] {show(found.error)}")
    elif found.state == "interrupted":
        err_console.print(
            "[bold red]error:[/] the process running this batch ended before it finished "
            "(killed, or the machine stopped)"
        )
    if found.resumable:
        err_console.print(
            f"staging kept in {show(found.staging)}; "
            f"resume with: dicomveil batch resume {show(found.batch_id)}"
        )


def register(app: typer.Typer) -> None:
    """Add the ``batch`` command group to ``app``."""
    app.add_typer(batch_app, name="batch")
