"""The [dimse] table: defaults, every key, and clear errors."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from dicomveil.dimse.settings import (
    Caller,
    Destination,
    DimseSettings,
    Role,
    load_dimse_settings,
)
from dicomveil.errors import ConfigError

FULL = """
[server]
storage_url = "file:///srv/archive"

[dimse]
ae_title = "GATEWAY"
port = 11113
host = "0.0.0.0"
allowed_ae_titles = ["CT01", "READER"]
default_roles = ["ingest"]
networks = ["10.0.0.0/8"]
require_called_ae_title = true
max_associations = 4
max_pdu_size = 32768
acse_timeout = 5
dimse_timeout = 30.5
network_timeout = 60
max_find_results = 500

[dimse.callers.READER]
roles = ["read"]
networks = ["10.1.2.0/24"]

[dimse.destinations.READER]
host = "10.1.2.3"
port = 104

[dimse.tls]
certificate = "/etc/node.pem"
private_key = "/etc/node.key"
ca_certificates = "/etc/ca.pem"
require_client_certificate = true
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "dicomveil.toml"
    path.write_text(text)
    return path


class TestLoad:
    def test_defaults(self) -> None:
        settings = load_dimse_settings(None)
        assert (settings.ae_title, settings.port, settings.host) == (
            "DICOMVEIL",
            11112,
            "127.0.0.1",
        )
        assert settings.any_caller
        assert settings.caller("ANY") == Caller(frozenset({Role.INGEST, Role.READ}))

    def test_every_key(self, tmp_path: Path) -> None:
        settings = load_dimse_settings(_write(tmp_path, FULL))
        assert settings.ae_title == "GATEWAY" and settings.port == 11113
        assert settings.allowed_ae_titles == {"CT01", "READER"}
        assert settings.caller("CT01") == Caller(frozenset({Role.INGEST}))
        assert settings.caller("READER") == Caller(
            frozenset({Role.READ}), (ipaddress.ip_network("10.1.2.0/24"),)
        )
        assert settings.caller("OTHER") is None
        assert settings.destinations == {"READER": Destination("10.1.2.3", 104)}
        assert settings.tls is not None and settings.tls.require_client_certificate
        assert settings.dimse_timeout == 30.5 and settings.max_find_results == 500

    def test_flags_win(self, tmp_path: Path) -> None:
        settings = load_dimse_settings(_write(tmp_path, FULL), port=2000, ae_title="NODE2")
        assert (settings.port, settings.ae_title) == (2000, "NODE2")

    @pytest.mark.parametrize(
        ("text", "match"),
        [
            ("[dimse]\nportt = 1\n", "unknown \\[dimse\\] setting"),
            ("[dimse]\nport = '104'\n", "port must be a number"),
            ("[dimse]\nae_title = 'WAY_TOO_LONG_AE_TITLE'\n", "not a valid AE title"),
            ("[dimse]\nallowed_ae_titles = 'CT01'\n", "list of strings"),
            ("[dimse]\ndefault_roles = ['write']\n", "roles are ingest, read"),
            ("[dimse]\nnetworks = ['10.0.0.0/33']\n", "not a network"),
            ("[dimse]\nmax_associations = 0\n", "max_associations"),
            ("[dimse]\nmax_pdu_size = 100\n", "max_pdu_size"),
            ("[dimse.callers.CT01]\nnetworks = []\n", "needs roles"),
            ("[dimse]\nallowed_ae_titles = ['A']\n[dimse.callers.B]\nroles = []\n", "missing"),
            ("[dimse.destinations.PACS]\nhost = 'x'\n", "needs port"),
            ("[dimse.tls]\ncertificate = 'a'\n", "needs private_key"),
            (
                "[dimse.tls]\ncertificate = 'a'\nprivate_key = 'b'\n"
                "require_client_certificate = true\n",
                "needs ca_certificates",
            ),
            ("[dimse\n", "config file"),
        ],
    )
    def test_errors_name_the_key(self, tmp_path: Path, text: str, match: str) -> None:
        with pytest.raises(ConfigError, match=match):
            load_dimse_settings(_write(tmp_path, text))

    def test_overrides_are_checked(self) -> None:
        with pytest.raises(ConfigError, match="port"):
            DimseSettings().with_overrides(port=70000)
