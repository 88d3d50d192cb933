"""``dicomveil worker``: clear errors before any Celery machinery starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from dicomveil.cli.main import main
from tests.support.servers import free_port


@pytest.fixture(autouse=True)
def _home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DICOMVEIL_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("DICOMVEIL_QUEUE", raising=False)


def test_an_unreachable_broker_is_named_without_its_password(
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = f"redis://:s3cret@127.0.0.1:{free_port()}/0"
    assert main(["worker", "--queue", url]) == 1
    err = capsys.readouterr().err
    assert "cannot be reached" in err and "127.0.0.1" in err
    assert "s3cret" not in err and "Traceback" not in err


def test_no_queue_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["worker"]) != 0
    assert "no queue" in capsys.readouterr().err


def test_an_unknown_queue_name_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["worker", "--queue", "redis://127.0.0.1:1/0", "--queues", "fast"]) == 2
    assert "unknown queue" in capsys.readouterr().err
