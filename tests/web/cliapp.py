"""The ``serve`` and ``tokens`` commands in a Typer app, runnable as ``python -m``.

The real entry point is ``dicomveil.cli.main``; this one holds exactly the modules under
test, so the gateway tests run the same commands whether or not they are registered there.
"""

from __future__ import annotations

import os
import resource

import typer

from dicomveil.cli import serve, tokens

app = typer.Typer(pretty_exceptions_enable=False)
serve.register(app)
tokens.register(app)

if __name__ == "__main__":
    if nofile := os.environ.pop(
        "DICOMVEIL_TEST_NOFILE", ""
    ):  # a test's fd limit (see running_gateway)
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        resource.setrlimit(resource.RLIMIT_NOFILE, (int(nofile), hard))
    app()
