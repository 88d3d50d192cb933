"""De-identify one file: read, de-identify, write atomically. The unit every entry point uses.

Errors are turned into a :class:`FileOutcome` with a PHI-free reason; nothing is written for a
file that failed.

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
from dicomveil.engine.deidentify import deidentify
from dicomveil.engine.encoded import NeedIdentifiers, NeedMoreData, deidentify_encoded
from dicomveil.engine.keys import PseudonymKeys
from dicomveil.engine.rules import CompiledPolicy
from dicomveil.engine.scan import collect_identifiers
from dicomveil.errors import (
    DeidentificationError,
    DicomveilError,
    NotAnInstanceError,
    UnsupportedInputError,
)
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


_MADE: set[str] = set()


def _written(target: str, write: Callable[[], WriteResult]) -> WriteResult:
    """Run ``write`` once ``target``'s folder exists (created once per process and folder:
    most outputs share one, and each ``mkdir`` is a system call)."""
    folder = os.path.dirname(target)
    if folder not in _MADE:
        os.makedirs(folder, exist_ok=True)
        if len(_MADE) > 100_000:
            _MADE.clear()
        _MADE.add(folder)
    try:
        return write()
    except FileNotFoundError:
        if os.path.isdir(folder):
            raise
        _MADE.discard(folder)  # removed since: make it again
        os.makedirs(folder, exist_ok=True)
        return write()


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
    """
    if fast:
        try:
            outcome = _fast(source, dest_root, compiled, keys, fsync, hash_output)
        except Exception:  # noqa: BLE001 - whatever it is, the reference path decides
            outcome = None  # (it reports the same I/O error, or its own verdict)
        if outcome is not None:
            return outcome
    try:
        instance = read_instance(source)
        instance, cleaning, checked = _pixels(instance, compiled)
        ds = instance.dataset
        modality = str(ds.get("Modality", "") or "")
        result = deidentify(
            ds, compiled, keys, has_pixels=instance.pixel is not None, pixels_checked=checked
        )
        if cleaning is not None:
            from dicomveil.redaction import record_cleaning

            record_cleaning(result.dataset, result.report, cleaning)
        # Whatever followed the pixel data (digital signatures, which de-identification
        # invalidates anyway, trailing padding, private groups past 7FE0) is not carried over.
        key = output_key(result.identity)
        target = os.path.join(dest_root, key)
        written = _written(
            target,
            lambda: write_instance(
                instance, result.dataset, None, target, fsync=fsync, hash_output=hash_output
            ),
        )
    except NotAnInstanceError:
        return FileOutcome(source, "skipped", reason="DICOMDIR (media directory) not copied")
    except DicomveilError as exc:
        return FileOutcome(source, "failed", reason=str(exc), error_kind=type(exc).__name__)
    except (OSError, MemoryError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        return FileOutcome(
            source, "failed", reason=f"I/O error: {reason}", error_kind=type(exc).__name__
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
        identity=result.identity,
    )


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
) -> FileOutcome | None:
    """The byte-level path, or ``None`` when the reference path must decide."""
    fd = os.open(source, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
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
        key = output_key(result.identity)
        target = os.path.join(dest_root, key)
        written = _written(
            target, lambda: write_file(target, parts, fd, fsync=fsync, hash_output=hash_output)
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
        identity=result.identity,
    )
