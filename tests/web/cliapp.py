"""The ``serve`` and ``tokens`` commands in a Typer app, runnable as ``python -m``.

The real entry point is ``dicomveil.cli.main``; this one holds exactly the modules under
test, so the gateway tests run the same commands whether or not they are registered there.
"""

from __future__ import annotations

import typer

from dicomveil.cli import serve, tokens

app = typer.Typer(pretty_exceptions_enable=False)
serve.register(app)
tokens.register(app)

if __name__ == "__main__":
    app()
