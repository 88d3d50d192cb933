"""C-STORE edge cases: compressed syntaxes, a corrupt dataset, an aborted association, PHI."""

from __future__ import annotations

import logging
import struct
import time
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import FileMetaDataset

from dicomveil.dimse.logs import quiet_pynetdicom
from tests.dimse.support import (
    CANARIES,
    NODE_AE,
    SENDER_AE,
    assert_no_phi,
    audit_entries,
    client_ae,
    dcmtk,
    node_settings,
    phi_study,
    running_node,
)

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
COMPRESSED = {
    "JPEG2000.dcm": "-xw",  # JPEG 2000
    "MR_small_RLE.dcm": "-xr",  # RLE Lossless
    "MR_small_jpeg_ls_lossless.dcm": "-xt",  # JPEG-LS Lossless
    "SC_rgb_jpeg_dcmtk.dcm": "-xy",  # JPEG Baseline
    "JPGExtended.dcm": "-xx",  # JPEG Extended
    "image_dfl.dcm": "-xd",  # Deflated Explicit VR Little Endian
}
"""pydicom's test files, and the storescu option that proposes each one's syntax."""


def _renamed(path: Path, folder: Path) -> Path:
    """A copy with a new SOP Instance UID (two test files are one image in two syntaxes)."""
    ds = pydicom.dcmread(path)
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    target = folder / path.name
    ds.save_as(target)  # header only: the encoded pixel data is copied as it is
    return target


def test_storescu_compressed_syntaxes_are_kept(runtime: Any, tmp_path: Path) -> None:
    files = [_renamed(Path(str(get_testdata_file(name))), tmp_path) for name in COMPRESSED]
    syntaxes = {str(pydicom.dcmread(p, stop_before_pixels=True).file_meta.TransferSyntaxUID)
                for p in files}  # fmt: skip
    with running_node(runtime, node_settings()) as node:
        for path, option in zip(files, COMPRESSED.values(), strict=True):
            done = dcmtk(
                "storescu", option, "-aet", SENDER_AE, "-aec", NODE_AE, "127.0.0.1",
                node.address[1], path,
            )  # fmt: skip
            assert done.returncode == 0, (path.name, done.stderr)
    assert runtime.index.counts().instances == len(files)
    from tests.dimse.support import study_uids

    stored = {
        item.transfer_syntax_uid
        for study in study_uids(runtime)
        for item in runtime.index.instances(study)
    }
    assert stored == syntaxes  # as received: nothing decoded or re-encoded


def _corrupt_file(path: Path) -> Path:
    """Valid file meta, then a dataset whose Patient's Name runs past the end."""
    ds = pydicom.Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = pydicom.uid.UID(CT_IMAGE)
    ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.UID("1.2.3.4.5.6.7.8.9")
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    ds.save_as(path, enforce_file_format=True)
    value = (CANARIES[0] + "^TRUNCATED").encode()
    with path.open("ab") as handle:
        handle.write(struct.pack("<HH2sH", 0x0010, 0x0010, b"PN", 0x4000) + value)
    return path


def test_corrupt_dataset_is_refused_without_phi(
    runtime: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    from pynetdicom import _config

    monkeypatch.setattr(_config, "STORE_SEND_CHUNKED_DATASET", True)  # sent as it is
    quiet_pynetdicom()
    caplog.set_level(logging.DEBUG, logger="dicomveil")
    path = _corrupt_file(tmp_path / "corrupt.dcm")
    with running_node(runtime, node_settings()) as node:
        assoc = client_ae(CT_IMAGE).associate("127.0.0.1", node.address[1], ae_title=NODE_AE)
        answer = assoc.send_c_store(path)
        assoc.release()
    assert answer.Status not in (0x0000, 0xB000, 0xB007, 0xB006)
    assert answer.Status >> 12 in (0xA, 0xC) or answer.Status in (0x0110, 0x0122)
    assert answer.ErrorComment  # a reason is given: MalformedInputError: ...
    assert_no_phi(str(answer.ErrorComment), "the status comment")
    assert_no_phi(caplog.text, "the node's log")
    assert runtime.index.counts().instances == 0


def test_abort_mid_study_keeps_what_was_acknowledged(runtime: Any, tmp_path: Path) -> None:
    files = phi_study(tmp_path, images=3)
    with running_node(runtime, node_settings()) as node:
        assoc = client_ae(CT_IMAGE).associate("127.0.0.1", node.address[1], ae_title=NODE_AE)
        statuses = [assoc.send_c_store(pydicom.dcmread(p)).Status for p in files[:2]]
        assoc.abort()
    assert statuses == [0x0000, 0x0000]
    assert runtime.index.counts().instances == 2
    (entry,) = audit_entries(runtime, "dimse.association")
    assert entry.outcome == "failure"
    assert entry.details["aborted"] is True
    assert entry.details["counts"] == {"stored": 2}
    assert_no_phi(str(entry.details), "the audit entry")


def test_phi_stays_out_of_logs(runtime: Any, tmp_path: Path, caplog: Any) -> None:
    quiet_pynetdicom()
    caplog.set_level(logging.DEBUG)
    files = phi_study(tmp_path, images=2)
    with running_node(runtime, node_settings()) as node:
        done = dcmtk(
            "storescu", "-aet", SENDER_AE, "-aec", NODE_AE, "127.0.0.1", node.address[1], *files
        )
    assert done.returncode == 0, done.stderr
    assert_no_phi(caplog.text, "the log")
    assert_no_phi("\n".join(str(e.details) for e in runtime.audit.entries()), "the audit log")
    assert "association from MODALITY" in caplog.text


def _archive_flushes(
    runtime: Any, monkeypatch: pytest.MonkeyPatch, *, delay: float = 0.0, error: str | None = None
) -> list[float]:
    """Make the archive's file flushes (not its folders') slow or failing; the list of the
    times they returned."""
    from dicomveil.storage import file as file_store

    real = file_store._fsync_path
    archive = str(runtime.settings.home / "archive")
    done: list[float] = []

    def flush(path: Path, *, directory: bool = False) -> str | None:
        if directory or not str(path).startswith(archive):
            return real(path, directory=directory)
        time.sleep(delay)
        outcome = error if error is not None else real(path)
        done.append(time.perf_counter())
        return outcome

    monkeypatch.setattr(file_store, "_fsync_path", flush)
    return done


def test_success_is_answered_after_the_archive_flush(
    runtime: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The archive's flush runs beside the vault and audit writes; the answer still waits
    for it (a slow flush delays the answer, never the other way round)."""
    files = phi_study(tmp_path, images=2)
    flushed = _archive_flushes(runtime, monkeypatch, delay=0.4)
    answered = []
    with running_node(runtime, node_settings()) as node:
        assoc = client_ae(CT_IMAGE).associate("127.0.0.1", node.address[1], ae_title=NODE_AE)
        for path in files:
            status = assoc.send_c_store(pydicom.dcmread(path)).Status
            answered.append((status, time.perf_counter()))
        assoc.release()
    assert [status for status, _ in answered] == [0x0000, 0x0000]
    assert len(flushed) == 2
    for (_, at), flushed_at in zip(answered, flushed, strict=True):
        assert at > flushed_at
    assert runtime.index.counts().instances == 2


def test_a_failed_archive_flush_is_a_failure(
    runtime: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An instance whose archive file cannot be made durable is refused, not indexed, and
    its last audit entry says failure (recorded while the flush ran, then corrected)."""
    (path,) = phi_study(tmp_path, images=1)
    _archive_flushes(runtime, monkeypatch, error="Input/output error")
    with running_node(runtime, node_settings()) as node:
        assoc = client_ae(CT_IMAGE).associate("127.0.0.1", node.address[1], ae_title=NODE_AE)
        answer = assoc.send_c_store(pydicom.dcmread(path))
        assoc.release()
    assert answer.Status == 0xA700  # refused: out of resources (the archive)
    assert runtime.index.counts().instances == 0
    outcomes = [entry.outcome for entry in audit_entries(runtime, "deid.file")]
    assert outcomes and outcomes[-1] == "failure"
