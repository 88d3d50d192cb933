"""The ``[organisations]`` table: codes that can never be a path, prefixes, key files."""

from __future__ import annotations

from pathlib import Path

import pytest

from dicomveil.errors import ConfigError
from dicomveil.keystore import create_key_file
from dicomveil.settings import CoreSettings
from dicomveil.tenants import (
    check_code,
    load_tenant_keys,
    organisations_from_file,
    parse_organisations,
)


@pytest.mark.parametrize("code", ["NORTH", "H1", "ST-JAMES", "A" * 16])
def test_valid_codes(code: str) -> None:
    assert check_code(code) == code


@pytest.mark.parametrize(
    "code", ["", "north", "../X", "A/B", "A.B", "A B", "1ABC", "-A", "A" * 17, "Ä", "A\n"]
)
def test_codes_that_could_be_paths_or_odd_are_refused(code: str) -> None:
    with pytest.raises(ConfigError) as caught:
        check_code(code)
    assert code not in str(caught.value) or not code  # the value is never echoed


def test_defaults_relative_key_files_and_refusals(tmp_path: Path) -> None:
    found = parse_organisations(
        {"NORTH": {"pseudonym_prefix": "NRT", "key_file": "north.key"}, "SOUTH": {}}, tmp_path
    )
    assert found["NORTH"].pseudonym_prefix == "NRT"
    assert found["NORTH"].key_file == tmp_path / "north.key"
    assert found["SOUTH"].pseudonym_prefix == "SOUTH" and found["SOUTH"].key_file is None
    for bad in (
        {"north": {}},
        {"NORTH": {"colour": "red"}},
        {"NORTH": {"pseudonym_prefix": "N/1"}},
        {"NORTH": {"pseudonym_prefix": ""}},
        {"NORTH": {"key_file": 3}},
        {"NORTH": "x"},
        {"NORTH": {"pseudonym_prefix": "X"}, "SOUTH": {"pseudonym_prefix": "X"}},
    ):
        with pytest.raises(ConfigError):
            parse_organisations(bad, tmp_path)


def test_keys_are_read_and_a_missing_one_fails_closed(tmp_path: Path) -> None:
    create_key_file(tmp_path / "south.key")
    config = tmp_path / "dicomveil.toml"
    config.write_text(
        '[organisations.SOUTH]\nkey_file = "south.key"\n[organisations.NORTH]\n',
        encoding="utf-8",
    )
    keys = load_tenant_keys(organisations_from_file(config), environ={})
    assert keys["SOUTH"].secret and keys["NORTH"].secret is None
    assert repr(keys["SOUTH"]) == "TenantKey(prefix='SOUTH', own_key=True)"  # never the secret
    (tmp_path / "south.key").unlink()
    with pytest.raises(ConfigError):
        load_tenant_keys(organisations_from_file(config), environ={})


def test_the_table_is_accepted_beside_server(tmp_path: Path) -> None:
    config = tmp_path / "dicomveil.toml"
    config.write_text('[server]\n\n[organisations.NORTH]\npseudonym_prefix = "N"\n')
    settings = CoreSettings.load(home=tmp_path / "home", config=config, environ={})
    assert settings.config_file == config
    assert organisations_from_file(settings.config_file)["NORTH"].pseudonym_prefix == "N"
    assert organisations_from_file(None) == {}
