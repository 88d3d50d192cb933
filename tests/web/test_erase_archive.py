"""``dicomveil erase --archive`` against the gateway's archive: studies stored through STOW-RS
are gone from the vault, the index (QIDO-RS), the object store (WADO-RS) and the files."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import httpx
import pydicom
import pytest

from dicomveil.cli.main import main
from tests.web.conftest import auth

pytestmark = [pytest.mark.anyio, pytest.mark.filterwarnings("ignore::UserWarning")]


def _patient_of(path: Path) -> tuple[str, str, str]:
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    return ds.PatientID, str(ds.get("IssuerOfPatientID", "")), str(ds.PatientName)


async def test_erase_archive_removes_objects_and_rows(
    client: httpx.AsyncClient,
    tokens: dict[str, str],
    archive: dict[str, list[str]],
    demo_files: list[Path],
    home: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    patient_id, issuer, name = _patient_of(demo_files[0])
    assert len(archive["studies"]) == 2
    objects_before = [p for p in (home / "archive").rglob("*") if p.is_file()]
    assert len(objects_before) == len(demo_files)

    args = ["erase", "--patient", patient_id, "--issuer", issuer, "--purpose", "Art. 17"]
    capsys.readouterr()
    assert main([*args, "--archive", "--dry-run", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    (gone,) = listed["pseudo_study_uids"]
    assert listed["archive_objects"] == len(demo_files) // 2
    assert len([p for p in (home / "archive").rglob("*") if p.is_file()]) == len(demo_files)

    assert main([*args, "--archive", "--json"]) == 0
    erased = json.loads(capsys.readouterr().out)
    assert erased["archive_rows"]["index_studies"] == 1
    assert erased["archive_rows"]["index_patients"] == 1
    assert patient_id not in json.dumps(erased) and name not in json.dumps(erased)

    read = auth(tokens["read"])
    found = await client.get("/dicomweb/studies", headers=read)
    uids = {item["0020000D"]["Value"][0] for item in found.json()}
    assert uids == set(archive["studies"]) - {gone}
    missing = await client.get(f"/dicomweb/studies/{gone}", headers=read)
    assert missing.status_code == 404
    left = [p for p in (home / "archive").rglob("*") if p.is_file()]
    assert len(left) == len(demo_files) // 2
    assert not any(gone.encode() in p.read_bytes() for p in left)
    index = next(home.glob("index*.sqlite"), None) or next(home.rglob("*index*.sqlite"))
    with sqlite3.connect(index) as connection:
        count = connection.execute(
            "SELECT count(*) FROM index_studies WHERE study_instance_uid = ?", (gone,)
        ).fetchone()[0]
    assert count == 0
    reid = await client.post(
        "/api/v1/reidentify",
        headers=auth(tokens["reidentify"]),
        json={"study": gone, "purpose": "after erasure"},
    )
    assert reid.status_code == 200, reid.text
    assert reid.json() == {"found": False, "studies": []}
