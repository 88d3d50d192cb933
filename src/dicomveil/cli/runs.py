"""What the commands that de-identify share: the policy from flags, the recorder, path checks."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from dicomveil.cli.common import fail, notice
from dicomveil.errors import DicomveilError, ProfileError
from dicomveil.profile.policy import Policy, load_policy

if TYPE_CHECKING:  # the vault (SQLAlchemy) and the audit log are imported when opened
    from dicomveil.audit import AuditLog
    from dicomveil.pipeline.recording import RunRecorder
    from dicomveil.vault import Vault

__all__ = ["build_policy", "check_folder", "inside", "open_recorder", "open_records"]


def build_policy(options: list[str], policy_file: Path | None, organization: str | None) -> Policy:
    """Return the policy of ``--policy``, ``--option`` and ``--org``, or exit 2.

    Parameters
    ----------
    options
        Option names given with ``--option`` (added to the file's).
    policy_file
        A TOML policy file, or ``None`` for the Basic Profile.
    organization
        The prefix of patient pseudonyms, overriding the file's; ``None`` keeps it.
    """
    try:
        policy = load_policy(policy_file) if policy_file else Policy()
        policy = policy.with_options(options)
        if organization is not None:
            policy = Policy(
                options=policy.options,
                overrides=policy.overrides,
                private_rules=policy.private_rules,
                organization=organization,
                allow_burned_in_annotation=policy.allow_burned_in_annotation,
                name=policy.name,
                trust_burned_in_annotation_no=policy.trust_burned_in_annotation_no,
                pixels=policy.pixels,
            )
    except ProfileError as exc:
        fail(str(exc))
    return policy


def inside(child: Path, parent: Path) -> bool:
    """Tell whether ``child`` is ``parent`` or lies below it (after resolving links)."""
    try:
        child.resolve().relative_to(parent.resolve())
    except ValueError:
        return False
    return True


def check_folder(path: Path, what: str, *, create: bool = True) -> None:
    """Make sure ``path`` is (or can become) a writable folder, or exit 2 before any work.

    Refused with one line each: an existing file (``deid a.dcm a.dcm``), a path below a
    file, a folder that cannot be created or written (permissions, a read-only file system).
    With ``create`` the folder is made now; else only its nearest existing parent is checked.
    """
    import errno
    import os

    from dicomveil.cli.common import fail

    if path.exists() and not path.is_dir():
        fail(f"{what} {path} is an existing file, not a folder")
    parent = path
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        fail(f"{what} {path} cannot be created: {parent} is a file")
    try:
        if create:
            path.mkdir(parents=True, exist_ok=True)
            parent = path
        if not os.access(parent, os.W_OK | os.X_OK):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))
        if create:  # the only proof on a read-only file system or for root: write something
            import tempfile

            with tempfile.TemporaryFile(dir=path):
                pass
    except OSError as exc:
        fail(f"{what} {path} cannot be created or written: {exc.strerror or type(exc).__name__}")


def open_records(*, use_vault: bool = True) -> tuple[Vault | None, AuditLog]:
    """Open the vault (unless ``use_vault`` is false) and the audit log, or exit 2.

    Both are created on first use, with their keys, in the state folder.
    """
    from dicomveil.audit import AuditLog

    try:
        vault = None
        if use_vault:
            from dicomveil.vault import open_vault  # SQLAlchemy: only when recording

            vault = open_vault(notice=notice)
        audit = AuditLog.open(notice=notice)
    except DicomveilError as exc:
        fail(str(exc))
    return vault, audit


def open_recorder(
    run_id: str,
    policy: Policy,
    key_id: str,
    files: int,
    *,
    use_vault: bool = True,
    organisation: str | None = None,
) -> RunRecorder:
    """Open the vault and the audit log of the state folder and return a run's recorder.

    Exits 2 when the vault or the audit log cannot be opened (missing or wrong key).
    """
    from dicomveil.actor import default_actor
    from dicomveil.pipeline.recording import RunRecorder

    vault, audit = open_records(use_vault=use_vault)
    return RunRecorder(
        vault,
        audit,
        run_id=run_id,
        actor=default_actor(),
        policy=policy,
        pseudonym_key_id=key_id,
        files=files,
        organisation=organisation,
    )
