"""Fill two archives (dicomveil and Orthanc) with the same many small CT instances, fast.

The C-FIND and QIDO-RS comparisons need archives of 100,000 instances; writing that many
files with :func:`dicomveil.demo.write_demo_study` and sending them over the network takes
longer than the measurement. Here one demo study is made once and used as a template:
each further study is the template's 20 encoded instances with fixed-width tokens replaced
by a new patient (name, ID, birth date from :func:`dicomveil.demo.demo_patients`), new study,
series and SOP Instance UIDs, a new accession number and study date: byte replacements, a
few microseconds an instance.

- dicomveil is filled in process through :meth:`dicomveil.pipeline.ingest.IngestService.ingest`
  (de-identified, archived, way back recorded, indexed: what a C-STORE does, without the
  network), in calls of :data:`CALL` instances from two threads, on the state folder the
  node then serves.
- Orthanc is filled through STOW-RS (its DICOMweb plugin), :data:`CALL` instances a request
  from two clients, as ``benchmarks/gateway_bench.py`` fills it for QIDO-RS.
"""

from __future__ import annotations

import io
import random
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pydicom

__all__ = ["CALL", "fill_dicomveil", "fill_orthanc", "studies"]

CALL = 100
"""Instances per ingest call or STOW-RS request."""
PER_STUDY = 20
_ROOT = "1.2.826.0.1.3680043.10.1234"  # the demo studies' example root


_NAME, _ID = "ZQNAMEZQ" * 5, "ZQIDZQIDZQIDZQID"  # fixed-width tokens (40 and 16 characters)
_BIRTH, _DATE, _STUDY = "18880808", "18990909", 9_900_001  # demo study number of seed 99


def _templates(work: Path) -> list[bytes]:
    """One demo study's instances, encoded with fixed-width tokens where values change."""
    from dicomveil.demo import write_demo_study

    files = write_demo_study(
        work / "template", patients=1, series_per_study=1, images_per_series=PER_STUDY,
        rows=64, columns=64, seed=99,
    )  # fmt: skip
    encoded = []
    for path in sorted(files):
        ds = pydicom.dcmread(path)
        ds.PatientName, ds.PatientID, ds.OtherPatientIDs = _NAME, _ID, _ID
        ds.PatientBirthDate = _BIRTH
        ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = _DATE
        ds.StudyDescription = "CT CHEST"
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        encoded.append(buffer.getvalue())
    return encoded


def studies(count: int, seed: int) -> Iterator[list[bytes]]:
    """Yield ``count`` studies of :data:`PER_STUDY` encoded CT instances each (``seed`` < 8
    keeps UIDs apart from the demo studies')."""
    from dicomveil.demo import demo_patients

    work = Path(tempfile.mkdtemp(prefix="dicomveil-fill-"))
    try:
        templates = _templates(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    rng = random.Random(seed)
    old_uid = f"{_ROOT}.{_STUDY}".encode()
    for number, patient in enumerate(demo_patients(count, seed + 1000)):
        study = 1_000_000 * (seed + 1) + number  # 7 digits, like the template's
        study_date = (date(2000, 1, 1) + timedelta(days=rng.randrange(0, 9000))).strftime("%Y%m%d")
        swaps = [
            (old_uid, f"{_ROOT}.{study}".encode()),
            (_NAME.encode(), patient.name.ljust(len(_NAME))[: len(_NAME)].encode()),
            (_ID.encode(), patient.patient_id.ljust(len(_ID))[: len(_ID)].encode()),
            (_BIRTH.encode(), patient.birth_date.encode()),
            (_DATE.encode(), study_date.encode()),
            (f"ACC{_STUDY}".encode(), f"ACC{study}".encode()),
        ]
        encoded = []
        for data in templates:
            for old, new in swaps:
                data = data.replace(old, new)
            encoded.append(data)
        yield encoded


def _calls(count: int, seed: int) -> Iterator[list[bytes]]:
    """The instances of ``count`` studies, :data:`CALL` at a time."""
    pending: list[bytes] = []
    for study in studies(count, seed):
        pending += study
        if len(pending) >= CALL:
            yield pending
            pending = []
    if pending:
        yield pending


def _parallel(calls: Iterator[list[bytes]], send: Callable[[list[bytes]], None]) -> float:
    """Run ``send`` on each call from two threads; instances per second."""
    started, sent = time.perf_counter(), 0
    with ThreadPoolExecutor(2) as pool:
        pending: list[Any] = []
        for call in calls:
            pending.append(pool.submit(send, call))
            sent += len(call)
            if len(pending) >= 4:  # bounded: encoding stays just ahead of the senders
                pending.pop(0).result()
        for future in pending:
            future.result()
    return sent / (time.perf_counter() - started)


def fill_dicomveil(home: Path, key: str, studies_count: int, seed: int) -> float:
    """Ingest ``studies_count`` studies into the dicomveil state folder ``home`` in process
    (while no other process serves it, or beside one: SQLite in WAL mode); instances/s."""
    import os

    from tests.web.gateway_server import environment

    from dicomveil.pipeline.ingest import Origin
    from dicomveil.runtime import Runtime
    from dicomveil.settings import CoreSettings

    origin = Origin(entry="api", actor="cli:benchmark-fill")
    spool = Path(tempfile.mkdtemp(prefix="dicomveil-fill-spool-"))
    saved = dict(os.environ)
    os.environ.clear()  # the node's environment exactly (keys found where it finds them)
    os.environ.update(environment(home, key))
    counter = iter(range(1 << 62))
    try:
        # the fill is set-up, not a measurement: no archive fsync (the node keeps its own)
        with Runtime.open(CoreSettings.load(home=home, archive_fsync=False)) as runtime:

            def send(call: list[bytes]) -> None:
                folder = spool / str(next(counter))
                folder.mkdir()
                paths = []
                for n, data in enumerate(call):
                    path = folder / f"{n}.dcm"
                    path.write_bytes(data)
                    paths.append(path)
                results = runtime.ingest.ingest(paths, origin)
                shutil.rmtree(folder)
                if not all(result.ok for result in results):
                    raise RuntimeError("an instance of the fill was not ingested")

            return _parallel(_calls(studies_count, seed), send)
    finally:
        os.environ.clear()
        os.environ.update(saved)
        shutil.rmtree(spool, ignore_errors=True)


def fill_orthanc(dicomweb: str, studies_count: int, seed: int) -> float:
    """Store ``studies_count`` studies in Orthanc by STOW-RS; instances/s."""
    import threading

    import httpx

    from benchmarks.gateway_bench import related

    local = threading.local()

    def send(call: list[bytes]) -> None:
        if not hasattr(local, "client"):
            local.client = httpx.Client(timeout=300)
        content_type, body = related(call)
        answer = local.client.post(
            f"{dicomweb}/studies", content=body, headers={"Content-Type": content_type}
        )
        if answer.status_code != 200:
            raise RuntimeError(f"STOW to Orthanc failed: {answer.status_code}")

    return _parallel(_calls(studies_count, seed), send)
