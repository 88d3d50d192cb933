"""Orthanc as a sender: its REST API pushes a study to the node by C-STORE."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.dimse.support import assert_no_phi, audit_entries, node_settings, phi_study, running_node
from tests.web.orthanc_server import running_orthanc


def _post(url: str, body: bytes, kind: str = "application/json") -> Any:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": kind})
    with urllib.request.urlopen(request, timeout=60) as answer:
        return json.loads(answer.read())


@pytest.mark.server
def test_orthanc_pushes_a_study(runtime: Any, tmp_path: Path) -> None:
    files = phi_study(tmp_path / "study", images=3)
    settings = node_settings(allowed_ae_titles=frozenset({"ORTHANC"}))
    with running_node(runtime, settings) as node:
        modality = ["DICOMVEIL", "127.0.0.1", node.address[1]]
        with running_orthanc(
            tmp_path / "orthanc", extra={"DicomModalities": {"veil": modality}}
        ) as url:
            uploaded = [
                _post(f"{url}/instances", p.read_bytes(), "application/dicom") for p in files
            ]
            study = uploaded[0]["ParentStudy"]
            echo = _post(f"{url}/modalities/veil/echo", b"{}")
            pushed = _post(
                f"{url}/modalities/veil/store",
                json.dumps({"Resources": [study], "Synchronous": True}).encode(),
            )
    assert echo == {}
    assert pushed["FailedInstancesCount"] == 0
    assert pushed["InstancesCount"] == 3
    assert runtime.index.counts().instances == 3
    (entry,) = [
        e
        for e in audit_entries(runtime, "dimse.association")
        if e.details.get("counts", {}).get("stored")
    ]
    assert entry.actor == "ae:ORTHANC"
    assert entry.details["counts"]["stored"] == 3
    for study_uid in entry.details["pseudo_study_uids"]:
        for stored in runtime.index.instances(study_uid):
            assert_no_phi(runtime.store.get_bytes(stored.storage_key), "an archived instance")
