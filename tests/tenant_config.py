"""Settings files declaring organisations (tenants), for the tests of issue #14."""

from __future__ import annotations

from pathlib import Path

from dicomveil.keystore import create_key_file


def write_organisations(folder: Path, prefixes: dict[str, str], own_keys: tuple[str, ...]) -> Path:
    """Write ``folder/dicomveil.toml`` declaring each organisation of ``prefixes`` (code →
    pseudonym prefix); those in ``own_keys`` get their own key, ``folder/<code>.key``."""
    text = ""
    for code, prefix in prefixes.items():
        text += f'[organisations.{code}]\npseudonym_prefix = "{prefix}"\n'
        if code in own_keys:
            create_key_file(folder / f"{code.lower()}.key")
            text += f'key_file = "{code.lower()}.key"\n'
        text += "\n"
    config = folder / "dicomveil.toml"
    config.write_text(text, encoding="utf-8")
    return config
