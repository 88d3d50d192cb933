"""Let pynetdicom send pre-encoded C-FIND answers and cheaply encoded command sets.

pynetdicom encodes every yielded C-FIND identifier, and every message's command set (twice:
once to measure its group length), through ``pynetdicom.dsutils.encode``, i.e. pydicom's
general writer. For a search answering 5,000 studies that is 15,000 calls of several hundred
microseconds each, the largest part of the node's cost per answer. pynetdicom has no option
to pass bytes instead, so :func:`install` replaces the ``encode`` name the two modules
imported (``pynetdicom.service_class.encode`` and ``pynetdicom.dimse_messages.encode``) by
:func:`encode`, which

- returns :attr:`EncodedIdentifier.encoded` as it is when the identifier was encoded for
  the transfer syntax asked (not deflated);
- encodes an Implicit VR Little Endian command set with :func:`encoding.encode_dataset`;
- calls pynetdicom's own ``encode`` for everything else (and whenever the fast encoder
  declines), so its behaviour, including its ``None`` on failure, is unchanged.

The replacement is contained (two module attributes, one function) and guarded: it is made
only for the pynetdicom versions it was checked against (:data:`SUPPORTED`) and only when
both names still are pynetdicom's ``encode``; otherwise nothing is replaced and the node
works as before (an :class:`EncodedIdentifier` is then written by pydicom from its raw
elements, still without converting values).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Final

import pynetdicom
from pydicom.dataset import Dataset
from pynetdicom import dimse_messages, dsutils, service_class

from dicomveil.dimse.encoding import EncodedIdentifier, encode_dataset

__all__ = ["SUPPORTED", "encode", "install", "installed"]

log = logging.getLogger(__name__)

SUPPORTED: Final = ("3.0.",)
"""pynetdicom release prefixes whose ``encode`` call sites were checked (3.0.x)."""

_original: Final[Callable[..., bytes | None]] = dsutils.encode
_NAME: Final = "encode"
_MODULES: Final = (service_class, dimse_messages)
"""The modules whose ``encode`` (imported from ``pynetdicom.dsutils``) is replaced."""
_lock = threading.Lock()


def encode(
    ds: Dataset, is_implicit_vr: bool, is_little_endian: bool, deflated: bool = False
) -> bytes | None:
    """pynetdicom's ``encode``, with the two fast cases of the module documentation."""
    if is_little_endian and not deflated:
        if type(ds) is EncodedIdentifier:
            if ds.implicit == is_implicit_vr:
                return ds.encoded
        elif is_implicit_vr and type(ds) is Dataset:
            fast = encode_dataset(ds, implicit=True)
            if fast is not None:
                return fast
    return _original(ds, is_implicit_vr, is_little_endian, deflated)


def installed() -> bool:
    """Whether pynetdicom's identifier and command set encoding go through :func:`encode`."""
    return all(getattr(module, _NAME, None) is encode for module in _MODULES)


def install() -> bool:
    """Route pynetdicom's encoding through :func:`encode` when it is safe; say whether it is."""
    with _lock:
        if installed():
            return True
        version = str(getattr(pynetdicom, "__version__", ""))
        if not version.startswith(SUPPORTED):
            log.info("pynetdicom %s not checked: C-FIND answers use its own encoder", version)
            return False
        if any(getattr(module, _NAME, None) is not _original for module in _MODULES):
            log.info("pynetdicom's encoder is already replaced: C-FIND fast path not used")
            return False
        for module in _MODULES:
            setattr(module, _NAME, encode)
        return True
