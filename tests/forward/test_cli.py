"""``dicomveil routes status [--json]`` and ``routes retry`` on a real queue database."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dicomveil.cli.main import main
from dicomveil.forward.completion import CompletionTracker
from dicomveil.forward.queue import ForwardQueue
from dicomveil.forward.settings import RoutingSettings
from tests.forward.support import Clock, complete_studies

CONFIG = """
[server]
home = {home}
[routing]
completion_timeout = 1
[[routing.rules]]
name = "pacs"
action = "cstore"
host = "127.0.0.1"
port = 9
ae_title = "PACS"
priority = "URGENT"
[[routing.rules]]
name = "notify"
action = "webhook"
url = "https://user@hooks.example/veil?secret=x"
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """A queue with one dead, one done and one queued forward."""
    path = tmp_path / "dicomveil.toml"
    path.write_text(CONFIG.format(home=json.dumps(str(tmp_path / "home"))))
    settings = RoutingSettings.load(path, home=tmp_path / "home")
    queue = ForwardQueue.open(settings.queue_url)
    clock = Clock()
    complete_studies(CompletionTracker(queue, settings, clock), clock, ("2.25.1", "2.25.2"), 3, 5)
    first = queue.claim("w", clock(), 60)
    assert first is not None
    queue.fail(first, "w", "no association with PACS@127.0.0.1:9", clock(), total=3,
               retry_at=None)  # fmt: skip
    second = queue.claim("w", clock(), 60)
    assert second is not None
    queue.mark_sent(second.id, "s", ["2.25.2.1.0"], clock())
    queue.finish(second, "w", 3, clock())
    queue.close()
    return path


def test_status_json_lists_every_state(
    config: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DICOMVEIL_HOME", str(config.parent / "elsewhere"))
    assert main(["routes", "status", "--json", "--config", str(config)]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["format_version"] == 1
    assert answer["counts"] == {"queued": 2, "running": 0, "done": 1, "dead": 1}
    rows = answer["forwards"]
    assert [(r["priority"], r["state"]) for r in rows] == [
        ("URGENT", "done"), ("URGENT", "dead"), ("ROUTINE", "queued"), ("ROUTINE", "queued")
    ]  # fmt: skip
    dead = rows[1]
    assert dead["error"] == "no association with PACS@127.0.0.1:9" and dead["attempts"] == 1
    assert dead["destination"] == "PACS@127.0.0.1:9" and dead["next_attempt_at"] is None
    assert rows[0]["sent"] == 1 and rows[0]["instances"] == 3
    assert rows[2]["destination"] == "https://hooks.example/veil"  # no user, no query
    assert sorted(rows[0]) == sorted(
        ["id", "state", "rule", "action", "destination", "study_uid", "source", "round",
         "priority", "attempts", "instances", "sent", "error", "next_attempt_at",
         "study_complete", "created_at", "updated_at"]
    )  # fmt: skip


def test_status_table_and_retry(
    config: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from dicomveil.cli.common import out_console

    # the console was sized when first imported (by whichever test came first): widen it
    monkeypatch.setattr(out_console, "width", 200)
    assert main(["routes", "status", "--config", str(config), "--state", "dead"]) == 0
    out = capsys.readouterr().out
    assert "1 dead" in out and "PACS@127.0.0.1:9" in out and "notify" not in out
    dead_id = json.loads(_json(config, capsys))["forwards"][1]["id"]
    assert main(["routes", "retry", str(dead_id), "--config", str(config)]) == 0
    assert main(["routes", "retry", str(dead_id), "--config", str(config)]) == 1
    counts = json.loads(_json(config, capsys))["counts"]
    assert counts == {"queued": 3, "running": 0, "done": 1, "dead": 0}
    assert main(["routes", "status", "--state", "lost", "--config", str(config)]) == 2


def _json(config: Path, capsys: pytest.CaptureFixture[str]) -> str:
    capsys.readouterr()
    assert main(["routes", "status", "--json", "--config", str(config)]) == 0
    return capsys.readouterr().out
