"""Policy files: options, overrides, private rules, and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from dicomveil.errors import ProfileError
from dicomveil.profile.options import Option
from dicomveil.profile.policy import OverrideAction, Policy, load_policy, parse_tag


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "policy.toml"
    path.write_text(text)
    return path


def test_full_policy(tmp_path: Path) -> None:
    policy = load_policy(
        write(
            tmp_path,
            """
name = "tele"
options = ["retain-uids", "clean-descriptors"]
organization = "HOSP1"
[tags]
PatientSex = "keep"
"(0008,1030)" = { action = "replace", value = "CT CHEST" }
InstitutionName = "hash"
[[private]]
creator = "ACME 1.0"
group = "0x0029"
element = "0x10"
action = "keep"
""",
        )
    )
    assert policy.name == "tele" and policy.organization == "HOSP1"
    assert policy.options == {Option.RETAIN_UIDS, Option.CLEAN_DESCRIPTORS}
    assert policy.overrides[0x00100040].action is OverrideAction.KEEP
    assert policy.overrides[0x00081030].value == "CT CHEST"
    rule = policy.private_rules[0]
    assert rule.matches("ACME 1.0 ", 0x0029, 0x10)
    assert not rule.matches("ACME 1.0", 0x0029, 0x11)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('options = ["retain-everything"]', "unknown option"),
        ('[tags]\nNotAKeyword = "keep"', "unknown attribute"),
        ('[tags]\nPatientSex = "shred"', "unknown action"),
        ('[tags]\nPatientSex = "replace"', "needs a string 'value'"),
        ('colour = "blue"', "unknown policy setting"),
        ('[[private]]\ncreator = "A"\ngroup = "0x0010"\naction = "keep"', "odd"),
        (
            'options = ["retain-longitudinal-full-dates", "retain-longitudinal-modified-dates"]',
            "exclude each other",
        ),
        ("this is = not toml [", "policy file"),
    ],
)
def test_bad_policies_are_refused(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ProfileError, match=message):
        load_policy(write(tmp_path, text))


def test_parse_tag_forms() -> None:
    assert parse_tag("PatientID") == parse_tag("(0010,0020)") == parse_tag("00100020")


def test_organization_is_validated() -> None:
    with pytest.raises(ProfileError, match="organization"):
        Policy(organization="bad org!")
