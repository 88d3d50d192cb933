"""What the routes work with, opened once per app: store, index, keys, vault, audit, tokens."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dicomveil.audit import AuditLog
from dicomveil.engine.keys import PseudonymKeys
from dicomveil.engine.rules import CompiledPolicy, compile_policy
from dicomveil.index import StudyIndex, open_index
from dicomveil.keystore import load_key
from dicomveil.pipeline.run import default_workers
from dicomveil.profile.policy import Policy
from dicomveil.storage import BaseBlobStore, open_store, parse_store_url
from dicomveil.tokens import TokenStore, token_store
from dicomveil.vault import Vault, open_vault
from dicomveil.web.engine_pool import EnginePool
from dicomveil.web.metrics import Metrics
from dicomveil.web.settings import Settings
from dicomveil.web.sweep import claim_staging

__all__ = ["Services"]


@dataclass
class Services:
    """The gateway's open resources (one per app, shared by every request).

    Attributes
    ----------
    secret:
        The pseudonym secret (batches take it; never logged or shown).
    engine:
        The processes that de-identify uploads.
    staging:
        A private folder (mode 0700, under ``<home>/spool``: uploads hold PHI) for uploads
        and de-identified files on their way to the store; removed on close, and by the
        next server to start if this one crashes (see :mod:`dicomveil.web.sweep`).
    """

    settings: Settings
    store: BaseBlobStore
    index: StudyIndex
    keys: PseudonymKeys
    policy: Policy
    compiled: CompiledPolicy
    vault: Vault | None
    audit: AuditLog
    tokens: TokenStore
    metrics: Metrics
    engine: EnginePool
    staging: Path
    secret: bytes = field(default=b"", repr=False)
    _closers: list[Callable[[], None]] = field(default_factory=list, repr=False)
    _jobs: ThreadPoolExecutor | None = field(default=None, repr=False)

    @classmethod
    def open(cls, settings: Settings) -> Services:
        """Open everything ``settings`` names (creating keys, vault and index on first use).

        Raises
        ------
        ConfigError, ProfileError
            Bad settings, policy or key.
        """
        environ = {**os.environ, "DICOMVEIL_HOME": str(settings.home)}
        settings.home.mkdir(parents=True, exist_ok=True, mode=0o700)
        policy = settings.policy()
        key = load_key("pseudonym", key_file=settings.key_file, environ=environ)
        closers: list[Callable[[], None]] = []
        try:
            scheme = parse_store_url(settings.archive_url).scheme
            local = scheme == "file"
            options: dict[str, Any] = {}
            if local:
                options = {"fsync": settings.archive_fsync, "sidecars": settings.archive_sidecars}
            store = open_store(settings.archive_url, **options)
            closers.append(store.close)
            index = open_index(settings.database_url)
            closers.append(index.close)
            vault = None
            if settings.use_vault:
                vault = open_vault(settings.vault_url, environ=environ)
                closers.append(vault.close)
            audit = AuditLog.open(settings.home, environ=environ)
        except BaseException:
            for close in reversed(closers):
                close()
            raise
        claimed = claim_staging(settings.home / "spool")  # sweeps what a crash left
        staging = claimed.path
        closers.append(claimed.release)
        keys, compiled = PseudonymKeys(key.secret), compile_policy(policy)
        processes = settings.deid_processes or default_workers()
        shared = None if scheme == "memory" else settings.archive_url  # memory: one process
        engine = EnginePool(key.secret, policy, keys, compiled, store, shared, options, processes)
        closers.append(engine.close)  # before the staging folder goes: workers write there
        return cls(
            settings=settings,
            store=store,
            index=index,
            keys=keys,
            policy=policy,
            compiled=compiled,
            vault=vault,
            audit=audit,
            tokens=token_store(settings.home),
            metrics=Metrics(index.counts),
            engine=engine,
            staging=staging,
            secret=key.secret,
            _closers=closers,
        )

    def vault_opener(self) -> Vault | Callable[[], Vault]:
        """The vault for re-identification: the open one, or a function opening it."""
        if self.vault is not None:
            return self.vault
        environ = {**os.environ, "DICOMVEIL_HOME": str(self.settings.home)}
        url = self.settings.vault_url
        return lambda: open_vault(url, environ=environ, create=False)

    def workspace(self) -> Path:
        """Return a new private folder under the staging folder (the caller removes it)."""
        return Path(tempfile.mkdtemp(dir=self.staging))

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
        closers, self._closers = self._closers, []
        for close in reversed(closers):
            close()
