"""One table: what went wrong with an instance → its PS3.4 status.

The same numbers answer a STOW-RS request (the FailureReason (0008,1197) of each failed
instance, PS3.18 §10.5.3) and a C-STORE request (the Status of the response, PS3.4 §B.2.3 and
PS3.7 Annex C), so an instance refused over DICOMweb and over DIMSE is refused for the same
reason, with the same code.

=============================  ========  ===============================================
Failure kind                   Status    Meaning (PS3.4 / PS3.7)
=============================  ========  ===============================================
(success)                      0x0000    Success
MALFORMED, UNREADABLE, TOO_DEEP 0xC000   Error: cannot understand
UNSUPPORTED, NOT_AN_INSTANCE   0x0122    Refused: SOP class not supported
STUDY_MISMATCH                 0xA900    Error: data set does not match SOP class (the
                                         instance is not of the study addressed)
CONFLICT                       0x0111    Duplicate SOP instance (other content)
STORAGE, STORAGE_UNAVAILABLE,  0xA700    Refused: out of resources
IO, OUT_OF_MEMORY, WORKER_CRASH
DEIDENTIFICATION, UNSAFE_PATH, 0x0110    Processing failure (it cannot be made safe:
INTERNAL                                 fail closed)
=============================  ========  ===============================================
"""

from __future__ import annotations

from typing import Final

from dicomveil.pipeline.failures import Failure, FailureKind

__all__ = [
    "CANNOT_UNDERSTAND",
    "DUPLICATE_INSTANCE",
    "MISMATCH",
    "OUT_OF_RESOURCES",
    "PROCESSING_FAILURE",
    "SOP_CLASS_NOT_SUPPORTED",
    "STATUSES",
    "SUCCESS",
    "is_ok",
    "status_of",
]

SUCCESS: Final = 0x0000
PROCESSING_FAILURE: Final = 0x0110
DUPLICATE_INSTANCE: Final = 0x0111
SOP_CLASS_NOT_SUPPORTED: Final = 0x0122
OUT_OF_RESOURCES: Final = 0xA700
MISMATCH: Final = 0xA900
CANNOT_UNDERSTAND: Final = 0xC000

STATUSES: Final[dict[FailureKind, int]] = {
    FailureKind.MALFORMED: CANNOT_UNDERSTAND,
    FailureKind.UNREADABLE: CANNOT_UNDERSTAND,
    FailureKind.TOO_DEEP: CANNOT_UNDERSTAND,
    FailureKind.UNSUPPORTED: SOP_CLASS_NOT_SUPPORTED,
    FailureKind.NOT_AN_INSTANCE: SOP_CLASS_NOT_SUPPORTED,
    FailureKind.STUDY_MISMATCH: MISMATCH,
    FailureKind.CONFLICT: DUPLICATE_INSTANCE,
    FailureKind.STORAGE: OUT_OF_RESOURCES,
    FailureKind.STORAGE_UNAVAILABLE: OUT_OF_RESOURCES,
    FailureKind.IO: OUT_OF_RESOURCES,
    FailureKind.OUT_OF_MEMORY: OUT_OF_RESOURCES,
    FailureKind.WORKER_CRASH: OUT_OF_RESOURCES,
    FailureKind.DEIDENTIFICATION: PROCESSING_FAILURE,
    FailureKind.UNSAFE_PATH: PROCESSING_FAILURE,
    FailureKind.INTERNAL: PROCESSING_FAILURE,
}
"""Every failure kind's status (the table above; a test checks that none is missing)."""


def status_of(failure: Failure | None) -> int:
    """The PS3.4 status of an instance's fate (``None``: success)."""
    if failure is None:
        return SUCCESS
    return STATUSES.get(failure.kind, PROCESSING_FAILURE)


def is_ok(status: int) -> bool:
    """Whether ``status`` is success or a warning (``0x0001``, ``0xB000``-``0xBFFF``)."""
    return status in (SUCCESS, 0x0001, 0x0107, 0x0116) or 0xB000 <= status <= 0xBFFF
