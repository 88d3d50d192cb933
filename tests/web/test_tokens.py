"""Bearer tokens: created once, stored only hashed, verified, revoked; the CLI contract."""

from __future__ import annotations

import hashlib
import json
import stat
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from dicomveil.cli import tokens as tokens_cli
from dicomveil.errors import ConfigError
from dicomveil.tokens import PERMISSIONS, TokenStore, token_store


@pytest.fixture
def store(tmp_path: Path) -> TokenStore:
    return token_store(tmp_path / "home")


class TestStore:
    def test_created_token_is_stored_hashed(self, store: TokenStore) -> None:
        token, secret = store.create("read", "viewer")
        assert secret.startswith("dvt_") and len(secret) >= 40
        text = store.path.read_text()
        assert secret not in text
        assert hashlib.sha256(secret.encode()).hexdigest() in text
        assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
        assert store.verify(secret) == token
        assert token.actor == "token:viewer" and token.allows("read")
        assert not token.allows("ingest")

    def test_unknown_tokens(self, store: TokenStore) -> None:
        _, secret = store.create("ingest")
        assert store.verify(secret + "x") is None
        assert store.verify("dvt_" + "a" * 43) is None
        assert store.verify("x" * 500) is None
        assert token_store(store.path.parent / "other").verify(secret) is None

    def test_list_and_revoke(self, store: TokenStore) -> None:
        one, secret = store.create("admin", "ops")
        two, _ = store.create("reidentify", "desk")
        assert [t.id for t in store.list()] == [one.id, two.id]
        assert store.verify(secret) is not None
        assert store.revoke(one.id) is True
        assert store.revoke(one.id) is False
        assert store.verify(secret) is None
        assert [t.id for t in store.list()] == [two.id]

    @pytest.mark.parametrize(("role", "name"), [("root", ""), ("read", "x" * 65), ("read", "a\nb")])
    def test_refused(self, store: TokenStore, role: str, name: str) -> None:
        with pytest.raises(ConfigError):
            store.create(role, name)

    def test_corrupt_file(self, store: TokenStore) -> None:
        store.path.parent.mkdir(parents=True)
        store.path.write_text("{not json")
        with pytest.raises(ConfigError, match="cannot be read"):
            store.list()

    def test_admin_cannot_reidentify(self) -> None:
        assert "reidentify" not in PERMISSIONS["admin"]
        assert {"ingest", "read"} <= PERMISSIONS["admin"]


class TestCommand:
    def app(self) -> typer.Typer:
        app = typer.Typer()
        tokens_cli.register(app)

        @app.callback()
        def _root() -> None:
            """Test root."""

        return app

    def test_create_prints_token_on_last_line(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("DICOMVEIL_HOME", str(tmp_path / "home"))
        result = CliRunner().invoke(
            self.app(), ["tokens", "create", "--role", "read", "--name", "pacs"]
        )
        assert result.exit_code == 0, result.output
        secret = result.stdout.strip().splitlines()[-1]
        token = token_store(tmp_path / "home").verify(secret)
        assert token is not None and token.role == "read" and token.name == "pacs"
        listed = CliRunner().invoke(self.app(), ["tokens", "list", "--json"])
        (row,) = json.loads(listed.stdout)
        assert row["id"] == token.id and secret not in listed.stdout
        revoked = CliRunner().invoke(self.app(), ["tokens", "revoke", token.id])
        assert revoked.exit_code == 0
        assert CliRunner().invoke(self.app(), ["tokens", "revoke", token.id]).exit_code == 1

    def test_bad_role(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("DICOMVEIL_HOME", str(tmp_path / "home"))
        result = CliRunner().invoke(self.app(), ["tokens", "create", "--role", "superuser"])
        assert result.exit_code == 2
        assert "unknown role" in result.output
