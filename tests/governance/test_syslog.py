"""Live audit forwarding to syslog (RFC 5424, octet-counted, over TCP or TLS) (#14).

A real collector (a socket server in the test) receives what a real ``dicomveil deid`` and a
real ``dicomveil serve`` write to their audit chain; the forwarded messages carry the same
entries (their chain hashes) and no PHI.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from dicomveil.audit import AuditEvent, AuditLog
from dicomveil.audit.syslog import ENV_CA, ENV_TARGET, SyslogForwarder, SyslogTarget, frame
from dicomveil.demo import write_demo_study
from dicomveil.errors import ConfigError
from tests.governance.syslog_collector import Collector, collector, tls_context
from tests.support.servers import free_port, start, stop, wait_http
from tests.web.gateway_server import ROOT, command, create_token, environment

KEY = "syslog-test-key-0123456789abcdef"
RFC5424 = re.compile(r"^<(\d{1,3})>1 \S+ \S+ dicomveil - (\S+) \[dicomveil@32473 [^\]]*\] \ufeff")


def _phi(originals: Path) -> set[str]:
    """The demo patients' names and ids (they are in the folder names)."""
    found = set()
    for folder in originals.iterdir():
        found |= {part for part in folder.name.split("_") if len(part) > 3}
    return found


def _hashes(messages: list[str]) -> list[str]:
    return [m.split(' hash="', 1)[1].split('"', 1)[0] for m in messages]


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("tcp://127.0.0.1:514", SyslogTarget("127.0.0.1", 514, False)),
        ("tls://collector.example:6514", SyslogTarget("collector.example", 6514, True)),
    ],
)
def test_targets(url: str, expected: SyslogTarget) -> None:
    assert SyslogTarget.parse(url) == expected


@pytest.mark.parametrize("url", ["udp://h:514", "tcp://h", "h:514", "tls://:6514", "tcp://h:x"])
def test_bad_targets_refused(url: str) -> None:
    with pytest.raises(ConfigError, match=ENV_TARGET):
        SyslogTarget.parse(url)


def test_octet_counting() -> None:
    assert frame("é x") == b"4 \xc3\xa9 x"


def test_cli_run_forwards_over_tcp(tmp_path: Path) -> None:
    originals = tmp_path / "originals"
    write_demo_study(originals, patients=2, series_per_study=1, images_per_series=2)
    home = tmp_path / "home"
    with collector() as sink:
        env = {
            **environment(home, KEY),
            ENV_TARGET: f"tcp://127.0.0.1:{sink.port}",
        }
        done = subprocess.run(
            [sys.executable, "-m", "dicomveil", "deid", str(originals), str(tmp_path / "out")],
            env=env,
            cwd=ROOT,
            capture_output=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr.decode()
        entries = list(AuditLog.open(home, create=False).entries())
        messages = sink.wait_for(len(entries))
    assert len(entries) >= 4 and len(messages) == len(entries)
    for message, entry in zip(messages, entries, strict=True):
        match = RFC5424.match(message)
        assert match, message[:120]
        assert match.group(2) == entry.event
    assert _hashes(messages) == [entry.hash for entry in entries]
    raw = bytes(sink.raw)
    assert len(_phi(originals)) >= 4
    for value in _phi(originals):
        assert value.encode() not in raw, value


def test_gateway_forwards_refusals_and_reads_over_tls(tmp_path: Path) -> None:
    server_context, ca = tls_context(tmp_path)
    home = tmp_path / "home"
    home.mkdir()
    read = create_token(home, KEY, "read")
    admin = create_token(home, KEY, "admin")
    with collector(server_context) as sink:
        env = {
            **environment(home, KEY),
            ENV_TARGET: f"tls://127.0.0.1:{sink.port}",
            ENV_CA: str(ca),
        }
        port = free_port()
        proc = start(
            command("serve", "--host", "127.0.0.1", "--port", str(port)),
            tmp_path / "serve.log",
            env=env,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            wait_http(url + "/healthz", timeout=60, proc=proc)
            planted = {"PatientName": "Planted^Syslog^Name"}
            with httpx.Client(base_url=url) as client:
                studies = "/dicomweb/studies"
                assert client.get(studies, params=planted).status_code == 401
                bearer = {"Authorization": f"Bearer {admin}"}
                assert client.get(studies, params=planted, headers=bearer).status_code == 403
                bearer = {"Authorization": f"Bearer {read}"}
                assert client.get(studies, params=planted, headers=bearer).status_code in (200, 204)
            messages = sink.wait_for(3)
        finally:
            stop(proc)
    events = [RFC5424.match(m).group(2) for m in messages]  # type: ignore[union-attr]
    assert events[:3] == ["access.denied", "access.denied", "archive.query"]
    entries = list(AuditLog.open(home, create=False).entries())
    assert _hashes(messages[:3]) == [e.hash for e in entries[:3]]
    assert b"Planted" not in bytes(sink.raw) and "Planted" not in str(messages)
    assert 'actor="<unknown>"' in messages[0]


def test_an_absent_collector_never_slows_the_log(tmp_path: Path) -> None:
    target = SyslogTarget("127.0.0.1", free_port(), False)  # nothing listens there
    forwarder = SyslogForwarder(target)
    log = AuditLog(tmp_path / "audit", b"k" * 32, forwarder=forwarder)
    started = time.monotonic()
    for _ in range(20):
        log.append(AuditEvent("test.event", "tester"))
    assert time.monotonic() - started < 2.0
    assert not forwarder.flush(timeout=0.2)  # nothing could be delivered
    forwarder.close()
    assert log.verify().ok


def test_entries_queued_while_the_collector_is_down_arrive_later(tmp_path: Path) -> None:
    port = free_port()
    forwarder = SyslogForwarder(SyslogTarget("127.0.0.1", port, False))
    log = AuditLog(tmp_path / "audit", b"k" * 32, forwarder=forwarder)
    log.append(AuditEvent("before.collector", "tester"))
    time.sleep(0.3)  # the first attempt fails: nothing listens yet
    sink = Collector(port=port)
    try:
        log.append(AuditEvent("after.collector", "tester"))
        messages = sink.wait_for(2, timeout=10)
    finally:
        forwarder.close()
        sink.close()
    assert [RFC5424.match(m).group(2) for m in messages] == [  # type: ignore[union-attr]
        "before.collector",
        "after.collector",
    ]
