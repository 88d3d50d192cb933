"""Helpers for the routing tests: a real runtime, studies with PHI planted, their events.

Originals are synthetic CT studies with PHI planted (``write_demo_study`` names, IDs and
dates, plus sentinel strings in more attributes); they go through the real ingest service of
a real :class:`~dicomveil.runtime.Runtime` (de-identify, archive, way back, index, events),
one file per call as the DIMSE receiver does.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pydicom

from dicomveil.demo import write_demo_study
from dicomveil.forward.completion import CompletionTracker
from dicomveil.pipeline.events import InstanceStored
from dicomveil.pipeline.ingest import Origin
from dicomveil.runtime import Runtime
from dicomveil.settings import CoreSettings

KEY = "routing-test-pseudonym-key-0123456789abcdef"
SENTINELS = ("ZZPHIINSTITUTIONZZ", "ZZPHIOPERATORZZ", "ZZPHIACCESSIONZZ")
SCU = Origin(entry="dimse", actor="ae:TESTSCU", calling_ae="TESTSCU", peer="127.0.0.1")


def open_runtime(home: Path) -> Runtime:
    """A runtime under ``home`` (file archive, SQLite index, vault, audit; in-process deid)."""
    home.mkdir(parents=True, exist_ok=True)
    key = home.parent / f"{home.name}.key"
    key.write_text(KEY)
    return Runtime.open(CoreSettings(home=home, key_file=key, deid_processes=1))


def originals(folder: Path, images: int, *, seed: int = 1, series: int = 1) -> list[Path]:
    """Write one synthetic CT study with PHI planted; return its files."""
    paths = write_demo_study(
        folder, patients=1, series_per_study=series, images_per_series=images, seed=seed
    )
    for path in paths:
        ds = pydicom.dcmread(path)
        ds.InstitutionName, ds.OperatorsName, ds.AccessionNumber = SENTINELS
        ds.save_as(path)
    return paths


def ingest(runtime: Runtime, files: Sequence[Path], origin: Origin = SCU) -> list[InstanceStored]:
    """Ingest ``files`` one per call; return the events the service announced for them."""
    heard: list[InstanceStored] = []
    runtime.ingest.subscribe(heard.extend)
    for path in files:
        (result,) = runtime.ingest.ingest([path], origin)
        assert result.ok, result.failure
    return heard


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def events(
    study: str, count: int, ae: str = "FASTCT", start: int = 0, modality: str = "CT"
) -> list[InstanceStored]:
    """Synthetic events (queue tests: no archive behind them)."""
    origin = Origin(entry="dimse", actor=f"ae:{ae}", calling_ae=ae)
    return [
        InstanceStored(study, f"{study}.1", f"{study}.1.{i}", "1.2.840.10008.5.1.4.1.1.2",
                       modality, f"{study}/{i}.dcm", origin, {"Modality": modality})
        for i in range(start, start + count)
    ]  # fmt: skip


def complete_studies(
    tracker: CompletionTracker, clock: Clock, studies: Sequence[str], count: int, quiet: float
) -> None:
    """Record ``count`` instances of each study, then let each go quiet and complete."""
    for study in studies:
        tracker.record(events(study, count))
        clock.now += quiet
        tracker.sweep()
