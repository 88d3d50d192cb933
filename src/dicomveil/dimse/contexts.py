"""The presentation contexts the node accepts, and those it proposes for C-MOVE.

As an acceptor the node takes every storage SOP class pynetdicom knows (no 128-context limit
applies to the acceptor's list: only a requestor may propose at most 128 in one A-ASSOCIATE-RQ)
with the common transfer syntaxes, in the order it prefers them. Storage contexts accept
either role, so a C-GET requestor (which proposes itself as the storage SCP through SCP/SCU
Role Selection, PS3.7 §D.3.3.4) receives its instances over the same association.

References
----------
PS3.8 §9.3.2.2 (presentation contexts, at most 128 per request); PS3.5 §10 (transfer
syntaxes); PS3.4 Annex C (Query/Retrieve information models).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

from pydicom import uid

__all__ = [
    "MAX_REQUESTED",
    "QUERY_RETRIEVE",
    "STORAGE_TRANSFER_SYNTAXES",
    "add_supported",
    "requested_for",
]

MAX_REQUESTED: Final = 128
"""Most presentation contexts one A-ASSOCIATE-RQ may carry (PS3.8 §9.3.2.2, IDs 1..255 odd)."""

STORAGE_TRANSFER_SYNTAXES: Final[tuple[str, ...]] = (
    uid.JPEGLSLossless,
    uid.JPEG2000Lossless,
    uid.JPEGLosslessSV1,
    uid.JPEGLossless,
    uid.RLELossless,
    uid.JPEG2000MCLossless,
    uid.JPEGBaseline8Bit,
    uid.JPEGExtended12Bit,
    uid.JPEGLSNearLossless,
    uid.JPEG2000,
    uid.JPEG2000MC,
    uid.ExplicitVRLittleEndian,
    uid.ImplicitVRLittleEndian,
    uid.DeflatedExplicitVRLittleEndian,
)
"""Transfer syntaxes accepted for storage, in the order the node picks one when a requestor
proposes several in one presentation context. Instances are kept as received (compressed
pixel data is never decoded on the way in), so a compressed syntax the requestor offers
wins over the uncompressed ones: a sender holding a compressed instance and offering both
then sends it as it is instead of having to decompress it (which it may not be able to do).
A requestor only offers a compressed syntax for an uncompressed instance when told to
compress (DCMTK's ``storescu +xs`` ...), and then gets what it asked for."""

QUERY_RETRIEVE: Final[dict[str, tuple[str, str]]] = {
    # abstract syntax: (service, information model)
    "1.2.840.10008.5.1.4.1.2.1.1": ("C-FIND", "PATIENT"),
    "1.2.840.10008.5.1.4.1.2.1.2": ("C-MOVE", "PATIENT"),
    "1.2.840.10008.5.1.4.1.2.1.3": ("C-GET", "PATIENT"),
    "1.2.840.10008.5.1.4.1.2.2.1": ("C-FIND", "STUDY"),
    "1.2.840.10008.5.1.4.1.2.2.2": ("C-MOVE", "STUDY"),
    "1.2.840.10008.5.1.4.1.2.2.3": ("C-GET", "STUDY"),
}
"""Patient Root and Study Root Query/Retrieve SOP classes: service and information model."""

VERIFICATION: Final = "1.2.840.10008.1.1"
_QUERY_SYNTAXES: Final = (uid.ExplicitVRLittleEndian, uid.ImplicitVRLittleEndian)


def add_supported(ae: Any) -> None:
    """Add the node's supported contexts to a pynetdicom ``AE``: Verification, every storage
    SOP class (either role) and the Query/Retrieve models."""
    from pynetdicom import AllStoragePresentationContexts

    ae.add_supported_context(VERIFICATION, list(_QUERY_SYNTAXES))
    for context in AllStoragePresentationContexts:
        ae.add_supported_context(
            context.abstract_syntax,
            list(STORAGE_TRANSFER_SYNTAXES),
            scu_role=True,
            scp_role=True,
        )
    for abstract_syntax in QUERY_RETRIEVE:
        ae.add_supported_context(abstract_syntax, list(_QUERY_SYNTAXES))


def requested_for(pairs: Iterable[tuple[str, str]]) -> list[Any]:
    """Presentation contexts to propose for sending instances of these
    (SOP Class UID, transfer syntax) pairs: one context per pair, as stored (no transcoding),
    with Explicit and Implicit VR Little Endian offered too for uncompressed instances.

    Raises
    ------
    ValueError
        More than :data:`MAX_REQUESTED` contexts would be needed.
    """
    from pynetdicom import build_context

    contexts = []
    uncompressed = {uid.ExplicitVRLittleEndian, uid.ImplicitVRLittleEndian}
    for sop_class, syntax in sorted(set(pairs)):
        offered = [syntax]
        if syntax in uncompressed:
            offered = [uid.ExplicitVRLittleEndian, uid.ImplicitVRLittleEndian]
        contexts.append(build_context(sop_class, offered))
    unique = {(c.abstract_syntax, tuple(c.transfer_syntax)): c for c in contexts}
    if len(unique) > MAX_REQUESTED:
        raise ValueError(f"the instances need more than {MAX_REQUESTED} presentation contexts")
    return list(unique.values())
