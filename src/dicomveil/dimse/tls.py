"""DICOM TLS contexts for the node (PS3.15 Annex B.1: TLS for DICOM associations)."""

from __future__ import annotations

import ssl

from dicomveil.dimse.settings import TlsSettings
from dicomveil.errors import ConfigError

__all__ = ["client_context", "server_context"]


def server_context(settings: TlsSettings) -> ssl.SSLContext:
    """The listener's TLS context (client certificates required when configured).

    Raises
    ------
    ConfigError
        A certificate, key or CA file cannot be read or does not match.
    """
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    _load(context, settings)
    if settings.require_client_certificate:
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def client_context(settings: TlsSettings) -> ssl.SSLContext:
    """A TLS context for associations the node opens (C-MOVE to a TLS destination)."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = False  # DICOM peers are named by AE title, not host name
    _load(context, settings)
    return context


def _load(context: ssl.SSLContext, settings: TlsSettings) -> None:
    try:
        context.load_cert_chain(settings.certificate, settings.private_key)
        if settings.ca_certificates is not None:
            context.load_verify_locations(settings.ca_certificates)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"[dimse.tls]: a certificate, key or CA file fails: {exc}") from None
