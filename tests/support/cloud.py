"""Constants and helpers for the cloud storage emulators the test suite starts.

The session fixtures that start them (``s3_endpoint``, ``azurite``, ``gcs_endpoint``) live in
``tests/conftest.py`` so every test package shares one instance of each per session.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from tests.support.servers import require

REPO = Path(__file__).resolve().parents[2]
BUCKET = "dicomveil-test"
AWS_OPTIONS = {
    "aws_access_key_id": "testing",
    "aws_secret_access_key": "testing",
    "region_name": "us-east-1",
}
# The Azurite emulator's well-known development account key (public, documented by Microsoft).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)


def require_module(name: str, install: str) -> None:
    """Skip (or fail under CI) when the Python package providing ``name`` is missing."""
    require(f"{install} (Python package)", importlib.util.find_spec(name.partition(".")[0]))
    require(f"{install} (Python package)", importlib.util.find_spec(name))


def azurite_connection_string(port: int) -> str:
    """Return the connection string of an Azurite listening on ``port``."""
    return (
        f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
        f"BlobEndpoint=http://127.0.0.1:{port}/{AZURITE_ACCOUNT};"
    )
