"""TEMPORARY (until the INGEST-API merge): a runtime built from the gateway's Services."""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Origin:
    entry: str
    actor: str
    calling_ae: str | None = None
    peer: str | None = None


@dataclass(frozen=True)
class Failure:
    kind: str
    reason: str


@dataclass(frozen=True)
class Result:
    status: int
    failure: Failure | None
    study_uid: str | None

    @property
    def ok(self) -> bool:
        return self.status == 0


class _Ingest:
    def __init__(self, services: Any) -> None:
        self.services = services

    def ingest(self, files: list[Path], origin: Any, **_: Any) -> list[Result]:
        from dicomveil.web.ingest import deidentify_uploads

        out = []
        work = self.services.workspace()
        for item in deidentify_uploads(
            self.services, list(files), work, actor=origin.actor, entry="dimse", archive=True
        ):
            if item.outcome.status == "ok":
                study = str(item.record.values.get("StudyInstanceUID")) if item.record else None
                out.append(Result(0, None, study))
            else:
                out.append(Result(0xC000, Failure(item.outcome.error_kind, "cannot be read"), None))
        return out


class _Runtime:
    def __init__(self, services: Any) -> None:
        self.services = services
        self.store, self.index, self.audit = services.store, services.index, services.audit
        self.staging = services.staging
        self.ingest = _Ingest(services)

    def close(self) -> None:
        self.services.close()


def open_runtime(home: Path, key_file: Path) -> _Runtime:
    from dicomveil.web.services import Services
    from dicomveil.web.settings import Settings

    module = types.ModuleType("dicomveil.pipeline.ingest")
    module.Origin = Origin  # type: ignore[attr-defined]
    sys.modules.setdefault("dicomveil.pipeline.ingest", module)
    return _Runtime(Services.open(Settings(home=home, key_file=key_file, deid_processes=1)))
