"""STOW-RS in cluster mode (issue #15): the gateway stores and queues, a worker ingests.

The answer comes once each original is in the incoming store and its message in the broker;
it names the pseudonymous SOP Instance UIDs the instances will have (a keyed function of
the originals'), and QIDO-RS finds exactly those once a worker has ingested them.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from dicomveil.demo import write_demo_study
from dicomveil.tokens import token_store
from dicomveil.web import Settings, create_app
from tests.web.support import first, related_body
from tests.worker.conftest import Cluster, RedisServer

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _uids(items: list[dict[str, object]], tag: str) -> set[str]:
    return {str(first(item[tag])) for item in items}  # type: ignore[arg-type]


@pytest.mark.slow
async def test_stow_rs_in_cluster_mode_answers_once_queued_and_qido_finds_the_named_uids(
    cluster: Cluster,
    redis_server: RedisServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in cluster.env.items():
        monkeypatch.setenv(name, value)
    home = tmp_path / "gateway-home"
    monkeypatch.setenv("DICOMVEIL_HOME", str(home))
    settings = Settings.load(home=home, key_file=Path(cluster.env["DICOMVEIL_KEY_FILE"]))
    app = create_app(settings)
    try:
        assert app.state.services.runtime.submitter is not None
        ingest = token_store(home).create("ingest", "stow")[1]
        read = token_store(home).create("read", "qido")[1]
        files = write_demo_study(tmp_path / "originals", patients=1, images_per_series=3)
        content_type, body = related_body([p.read_bytes() for p in files])
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
            answer = await client.post(
                "/dicomweb/studies",
                content=body,
                headers={"Authorization": f"Bearer {ingest}", "Content-Type": content_type},
            )
            assert answer.status_code == 200, answer.text
            items = answer.json()["00081199"]["Value"]
            named = _uids(items, "00081155")
            assert len(named) == len(files)
            assert all("00081190" not in item for item in items)  # accepted, not yet stored
            assert app.state.services.index.counts().instances == 0
            for raw in (p.read_bytes() for p in files):  # no original leaves in the answer
                assert b"PatientName" not in answer.content and raw[-64:] not in answer.content
            assert b"sha256/" in redis_server.values()

            cluster.start_worker("a")
            cluster.wait(lambda: app.state.services.index.counts().instances == len(files))
            found = await client.get(
                "/dicomweb/instances", headers={"Authorization": f"Bearer {read}"}
            )
            assert found.status_code == 200, found.text
            assert _uids(found.json(), "00080018") == named
    finally:
        app.state.services.close()
    deadline = time.monotonic() + 10
    while any(True for _ in (cluster.root / "incoming").rglob("*.dcm")):
        assert time.monotonic() < deadline, "the originals stayed in the incoming store"
        time.sleep(0.1)


@pytest.mark.slow
async def test_cluster_mode_keeps_each_organisations_prefix_key_and_scope(
    cluster: Cluster,
    redis_server: RedisServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two organisations send the same study through a cluster-mode gateway: the workers
    de-identify each with its organisation's prefix and key (the UIDs the gateway named are
    the ones stored) and each organisation's reader sees its own study only."""
    from dicomveil.keystore import create_key_file

    create_key_file(tmp_path / "south.key")
    with cluster.config.open("a", encoding="utf-8") as config:
        config.write(
            '\n[organisations.NORTH]\npseudonym_prefix = "NRT"\n\n'
            f'[organisations.SOUTH]\nkey_file = "{tmp_path / "south.key"}"\n'
        )
    for name, value in cluster.env.items():
        monkeypatch.setenv(name, value)
    home = tmp_path / "gateway-home"
    monkeypatch.setenv("DICOMVEIL_HOME", str(home))
    settings = Settings.load(
        home=home, key_file=Path(cluster.env["DICOMVEIL_KEY_FILE"]), config=cluster.config
    )
    app = create_app(settings)
    files = write_demo_study(tmp_path / "originals", patients=1, images_per_series=2)
    content_type, body = related_body([p.read_bytes() for p in files])
    store = token_store(home)
    named: dict[str, set[str]] = {}
    try:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
            for org in ("NORTH", "SOUTH"):
                ingest = store.create("ingest", f"stow-{org}", org=org)[1]
                answer = await client.post(
                    "/dicomweb/studies",
                    content=body,
                    headers={"Authorization": f"Bearer {ingest}", "Content-Type": content_type},
                )
                assert answer.status_code == 200, answer.text
                named[org] = _uids(answer.json()["00081199"]["Value"], "00081155")
            assert not named["NORTH"] & named["SOUTH"]  # SOUTH's own key: unlinkable UIDs

            cluster.start_worker("a")
            total = 2 * len(files)
            cluster.wait(lambda: app.state.services.index.counts().instances == total)
            for org in ("NORTH", "SOUTH"):
                read = store.create("read", f"qido-{org}", org=org)[1]
                found = await client.get(
                    "/dicomweb/instances", headers={"Authorization": f"Bearer {read}"}
                )
                assert found.status_code == 200, found.text
                assert _uids(found.json(), "00080018") == named[org]
                studies = await client.get(
                    "/dicomweb/studies", headers={"Authorization": f"Bearer {read}"}
                )
                (study,) = studies.json()
                if org == "NORTH":
                    assert str(first(study["00100020"])).startswith("NRT-")
    finally:
        app.state.services.close()
