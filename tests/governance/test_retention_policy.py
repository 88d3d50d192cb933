"""The ``[retention]`` table: periods per store, per organisation overrides, bad values named;
quarantined runs expire by their organisation's period."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from dicomveil.errors import ConfigError
from dicomveil.pipeline.quarantine import quarantine_run
from dicomveil.retention import load_retention
from dicomveil.retention.policy import from_table
from dicomveil.retention.stores import quarantine_store

DAY = 86400.0


def test_periods_and_organisation_overrides(tmp_path: Path) -> None:
    config = tmp_path / "dicomveil.toml"
    config.write_text(
        '[server]\nstorage_url = "memory://"\n'
        "[retention]\narchive_days = 3650\nquarantine_days = 30\nspool_hours = 12\n"
        'audit_days = 2190\nvault = true\naudit_export = "~/worm"\n'
        "[retention.organisations.ACME]\narchive_days = 365\nquarantine_days = 7\n"
        "[retention.organisations.KEEP]\narchive_days = 0\n"
    )
    policy = load_retention(config)
    assert policy.archive == 3650 * DAY and policy.quarantine == 30 * DAY
    assert policy.spool == 12 * 3600 and policy.audit == 2190 * DAY and policy.vault
    assert policy.audit_export == Path("~/worm").expanduser()
    assert policy.archive_period("ACME") == 365 * DAY
    assert policy.archive_period("KEEP") == 0  # kept forever
    assert policy.archive_period("") == policy.archive_period("OTHER") == 3650 * DAY
    assert policy.quarantine_period("ACME") == 7 * DAY
    assert policy.quarantine_period("KEEP") == policy.quarantine_period(None) == 30 * DAY
    assert not policy.empty and from_table({}).empty


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"archive_days": -1}, "archive_days must be a number"),
        ({"audit_days": "ten"}, "audit_days must be a number"),
        ({"quarantine_days": True}, "quarantine_days must be a number"),
        ({"archive": 3}, "unknown [retention] setting(s): archive"),
        ({"vault": "yes"}, "vault must be true or false"),
        (
            {"organisations": {"ACME": {"audit_days": 3}}},
            "takes archive_days and quarantine_days only",
        ),
        ({"organisations": 3}, "must be a table of tables"),
    ],
)
def test_bad_values_are_named(table: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        from_table(table)
    assert message in str(raised.value)


def test_quarantined_runs_expire_by_their_organisations_period(tmp_path: Path) -> None:
    """Three 10-day-old runs (ACME's, KEEP's, no organisation's), a 30-day default and 7 days
    for ACME: only ACME's run is listed (dry run: kept) and then removed."""
    root = tmp_path / "quarantine"
    old = time.time() - 10 * DAY
    for name, org in (("acme-run-0001", "ACME"), ("keep-run-0001", "KEEP"), ("none-run-01", None)):
        quarantine_run([], root / name, organisation=org)
        os.utime(root / name / "reasons.json", (old, old))
    policy = from_table(
        {"quarantine_days": 30, "organisations": {"ACME": {"quarantine_days": 7}, "KEEP": {}}}
    )
    listed = quarantine_store(policy, root, time.time(), dry_run=True)
    assert listed.ids == ["acme-run-0001"] and (root / "acme-run-0001").is_dir()
    done = quarantine_store(policy, root, time.time(), dry_run=False)
    assert done.ids == ["acme-run-0001"]
    assert sorted(p.name for p in root.iterdir()) == ["keep-run-0001", "none-run-01"]
