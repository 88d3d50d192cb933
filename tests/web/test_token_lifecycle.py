"""Token expiry, last use, organisation, listing and revocation by name: through the real CLI
(``python -m tests.web.cliapp tokens ...``) against a real ``dicomveil serve`` process."""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from dicomveil.tokens import TOKENS_FILE, token_store
from tests.web.gateway_server import ROOT, Gateway, command, environment, running_gateway
from tests.web.support import TEST_KEY


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    with running_gateway(tmp_path_factory.mktemp("tokens") / "home", TEST_KEY) as running:
        yield running


def cli(gateway: Gateway, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command("tokens", *args),
        env=environment(gateway.home, TEST_KEY),
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )


def create(gateway: Gateway, *args: str) -> str:
    done = cli(gateway, "create", *args)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


def studies(gateway: Gateway, secret: str) -> int:
    answer = httpx.get(
        f"{gateway.url}/dicomweb/studies",
        headers={"Authorization": f"Bearer {secret}"},
        timeout=30,
    )
    return answer.status_code


def entries(gateway: Gateway) -> list[dict[str, str]]:
    data = json.loads((gateway.home / TOKENS_FILE).read_text())
    found: list[dict[str, str]] = data["tokens"]
    return found


def rewrite(gateway: Gateway, change: dict[str, dict[str, str]]) -> None:
    """Change stored entries by id (as an operator's older version or an editor would)."""
    path = gateway.home / TOKENS_FILE
    data = json.loads(path.read_text())
    for entry in data["tokens"]:
        entry.update(change.get(entry["id"], {}))
    path.write_text(json.dumps(data))


def listed(gateway: Gateway) -> dict[str, dict[str, str]]:
    done = cli(gateway, "list", "--json")
    assert done.returncode == 0, done.stderr
    return {row["id"]: row for row in json.loads(done.stdout)}


def by_secret(gateway: Gateway, secret: str) -> dict[str, str]:
    digest = hashlib.sha256(secret.encode()).hexdigest()
    (entry,) = [e for e in entries(gateway) if e["sha256"] == digest]
    return entry


def test_expires_sets_lifetime_and_org(gateway: Gateway) -> None:
    secret = create(gateway, "--role", "read", "--org", "hosp-a", "--expires", "30d")
    entry = by_secret(gateway, secret)
    expires = datetime.fromisoformat(entry["expires"])
    assert abs(expires - (datetime.now(UTC) + timedelta(days=30))) < timedelta(minutes=5)
    assert entry["org"] == "hosp-a"
    assert studies(gateway, secret) == 200


def test_expired_token_is_refused_with_401(gateway: Gateway) -> None:
    secret = create(gateway, "--role", "read", "--expires", "12h")
    assert studies(gateway, secret) == 200
    past = (datetime.now(UTC) - timedelta(seconds=1)).isoformat(timespec="seconds")
    rewrite(gateway, {by_secret(gateway, secret)["id"]: {"expires": past}})
    answer = httpx.get(
        f"{gateway.url}/dicomweb/studies", headers={"Authorization": f"Bearer {secret}"}
    )
    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"].startswith("Bearer")
    table = cli(gateway, "list").stdout
    assert "(expired)" in table


def test_short_lifetime_runs_out(gateway: Gateway) -> None:
    secret = create(gateway, "--role", "read", "--expires", "2s")
    assert studies(gateway, secret) == 200
    time.sleep(2.2)
    assert studies(gateway, secret) == 401


def test_last_use_recorded_at_most_once_a_minute(gateway: Gateway) -> None:
    secret = create(gateway, "--role", "read", "--name", "last-use")
    token_id = by_secret(gateway, secret)["id"]
    assert listed(gateway)[token_id]["last_used"] == ""
    assert studies(gateway, secret) == 200
    used = listed(gateway)[token_id]["last_used"]
    assert abs(datetime.fromisoformat(used) - datetime.now(UTC)) < timedelta(minutes=1)
    before = (gateway.home / TOKENS_FILE).stat().st_mtime_ns
    for _ in range(5):
        assert studies(gateway, secret) == 200
    assert (gateway.home / TOKENS_FILE).stat().st_mtime_ns == before, "a write per request"


def test_old_token_file_entries_still_work(gateway: Gateway) -> None:
    """An entry as written before expiry/org/last use existed loads and verifies."""
    secret = "dvt_" + "o" * 43
    path = gateway.home / TOKENS_FILE
    data = json.loads(path.read_text())
    data["tokens"].append(
        {
            "id": "0123456789ab",
            "name": "legacy",
            "role": "read",
            "created": "2025-01-01T00:00:00+00:00",
            "sha256": hashlib.sha256(secret.encode()).hexdigest(),
        }
    )
    path.write_text(json.dumps(data))
    assert studies(gateway, secret) == 200
    row = listed(gateway)["0123456789ab"]
    assert row["expires"] == "" and row["org"] == "" and row["name"] == "legacy"


def test_list_has_header_and_full_ids(gateway: Gateway) -> None:
    create(gateway, "--role", "ingest", "--org", "hosp-b", "--name", "modality")
    done = cli(gateway, "list")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split()[:5] == ["ID", "ROLE", "ORG", "CREATED", "EXPIRES"]
    ids = {entry["id"] for entry in entries(gateway)}
    shown = {line.split()[0] for line in lines[1:]}
    assert shown == ids and all(len(i) == 12 for i in ids)
    assert any("hosp-b" in line and "modality" in line for line in lines)


def test_revoke_by_name_and_by_id(gateway: Gateway) -> None:
    one = create(gateway, "--role", "read", "--name", "desk-1")
    two = create(gateway, "--role", "read", "--name", "desk-2")
    assert cli(gateway, "revoke", "desk-1").returncode == 0
    assert studies(gateway, one) == 401
    assert studies(gateway, two) == 200
    assert cli(gateway, "revoke", by_secret(gateway, two)["id"]).returncode == 0
    assert studies(gateway, two) == 401
    missing = cli(gateway, "revoke", "desk-1")
    assert missing.returncode == 1 and "Traceback" not in missing.stderr


def test_shared_name_is_not_revoked_blindly(gateway: Gateway) -> None:
    first = create(gateway, "--role", "read", "--name", "twin")
    create(gateway, "--role", "read", "--name", "twin")
    done = cli(gateway, "revoke", "twin")
    assert done.returncode == 1 and "by id" in done.stderr
    assert studies(gateway, first) == 200


@pytest.mark.parametrize("lifetime", ["0d", "30", "d", "-5h", "3y", "1e9d"])
def test_bad_lifetimes_are_usage_errors(gateway: Gateway, lifetime: str) -> None:
    done = cli(gateway, "create", "--role", "read", "--expires", lifetime)
    assert done.returncode == 2, done.stderr
    assert "lifetime" in done.stderr and "Traceback" not in done.stderr


def test_bad_org_code(gateway: Gateway) -> None:
    done = cli(gateway, "create", "--role", "read", "--org", "a b/c")
    assert done.returncode == 2 and "organisation code" in done.stderr


def test_store_records_use_without_changing_equality(tmp_path: Path) -> None:
    store = token_store(tmp_path)
    token, secret = store.create("read", "x", expires=timedelta(hours=1), org="o1")
    assert store.verify(secret) == token
    assert store.list()[0].last_used != ""
