"""``dicomveil reidentify``: original identifiers behind a pseudonym, or a re-identified copy
of a DICOM object returned by the remote reader.

Exit status: 0 found (or written), 1 not found or refused, 2 usage error.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer

from dicomveil.cli.common import EXIT_FAILED, EXIT_USAGE, visible
from dicomveil.cli.vault import JsonFlag, VaultKeyFile, VaultUrl, cli_errors, notice
from dicomveil.errors import DicomveilError

__all__ = ["register", "reidentify"]

_Text = str | None


def _match_json(match: Any) -> dict[str, Any]:
    return {
        "pseudonymous": match.pseudonymous_dicom(),
        "original": match.original.as_dicom(),
        "pseudonym_key_id": match.pseudonym_key_id,
        "run_id": match.run_id,
        "date_offset_days": match.date_offset_days,
        "series": match.series_count,
        "instances": match.instance_count,
    }


def _print_matches(matches: list[Any], as_json: bool, query: dict[str, str]) -> None:
    if as_json:
        studies = [_match_json(m) for m in matches]
        typer.echo(json.dumps({"found": bool(matches), "query": query, "studies": studies}))
        return
    if not matches:
        typer.echo("not found: no study in the vault has this pseudonymous identifier", err=True)
        return
    for number, match in enumerate(matches, start=1):
        pseudo = match.pseudonymous_dicom()
        typer.echo(
            f"study {number} of {len(matches)} (pseudonymous StudyID {pseudo['StudyID']}, "
            f"StudyInstanceUID {pseudo['StudyInstanceUID']}, {match.instance_count} instances)"
        )
        for keyword, value in match.original.as_dicom().items():
            typer.echo(f"  {keyword}: {visible(value)}")


def _write_dataset(dataset: Any, out: Path) -> None:
    temporary = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        dataset.save_as(temporary, enforce_file_format=False)
        os.replace(temporary, out)
    finally:
        temporary.unlink(missing_ok=True)


def _reidentify_file(
    dicom: Path, out: Path, opener: Any, audit: Any, actor: str, purpose: str
) -> None:
    from pydicom import dcmread
    from pydicom.errors import InvalidDicomError

    from dicomveil.errors import MalformedInputError
    from dicomveil.reid import reidentify_dataset

    if dicom.resolve() == out.resolve():
        raise typer.BadParameter("--out must differ from --dicom", param_hint="--out")
    try:
        dataset = dcmread(dicom)
    except (OSError, InvalidDicomError) as exc:
        raise MalformedInputError(f"{dicom} is not readable DICOM ({type(exc).__name__})") from None
    result = reidentify_dataset(dataset, opener, audit, actor=actor, purpose=purpose)
    _write_dataset(result, out)


def reidentify(
    patient: Annotated[_Text, typer.Option("--patient", help="Pseudonymous patient id.")] = None,
    study: Annotated[
        _Text, typer.Option("--study", help="Pseudonymous study id or Study Instance UID.")
    ] = None,
    accession: Annotated[
        _Text, typer.Option("--accession", help="Pseudonymous accession number.")
    ] = None,
    purpose: Annotated[
        str | None, typer.Option(help="Why you re-identify (recorded in the audit log).")
    ] = None,
    actor: Annotated[str | None, typer.Option(help="Who you are (default: the OS user).")] = None,
    dicom: Annotated[
        Path | None, typer.Option("--dicom", help="A returned DICOM object to re-identify.")
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Where to write its copy.")] = None,
    as_json: JsonFlag = False,
    vault: VaultUrl = None,
    key_file: VaultKeyFile = None,
) -> None:
    """Print the original identifiers behind a pseudonymous patient, study or accession.

    With --dicom FILE --out FILE, write a re-identified copy of a returned object instead.

    Every call is audited, and --purpose is required.
    """
    from dicomveil.audit import AuditLog
    from dicomveil.reid import default_actor
    from dicomveil.reid import reidentify as lookup
    from dicomveil.vault import Vault, open_vault

    query = {
        k: v
        for k, v in (("patient", patient), ("study", study), ("accession", accession))
        if v is not None
    }
    lookup_mode = dicom is None and out is None and len(query) == 1
    if not lookup_mode and not (dicom is not None and out is not None and not query):
        raise typer.BadParameter(
            "give one of --patient, --study or --accession, or --dicom with --out"
        )

    def failed(exc: DicomveilError) -> None:
        if as_json:
            typer.echo(json.dumps({"found": False, "query": query, "error": str(exc)}))

    def opener() -> Vault:
        return open_vault(vault, key_file=key_file, create=False)

    who = actor if actor is not None else default_actor()
    # without --purpose the attempt is refused and audited as such, and the exit code says
    # it is a usage error (2), not a lookup that found nothing (1)
    missing = purpose is None or not purpose.strip()
    with cli_errors(EXIT_USAGE if missing else EXIT_FAILED, on_error=failed):
        audit = AuditLog.open(notice=notice)
        if dicom is not None and out is not None:
            _reidentify_file(dicom, out, opener, audit, who, purpose or "")
            typer.echo(json.dumps({"written": str(out)}) if as_json else f"written: {visible(out)}")
            return
        matches = lookup(opener, audit, actor=who, purpose=purpose or "", **query)
    _print_matches(matches, as_json, query)
    if not matches:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add the ``reidentify`` command to ``app``."""
    app.command("reidentify")(reidentify)
