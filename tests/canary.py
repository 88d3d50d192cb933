"""PHI canaries: datasets with a unique sentinel in every attribute that could identify.

``build_canary_dataset()`` fills every exact-tag row of PS3.15 Table E.1-1 that the data
dictionary knows, plus private blocks, nested sequences and an SR content tree, with values no
real file would hold. Tests de-identify it, serialize it, and search the bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from pydicom.datadict import dictionary_has_tag, dictionary_VR
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian

from dicomveil.profile._rows import Ps315Row
from dicomveil.profile.table import rows

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
CANARY_UID_ROOT = "1.2.826.0.1.3680043.99"


@dataclass(frozen=True)
class Canary:
    """One planted value: where, how it looks in bytes, and under which table row."""

    where: str
    data: bytes
    row: Ps315Row | None
    vr: str
    nested: bool = False


def _date(index: int) -> str:
    return (date(1931, 1, 1) + timedelta(days=index * 37)).strftime("%Y%m%d")


def _patient_word() -> str:
    index = next(i for i, r in enumerate(rows(), start=1) if r.tag == "00100010")
    return f"CANARY{index:04d}"


#: The family name planted in PatientName; also written into free text to test cleaning.
PATIENT_WORD = _patient_word()


def _value(index: int, vr: str, retainable: bool) -> str | bytes | None:
    word = f"CANARY{index:04d}"
    # free text carries the patient's name too, unless an option may keep it verbatim
    text = word if retainable else f"{word} seen for {PATIENT_WORD}"
    return {
        "PN": f"{word}^GIVEN{index:04d}",
        "LO": text, "SH": word, "LT": text, "ST": text,
        "UT": text, "UC": text, "AE": word, "CS": word,
        "DA": _date(index), "DT": _date(index) + "101010",
        "TM": f"1010{index % 60:02d}.{index:06d}",
        "UI": f"{CANARY_UID_ROOT}.{index}",
        "OB": f"{word}OB".encode(), "OW": f"{word}OW".encode(), "UN": f"{word}UN".encode(),
    }.get(vr)  # fmt: skip


def _as_bytes(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode("ascii")


def _nested_item(index: int, canaries: list[Canary], where: str, row: Ps315Row | None) -> Dataset:
    item = Dataset()
    item.CodeValue = "T-D3000"
    item.CodingSchemeDesignator = "SRT"
    name = f"NESTED{index:04d}^PERSON"
    uid = f"{CANARY_UID_ROOT}.9{index}"
    day = _date(index + 5000)
    item.PersonName = name  # (0040,A123) D
    item.ReferencedSOPInstanceUID = uid  # U
    item.ObservationDateTime = day + "121212"  # X/D, a date
    canaries.append(
        Canary(f"{where}>PersonName", name.split("^", maxsplit=1)[0].encode(), row, "PN", True)
    )
    canaries.append(Canary(f"{where}>ReferencedSOPInstanceUID", uid.encode(), row, "UI", True))
    canaries.append(Canary(f"{where}>ObservationDateTime", day.encode(), row, "DT", True))
    return item


def build_canary_dataset() -> tuple[Dataset, list[Canary]]:
    """Return a dataset with a sentinel in every fillable Table E.1-1 attribute."""
    ds = Dataset()
    canaries: list[Canary] = []
    for index, row in enumerate(rows(), start=1):
        if row.tag == "odd" or "x" in row.tag:
            continue
        tag = int(row.tag, 16)
        if tag >> 16 in (0x0000, 0x0002) or not dictionary_has_tag(tag):
            continue
        vr = dictionary_VR(tag).split(" or ")[0]
        if vr == "SQ":
            ds.add_new(tag, "SQ", Sequence([_nested_item(index, canaries, row.name, row)]))
            continue
        value = _value(index, vr, any(code == "K" for _, code in row.options))
        if value is None:
            continue
        ds.add_new(tag, vr, value)
        data = _as_bytes(value)
        data = data if vr in ("UI", "TM") else data[:8] if vr == "DT" else data[:10]
        canaries.append(Canary(row.name, data, row, vr))
    # identity the file needs
    ds.SOPClassUID = CT_IMAGE
    ds.Modality = "CT"
    ds.BurnedInAnnotation = "NO"
    # private: an unknown block and a safe-listed one
    block = ds.private_block(0x0009, "CANARY CREATOR", create=True)
    block.add_new(0x01, "LO", "PRIVCANARY01")
    block.add_new(0x02, "PN", "PRIVCANARY02^NAME")
    inner = Dataset()
    inner.PatientName = "PRIVCANARY03^NESTED"
    block.add_new(0x03, "SQ", Sequence([inner]))
    for n in ("01", "02", "03"):
        canaries.append(Canary(f"private {n}", f"PRIVCANARY{n}".encode(), None, "LO"))
    safe = ds.private_block(0x0019, "SIEMENS MR HEADER", create=True)
    safe.add_new(0x0C, "IS", "1000")  # B value: safe
    # SR content tree with text, names, dates and UIDs
    text = Dataset()
    text.ValueType = "TEXT"
    text.TextValue = f"SRCANARYTEXT {PATIENT_WORD} said hello"
    pname = Dataset()
    pname.ValueType = "PNAME"
    pname.PersonName = "SRCANARYNAME^PERSON"
    ds.ContentSequence.extend([text, pname])  # beside the row's own nested canary item
    canaries.append(Canary("SR TextValue", b"SRCANARYTEXT", None, "UT", True))
    canaries.append(Canary("SR PersonName", b"SRCANARYNAME", None, "PN", True))
    return ds, canaries


def as_file_dataset(ds: Dataset) -> Dataset:
    """Give ``ds`` file meta information so it can be written as a Part 10 file."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.get("SOPClassUID", CT_IMAGE)
    meta.MediaStorageSOPInstanceUID = ds.get("SOPInstanceUID", "1.2.3")
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    return ds
