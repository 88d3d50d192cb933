"""Envelope encryption of dicomveil's keys with AWS KMS.

A KMS-wrapped key file holds one line of JSON, never the key::

    {"dicomveil": "kms-wrapped-key", "version": 1, "name": "vault",
     "kms_key_id": "arn:aws:kms:...", "ciphertext": "<base64 of the wrapped data key>"}

``GenerateDataKey`` (AES-256) makes a new key: KMS returns it in clear (used, never written)
and wrapped (written). ``Decrypt`` unwraps it when a command starts; the encryption context
``{"dicomveil-key": name}`` binds a wrapped key to its purpose (a wrapped audit key cannot be
unwrapped as the vault key). A copy of the state folder then reveals nothing without the KMS.

Any failure to reach or use the KMS (no credentials, access denied, key disabled, network) is a
:class:`~dicomveil.errors.ConfigError` naming the key file and the error *code* only: the
commands stop with an error line, never with a key or a traceback (fail closed).

The endpoint, region and credentials come from boto3's usual sources (``AWS_REGION``,
``AWS_ENDPOINT_URL_KMS``, profiles, instance roles). Needs ``pip install 'dicomveil[kms]'``.
"""

from __future__ import annotations

import base64
import binascii
import json
from pathlib import Path
from typing import Any, Final

from dicomveil.errors import ConfigError

__all__ = ["MARKER", "generate_wrapped_key", "is_wrapped", "unwrap_key"]

MARKER: Final = "kms-wrapped-key"
_VERSION: Final = 1


def is_wrapped(text: str) -> bool:
    """Whether a key file's text is a KMS-wrapped key (rather than a key)."""
    stripped = text.strip()
    return stripped.startswith("{") and MARKER in stripped


def _client() -> Any:
    try:
        import boto3
    except ImportError:
        raise ConfigError("KMS-wrapped keys need boto3: pip install 'dicomveil[kms]'") from None
    try:
        return boto3.client("kms")
    except Exception as exc:  # noqa: BLE001 - any setup error fails closed, value-free
        raise ConfigError(f"the KMS client cannot be set up ({type(exc).__name__})") from None


def _code(exc: Exception) -> str:
    """The error's code (``AccessDeniedException``...) or class name: never its text."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        if isinstance(code, str) and code.isprintable() and len(code) < 80:
            return code
    return type(exc).__name__


def _secret(plaintext: bytes) -> bytes:
    """The key text of a 256-bit data key (the same form as a local key file's line)."""
    return base64.urlsafe_b64encode(plaintext).rstrip(b"=")


def generate_wrapped_key(name: str, kms_key_id: str) -> tuple[bytes, str]:
    """Have KMS make a new data key; return (the key, the wrapped key file's line).

    Raises
    ------
    ConfigError
        The KMS refused or cannot be reached.
    """
    try:
        answer = _client().generate_data_key(
            KeyId=kms_key_id, KeySpec="AES_256", EncryptionContext={"dicomveil-key": name}
        )
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001 - botocore raises many types; all fail closed
        raise ConfigError(f"{name} key: the KMS refused a new data key ({_code(exc)})") from None
    line = json.dumps(
        {
            "dicomveil": MARKER,
            "version": _VERSION,
            "name": name,
            "kms_key_id": str(answer["KeyId"]),
            "ciphertext": base64.b64encode(answer["CiphertextBlob"]).decode("ascii"),
        }
    )
    return _secret(answer["Plaintext"]), line


def unwrap_key(text: str, path: Path, what: str) -> tuple[bytes, str]:
    """Unwrap the key in a wrapped key file's ``text``; return (the key, the KMS key id).

    Raises
    ------
    ConfigError
        The file is not a valid wrapped key, or the KMS cannot unwrap it.
    """
    try:
        data = json.loads(text)
        blob = base64.b64decode(data["ciphertext"], validate=True)
        kms_key_id = str(data["kms_key_id"])
        name = str(data["name"])
        valid = data.get("dicomveil") == MARKER and data.get("version") == _VERSION
    except (ValueError, KeyError, TypeError, binascii.Error):
        valid = False
    if not valid:
        raise ConfigError(f"{what}: key file {path} is not a valid KMS-wrapped key")
    if f"{name} key" != what:
        raise ConfigError(f"{what}: key file {path} holds the wrapped {name} key")
    try:
        answer = _client().decrypt(
            CiphertextBlob=blob, KeyId=kms_key_id, EncryptionContext={"dicomveil-key": name}
        )
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001 - botocore raises many types; all fail closed
        raise ConfigError(
            f"{what}: the KMS cannot unwrap key file {path} ({_code(exc)}); nothing runs without it"
        ) from None
    return _secret(answer["Plaintext"]), kms_key_id
