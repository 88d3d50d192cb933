"""The opened resources every edge uses: archive, index, keys, policy, vault, audit, ingest.

One :class:`Runtime` per process that receives instances (the gateway's server processes,
the DICOM node): the edges wrap it (:class:`dicomveil.web.services.Services` adds tokens,
metrics and the console) instead of opening these themselves.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from dicomveil.audit import AuditLog
from dicomveil.engine.keys import PseudonymKeys
from dicomveil.engine.rules import CompiledPolicy, compile_policy
from dicomveil.index import StudyIndex, open_index
from dicomveil.keystore import load_key
from dicomveil.pipeline.executor import Executor, WorkerSetup, WorkerState, default_workers
from dicomveil.pipeline.ingest import IngestService
from dicomveil.pipeline.ingest_pool import IngestPool
from dicomveil.pipeline.staging import claim_staging
from dicomveil.pipeline.tenancy import build_engines
from dicomveil.profile.policy import Policy
from dicomveil.settings import CoreSettings
from dicomveil.storage import BaseBlobStore, open_store, parse_store_url
from dicomveil.tenants import (
    Organisation,
    TenantKey,
    load_tenant_keys,
    organisations_from_file,
)
from dicomveil.vault import Vault, open_vault

if TYPE_CHECKING:
    from dicomveil.cluster.submit import Submitter

__all__ = ["Runtime"]


@dataclass
class Runtime:
    """The open resources of one process (see the module's documentation).

    Attributes
    ----------
    ingest:
        The ingest service (its worker processes start with the runtime, not per call).
    staging:
        A private folder (mode 0700, under ``<home>/spool``: received files hold PHI) for
        files on their way to the archive; removed on close, and by the next process to
        start if this one crashes (see :mod:`dicomveil.pipeline.staging`).
    secret:
        The pseudonym secret (batches take it; never logged or shown).
    submitter:
        Cluster mode (:func:`dicomveil.cluster.submit.attach_cluster`): the edges hand
        received instances to it (stored, then queued) instead of to :attr:`ingest`.
    organisations:
        The organisations (tenants) the configuration file declares, by code.
    tenant_keys:
        Their prefixes and own secrets (batches take them; never logged or shown).
    """

    settings: CoreSettings
    store: BaseBlobStore
    index: StudyIndex
    keys: PseudonymKeys
    policy: Policy
    compiled: CompiledPolicy
    vault: Vault | None
    audit: AuditLog
    ingest: IngestService
    staging: Path
    secret: bytes = field(default=b"", repr=False)
    submitter: Submitter | None = None
    organisations: dict[str, Organisation] = field(default_factory=dict)
    tenant_keys: dict[str, TenantKey] = field(default_factory=dict, repr=False)
    _closers: list[Callable[[], None]] = field(default_factory=list, repr=False)

    @classmethod
    def open(cls, settings: CoreSettings) -> Runtime:
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
        organisations = organisations_from_file(settings.config_file)
        tenant_keys = load_tenant_keys(organisations, environ)
        closers: list[Callable[[], None]] = []
        try:
            scheme = parse_store_url(settings.archive_url).scheme
            options: dict[str, Any] = {}
            if scheme == "file":
                options = {"fsync": settings.archive_fsync, "sidecars": settings.archive_sidecars}
            store = open_store(settings.archive_url, **options)
            closers.append(store.close)
            index = open_index(settings.index_database)
            closers.append(index.close)
            vault = None
            if settings.use_vault:
                vault = open_vault(settings.vault_database, environ=environ)
                closers.append(vault.close)
            audit = AuditLog.open(
                settings.home, environ=environ, database_url=settings.database_url
            )
            closers.append(audit.close)
            claimed = claim_staging(settings.home / "spool")  # sweeps what a crash left
            closers.append(claimed.release)
            keys, compiled = PseudonymKeys(key.secret), compile_policy(policy)
            shared = scheme != "memory"  # a memory archive lives in this process only
            setup = WorkerSetup(
                key.secret,
                policy,
                settings.archive_url if shared else None,
                options,
                tenants=tenant_keys,
            )
            tenants = build_engines(tenant_keys, keys, policy)
            local = WorkerState(keys=keys, compiled=compiled, store=store, tenants=tenants)
            processes = settings.deid_processes or default_workers()
            pool = IngestPool(Executor.open(setup, processes, local=local), workers_store=shared)
            closers.append(pool.close)  # before the staging folder goes: workers write there
        except BaseException:
            for close in reversed(closers):
                close()
            raise
        opened: dict[str, Any] = {
            "store": store,
            "index": index,
            "keys": keys,
            "policy": policy,
            "compiled": compiled,
            "vault": vault,
            "audit": audit,
        }
        service = IngestService(
            **opened,
            pool=pool,
            staging=claimed.path,
            replace_instances=settings.replace_instances,
            tenants=tenants,
        )
        return cls(
            settings=settings,
            **opened,
            ingest=service,
            staging=claimed.path,
            secret=key.secret,
            organisations=organisations,
            tenant_keys=tenant_keys,
            _closers=closers,
        )

    def vault_opener(self) -> Vault | Callable[[], Vault]:
        """The vault for re-identification: the open one, or a function opening it."""
        if self.vault is not None:
            return self.vault
        environ = {**os.environ, "DICOMVEIL_HOME": str(self.settings.home)}
        url = self.settings.vault_database
        return lambda: open_vault(url, environ=environ, create=False)

    def add_closer(self, close: Callable[[], None]) -> None:
        """Call ``close`` when the runtime closes (before what it opened itself)."""
        self._closers.append(close)

    def workspace(self) -> Path:
        """Return a new private folder under the staging folder (the caller removes it)."""
        return Path(tempfile.mkdtemp(dir=self.staging))

    def close(self) -> None:
        """Close everything (the worker processes first)."""
        closers, self._closers = self._closers, []
        for close in reversed(closers):
            close()

    def __enter__(self) -> Runtime:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
