"""Direct uploads in cluster mode (#15): complete enqueues, a queue worker ingests.

The incoming store is a bucket (moto S3) every node reaches; the client PUTs with plain
``requests`` to the signed URLs; ``complete`` enqueues each object; a worker process (its own
``$DICOMVEIL_HOME``) de-identifies it, deletes the original, and QIDO-RS on the gateway finds
the instances; the worker, where they are ingested, sends their signed ``instance.stored``
events.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import httpx
import pytest
import requests

from dicomveil.demo import write_demo_study
from dicomveil.events import SIGNATURE_HEADER, verify
from dicomveil.tokens import token_store
from dicomveil.web import Settings, create_app
from tests.events.conftest import Receiver, serve
from tests.support.cloud import BUCKET
from tests.worker.conftest import Cluster, aws_environment

pytestmark = pytest.mark.anyio
SECRET = "cluster-events-secret-0123"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.slow
@pytest.mark.cloud
async def test_upload_complete_enqueues_and_a_worker_ingests(
    cluster: Cluster, s3_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cluster.env.update(aws_environment(s3_endpoint))
    cluster.env["DICOMVEIL_INCOMING_URL"] = f"s3://{BUCKET}/cl-{uuid.uuid4().hex[:10]}"
    receiver = Receiver()
    server = serve(receiver)
    with cluster.config.open("a", encoding="utf-8") as config:
        config.write(f'\n[events]\nendpoints = ["{receiver.url}"]\n')
    cluster.env["DICOMVEIL_EVENTS_SECRET"] = SECRET
    for name, value in cluster.env.items():
        monkeypatch.setenv(name, value)
    home = tmp_path / "gateway-home"
    monkeypatch.setenv("DICOMVEIL_HOME", str(home))
    settings = Settings.load(home=home, key_file=Path(cluster.env["DICOMVEIL_KEY_FILE"]))
    app = create_app(settings)
    try:
        ingest = token_store(home).create("ingest", "up")[1]
        read = token_store(home).create("read", "qido")[1]
        files = write_demo_study(tmp_path / "originals", patients=1, images_per_series=2)
        headers = {"Authorization": f"Bearer {ingest}"}
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
            answer = await client.post(
                "/api/v1/uploads", json={"count": len(files), "priority": "STAT"}, headers=headers
            )
            assert answer.status_code == 201, answer.text
            created = answer.json()
            for item, path in zip(created["urls"], files, strict=True):
                put = requests.put(
                    item["url"], data=path.read_bytes(), headers=item["headers"], timeout=30
                )
                assert put.status_code == 200, put.text
            upload_id = created["upload_id"]
            done = await client.post(f"/api/v1/uploads/{upload_id}/complete", headers=headers)
            assert done.status_code == 202, done.text
            service = app.state.uploads
            cluster.wait(lambda: service.registry.get(upload_id).state == "done")
            progress = (await client.get(f"/api/v1/uploads/{upload_id}", headers=headers)).json()
            assert progress["counts"] == {"queued": len(files)}

            cluster.start_worker("a")
            cluster.wait(lambda: app.state.services.index.counts().instances == len(files))
            found = await client.get(
                "/dicomweb/instances", headers={"Authorization": f"Bearer {read}"}
            )
            assert found.status_code == 200 and len(found.json()) == len(files)
            cluster.wait(lambda: not list(service.incoming.list("incoming/")))
            receiver.wait_for(len(files))
    finally:
        uploads = getattr(app.state, "uploads", None)
        if uploads is not None:
            uploads.close()
        app.state.services.close()
        server.shutdown()
        server.server_close()
    events = [json.loads(body) for _, _, body in receiver.requests]
    assert {e["type"] for e in events} == {"org.dicomveil.instance.stored"}
    assert all(e["data"]["entry"] == "upload" for e in events)
    for _, headers, body in receiver.requests:
        assert verify(SECRET.encode(), body, headers[SIGNATURE_HEADER])
