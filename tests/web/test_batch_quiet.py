"""A batch started through ``POST /api/v1/batches`` runs its workers quiet (issue #12).

The batch's worker processes come from a ``forkserver`` (the server runs threads), which
inherits none of the server's settings: unless each worker quiets pydicom itself, pydicom's
warnings, which quote values (here an invalid Number of Frames that clean-pixel-data reads,
planted with a marker), reach the server's stderr. The real server runs here, its output
captured, and the planted value is looked for in it.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import httpx
import pydicom
from pydicom.dataelem import RawDataElement
from pydicom.tag import Tag

from dicomveil.demo import write_demo_study
from tests.web.gateway_server import running_gateway
from tests.web.support import TEST_KEY

CANARY = "LEAKCANARYBATCH"


def _canary_files(folder: Path) -> list[Path]:
    files = write_demo_study(folder, patients=1, series_per_study=1, images_per_series=4)
    tag = Tag(0x00280008)  # Number of Frames: pydicom quotes the invalid IS it holds
    value = f"{CANARY} ".encode()
    for path in files:
        ds = pydicom.dcmread(path)
        ds[tag] = RawDataElement(tag, "IS", len(value), value, 0, False, True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydicom objects to the value planted here
            ds.save_as(path)
    return files


def test_batch_workers_do_not_quote_values_on_the_servers_stderr(tmp_path: Path) -> None:
    files = _canary_files(tmp_path / "in")
    config = tmp_path / "server.toml"
    outbox = tmp_path / "outbox"
    config.write_text(
        "[server]\nbatch_workers = 2\noptions = ['clean-pixel-data']\n"
        f'batch_url = "file://{outbox}"\n'
    )
    args = ("--config", str(config))
    with running_gateway(tmp_path / "home", TEST_KEY, args=args) as gateway:
        headers = {"Authorization": f"Bearer {gateway.tokens['ingest']}"}
        parts = [
            ("files", (f"{n}.dcm", p.read_bytes(), "application/dicom"))
            for n, p in enumerate(files)
        ]
        answer = httpx.post(
            f"{gateway.url}/api/v1/batches", files=parts, headers=headers, timeout=30
        )
        assert answer.status_code == 202, answer.text
        batch_id = answer.json()["batch_id"]
        deadline = time.monotonic() + 60
        state = ""
        while time.monotonic() < deadline:
            status = httpx.get(f"{gateway.url}/api/v1/batches/{batch_id}", headers=headers)
            state = status.json()["state"]
            if state in ("complete", "stopped", "failed"):
                break
            time.sleep(0.2)
        assert state in ("complete", "stopped", "failed"), status.text
        assert status.json()["inputs"]["failed"] == len(files), status.text  # refused, all
        time.sleep(0.3)  # the workers wrote to the same stderr, if at all
        log = gateway.log.read_bytes()
    assert CANARY.encode() not in log
