"""``dicomveil batch|deid --org CODE`` (issue #14): an organisation the settings declare
(``--config``, ``[organisations.CODE]``) brings its prefix *and its own key*, so the patient
pseudonym is the one the gateway gives that organisation's uploads, not the server key's; a
code the settings do not declare is refused (exit 2, no traceback) when they declare
organisations, and is a prefix only, with a warning, when they declare none. A batch made for
an organisation resumes with its key only; a ``deid`` run's audit entry and quarantined inputs
are its organisation's."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

import httpx
import pydicom
import pytest

from dicomveil.cli.main import main
from dicomveil.demo import write_demo_study
from dicomveil.keystore import key_id, load_key
from dicomveil.pipeline.batch import create_batch
from dicomveil.profile.policy import Policy
from dicomveil.tokens import token_store
from dicomveil.web.app import create_app
from dicomveil.web.settings import Settings
from tests.tenant_config import write_organisations
from tests.web.support import first, related_body

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@dataclass(frozen=True)
class Setup:
    """A state folder, the server's key, settings declaring NORTH (own key, prefix NRT) and
    SOUTH (prefix STH only), and one patient's two images."""

    tmp: Path
    home: Path
    key_file: Path
    config: Path
    originals: Path


@pytest.fixture
def setup(tmp_path: Path, key_file: Path, state_home: Path) -> Setup:
    config = write_organisations(tmp_path, {"NORTH": "NRT", "SOUTH": "STH"}, ("NORTH",))
    originals = tmp_path / "in"
    write_demo_study(originals, patients=1, series_per_study=1, images_per_series=2)
    return Setup(tmp_path, state_home, key_file, config, originals)


def _batch_pseudonyms(dest: Path) -> set[str]:
    return {str(pydicom.dcmread(p).PatientID) for p in dest.rglob("*.dcm")}


def _gateway_pseudonym(setup: Setup, org: str) -> str:
    """The Patient ID the gateway archives for the originals sent by an ``org`` token."""
    token = token_store(setup.home).create("ingest", f"ingest-{org}", org=org)[1]
    reader = token_store(setup.home).create("read", f"read-{org}", org=org)[1]
    files = sorted(setup.originals.rglob("*.dcm"))
    settings = Settings(
        home=setup.home, key_file=setup.key_file, config_file=setup.config, deid_processes=1
    )
    app = create_app(settings)

    async def send_and_read() -> str:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            content_type, body = related_body([p.read_bytes() for p in files])
            headers = {"Authorization": f"Bearer {token}", "Content-Type": content_type}
            stored = await c.post("/dicomweb/studies", content=body, headers=headers)
            assert stored.status_code == 200, stored.text
            found = await c.get("/dicomweb/studies", headers={"Authorization": f"Bearer {reader}"})
            (study,) = found.json()
            return str(first(study["00100020"]))

    try:
        return asyncio.run(send_and_read())
    finally:
        app.state.services.close()


def _argv(setup: Setup, *more: str) -> list[str]:
    return ["batch", str(setup.originals), "--key-file", str(setup.key_file), "-j", "1", *more]


def test_org_with_its_own_key(setup: Setup, capsys: pytest.CaptureFixture[str]) -> None:
    own, prefix_only = setup.tmp / "own", setup.tmp / "prefix-only"
    config = ["--config", str(setup.config)]
    assert main(_argv(setup, "--dest", str(own), "--org", "NORTH", *config)) == 0
    assert "warning" not in capsys.readouterr().err
    assert main(_argv(setup, "--dest", str(prefix_only), "--org", "NRT")) == 0  # no settings
    warned = capsys.readouterr().err
    assert "warning" in warned and "only the pseudonym prefix" in warned

    (batch,) = _batch_pseudonyms(own)
    (server_key,) = _batch_pseudonyms(prefix_only)
    assert batch.startswith("NRT-") and server_key.startswith("NRT-")
    assert batch != server_key  # NORTH's own key, not the server's
    assert batch == _gateway_pseudonym(setup, "NORTH")


def test_an_undeclared_org_is_refused_when_the_settings_declare_some(
    setup: Setup, capsys: pytest.CaptureFixture[str]
) -> None:
    dest = setup.tmp / "d"
    argv = _argv(setup, "--dest", str(dest), "--org", "WEST", "--config", str(setup.config))
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "WEST" in err and "NORTH, SOUTH" in err and "Traceback" not in err
    assert not dest.exists() and not (setup.home / "batches").exists()


def test_a_batch_of_an_organisation_resumes_with_its_key(
    setup: Setup, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = load_key("pseudonym", key_file=setup.tmp / "north.key").secret
    info = create_batch(
        setup.originals,
        f"file://{setup.tmp / 'd'}",
        policy=Policy(organization="NRT"),
        key_id=key_id(secret),
        home=setup.home,
        tenant="NORTH",
    )
    argv = ["batch", "resume", info.batch_id, "--key-file", str(setup.key_file), "-j", "1"]
    assert main(argv) == 2
    assert "NORTH" in capsys.readouterr().err
    assert main([*argv, "--config", str(setup.config)]) == 0
    (pseudonym,) = _batch_pseudonyms(setup.tmp / "d")
    assert pseudonym == _gateway_pseudonym(setup, "NORTH")


def _deid(setup: Setup, dest: Path, *more: str) -> list[str]:
    return ["deid", str(setup.originals), str(dest), "--key-file", str(setup.key_file), *more]


def test_deid_org_with_its_own_key_records_and_quarantines_for_it(
    setup: Setup, capsys: pytest.CaptureFixture[str]
) -> None:
    """``deid --org NORTH --config F``: NORTH's pseudonyms (the gateway's), its run's audit
    start entry names NORTH, and its failed inputs are NORTH's quarantined run (so only
    NORTH's console sessions see them, and a release uses NORTH's key)."""
    import json

    from dicomveil.audit.log import AuditLog
    from dicomveil.cli.runs import open_records

    expected = _gateway_pseudonym(setup, "NORTH")
    good = sorted(setup.originals.rglob("*.dcm"))[0]
    (setup.originals / "cut.dcm").write_bytes(good.read_bytes()[:300])  # fails: quarantined
    dest = setup.tmp / "out"
    argv = _deid(setup, dest, "-j", "1", "--org", "NORTH", "--config", str(setup.config))
    assert main(argv) == 1  # one input failed
    assert "warning" not in capsys.readouterr().err
    assert _batch_pseudonyms(dest) == {expected}

    assert main(["quarantine", "list", "--json"]) == 0
    (run,) = json.loads(capsys.readouterr().out)
    assert run["organisation"] == "NORTH"
    _, audit = open_records(use_vault=False)
    assert isinstance(audit, AuditLog)
    starts = [e for e in audit.entries() if e.event == "deid.run.start"]
    assert starts[-1].details["organisation"] == "NORTH"
    assert (
        starts[-1].details["pseudonym_key_id"]
        == load_key("pseudonym", key_file=setup.tmp / "north.key").id
    )


def test_deid_org_refuses_an_undeclared_code_and_warns_without_settings(
    setup: Setup, capsys: pytest.CaptureFixture[str]
) -> None:
    refused = setup.tmp / "refused"
    argv = _deid(setup, refused, "-j", "1", "--org", "WEST", "--config", str(setup.config))
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "WEST" in err and "Traceback" not in err
    assert not any(refused.rglob("*.dcm"))

    prefix_only = setup.tmp / "prefix-only"
    assert main(_deid(setup, prefix_only, "-j", "1", "--org", "NRT")) == 0
    assert "only the pseudonym prefix" in capsys.readouterr().err
    (pseudonym,) = _batch_pseudonyms(prefix_only)
    assert pseudonym.startswith("NRT-") and pseudonym != _gateway_pseudonym(setup, "NORTH")
