"""Key custody: pseudonym, vault and audit keys wrapped by AWS KMS (envelope encryption),
through the real command line against moto's KMS (the in-process moto server of
``s3_endpoint`` serves KMS on the same endpoint)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from dicomveil.demo import write_demo_study
from dicomveil.keystore import load_key
from tests.support.cloud import AWS_OPTIONS

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture
def kms_env(s3_endpoint: str, tmp_path: Path) -> Iterator[dict[str, str]]:
    """An environment for the CLI: a private $DICOMVEIL_HOME, moto's KMS, fake credentials."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DICOMVEIL_", "AWS_"))}
    env.update(
        {
            "DICOMVEIL_HOME": str(tmp_path / "home"),
            "AWS_ENDPOINT_URL_KMS": s3_endpoint,
            "AWS_ACCESS_KEY_ID": AWS_OPTIONS["aws_access_key_id"],
            "AWS_SECRET_ACCESS_KEY": AWS_OPTIONS["aws_secret_access_key"],
            "AWS_DEFAULT_REGION": AWS_OPTIONS["region_name"],
            "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}",
        }
    )
    yield env


@pytest.fixture
def kms_client(s3_endpoint: str) -> object:
    import boto3

    return boto3.client("kms", endpoint_url=s3_endpoint, **AWS_OPTIONS)


def new_kms_key(client: object) -> str:
    key_id: str = client.create_key(Description="dicomveil test")["KeyMetadata"]["KeyId"]  # type: ignore[attr-defined]
    return key_id


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dicomveil", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def init_wrapped(env: dict[str, str], folder: Path, kms_key: str) -> None:
    done = run(env, "keys", "init", "--dir", str(folder), "--kms", kms_key)
    assert done.returncode == 0, done.stderr
    assert "warning" not in done.stderr
    for name in ("pseudonym", "vault", "audit"):
        env[f"DICOMVEIL_{'' if name == 'pseudonym' else name.upper() + '_'}KEY_FILE"] = str(
            folder / f"{name}.key"
        )


def test_wrapped_keys_round_trip(
    kms_env: dict[str, str], kms_client: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kms_key = new_kms_key(kms_client)
    folder = tmp_path / "keys"
    init_wrapped(kms_env, folder, kms_key)
    for var in ("AWS_ENDPOINT_URL_KMS", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(var, kms_env[var])
    monkeypatch.setenv("AWS_DEFAULT_REGION", kms_env["AWS_DEFAULT_REGION"])
    secrets = set()
    for name in ("pseudonym", "vault", "audit"):
        text = (folder / name).with_suffix(".key").read_text()
        stored = json.loads(text)
        assert stored["dicomveil"] == "kms-wrapped-key" and stored["name"] == name
        assert kms_key in stored["kms_key_id"]
        key = load_key(name, key_file=folder / f"{name}.key")
        assert key.kms_key_id and len(key.secret) == 43
        assert key.secret.decode() not in text
        secrets.add(key.secret)
    assert len(secrets) == 3
    shown = run(kms_env, "keys", "show")
    assert shown.returncode == 0 and shown.stdout.count("wrapped by KMS key") == 3

    # de-identify and re-identify with the wrapped keys; the audit chain verifies
    originals = write_demo_study(tmp_path / "in", patients=1, series_per_study=1)
    done = run(kms_env, "deid", str(tmp_path / "in"), str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    (study,) = [p.name for p in (tmp_path / "out").glob("*/*") if p.is_dir()]
    back = run(kms_env, "reidentify", "--study", study, "--purpose", "kms test", "--json")
    assert back.returncode == 0, back.stderr
    assert originals and json.loads(back.stdout)["studies"]
    assert run(kms_env, "audit", "verify").returncode == 0

    # rotation keeps working and keeps the vault key wrapped
    old = (folder / "vault.key").read_text()
    rotated = run(kms_env, "keys", "rotate-vault")
    assert rotated.returncode == 0, rotated.stderr
    new = (folder / "vault.key").read_text()
    assert new != old and json.loads(new)["dicomveil"] == "kms-wrapped-key"
    again = run(kms_env, "reidentify", "--study", study, "--purpose", "after rotation")
    assert again.returncode == 0, again.stderr

    # losing the KMS fails closed: exit code, one clear line, no traceback, no key
    no_credentials = {k: v for k, v in kms_env.items() if not k.startswith("AWS_ACCESS")}
    no_credentials.pop("AWS_SECRET_ACCESS_KEY")
    no_credentials.update(
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"),
        AWS_CONFIG_FILE=str(tmp_path / "none"),
        AWS_EC2_METADATA_DISABLED="true",
    )
    refused = run(no_credentials, "reidentify", "--study", study, "--purpose", "after loss")
    unreachable = dict(kms_env, AWS_ENDPOINT_URL_KMS="http://127.0.0.1:9")
    down = run(unreachable, "deid", str(tmp_path / "in"), str(tmp_path / "out2"))
    stored = json.loads(new)
    stored["ciphertext"] = stored["ciphertext"][:-8] + "AAAAAAA="
    (folder / "vault.key").write_text(json.dumps(stored))
    tampered = run(kms_env, "reidentify", "--study", study, "--purpose", "tampered")
    for failed in (refused, down, tampered):
        assert failed.returncode not in (0, None), failed.stdout
        assert "KMS cannot unwrap" in failed.stderr and "Traceback" not in failed.stderr
        assert not any(s.decode() in failed.stderr + failed.stdout for s in secrets)
        assert "ACC0000" not in failed.stdout + failed.stderr
    assert not any((tmp_path / "out2").rglob("*.dcm"))


def test_wrapped_key_is_bound_to_its_purpose(
    kms_env: dict[str, str], kms_client: object, tmp_path: Path
) -> None:
    folder = tmp_path / "keys"
    init_wrapped(kms_env, folder, new_kms_key(kms_client))
    kms_env["DICOMVEIL_KEY_FILE"] = str(folder / "audit.key")  # the audit key as pseudonym key
    done = run(kms_env, "keys", "show")
    assert done.returncode == 1 and "holds the wrapped audit key" in done.stdout


def test_init_warns_when_keys_sit_beside_the_data(kms_env: dict[str, str], tmp_path: Path) -> None:
    beside = run(kms_env, "keys", "init")
    assert beside.returncode == 0, beside.stderr
    assert "warning" in beside.stderr and "copy of that folder" in " ".join(beside.stderr.split())
    elsewhere = run(kms_env, "keys", "init", "--dir", str(tmp_path / "safe"))
    assert elsewhere.returncode == 0 and "warning" not in elsewhere.stderr
    again = run(kms_env, "keys", "init")
    assert again.returncode == 2 and "already exists" in again.stderr


def test_unknown_kms_key_is_a_clear_failure(kms_env: dict[str, str], tmp_path: Path) -> None:
    done = run(kms_env, "keys", "init", "--dir", str(tmp_path / "k"), "--kms", "alias/missing")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "KMS refused" in done.stderr
    assert not (tmp_path / "k" / "pseudonym.key").exists()
