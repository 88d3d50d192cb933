"""Separation of duties: no two tokens without ``reidentify`` link a hospital number to a study.

A hospital's ingest token stores a study whose PatientID is a known hospital number (MRN).
An attacker then holds any two tokens of the roles ``ingest``, ``read`` and ``admin`` (the
same role twice included) and tries what those roles allow without writing to the archive:
de-identify an invented instance carrying the MRN through ``POST /api/v1/deidentify`` (the
lookup issue #14 found: the answer used to carry the archive's pseudonym of the MRN), search
the archive for the MRN and for every identifier the de-identification answered, and read
the metrics. None of it may return the archived study or its pseudonymous PatientID.

Submitting the invented instance *into* the archive (STOW-RS) and then reading the archive is
the one lookup left to an ``ingest`` and a ``read`` holder who collude; ``docs/security.md``
says why it is inherent to deterministic pseudonyms and how the audit log exposes it
(:func:`test_planting_into_the_archive_is_audited_by_token_id`).
"""

from __future__ import annotations

import itertools
from io import BytesIO
from pathlib import Path

import httpx
import pydicom
import pytest
from pydicom.uid import generate_uid

from dicomveil.audit import AuditLog
from dicomveil.engine.pseudonyms import patient_key, patient_pseudonym
from dicomveil.tokens import token_store
from dicomveil.web.services import Services
from tests.web.conftest import auth
from tests.web.support import related_body

pytestmark = pytest.mark.anyio

MRN = "MRN-LINK-4711"
ATTACKER_ROLES = ("ingest", "read", "admin")
PAIRS = list(itertools.combinations_with_replacement(ATTACKER_ROLES, 2))


def _with_mrn(source: Path, *, new_uids: bool) -> bytes:
    dataset = pydicom.dcmread(source)
    dataset.PatientID = MRN
    if "IssuerOfPatientID" in dataset:
        del dataset.IssuerOfPatientID
    if new_uids:  # an invented instance: only the MRN is the victim's
        dataset.StudyInstanceUID = generate_uid()
        dataset.SeriesInstanceUID = generate_uid()
        dataset.SOPInstanceUID = generate_uid()
        dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
    out = BytesIO()
    dataset.save_as(out, enforce_file_format=True)
    return out.getvalue()


async def _plant(client: httpx.AsyncClient, token: str, data: bytes) -> str:
    """Store ``data`` through STOW-RS; return its pseudonymous Study Instance UID."""
    content_type, body = related_body([data])
    answer = await client.post(
        "/dicomweb/studies", content=body, headers={**auth(token), "Content-Type": content_type}
    )
    assert answer.status_code == 200, answer.text
    url = str(answer.json()["00081199"]["Value"][0]["00081190"]["Value"][0])
    return url.split("/dicomweb/studies/", 1)[1].split("/", maxsplit=1)[0]


async def _studies(client: httpx.AsyncClient, token: str, **query: str) -> list[str]:
    answer = await client.get("/dicomweb/studies", params=query, headers=auth(token))
    if answer.status_code == 204:
        return []
    assert answer.status_code in (200, 403), answer.text
    if answer.status_code == 403:
        return []
    return [str(item["0020000D"]["Value"][0]) for item in answer.json()]


@pytest.fixture
async def victim(
    client: httpx.AsyncClient, tokens: dict[str, str], demo_files: list[Path], services: Services
) -> tuple[str, str]:
    """The hospital's study with the known MRN: (pseudonymous study UID, pseudonymous PatientID)."""
    study = await _plant(client, tokens["ingest"], _with_mrn(demo_files[0], new_uids=False))
    answer = await client.get(
        f"/dicomweb/studies/{study}/metadata", headers=auth(tokens["read"])
    )  # the test's oracle: what the archive calls the patient
    patient = str(answer.json()[0]["00100020"]["Value"][0])
    # the lookup the separation closes: the server's own keys map the MRN to that pseudonym
    assert patient == patient_pseudonym(services.keys, patient_key(MRN, "", "", ""))
    return study, patient


@pytest.mark.parametrize(("first", "second"), PAIRS)
async def test_no_pair_of_tokens_links_the_mrn_to_the_study(
    client: httpx.AsyncClient,
    home: Path,
    demo_files: list[Path],
    victim: tuple[str, str],
    first: str,
    second: str,
) -> None:
    study, patient = victim
    store = token_store(home)
    held = {role: store.create(role, f"attacker-{n}")[1] for n, role in enumerate((first, second))}
    seen: list[bytes] = []
    learned = {MRN}
    for role, secret in held.items():
        if role == "ingest":
            invented = _with_mrn(demo_files[1], new_uids=True)
            for _ in range(2):  # twice: the answer is stable for the token, never the archive's
                answer = await client.post(
                    "/api/v1/deidentify",
                    content=invented,
                    headers={**auth(secret), "Content-Type": "application/dicom"},
                )
                assert answer.status_code == 200, answer.text
                seen += [answer.content, str(answer.headers).encode()]
                dataset = pydicom.dcmread(BytesIO(answer.content))
                learned |= {str(dataset.PatientID), str(dataset.PatientName)}
            assert len(learned) == 2  # the MRN and one pseudonym (id and name), twice the same
        metrics = await client.get("/metrics", headers=auth(secret))
        seen.append(metrics.content)
    for role, secret in held.items():
        for value in sorted(learned):
            for attribute in ("PatientID", "PatientName"):
                found = await _studies(client, secret, **{attribute: value})
                assert study not in found, (first, second, role, attribute)
                seen.append(" ".join(found).encode())
    for blob in seen:
        assert patient.encode() not in blob and study.encode() not in blob


async def test_admin_reads_nothing(
    client: httpx.AsyncClient, tokens: dict[str, str], victim: tuple[str, str]
) -> None:
    study, _ = victim
    for path in (f"/dicomweb/studies/{study}/metadata", "/dicomweb/studies", "/api/v1/batches"):
        answer = await client.get(path, headers=auth(tokens["admin"]))
        assert answer.status_code == 403, path


async def test_planting_into_the_archive_is_audited_by_token_id(
    client: httpx.AsyncClient,
    home: Path,
    demo_files: list[Path],
    victim: tuple[str, str],
    services: Services,
) -> None:
    """The residual collusion (ingest stores an invented MRN, read searches the archive) is
    possible, and leaves the planting token's id in the audit log next to the stored study."""
    study, patient = victim
    store = token_store(home)
    planter, planter_secret = store.create("ingest", "planter")
    _, reader_secret = store.create("read", "reader")
    planted = await _plant(client, planter_secret, _with_mrn(demo_files[1], new_uids=True))
    assert study in await _studies(client, reader_secret, PatientID=patient)
    entries = list(AuditLog.open(home, create=False).entries())
    files = [e for e in entries if e.event == "deid.file" and e.actor == planter.actor]
    assert files, "the planting is not audited under the planting token's id"
    assert MRN not in (home / "audit" / "audit.jsonl").read_text()
    assert planted != study


def test_salted_keys_are_stable_and_unlinkable() -> None:
    from dicomveil.engine.keys import PseudonymKeys

    keys = PseudonymKeys(b"0123456789abcdef-secret")
    one, again = keys.salted("token:a"), keys.salted("token:a")
    assert one.token("patient", MRN, 15) == again.token("patient", MRN, 15)
    tokens = {k.token("patient", MRN, 15) for k in (keys, one, keys.salted("token:b"))}
    assert len(tokens) == 3
    with pytest.raises(ValueError, match="salt"):
        keys.salted("")
