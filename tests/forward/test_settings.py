"""The ``[routing]`` table: defaults, destinations by name, wildcard matching, clear errors."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from dicomveil.errors import ConfigError
from dicomveil.forward.settings import RoutingSettings
from dicomveil.pipeline.batch_state import Priority

FULL = """
[dimse]
ae_title = "VEIL"
[dimse.destinations.READING]
host = "10.0.0.5"
port = 104
[routing]
completion_timeout = 45
queue_url = "postgresql+psycopg://veil@db/routing"
[routing.completion_timeouts]
CT01 = 5
stow = 60
[[routing.rules]]
name = "reading"
match = { calling_ae = "CT*", Modality = ["CT", "MR"] }
action = "cstore"
destination = "READING"
priority = "stat"
[[routing.rules]]
name = "tele"
action = "batch"
url = "s3://bucket/prefix"
priority = "URGENT"
"""


def parse(text: str, home: Path = Path("/h")) -> RoutingSettings:
    return RoutingSettings.from_mapping(tomllib.loads(text), home=home)


def test_a_full_table(tmp_path: Path) -> None:
    settings = parse(FULL)
    assert settings.queue_url == "postgresql+psycopg://veil@db/routing"
    assert settings.ae_title == "VEIL"
    assert settings.quiet_seconds("CT01") == 5 and settings.quiet_seconds("MR9") == 45
    reading, tele = settings.rules
    assert reading.priority is Priority.STAT and tele.priority is Priority.URGENT
    assert reading.target.label == "READING@10.0.0.5:104" and reading.target.port == 104
    assert reading.target.associations == 4
    assert tele.target.url == "s3://bucket/prefix"
    assert reading.matches({"calling_ae": {"CT01"}, "Modality": {"SR", "MR"}})
    assert not reading.matches({"calling_ae": {"ct01"}, "Modality": {"CT"}})  # case-sensitive
    assert not reading.matches({"Modality": {"CT"}})  # no calling AE: no match
    assert tele.matches({})


def test_defaults_without_a_file(tmp_path: Path) -> None:
    settings = RoutingSettings.load(None, home=tmp_path)
    assert settings.rules == () and settings.completion_timeout == 30
    assert settings.queue_url == f"sqlite:///{tmp_path / 'routing.sqlite'}"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[routing]\ncompletion_timout = 3", "unknown key.*completion_timout"),
        ("[routing]\ncompletion_timeout = -1", "completion_timeout must be a number >= 0"),
        ("[routing]\nworkers = 0", "workers must be a number >= 1"),
        ("[routing]\nbackoff_initial = 9\nbackoff_max = 1", "backoff_max must be at least"),
        ("[[routing.rules]]\naction = 'ftp'", "action must be one of batch, cstore"),
        ("[[routing.rules]]\naction = 'cstore'\ndestination = 'X'", "not in \\[dimse.dest"),
        ("[[routing.rules]]\naction = 'cstore'\nhost = 'h'\nport = 0\nae_title='A'", "port"),
        ("[[routing.rules]]\naction = 'cstore'\nhost = 'h'\nport = 1\nae_title=''", "AE title"),
        ("[[routing.rules]]\naction = 'cstore'\nhost = 'h'\nport = 1\nae_title='A'\n"
         "associations = 0", "associations must be a whole number from 1 to 16"),
        ("[[routing.rules]]\naction = 'stow'", "needs a url"),
        ("[[routing.rules]]\naction = 'stow'\nurl = 'ftp://x'", "http:// or https://"),
        ("[[routing.rules]]\naction = 'webhook'\nurl = 'https://u:pw@x/'", "no credentials"),
        ("[[routing.rules]]\naction = 'webhook'\nurl = 'https://x/'\nmatch = {a = 1}",
         "match.a must be a string"),
        ("[[routing.rules]]\naction = 'batch'\nurl = 'file:///x'\npriority = 'NOW'",
         "unknown priority"),
        ("[[routing.rules]]\nname='a'\naction='batch'\nurl='file:///x'\n"
         "[[routing.rules]]\nname='a'\naction='batch'\nurl='file:///y'", "same name"),
        ("[[routing.rules]]\naction = 'batch'\nurl = 'file:///x'\ntoken = 's3cr3t'",
         "unknown key.*token"),
        ("[[routing.rules]]\nname = 'w'\naction = 'stow'\nurl = 'https://x/'\n"
         "send = 'streaming'", "'w': send must be \"on-arrival\" or \"on-complete\""),
        ("[[routing.rules]]\nname = 't'\naction = 'batch'\nurl = 'file:///x'\n"
         "send = 'on-arrival'", "'t': send = \"on-arrival\" is for cstore and stow only"),
        ("[[routing.rules]]\naction = 'webhook'\nurl = 'https://x/'\nsend = 'on-arrival'",
         "is for cstore and stow only \\(a webhook goes once the study is complete\\)"),
    ],
)  # fmt: skip
def test_errors_name_the_problem(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse(text)


def test_send_is_on_arrival_where_the_action_can_stream() -> None:
    cstore, stow, waiting, batch, hook = parse(
        "[[routing.rules]]\nname='c'\naction='cstore'\nhost='h'\nport=1\nae_title='A'\n"
        "[[routing.rules]]\nname='s'\naction='stow'\nurl='https://x/'\n"
        "[[routing.rules]]\nname='w'\naction='stow'\nurl='https://x/'\nsend='on-complete'\n"
        "[[routing.rules]]\nname='b'\naction='batch'\nurl='file:///x'\n"
        "[[routing.rules]]\nname='h'\naction='webhook'\nurl='https://x/'\n"
        "send='on-complete'\n"
    ).rules
    assert [rule.send for rule in (cstore, stow, waiting, batch, hook)] == [
        "on-arrival", "on-arrival", "on-complete", "on-complete", "on-complete"
    ]  # fmt: skip
    assert cstore.on_arrival and not waiting.on_arrival


def test_matching_is_monotone() -> None:
    """What lets an on-arrival rule be decided early: more instances never unmatch it."""
    (rule,) = parse(FULL).rules[:1]
    seen = {"calling_ae": {"CT01"}, "Modality": {"SR"}}
    assert not rule.matches(seen)
    seen["Modality"].add("CT")
    assert rule.matches(seen)
    seen["Modality"].update({"PR", "KO"})
    assert rule.matches(seen)


def test_a_token_comes_from_the_environment_only(monkeypatch: pytest.MonkeyPatch) -> None:
    (rule,) = parse(
        "[[routing.rules]]\naction='stow'\nurl='https://x/dw'\ntoken_env='VEIL_T'"
    ).rules
    monkeypatch.delenv("VEIL_T", raising=False)
    with pytest.raises(ConfigError, match="VEIL_T is not set"):
        rule.target.token()
    monkeypatch.setenv("VEIL_T", "abc")
    assert rule.target.token() == "abc"
