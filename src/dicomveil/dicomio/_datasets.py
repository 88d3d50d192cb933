"""Building pydicom data sets quickly from scanned raw elements."""

from __future__ import annotations

import warnings
from collections.abc import MutableSequence
from pathlib import Path
from typing import TypeVar

from pydicom.charset import convert_encodings, python_encoding
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.tag import BaseTag
from pydicom.values import convert_string

__all__ = ["as_encoding", "file_dataset", "new_dataset"]


_D = TypeVar("_D", bound=Dataset)
_TEMPLATES: dict[type, dict[str, object]] = {}


def _template(cls: type[Dataset]) -> dict[str, object]:
    """Return the instance attributes of an empty `cls`, built once by its constructor."""
    template = _TEMPLATES.get(cls)
    if template is None:
        if cls is FileDataset:
            sample: Dataset = FileDataset("", {}, None, FileMetaDataset(), False, True)
        else:
            sample = cls()
        template = _TEMPLATES[cls] = dict(sample.__dict__)
    return template


def new_dataset(cls: type[_D], elements: dict[BaseTag, RawDataElement]) -> _D:
    """Return a `cls` holding `elements`, without running pydicom's per-attribute hooks.

    ``Dataset.__setattr__`` checks every attribute name against the DICOM dictionary,
    which makes constructing a data set cost more than scanning its elements. The
    attributes are copied from an instance made by the real constructor (mutable ones
    copied afresh), so the object is indistinguishable from a constructed one.
    """
    obj = object.__new__(cls)
    attrs = obj.__dict__
    for key, value in _template(cls).items():
        attrs[key] = value.copy() if isinstance(value, dict | list) else value
    attrs["_dict"] = elements
    return obj


def file_dataset(
    path: Path,
    mtime: float,
    elements: dict[BaseTag, RawDataElement],
    meta: FileMetaDataset,
    implicit: bool,
    little: bool,
    parent_encoding: str | list[str] | None = None,
) -> FileDataset:
    ds = new_dataset(FileDataset, elements)
    attrs = ds.__dict__
    attrs["file_meta"] = meta
    attrs["filename"] = str(path)
    attrs["timestamp"] = mtime
    attrs["_read_implicit"] = attrs["_is_implicit_VR"] = implicit
    attrs["_read_little"] = attrs["_is_little_endian"] = little
    if parent_encoding is not None:
        attrs["_parent_encoding"] = parent_encoding
    ds.set_original_encoding(implicit, little, _character_set(ds, elements))
    return ds


def as_encoding(value: str | MutableSequence[str]) -> str | list[str]:
    return value if isinstance(value, str) else list(value)


def _character_set(ds: Dataset, elements: dict[BaseTag, RawDataElement]) -> str | list[str]:
    """Return the Python encodings of `ds`, from the raw Specific Character Set.

    The element is left raw (so the writer can tell it is unchanged). pydicom corrects
    misspelt terms (``ISO-IR 100``) and falls back to the default for unknown ones, with
    a warning; reading stays quiet and leaves that warning to whoever decodes the text.
    """
    raw = elements.get(BaseTag(0x00080005))
    if raw is None or not raw.value:
        return ds._character_set
    value = convert_string(raw.value, raw.is_little_endian)
    terms = [value] if isinstance(value, str) else list(value)
    if all(term in python_encoding or not term for term in terms):
        return convert_encodings(value)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return convert_encodings(value)
