"""De-identify one file: read, de-identify, write atomically. The unit every entry point uses.

Errors, whatever they are, are turned into a :class:`FileOutcome` with a PHI-free reason;
nothing is written for a file that failed. Outputs go to :func:`output_key` under the
destination, through :class:`~dicomveil.paths.ContainedRoot` (never outside it).

Most instances take the byte-level fast path (:mod:`dicomveil.engine.encoded`): the start of
the file is read as bytes, de-identified without building pydicom objects, and written with
the pixel data copied from the source. Whatever that path does not reproduce exactly goes
through :func:`~dicomveil.dicomio.read_instance`, :func:`~dicomveil.engine.deidentify` and
:func:`~dicomveil.dicomio.write_instance`, the reference; both give the same bytes.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Final

from dicomveil._optional import require
from dicomveil.dicomio import Instance, WriteResult, read_instance, write_instance
from dicomveil.dicomio.encoded import header_dataset, pixel_span, read_head
from dicomveil.dicomio.writer import encoded_parts, write_file
from dicomveil.engine.budget import TimeBudget
from dicomveil.engine.deidentify import deidentify
from dicomveil.engine.encoded import NeedIdentifiers, NeedMoreData, deidentify_encoded
from dicomveil.engine.identity import IdentityRecord
from dicomveil.engine.keys import PseudonymKeys
from dicomveil.engine.pseudonyms import complete_identity
from dicomveil.engine.rules import CompiledPolicy
from dicomveil.engine.scan import collect_identifiers
from dicomveil.errors import DeidentificationError, DicomveilError, UnsupportedInputError
from dicomveil.paths import ContainedRoot
from dicomveil.pipeline.failures import failure
from dicomveil.pipeline.outcome import FileOutcome, output_key
from dicomveil.profile.options import Option

if TYPE_CHECKING:
    from dicomveil.redaction import CleanResult

__all__ = ["FileOutcome", "deidentify_file", "output_key"]

FIRST_READ: Final = 64 * 1024
"""Bytes read first on the fast path: the whole header of nearly every instance."""
MAX_HEAD: Final = 64 * 1024 * 1024
"""Largest header the fast path reads (large structured reports and structure sets have
tens of MB); longer ones go the reference way. The reference engine holds a header as
pydicom objects, about 40 times its size: the fast path holds it twice, as bytes."""


_ROOTS: dict[str, ContainedRoot] = {}
"""One checked root per destination folder, in this process (it remembers the folders it
made and checked: most outputs share one, and each check is a few system calls)."""


def _written(dest_root: Path, key: str, write: Callable[[str], WriteResult]) -> WriteResult:
    """Run ``write`` on the path of ``key`` under ``dest_root``, proven to stay inside it
    (:class:`~dicomveil.paths.ContainedRoot`), once its folder exists."""
    root = _ROOTS.get(str(dest_root))
    if root is None:
        if len(_ROOTS) >= 64:  # a server's engine process sees one root per request
            _ROOTS.clear()
        root = _ROOTS.setdefault(str(dest_root), ContainedRoot(dest_root))
    target = root.prepare(key)
    try:
        return write(target)
    except FileNotFoundError:
        if os.path.isdir(os.path.dirname(target)):
            raise
        root.forget(target)  # removed since: make it again
        return write(root.prepare(key))


def deidentify_file(
    source: Path,
    dest_root: Path,
    compiled: CompiledPolicy,
    keys: PseudonymKeys,
    *,
    fsync: bool = False,
    hash_output: bool = False,
    fast: bool = True,
) -> FileOutcome:
    """De-identify ``source`` into ``dest_root`` under its pseudonymous path.

    ``hash_output`` computes the output's SHA-256 (batches need it for their manifest; it
    costs about a third of a millisecond per 0.5 MB file). ``fast`` false forces the
    reference path (tests compare the two).

    Never raises for a problem of this one file: whatever goes wrong (reading, the engine,
    writing, an identity the vault could not keep) becomes a ``"failed"`` outcome with a
    value-free reason (:func:`~dicomveil.pipeline.failures.failure`), and nothing is written.
    """
    try:
        return _deidentify(source, dest_root, compiled, keys, fsync, hash_output, fast)
    except Exception as exc:  # noqa: BLE001 - one file never ends a run
        return failure(source, exc)


def _deidentify(
    source: Path,
    dest_root: Path,
    compiled: CompiledPolicy,
    keys: PseudonymKeys,
    fsync: bool,
    hash_output: bool,
    fast: bool,
) -> FileOutcome:
    budget = TimeBudget()  # one budget for both paths: a fallback does not restart it
    fallback = ""
    if fast:
        try:
            outcome = _fast(source, dest_root, compiled, keys, fsync, hash_output, budget)
            fallback = "declined"
        except (OSError, DicomveilError):  # the reference path reports the same problem
            outcome, fallback = None, "declined"
            budget.check()
        except Exception:  # noqa: BLE001 - a fast-path bug: the reference path decides
            outcome, fallback = None, "error"  # (its own verdict), and it is counted
            budget.check()  # ... unless the time is spent
        if outcome is not None:
            return outcome
    try:
        reference = _reference(source, dest_root, compiled, keys, fsync, hash_output, budget)
    except Exception as exc:  # noqa: BLE001 - one file never ends a run
        reference = failure(source, exc)
    reference.fallback = fallback
    return reference


def _reference(
    source: Path,
    dest_root: Path,
    compiled: CompiledPolicy,
    keys: PseudonymKeys,
    fsync: bool,
    hash_output: bool,
    budget: TimeBudget,
) -> FileOutcome:
    """The reference path: pydicom objects, the engine, the writer."""
    instance = read_instance(source)
    instance, cleaning, checked = _pixels(instance, compiled)
    result = deidentify(
        instance.dataset,
        compiled,
        keys,
        has_pixels=instance.pixel is not None,
        pixels_checked=checked,
        budget=budget,
    )
    # read after de-identification: the engine has read it with the dictionary's VR (a
    # mislabelled one could not be converted, and pydicom's error would quote the value)
    modality = str(result.dataset.get("Modality", "") or "")
    if cleaning is not None:
        from dicomveil.redaction import record_cleaning

        record_cleaning(result.dataset, result.report, cleaning)
    identity = _checked(result.identity, compiled, keys)
    key = output_key(identity, keys)
    # Whatever followed the pixel data (digital signatures, which de-identification
    # invalidates anyway, trailing padding, private groups past 7FE0) is not carried over.
    written = _written(
        dest_root,
        key,
        lambda target: write_instance(
            instance, result.dataset, None, target, fsync=fsync, hash_output=hash_output
        ),
    )
    return FileOutcome(
        source,
        "ok",
        output=key,
        size=written.size,
        sha256=written.sha256 or "",
        operations=dict(result.report.operations()),
        flags=list(result.report.flags),
        modality=modality,
        identity=identity,
    )


def _checked(
    identity: IdentityRecord, compiled: CompiledPolicy, keys: PseudonymKeys
) -> IdentityRecord:
    """The identity with missing PatientID/StudyID pseudonyms filled in, once proven to be
    one the vault can keep (else the instance is refused before anything is written)."""
    identity = complete_identity(identity, keys, compiled.policy.organization)
    missing = identity.missing()
    if missing is not None:
        raise DeidentificationError(
            f"no pseudonymous {missing} to record the way back: the instance is not written"
        )
    return identity


def _pixels(
    instance: Instance, compiled: CompiledPolicy
) -> tuple[Instance, CleanResult | None, bool]:
    """Under clean-pixel-data, examine the pixels of ``instance`` for burned-in text and fill
    it (:mod:`dicomveil.redaction`): ``(instance to write, what was cleaned or None, whether
    the pixels were checked)``. Raises what the cleaner raises for images it cannot clean."""
    policy = compiled.policy
    if instance.pixel is None or Option.CLEAN_PIXEL_DATA not in policy.options:
        return instance, None, False
    declared = str(instance.dataset.get("BurnedInAnnotation", "") or "").strip().upper()
    if policy.trust_burned_in_annotation_no and declared == "NO":
        return instance, None, True
    require("numpy", "clean-pixel-data", "redaction")
    from dicomveil.redaction import clean_instance

    try:
        cleaning = clean_instance(instance)
    except DicomveilError:
        raise
    except Exception as exc:  # noqa: BLE001 - never pass an image its cleaner choked on
        raise UnsupportedInputError(
            f"clean-pixel-data: the pixels could not be examined ({type(exc).__name__})"
        ) from None
    return cleaning.instance, cleaning, True


def _fast(
    source: Path,
    dest_root: Path,
    compiled: CompiledPolicy,
    keys: PseudonymKeys,
    fsync: bool,
    hash_output: bool,
    budget: TimeBudget | None = None,
) -> FileOutcome | None:
    """The byte-level path, or ``None`` when the reference path must decide."""
    budget = budget or TimeBudget()
    # O_NONBLOCK: a FIFO swapped in since discovery does not hang the worker (no effect on
    # regular files; anything else is refused by the reader on the reference path)
    fd = os.open(source, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        size = os.fstat(fd).st_size
        want = FIRST_READ
        identifiers: dict[str, list[str]] | None = None
        head = None
        while True:
            if head is None or len(head.data) < min(want, size):
                head = read_head(fd, size, want)  # read again only when more is wanted
                if head is None:
                    return None
            try:
                result = deidentify_encoded(
                    head.data,
                    head.start,
                    len(head.data),
                    head.implicit,
                    compiled,
                    keys,
                    eof=head.eof,
                    identifiers=identifiers,
                    budget=budget,
                )
                break
            except NeedIdentifiers:  # text to clean: collect what identifies, walk again
                dataset = header_dataset(head)
                if dataset is not None:
                    identifiers = collect_identifiers(dataset)
                    continue
                if head.eof:
                    return None
            except NeedMoreData:
                pass
            if want >= MAX_HEAD:
                return None
            want *= 4  # every read walks again from the start: at most 1/3 more work
        if result is None:
            return None
        pixel = pixel_span(fd, head, result.stop, source) if result.has_pixels else None
        if result.has_pixels and pixel is None:
            return None
        try:
            parts = encoded_parts(
                result.body,
                pixel,
                result.sop_class_uid,
                result.sop_instance_uid,
                str(head.transfer_syntax),
            )
        except DeidentificationError:
            return None  # an invalid UID: the reference path reports it
        identity = _checked(result.identity, compiled, keys)
        key = output_key(identity, keys)
        written = _written(
            dest_root,
            key,
            lambda target: write_file(target, parts, fd, fsync=fsync, hash_output=hash_output),
        )
    finally:
        os.close(fd)
    return FileOutcome(
        source,
        "ok",
        output=key,
        size=written.size,
        sha256=written.sha256 or "",
        operations=dict(result.operations),
        flags=list(result.flags),
        modality=result.modality,
        identity=identity,
    )
