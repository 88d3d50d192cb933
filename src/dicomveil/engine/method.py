"""The attributes that record how a dataset was de-identified.

References
----------
DICOM PS3.15 Section E.1.1, PS3.3 C.7.1.1 (Patient Identity Removed, De-identification Method,
De-identification Method Code Sequence), PS3.16 CID 7050.
"""

from __future__ import annotations

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from dicomveil import __version__
from dicomveil.profile.options import BASIC_PROFILE_CODE, CID_7050, Option
from dicomveil.profile.policy import Policy
from dicomveil.profile.table import EDITION

__all__ = ["add_method_attributes"]

_TEMPORAL = {"keep": "UNMODIFIED", "shift": "MODIFIED", "remove": "REMOVED"}


def _code(value: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = "DCM"
    item.CodeMeaning = meaning
    return item


def add_method_attributes(ds: Dataset, policy: Policy, date_mode: str) -> None:
    """Set Patient Identity Removed, the method (text and CID 7050 codes) and the
    Longitudinal Temporal Information Modified flag."""
    applied = sorted(
        (o for o in policy.options if o is not Option.CLEAN_PIXEL_DATA and o in CID_7050),
        key=lambda o: CID_7050[o],
    )
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = [
        f"dicomveil {__version__}",
        f"PS3.15 {EDITION} Basic Application Confidentiality Profile",
        *(option.value for option in applied),
        *([Option.SAFE_HARBOR.value] if Option.SAFE_HARBOR in policy.options else []),
    ]
    ds.DeidentificationMethodCodeSequence = Sequence(
        [_code(*BASIC_PROFILE_CODE), *(_code(*CID_7050[option]) for option in applied)]
    )
    ds.LongitudinalTemporalInformationModified = _TEMPORAL[date_mode]
