"""Action codes and option names of the PS3.15 Application Level Confidentiality Profile.

Plus one option of dicomveil's own, ``safe-harbor`` (HIPAA), which has no CID 7050 code: only
the options in :data:`CID_7050` are coded in De-identification Method Code Sequence.

References
----------
DICOM PS3.15 Table E.1-1a (action codes), Section E.3 (options), PS3.16 CID 7050
(De-identification Method codes).
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["CID_7050", "BASIC_PROFILE_CODE", "Action", "Option"]


class Action(StrEnum):
    """A PS3.15 Table E.1-1a action code; values are the standard's letters."""

    REMOVE = "X"
    ZERO = "Z"
    DUMMY = "D"
    KEEP = "K"
    CLEAN = "C"
    UID = "U"
    REMOVE_OR_ZERO = "X/Z"
    REMOVE_OR_DUMMY = "X/D"
    REMOVE_OR_ZERO_OR_DUMMY = "X/Z/D"
    ZERO_OR_DUMMY = "Z/D"
    REMOVE_OR_ZERO_OR_UID = "X/Z/U*"


class Option(StrEnum):
    """The options of PS3.15 Section E.3, by dicomveil's command-line names."""

    RETAIN_SAFE_PRIVATE = "retain-safe-private"
    RETAIN_UIDS = "retain-uids"
    RETAIN_DEVICE_IDENTITY = "retain-device-identity"
    RETAIN_INSTITUTION_IDENTITY = "retain-institution-identity"
    RETAIN_PATIENT_CHARACTERISTICS = "retain-patient-characteristics"
    RETAIN_LONGITUDINAL_FULL_DATES = "retain-longitudinal-full-dates"
    RETAIN_LONGITUDINAL_MODIFIED_DATES = "retain-longitudinal-modified-dates"
    CLEAN_DESCRIPTORS = "clean-descriptors"
    CLEAN_STRUCTURED_CONTENT = "clean-structured-content"
    CLEAN_GRAPHICS = "clean-graphics"
    CLEAN_PIXEL_DATA = "clean-pixel-data"
    SAFE_HARBOR = "safe-harbor"
    """Not a PS3.15 option: HIPAA Safe Harbor on top of the profile (no CID 7050 code; see
    :mod:`dicomveil.engine.safe_harbor`)."""


#: ``(code value, code meaning)`` of the Basic Application Confidentiality Profile, CID 7050.
BASIC_PROFILE_CODE: tuple[str, str] = ("113100", "Basic Application Confidentiality Profile")

#: CID 7050 code of each option (coding scheme DCM).
CID_7050: dict[Option, tuple[str, str]] = {
    Option.CLEAN_PIXEL_DATA: ("113101", "Clean Pixel Data Option"),
    Option.CLEAN_GRAPHICS: ("113103", "Clean Graphics Option"),
    Option.CLEAN_STRUCTURED_CONTENT: ("113104", "Clean Structured Content Option"),
    Option.CLEAN_DESCRIPTORS: ("113105", "Clean Descriptors Option"),
    Option.RETAIN_LONGITUDINAL_FULL_DATES: (
        "113106",
        "Retain Longitudinal Temporal Information Full Dates Option",
    ),
    Option.RETAIN_LONGITUDINAL_MODIFIED_DATES: (
        "113107",
        "Retain Longitudinal Temporal Information Modified Dates Option",
    ),
    Option.RETAIN_PATIENT_CHARACTERISTICS: ("113108", "Retain Patient Characteristics Option"),
    Option.RETAIN_DEVICE_IDENTITY: ("113109", "Retain Device Identity Option"),
    Option.RETAIN_UIDS: ("113110", "Retain UIDs Option"),
    Option.RETAIN_SAFE_PRIVATE: ("113111", "Retain Safe Private Option"),
    Option.RETAIN_INSTITUTION_IDENTITY: ("113112", "Retain Institution Identity Option"),
}
