"""The single exception hierarchy of dicomveil.

::

    DicomveilError
    ├── ConfigError            bad settings, missing or unreadable key
    │   └── ProfileError       bad policy: unknown option, action or tag
    ├── UnsafePathError        a path built from a key or a name would leave its root
    │                          (also a ValueError)
    ├── DeidentificationError  the output could not be made safe; nothing is emitted
    │   ├── UnsupportedInputError   input the engine will not handle (e.g. burned-in text)
    │   │   └── NotAnInstanceError  a readable DICOM file that is no instance (DICOMDIR)
    │   └── MalformedInputError     input that is not readable DICOM
    ├── StorageError
    │   ├── ObjectNotFound
    │   └── StorageUnavailable (Retryable)
    ├── VaultError             the re-identification vault refused or failed
    │   └── AccessDenied
    ├── AuditError             the audit log could not be written or does not verify
    ├── StudyIndexError        the de-identified archive's index failed
    │   └── StudyIndexUnavailable (Retryable)
    ├── QueryError             a search (QIDO-RS) that cannot be understood
    └── QueueError

Messages name tags, keywords and opaque ids, never attribute values: an exception
message may end up in a log, and a log must never carry PHI.
"""

from __future__ import annotations

__all__ = [
    "AccessDenied",
    "AuditError",
    "ConfigError",
    "DeidentificationError",
    "DicomveilError",
    "MalformedInputError",
    "NotAnInstanceError",
    "ObjectNotFound",
    "ProfileError",
    "QueryError",
    "QueueError",
    "Retryable",
    "StorageError",
    "StorageUnavailable",
    "StudyIndexError",
    "StudyIndexUnavailable",
    "UnsafePathError",
    "UnsupportedInputError",
    "VaultError",
]


class DicomveilError(Exception):
    """Base class of every error raised by dicomveil."""


class Retryable:
    """Mixin marking a transient failure: the same call may succeed later."""


class ConfigError(DicomveilError):
    """Settings, keys or command-line input are invalid."""


class ProfileError(ConfigError):
    """A policy is invalid: unknown option, action code or tag."""


class UnsafePathError(DicomveilError, ValueError):
    """A path built from a key, a pseudonym or a name would not stay inside its root (empty,
    ``..`` or over-long segment, separator or control character, or a link leading out).

    The message says what is wrong, never the offending value.
    """


class DeidentificationError(DicomveilError):
    """The output could not be made safe, so nothing was emitted."""


class UnsupportedInputError(DeidentificationError):
    """The input is readable but the engine will not de-identify it as configured."""


class NotAnInstanceError(UnsupportedInputError):
    """The file is DICOM but not a composite instance (a DICOMDIR media directory)."""


class MalformedInputError(DeidentificationError):
    """The input is not readable DICOM (truncated, wrong lengths, not DICOM, empty)."""


class StorageError(DicomveilError):
    """A storage backend failed."""


class ObjectNotFound(StorageError):
    """The requested object does not exist."""


class StorageUnavailable(StorageError, Retryable):
    """The storage backend cannot be reached right now."""


class VaultError(DicomveilError):
    """The re-identification vault failed or refused the operation."""


class AccessDenied(VaultError):
    """The caller is not allowed to perform this operation."""


class AuditError(DicomveilError):
    """The audit log could not be written, or does not verify."""


class StudyIndexError(DicomveilError):
    """The index database failed (the message names the operation, never a value)."""


class StudyIndexUnavailable(StudyIndexError, Retryable):
    """The index database cannot be reached right now."""


class QueryError(DicomveilError):
    """A query cannot be understood: malformed value, unknown attribute, bad paging.

    The message names the attribute, never the value (a client may have typed PHI).
    """


class QueueError(DicomveilError):
    """The work queue failed."""
