"""The gateway's limits under attack, against a real ``dicomveil serve`` on a loopback port.

The server runs with a file descriptor limit of 1024 and short timeouts (from a ``--config``
file): slow clients, bodies sent to routes before their token, oversized and endless bodies.
Each attack is checked by what a client sees (status, closed connection, ``/healthz`` still
answering) and by the server's log (a line per limit hit).
"""

from __future__ import annotations

import resource
import socket
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.web.gateway_server import Gateway, running_gateway
from tests.web.support import TEST_KEY

pytestmark = pytest.mark.slow

HEADER_TIMEOUT = 2.0
BODY_TIMEOUT = 2.0
SLOW_CLIENTS = 1100
CONFIG = f"""
[server]
header_timeout = {HEADER_TIMEOUT}
body_timeout = {BODY_TIMEOUT}
deid_processes = 1
max_render_pixels = 100000
"""


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    folder = tmp_path_factory.mktemp("limits")
    config = folder / "gateway.toml"
    config.write_text(CONFIG)
    with running_gateway(
        folder / "home", TEST_KEY, args=["--config", str(config)], nofile=1024
    ) as running:
        yield running


def _address(gateway: Gateway) -> tuple[str, int]:
    host, port = gateway.url.removeprefix("http://").split(":")
    return host, int(port)


def _connect(gateway: Gateway, timeout: float = 5.0) -> socket.socket:
    sock = socket.create_connection(_address(gateway), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _answer(sock: socket.socket, timeout: float = 10.0) -> bytes:
    """What the server sends until it closes the connection or ``timeout`` passes."""
    sock.settimeout(timeout)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
            if b"\r\n\r\n" in data and b"connection: close" not in data.lower():
                break
    except (TimeoutError, ConnectionResetError):
        pass
    return data


def _closed_within(sock: socket.socket, seconds: float) -> bool:
    """Whether the server closes ``sock`` (EOF or reset) within ``seconds``."""
    sock.settimeout(seconds)
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True
    return True


def _status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else 0


def _log(gateway: Gateway) -> str:
    return gateway.log.read_text(errors="replace")


@pytest.fixture
def many_files() -> Iterator[None]:
    """Let this test process open more sockets than the server may."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = SLOW_CLIENTS + 512
    if hard != resource.RLIM_INFINITY and hard < wanted:
        pytest.fail(f"the hard file limit ({hard}) is below {wanted}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, wanted), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_healthz_answers_during_slow_clients(gateway: Gateway, many_files: None) -> None:
    """1,100 connections that send half a request line: /healthz still answers at once, and
    the slow ones are closed after the header timeout (or to make room)."""
    slow: list[socket.socket] = []
    try:
        for _ in range(SLOW_CLIENTS):
            sock = _connect(gateway)
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            slow.append(sock)
        started = time.monotonic()
        for _ in range(5):
            answer = httpx.get(gateway.url + "/healthz", timeout=5)
            assert answer.status_code == 200
        assert time.monotonic() - started < 10
        time.sleep(HEADER_TIMEOUT + 2.5)
        still_open = 0
        for sock in slow[-50:]:  # the newest: never evicted, closed by the header timeout
            if not _closed_within(sock, 0.2):
                still_open += 1
        assert still_open == 0
    finally:
        for sock in slow:
            sock.close()
    log = _log(gateway)
    assert "limit hit: max_connections" in log
    assert "limit hit: header_timeout" in log
    assert httpx.get(gateway.url + "/healthz", timeout=5).status_code == 200


def test_connection_without_a_request_is_closed(gateway: Gateway) -> None:
    sock = _connect(gateway)
    try:
        assert _closed_within(sock, HEADER_TIMEOUT + 3)
    finally:
        sock.close()


def test_stalled_body_is_closed(gateway: Gateway) -> None:
    sock = _connect(gateway)
    try:
        sock.sendall(
            b"POST /api/v1/deidentify HTTP/1.1\r\nHost: x\r\n"
            b"Authorization: Bearer " + gateway.tokens["ingest"].encode() + b"\r\n"
            b"Content-Type: application/dicom\r\nContent-Length: 100000\r\n\r\n" + b"\0" * 100
        )
        started = time.monotonic()
        assert _closed_within(sock, BODY_TIMEOUT + 4)
        assert time.monotonic() - started >= BODY_TIMEOUT - 0.5
    finally:
        sock.close()
    assert "limit hit: body_timeout" in _log(gateway)


@pytest.mark.parametrize(
    "path",
    ["/api/v1/reidentify", "/api/v1/reidentify/instance", "/api/v1/deidentify", "/api/v1/batches"],
)
def test_no_token_no_body_read(gateway: Gateway, path: str) -> None:
    """A 1 GiB body without a token: 401 at once, the body never read (before the fix the
    server parsed the whole body first)."""
    sock = _connect(gateway)
    try:
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {1 << 30}\r\n\r\n".encode()
            + b"[" * 65536
        )
        started = time.monotonic()
        answer = _answer(sock)
        assert _status(answer) == 401, answer[:200]
        assert time.monotonic() - started < 2
        assert b"connection: close" in answer.lower()
    finally:
        sock.close()


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def test_json_route_body_limit(gateway: Gateway) -> None:
    """With a valid token: a declared body over the JSON limit is 413 before reading, a
    chunked one is cut off at the limit; the server's memory does not grow."""
    token = gateway.tokens["reidentify"].encode()
    rss_before = _rss_kib(gateway.pid)
    sock = _connect(gateway)
    try:
        sock.sendall(
            b"POST /api/v1/reidentify HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
            + token
            + b"\r\nContent-Type: application/json\r\nContent-Length: 1073741824\r\n\r\n"
        )
        assert _status(_answer(sock)) == 413
    finally:
        sock.close()
    sock = _connect(gateway)
    try:
        sock.sendall(
            b"POST /api/v1/reidentify HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
            + token
            + b"\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        chunk = b"[" * 8192
        answer = b""
        for _ in range(64):  # 512 KiB at most
            try:
                sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            except (BrokenPipeError, ConnectionResetError):
                break
            sock.settimeout(0.05)
            try:
                answer += sock.recv(65536)
            except TimeoutError:
                continue
            if answer:
                break
        answer += _answer(sock, 5)
        assert _status(answer) == 413, answer[:200]
    finally:
        sock.close()
    assert _rss_kib(gateway.pid) - rss_before < 50_000


def test_405_lists_every_method(gateway: Gateway) -> None:
    answer = httpx.delete(gateway.url + "/dicomweb/studies", timeout=5)
    assert answer.status_code == 405
    assert {m.strip() for m in answer.headers["allow"].split(",")} == {"GET", "POST"}
    assert answer.headers["x-content-type-options"] == "nosniff"


def test_spool_left_by_a_crash_is_swept_at_start(tmp_path: Path) -> None:
    """Raw uploads left in the spool by a killed server are removed when the next starts;
    the running server's own folder is kept, and removed when it stops."""
    home = tmp_path / "home"
    leftover = home / "spool" / "gateway-crashed" / "in"
    leftover.mkdir(parents=True)
    (leftover / "part-00001").write_bytes(b"DICM raw upload of Doe^Jane")
    (home / "spool" / "stray-upload").write_bytes(b"more PHI")
    with running_gateway(home, TEST_KEY, args=["--deid-processes", "1"]) as running:
        entries = {p.name for p in (home / "spool").iterdir()} - {".lock"}
        assert len(entries) == 1 and next(iter(entries)).startswith("gateway-")
        assert "gateway-crashed" not in entries
        assert "removed 2 upload folder(s)" in _log(running)
    assert {p.name for p in (home / "spool").iterdir()} <= {".lock"}


def test_a_thousand_tiny_parts(gateway: Gateway, demo_files: list[Path]) -> None:
    """1,000 tiny parts under ``ulimit -n 1024``: each part answered, no 500 (before the
    descriptor budget: 500, and another client's STOW failed meanwhile)."""
    from tests.web.support import related_body

    parts = [b"x" * 16] * 1000 + [demo_files[0].read_bytes()]
    content_type, body = related_body(parts)
    headers = {"Authorization": f"Bearer {gateway.tokens['ingest']}", "Content-Type": content_type}
    answer = httpx.post(
        gateway.url + "/dicomweb/studies", content=body, headers=headers, timeout=60
    )
    assert answer.status_code == 202, answer.text[:300]
    body_json = answer.json()
    assert len(body_json["00081199"]["Value"]) == 1
    assert len(body_json["00081198"]["Value"]) == 1000


def _big_instance(source: Path, frames: int, rows: int = 1024, columns: int = 2048) -> bytes:
    """A multi-frame 16-bit instance of ``frames`` × ``rows`` × ``columns`` (from a demo file)."""
    import io

    import numpy as np
    import pydicom

    ds = pydicom.dcmread(source)
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7.3"  # Multi-frame Grayscale Word SC
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.Rows, ds.Columns, ds.NumberOfFrames = rows, columns, frames
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.PixelData = np.arange(rows * columns, dtype=np.uint16).tobytes() * frames
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


class _PeakRss:
    """The server's peak resident memory (sampled) while a block runs."""

    def __init__(self, pid: int) -> None:
        import threading

        self.pid, self.peak, self._stop = pid, 0, threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss_kib(self.pid))
            self._stop.wait(0.02)

    def __enter__(self) -> _PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()


def test_reads_cost_bounded_memory(gateway: Gateway, demo_files: list[Path]) -> None:
    """A 256 MiB instance: retrieved and its frames read without the server's memory
    growing by the instance's size (before: about twice its size per request); frame lists
    deduplicated; rendering above the pixel limit refused before decoding."""
    from tests.web.support import related_body

    data = _big_instance(demo_files[0], frames=64)
    content_type, body = related_body([data])
    ingest = {"Authorization": f"Bearer {gateway.tokens['ingest']}"}
    answer = httpx.post(
        gateway.url + "/dicomweb/studies",
        content=body,
        headers={**ingest, "Content-Type": content_type},
        timeout=120,
    )
    assert answer.status_code == 200, answer.text[:300]
    url = str(answer.json()["00081199"]["Value"][0]["00081190"]["Value"][0])
    del data, body
    read = {"Authorization": f"Bearer {gateway.tokens['read']}"}
    before = _rss_kib(gateway.pid)
    with _PeakRss(gateway.pid) as rss:
        size = 0
        with httpx.stream(
            "GET", url, headers={**read, "Accept": "application/dicom"}, timeout=120
        ) as streamed:
            assert streamed.status_code == 200
            for chunk in streamed.iter_bytes():
                size += len(chunk)
                time.sleep(0.0005)  # a client slower than the disk
        assert size > 256 << 20
        frames = ",".join(["1", "64", "1"] * 2000)
        answer = httpx.get(f"{url}/frames/{frames}", headers=read, timeout=120)
        assert answer.status_code == 200
        assert len(answer.content) < 2 * (4 << 20) + 4096  # two frames: 1 and 64, once each
    assert rss.peak - before < 96 * 1024, (before, rss.peak)
    rendered = httpx.get(f"{url}/rendered", headers=read, timeout=30)
    assert rendered.status_code == 413
    assert "rendering limit" in rendered.json()["error"]["message"]


def test_pydicom_log_does_not_quote_values(gateway: Gateway, demo_files: list[Path]) -> None:
    """An invalid Specific Character Set value: pydicom logs it (with the value) through its
    logger; the server's log must not show it."""
    import io

    import pydicom

    from tests.web.support import related_body

    ds = pydicom.dcmread(demo_files[0])
    out = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom objects to the value planted here
        ds.SpecificCharacterSet = "ISO_IR Zebulon"
        ds.PatientName = "Quixote^Zebulon"
        ds.save_as(out, enforce_file_format=True)
    content_type, body = related_body([out.getvalue()])
    answer = httpx.post(
        gateway.url + "/dicomweb/studies",
        content=body,
        headers={
            "Authorization": f"Bearer {gateway.tokens['ingest']}",
            "Content-Type": content_type,
        },
        timeout=60,
    )
    assert answer.status_code in (200, 409), answer.text[:300]
    assert "Zebulon" not in _log(gateway)


def test_rejected_upload_is_not_parsed_again(gateway: Gateway) -> None:
    """16 MiB of zeros as a STOW-RS part: refused at once (before: 18 s re-reading it in
    full with ``force=True`` to name it in the answer)."""
    from tests.web.support import related_body

    content_type, body = related_body([b"\0" * (16 << 20)])
    started = time.monotonic()
    answer = httpx.post(
        gateway.url + "/dicomweb/studies",
        content=body,
        headers={
            "Authorization": f"Bearer {gateway.tokens['ingest']}",
            "Content-Type": content_type,
        },
        timeout=60,
    )
    assert answer.status_code == 409
    assert time.monotonic() - started < 5
