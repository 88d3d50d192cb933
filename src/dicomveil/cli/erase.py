"""``dicomveil erase``: erase one patient from the re-identification vault (GDPR Art. 17).

``erase --patient ID --purpose TEXT [--issuer ISSUER] [--dry-run] [--json]`` removes every
vault record of the patient with that original id, found through the vault's keyed blind
index (the id is never stored or compared in clear). Afterwards the patient's studies cannot be
re-identified. With ``--archive`` the de-identified archive objects and index rows of the
patient's studies go too (before the vault records, so an interrupted erasure can be run
again). ``--dry-run`` lists what would go and deletes nothing. Every call, dry or not,
is audited (event ``patient.erase``) with pseudonymous ids and counts only: never the id given.

Exit status: 0 erased (or listed), 1 nothing recorded for the patient, 2 usage error.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Annotated, Any

import typer

from dicomveil.cli.common import EXIT_FAILED, fail, out_console, show, state_folder
from dicomveil.cli.vault import JsonFlag, VaultKeyFile, VaultUrl, cli_errors, notice

if TYPE_CHECKING:
    from dicomveil.index.erasure import ArchiveErasure
    from dicomveil.vault.erasure import Erasure

__all__ = ["ERASE_EVENT", "erase", "register"]

ERASE_EVENT = "patient.erase"


def erase(
    patient: Annotated[
        str, typer.Option("--patient", help="The patient's ORIGINAL id (PatientID).")
    ],
    purpose: Annotated[str, typer.Option("--purpose", help="Why (the erasure request; audited).")],
    issuer: Annotated[
        str, typer.Option("--issuer", help="The original IssuerOfPatientID, if recorded.")
    ] = "",
    archive: Annotated[
        bool,
        typer.Option(
            "--archive", help="Also delete the de-identified archive objects and index rows."
        ),
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List what would be erased; delete nothing.")
    ] = False,
    actor: Annotated[str | None, typer.Option(help="Who erases (default: the OS user).")] = None,
    as_json: JsonFlag = False,
    vault: VaultUrl = None,
    key_file: VaultKeyFile = None,
) -> None:
    """Erase a patient's vault records: their studies can no longer be re-identified.

    The patient is named by the ORIGINAL patient id; it is matched through the vault's
    keyed blind index and never printed nor audited. Audited with pseudonymous ids and counts.
    """
    from dicomveil.audit import AuditLog
    from dicomveil.audit.entry import AuditEvent, Outcome
    from dicomveil.reid import default_actor
    from dicomveil.vault import open_vault
    from dicomveil.vault.erasure import erase_patient

    if not patient.strip() or not purpose.strip():
        fail("--patient and --purpose must not be empty")
    who = actor if actor is not None else default_actor()
    with cli_errors(EXIT_FAILED):
        audit = AuditLog.open(notice=notice)
        with open_vault(vault, key_file=key_file, create=False) as opened:
            found = erase_patient(opened, patient.strip(), issuer.strip(), dry_run=True)
            archived = _erase_archive(found, dry_run) if archive and found.found else None
            done = found if dry_run else erase_patient(opened, patient.strip(), issuer.strip())
        details: dict[str, Any] = {
            "purpose": purpose,
            "dry_run": dry_run,
            "pseudo_patient_ids": list(done.pseudo_patient_ids),
            "pseudo_study_uids": list(done.pseudo_study_uids),
            "rows": done.rows,
        }
        if archive:
            details["archive_rows"] = archived.rows if archived else {}
            details["archive_objects"] = archived.objects if archived else 0
        outcome: Outcome = "success" if done.found else "not-found"
        audit.append(AuditEvent(ERASE_EVENT, who, outcome, details))
    answer = {k: v for k, v in details.items() if k != "purpose"}
    if as_json:
        typer.echo(json.dumps({"found": done.found, **answer}))
    else:
        verb = "would erase" if dry_run else "erased"
        out_console.print(
            f"{verb} {len(done.pseudo_study_uids)} studies of "
            f"{len(done.pseudo_patient_ids)} pseudonymous patient(s): "
            + ", ".join(f"{show(k)} {v}" for k, v in done.rows.items()),
            highlight=False,
        )
        if archive:
            out_console.print(
                f"archive: {details['archive_objects']} objects, "
                + ", ".join(f"{show(k)} {v}" for k, v in details["archive_rows"].items()),
                highlight=False,
            )
        for uid in done.pseudo_study_uids:
            out_console.print(f"  study {show(uid)}", highlight=False)
    if not done.found:
        raise typer.Exit(1)


def _erase_archive(found: Erasure, dry_run: bool) -> ArchiveErasure:
    """Erase (or count) the archived studies of an erasure: ``$DICOMVEIL_STORAGE_URL`` and
    ``$DICOMVEIL_INDEX_URL``, else the archive folder and index under ``$DICOMVEIL_HOME``
    (the gateway's defaults)."""
    from dicomveil.index.db import default_index_url
    from dicomveil.index.erasure import erase_archive

    home = state_folder()
    storage = os.environ.get("DICOMVEIL_STORAGE_URL") or f"file://{home / 'archive'}"
    index = os.environ.get("DICOMVEIL_INDEX_URL") or default_index_url(home)
    return erase_archive(
        index, storage, found.pseudo_study_uids, found.pseudo_patient_ids, dry_run=dry_run
    )


def register(app: typer.Typer) -> None:
    """Add ``erase`` to ``app``."""
    app.command("erase")(erase)
