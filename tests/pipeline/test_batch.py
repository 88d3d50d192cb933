"""``dicomveil batch`` end to end against real stores: local disk, moto S3, Azurite, GCS emulator.

Each batch is read back through the destination's own SDK: manifest fields and counts,
exactly the listed objects, per-object Content-Type, metadata and SHA-256, no PHI anywhere.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.pipeline.batch_support import (
    PATIENTS,
    apply_env,
    check_complete,
    cli_main,
    make_destination,
    only_batch,
    phi_needles,
    s3_destination,
    vault_instances,
)

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

IMAGES, STUDIES = PATIENTS * 2 * 3, PATIENTS
KINDS = [
    "file",
    pytest.param("s3", marks=pytest.mark.cloud),
    pytest.param("az", marks=pytest.mark.cloud),
    pytest.param("gs", marks=pytest.mark.cloud),
]


@pytest.mark.parametrize("kind", KINDS)
def test_batch_to_each_destination(
    kind: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    batch_home: Path,
    key_file: Path,
    study: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    dest = make_destination(kind, request, tmp_path)
    apply_env(monkeypatch, dest.env)
    argv = ["batch", str(study), "--dest", dest.url, "--priority", "stat", "--org", "HOSP1"]
    code = cli_main([*argv, "--key-file", str(key_file), "-j", "1", "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    batch_id = only_batch(batch_home)
    objects = dest.read()
    manifest = check_complete(objects, batch_id, images=IMAGES, studies=STUDIES)
    # the --json summary agrees with the manifest and says where the manifest is
    summary = json.loads(captured.out)
    assert summary["state"] == "complete" and summary["batch_id"] == batch_id
    assert summary["images"] == manifest["total_images"] and summary["failures"] == []
    assert summary["manifest"]["key"] == f"{batch_id}/manifest.json"
    assert summary["manifest"]["sha256"] == objects[f"{batch_id}/manifest.json"].sha256
    # no PHI in any object, key, the manifest or the summary
    everything = b"\n".join([*(o.data for o in objects.values()), *(k.encode() for k in objects)])
    everything += json.dumps([o.metadata for o in objects.values()]).encode()
    everything += captured.out.encode()
    for needle in phi_needles():
        assert needle not in everything, needle
    # the way back is in the vault, one record per instance; staging is gone
    assert vault_instances() == IMAGES
    assert sorted(p.name for p in (batch_home / "batches" / batch_id).iterdir()) == ["summary.json"]


@pytest.mark.cloud
def test_endpoint_from_option_and_status_and_list(
    s3_endpoint: str,
    batch_home: Path,
    key_file: Path,
    study: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    dest = s3_destination(s3_endpoint, via_env=False)
    apply_env(monkeypatch, dest.env)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    argv = ["batch", str(study), "--dest", dest.url, "--endpoint-url", s3_endpoint]
    assert cli_main([*argv, "--key-file", str(key_file), "-j", "1"]) == 0
    batch_id = only_batch(batch_home)
    manifest = check_complete(
        dest.read(), batch_id, images=IMAGES, studies=STUDIES, priority="ROUTINE", organization=""
    )
    capsys.readouterr()
    assert cli_main(["batch", "status", batch_id, "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["state"] == "complete" and status["images"] == manifest["total_images"]
    assert status["destination"].rstrip("/") == dest.url and status["staging"] is None
    assert cli_main(["batch", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [item["batch_id"] for item in listed] == [batch_id]
    # resuming a complete batch does nothing and succeeds
    assert cli_main(["batch", "resume", batch_id, "--key-file", str(key_file)]) == 0
    assert "nothing to resume" in capsys.readouterr().err


def test_bad_inputs_are_quarantined_and_the_rest_is_shipped(
    tmp_path: Path,
    batch_home: Path,
    key_file: Path,
    study: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    good = next(study.rglob("*.dcm"))
    (study / "DOE_JOHN_cut.dcm").write_bytes(good.read_bytes()[:300])
    (study / "notes.txt").write_text("not dicom at all")
    dest = tmp_path / "dest"
    argv = ["batch", str(study), "--dest", str(dest), "--priority", "URGENT"]
    code = cli_main([*argv, "--key-file", str(key_file), "-j", "1", "--json"])
    captured = capsys.readouterr()
    assert code == 1
    batch_id = only_batch(batch_home)
    summary = json.loads(captured.out)
    assert summary["state"] == "complete"
    assert summary["inputs"]["failed"] == 2 and summary["inputs"]["uploaded"] == IMAGES
    assert len(summary["failures"]) == 2
    assert all(len(f["input_sha256"]) == 64 and f["reason"] for f in summary["failures"])
    assert "DOE_JOHN" not in captured.out  # failures named by digest, not by file name
    assert "DOE_JOHN_cut.dcm" in captured.err  # ...but shown to the operator
    quarantine = batch_home / "quarantine" / batch_id
    reasons = json.loads((quarantine / "reasons.json").read_text())
    assert len(reasons) == 2
    copies = {Path(r["source"]).name: r["file"] for r in reasons}
    assert copies["DOE_JOHN_cut.dcm"].endswith(".dcm")  # named by hash, not by input name
    assert "DOE" not in copies["DOE_JOHN_cut.dcm"]
    assert copies["notes.txt"] == ""  # not DICOM: listed by hash, never copied
    manifest = json.loads((dest / batch_id / "manifest.json").read_text())
    assert manifest["total_images"] == IMAGES and manifest["priority"] == "URGENT"


def test_usage_errors_exit_2(tmp_path: Path, batch_home: Path, key_file: Path, study: Path) -> None:
    key = ["--key-file", str(key_file)]
    assert cli_main(["batch", str(tmp_path / "missing"), "--dest", str(tmp_path / "d"), *key]) == 2
    assert cli_main(["batch", str(study), "--dest", str(study / "out"), *key]) == 2
    assert cli_main(["batch", str(study), "--dest", str(tmp_path / "d"), "--priority", "X"]) == 2
    assert cli_main(["batch", str(study), "--dest", "ftp://x/y", *key]) == 2
    assert cli_main(["batch", str(study), "--dest", "file:///tmp/x", "--endpoint-url", "h"]) == 2
    assert cli_main(["batch", "status", "01J0000000000000000000000X"]) == 2
    assert cli_main(["batch", "status", "../../etc"]) == 2
    assert not (batch_home / "batches").exists() or not any((batch_home / "batches").iterdir())
