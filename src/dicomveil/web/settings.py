"""The gateway's settings: the core settings (:class:`~dicomveil.settings.CoreSettings`) and
the web's own (limits, timeouts, console, CORS, viewer), one frozen object.

Read as the core settings are (defaults, the ``[server]`` table of a TOML file, environment
variables, flags), with two more variables: ``DICOMVEIL_IMPORT_ROOT`` and
``DICOMVEIL_MAX_BODY_BYTES``. Unlike the core reader, an unknown ``[server]`` key is an error.

Example TOML::

    [server]
    storage_url = "s3://archive/deid"
    index_url = "postgresql+psycopg://dicomveil@db/index"
    import_root = "/srv/imports"
    options = ["retain-longitudinal-modified-dates"]
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Final

from dicomveil.errors import ConfigError
from dicomveil.settings import SECTIONS, CoreSettings, read_section

__all__ = ["ENV_SETTINGS", "SECTIONS", "Settings", "read_section"]

ENV_SETTINGS: Final = "DICOMVEIL_SERVE_SETTINGS"
"""Environment variable through which ``dicomveil serve`` hands settings to its workers."""

_MiB: Final = 1 << 20


@dataclass(frozen=True, slots=True)
class Settings(CoreSettings):
    """Everything the gateway is configured with (no secrets): the core settings (see
    :class:`~dicomveil.settings.CoreSettings`) and these.

    Attributes
    ----------
    import_root:
        The only folder server-side batches may read from (``None``: no server-side batches).
    max_body_bytes:
        Largest request body accepted (413 beyond).
    max_instance_bytes:
        Largest single instance (one part of a multipart body, or a raw body).
    qido_default_limit, qido_max_limit:
        Rows returned by a QIDO-RS search without, and at most with, ``limit``.
    case_insensitive_names:
        Match person names regardless of case (PS3.4 §C.2.2.2.1 allows either).
    public_url:
        The service's external base URL for RetrieveURL and BulkDataURI (default: taken
        from each request).
    max_json_bytes:
        Largest body of a route that takes JSON or no body at all (413 beyond): upload
        routes take up to ``max_body_bytes``, every other route this much.
    header_timeout:
        Seconds a client has to send a request's headers (the connection is closed then).
    body_timeout:
        Seconds a request body may pause between two reads (the connection is closed then).
    idle_timeout:
        Seconds an idle keep-alive connection is kept open.
    max_connections:
        Open connections per server process (``0``: half the process's file descriptor
        limit). Beyond it, the connection waiting longest for its request headers (or idle
        longest) is closed to make room; when none is waiting, the newcomer is refused.
    max_render_pixels:
        Largest image (rows × columns × frames rendered) ``/rendered`` and ``/thumbnail``
        decode; larger ones are refused with 413.
    docs:
        Serve the interactive API documentation at ``/docs`` (assets served locally).
    console:
        Serve the operator console at ``/console/``.
    console_session_seconds:
        How long a console session lasts after login.
    console_secure_cookie:
        Mark the session cookie ``Secure`` (off only for plain-HTTP tests on loopback).
    cors_origins:
        Origins (``https://viewer.example.org``) whose scripts may call DICOMweb with a
        bearer token (CORS); none by default.
    viewer:
        Serve the installed viewer (``dicomveil viewer install``) at ``/viewer/``.
    """

    import_root: Path | None = None
    max_body_bytes: int = 2048 * _MiB
    max_instance_bytes: int = 1024 * _MiB
    qido_default_limit: int = 100
    qido_max_limit: int = 1000
    case_insensitive_names: bool = True
    public_url: str | None = None
    max_json_bytes: int = 16 * 1024
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    idle_timeout: float = 5.0
    max_connections: int = 0
    max_render_pixels: int = 50_000_000
    docs: bool = True
    console: bool = True
    console_session_seconds: int = 8 * 3600
    console_secure_cookie: bool = True
    cors_origins: tuple[str, ...] = ()
    viewer: bool = True

    ENV: ClassVar[Mapping[str, str]] = {
        **CoreSettings.ENV,
        "import_root": "DICOMVEIL_IMPORT_ROOT",
        "max_body_bytes": "DICOMVEIL_MAX_BODY_BYTES",
    }
    PATHS: ClassVar[frozenset[str]] = CoreSettings.PATHS | {"import_root"}
    TUPLES: ClassVar[frozenset[str]] = CoreSettings.TUPLES | {"cors_origins"}
    STRICT: ClassVar[bool] = True

    def __post_init__(self) -> None:
        CoreSettings.__post_init__(self)
        if min(self.max_body_bytes, self.max_instance_bytes, self.max_json_bytes) <= 0:
            raise ConfigError("size limits must be positive")
        if min(self.header_timeout, self.body_timeout, self.idle_timeout) <= 0:
            raise ConfigError("timeouts must be positive")
        if self.max_connections < 0:
            raise ConfigError("max_connections must be 0 (automatic) or more")
        if self.max_render_pixels <= 0:
            raise ConfigError("max_render_pixels must be positive")
        if not 0 < self.qido_default_limit <= self.qido_max_limit:
            raise ConfigError("qido_default_limit must be between 1 and qido_max_limit")
        if self.console_session_seconds <= 0:
            raise ConfigError("console_session_seconds must be positive")
        for origin in self.cors_origins:
            check_origin(origin)


def check_origin(origin: str) -> None:
    """Refuse an origin that is not ``scheme://host[:port]`` (no path, no wildcard)."""
    from urllib.parse import urlsplit

    parts = urlsplit(origin)
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or origin != (f"{parts.scheme}://{parts.netloc}")
    ):
        raise ConfigError("a CORS origin is scheme://host[:port], without a path")
