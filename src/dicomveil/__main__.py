"""``python -m dicomveil``."""

from dicomveil.cli.main import run

run()
