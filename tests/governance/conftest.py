"""The gateway's fixtures (an app on a fresh state folder, one token per role, demo files)."""

from tests.web.conftest import (  # noqa: F401 - fixtures, found by name
    anyio_backend,
    app,
    archive,
    client,
    demo_files,
    home,
    key_file,
    services,
    settings,
    tokens,
)
