"""The ``[retention]`` table: periods per store, per organisation overrides, bad values named."""

from __future__ import annotations

from pathlib import Path

import pytest

from dicomveil.errors import ConfigError
from dicomveil.retention import load_retention
from dicomveil.retention.policy import from_table

DAY = 86400.0


def test_periods_and_organisation_overrides(tmp_path: Path) -> None:
    config = tmp_path / "dicomveil.toml"
    config.write_text(
        '[server]\nstorage_url = "memory://"\n'
        "[retention]\narchive_days = 3650\nquarantine_days = 30\nspool_hours = 12\n"
        'audit_days = 2190\nvault = true\naudit_export = "~/worm"\n'
        "[retention.organisations.ACME]\narchive_days = 365\n"
        "[retention.organisations.KEEP]\narchive_days = 0\n"
    )
    policy = load_retention(config)
    assert policy.archive == 3650 * DAY and policy.quarantine == 30 * DAY
    assert policy.spool == 12 * 3600 and policy.audit == 2190 * DAY and policy.vault
    assert policy.audit_export == Path("~/worm").expanduser()
    assert policy.archive_period("ACME") == 365 * DAY
    assert policy.archive_period("KEEP") == 0  # kept forever
    assert policy.archive_period("") == policy.archive_period("OTHER") == 3650 * DAY
    assert not policy.empty and from_table({}).empty


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"archive_days": -1}, "archive_days must be a number"),
        ({"audit_days": "ten"}, "audit_days must be a number"),
        ({"quarantine_days": True}, "quarantine_days must be a number"),
        ({"archive": 3}, "unknown [retention] setting(s): archive"),
        ({"vault": "yes"}, "vault must be true or false"),
        ({"organisations": {"ACME": {"audit_days": 3}}}, "takes archive_days only"),
        ({"organisations": 3}, "must be a table of tables"),
    ],
)
def test_bad_values_are_named(table: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        from_table(table)
    assert message in str(raised.value)
