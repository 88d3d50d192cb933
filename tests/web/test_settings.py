"""Gateway settings: defaults, TOML, environment, overrides, round trip for workers."""

from __future__ import annotations

from pathlib import Path

import pytest

from dicomveil.errors import ConfigError, ProfileError
from dicomveil.web.settings import Settings


def test_defaults(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    assert settings.archive_url == f"file://{tmp_path / 'archive'}"
    assert settings.database_url == f"sqlite:///{tmp_path / 'index.sqlite'}"
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
