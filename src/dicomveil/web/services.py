"""What the routes work with, opened once per app: the core runtime, and the web's own
resources (tokens, metrics, background jobs)."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from dicomveil.audit import AuditLog
from dicomveil.engine.keys import PseudonymKeys
from dicomveil.engine.rules import CompiledPolicy
from dicomveil.index import StudyIndex
from dicomveil.pipeline.ingest import IngestService
from dicomveil.pipeline.ingest_pool import IngestPool
from dicomveil.profile.policy import Policy
from dicomveil.readiness import Check
from dicomveil.runtime import Runtime
from dicomveil.storage import BaseBlobStore
from dicomveil.tokens import TokenStore, token_store
from dicomveil.vault import Vault
from dicomveil.web.metrics import Metrics
from dicomveil.web.settings import Settings

__all__ = ["Services"]


@dataclass
class Services:
    """The gateway's open resources (one per app, shared by every request).

    Attributes
    ----------
    runtime:
        The core resources (archive, index, keys, policy, vault, audit, ingest service,
        staging folder): see :class:`~dicomveil.runtime.Runtime`. The properties below are
        its, under the names the routes use.
    tokens, metrics:
        The web's own.
    readiness:
        Checks ``GET /readyz`` runs besides its own (index, vault, storage, audit): the
        cluster mode appends its broker's (:func:`dicomveil.readiness.broker_check`).
    """

    runtime: Runtime
    tokens: TokenStore
    metrics: Metrics
    readiness: list[Check] = field(default_factory=list)
    _jobs: ThreadPoolExecutor | None = field(default=None, repr=False)

    @classmethod
    def open(cls, settings: Settings) -> Services:
        """Open the runtime ``settings`` names, and the web's resources.

        Raises
        ------
        ConfigError, ProfileError
            Bad settings, policy or key.
        """
        runtime = Runtime.open(settings)
        return cls(
            runtime=runtime,
            tokens=token_store(settings.home, settings.database_url),
            metrics=Metrics(runtime.index.counts),
        )

    @property
    def settings(self) -> Settings:
        """The gateway's settings (the runtime's, with the web's fields)."""
        settings = self.runtime.settings
        assert isinstance(settings, Settings)
        return settings

    @property
    def store(self) -> BaseBlobStore:
        return self.runtime.store

    @property
    def index(self) -> StudyIndex:
        return self.runtime.index

    @property
    def keys(self) -> PseudonymKeys:
        return self.runtime.keys

    @property
    def policy(self) -> Policy:
        return self.runtime.policy

    @property
    def compiled(self) -> CompiledPolicy:
        return self.runtime.compiled

    @property
    def vault(self) -> Vault | None:
        return self.runtime.vault

    @property
    def audit(self) -> AuditLog:
        return self.runtime.audit

    @property
    def ingest(self) -> IngestService:
        return self.runtime.ingest

    @property
    def engine(self) -> IngestPool:
        """The processes that de-identify uploads."""
        return self.runtime.ingest.pool

    @property
    def staging(self) -> Path:
        return self.runtime.staging

    @property
    def secret(self) -> bytes:
        return self.runtime.secret

    def vault_opener(self) -> Vault | Callable[[], Vault]:
        """The vault for re-identification: the open one, or a function opening it."""
        return self.runtime.vault_opener()

    def workspace(self) -> Path:
        """Return a new private folder under the staging folder (the caller removes it)."""
        return self.runtime.workspace()

    def submit(self, job: Callable[[], object]) -> Future[object]:
        """Run ``job`` in the background (one at a time: batches use every core already)."""
        if self._jobs is None:
            self._jobs = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dicomveil-job")
        return self._jobs.submit(job)

    def close(self) -> None:
        """Wait for a running job (queued ones are dropped), then close everything."""
        if self._jobs is not None:
            self._jobs.shutdown(wait=True, cancel_futures=True)
            self._jobs = None
        self.runtime.close()
