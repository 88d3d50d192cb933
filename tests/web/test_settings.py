"""Gateway settings: defaults, TOML, environment, overrides, round trip for workers."""

from __future__ import annotations

from pathlib import Path

import pytest

from dicomveil.errors import ConfigError, ProfileError
from dicomveil.web.settings import Settings


def test_defaults(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    assert settings.archive_url == f"file://{tmp_path / 'archive'}"
    assert settings.index_database == f"sqlite:///{tmp_path / 'index.sqlite'}"
    assert settings.policy().options == frozenset()


def test_sources_in_order(tmp_path: Path) -> None:
    config = tmp_path / "server.toml"
    config.write_text(
        '[server]\nstorage_url = "memory://toml"\nindex_url = "sqlite://"\n'
        'options = ["retain-longitudinal-modified-dates"]\nqido_max_limit = 50\n'
        "qido_default_limit = 10\n"
    )
    environ = {"DICOMVEIL_STORAGE_URL": "memory://env", "DICOMVEIL_MAX_BODY_BYTES": "1000"}
    settings = Settings.load(home=tmp_path, config=config, environ=environ, index_url=None)
    assert settings.storage_url == "memory://env"  # environment beats the file
    assert settings.index_url == "sqlite://"
    assert settings.max_body_bytes == 1000 and settings.qido_max_limit == 50
    assert len(settings.policy().options) == 1
    explicit = Settings.load(
        home=tmp_path, config=config, environ=environ, storage_url="memory://x"
    )
    assert explicit.storage_url == "memory://x"


def test_round_trip(tmp_path: Path) -> None:
    settings = Settings(
        home=tmp_path, key_file=tmp_path / "k", options=("clean-descriptors",), use_vault=False
    )
    assert Settings.from_json(settings.to_json()) == settings


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"nonsense": 1}, "unknown server setting"),
        ({"max_body_bytes": "lots"}, "must be an integer"),
        ({"max_body_bytes": 0}, "positive"),
        ({"qido_default_limit": 5000}, "qido_default_limit"),
    ],
)
def test_refused(tmp_path: Path, values: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.from_mapping({"home": str(tmp_path), **values})


def test_bad_policy(tmp_path: Path) -> None:
    with pytest.raises(ProfileError):
        Settings(home=tmp_path, options=("no-such-option",)).policy()


def test_bad_toml(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[server\n")
    with pytest.raises(ConfigError, match="bad.toml"):
        Settings.load(home=tmp_path, config=config, environ={})


DOCS = Path(__file__).resolve().parents[2] / "docs" / "gateway.md"


def test_every_setting_is_documented_with_an_example() -> None:
    """docs/gateway.md has a table row and an example line for every setting, and its
    example is a valid configuration."""
    import dataclasses
    import tomllib

    text = DOCS.read_text()
    example = text.split("```toml", 1)[1].split("```", 1)[0]
    table = tomllib.loads(example)["server"]
    names = {f.name for f in dataclasses.fields(Settings) if "set_by" not in f.metadata}
    for name in names:
        assert f"| `{name}` |" in text, name
    assert set(table) == names
    Settings.from_mapping(table)


def test_unknown_keys_are_all_named(tmp_path: Path) -> None:
    config = tmp_path / "server.toml"
    config.write_text("[server]\nmax_bodybytes = 1\nstorage = 'x'\nqido_max_limit = 5000\n")
    with pytest.raises(ConfigError, match="max_bodybytes, storage"):
        Settings.load(home=tmp_path, config=config, environ={})


@pytest.mark.parametrize(
    "text",
    ["max_body_bytes = 1\n[server]\n", "[server]\n[bogus]\nport = 104\n", "[serve]\nport = 1\n"],
)
def test_settings_outside_server_refused(tmp_path: Path, text: str) -> None:
    config = tmp_path / "server.toml"
    config.write_text(text)
    with pytest.raises(ConfigError, match=r"settings outside \[server\]"):
        Settings.load(home=tmp_path, config=config, environ={})


def test_serve_help_and_config_errors(tmp_path: Path) -> None:
    """``serve --help`` shows the [server] table (rich markup once swallowed it); a bad
    config is a usage error naming the problem, not a traceback."""
    import subprocess
    import sys

    from tests.web.gateway_server import ROOT, environment
    from tests.web.support import TEST_KEY

    env = environment(tmp_path / "home", TEST_KEY)
    cmd = [sys.executable, "-m", "tests.web.cliapp", "serve"]
    shown = subprocess.run(
        [*cmd, "--help"], env=env, cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert "[server] table" in " ".join(shown.stdout.split())
    config = tmp_path / "bad.toml"
    config.write_text("[server]\nheader_timeout = 1\nnonsense = 2\n[bogus]\nport = 104\n")
    done = subprocess.run(
        [*cmd, "--config", str(config)],
        check=False,
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    assert "bogus" in done.stderr and "Traceback" not in done.stderr
