"""Helpers for the routing tests: de-identified studies in a real archive, and their events.

Originals are synthetic CT studies with PHI planted (``write_demo_study`` names, IDs and
dates, plus sentinel strings in more attributes); they are de-identified with the engine into
a ``file://`` archive, and the routing listener is fed the events the ingest service emits
for them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydicom

from dicomveil.audit import AuditLog
from dicomveil.demo import write_demo_study
from dicomveil.engine.keys import PseudonymKeys
from dicomveil.engine.rules import compile_policy
from dicomveil.forward.completion import CompletionTracker
from dicomveil.pipeline.files import deidentify_file
from dicomveil.profile.policy import Policy
from dicomveil.storage import BaseBlobStore, open_store

KEY = b"k" * 32
SENTINELS = ("ZZPHIINSTITUTIONZZ", "ZZPHIOPERATORZZ", "ZZPHIACCESSIONZZ")


@dataclass(frozen=True, slots=True)
class Origin:
    """The fields of ``dicomveil.pipeline.ingest.Origin`` routing reads."""

    entry: str = "dimse"
    actor: str = "ae:TESTSCU"
    calling_ae: str | None = "TESTSCU"
    peer: str | None = None


@dataclass(frozen=True, slots=True)
class Stored:
    """The fields of ``dicomveil.pipeline.events.InstanceStored`` routing reads."""

    study_uid: str
    series_uid: str
    sop_instance_uid: str
    sop_class_uid: str
    modality: str | None
    storage_key: str
    origin: Origin
    attributes: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Settings:
    home: Path
    organization: str = "TESTORG"


@dataclass
class Runtime:
    """What ``Forwarding.open`` uses of the real runtime: settings, store, audit."""

    settings: Settings
    store: BaseBlobStore
    audit: AuditLog

    @classmethod
    def open(cls, home: Path) -> Runtime:
        home.mkdir(parents=True, exist_ok=True)
        store = open_store(f"file://{home / 'archive'}")
        audit = AuditLog.open(home, environ={"DICOMVEIL_HOME": str(home)})
        return cls(Settings(home), store, audit)


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


def archive(files: Sequence[Path], home: Path, origin: Origin | None = None) -> list[Stored]:
    """De-identify ``files`` into ``home``'s archive; return their InstanceStored events."""
    root = home / "archive"
    compiled, keys = compile_policy(Policy()), PseudonymKeys(KEY)
    events = []
    for path in files:
        outcome = deidentify_file(path, root, compiled, keys)
        assert outcome.status == "ok", outcome.reason
        ds = pydicom.dcmread(root / outcome.output, stop_before_pixels=True)
        events.append(
            Stored(
                study_uid=ds.StudyInstanceUID,
                series_uid=ds.SeriesInstanceUID,
                sop_instance_uid=ds.SOPInstanceUID,
                sop_class_uid=ds.SOPClassUID,
                modality=ds.get("Modality"),
                storage_key=outcome.output,
                origin=origin or Origin(),
                attributes={"Modality": ds.get("Modality", ""), "StudyDescription":
                            str(ds.get("StudyDescription", ""))},
            )
        )  # fmt: skip
    return events


def routing_toml(path: Path, body: str, **values: Any) -> Path:
    """Write a settings TOML (``body`` formatted with ``values``) and return its path."""
    path.write_text(body.format(**{k: json.dumps(v) for k, v in values.items()}))
    return path


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def events(study: str, count: int, ae: str = "FASTCT", start: int = 0) -> list[Stored]:
    return [
        Stored(study, f"{study}.1", f"{study}.1.{i}", "1.2.840.10008.5.1.4.1.1.2", "CT",
               f"{study}/{i}.dcm", Origin(calling_ae=ae), {"Modality": "CT"})
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
