#!/usr/bin/env python3
"""Generate dicomveil's PS3.15 tables from the project's copy of the standard's data.

Usage::

    python tools/gen_ps315.py --edition 2025b \\
        --source data/ps315/confidentiality_profile_attributes_2025b.json \\
        --safe-private data/ps315/safe_private_attributes_2025b.json [--check]

Writes ``src/dicomveil/profile/_ps315.py`` (Table E.1-1) and
``src/dicomveil/profile/_safe_private.py`` (Table E.3.10-1) deterministically: sorted rows,
stable formatting, no timestamps. ``--check`` regenerates in memory and exits 1 if a committed
module differs (a stale table or a hand edit). The edition asked for must match the edition
named in each source file's name, and every action code and tag must be known; anything else
is an error, never a warning.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUT_DIR = ROOT / "src" / "dicomveil" / "profile"

#: Table E.1-1 columns of the data file → dicomveil option names.
OPTION_COLUMNS: dict[str, str] = {
    "rtnSafePrivOpt": "retain-safe-private",
    "rtnUIDsOpt": "retain-uids",
    "rtnDevIdOpt": "retain-device-identity",
    "rtnInstIdOpt": "retain-institution-identity",
    "rtnPatCharsOpt": "retain-patient-characteristics",
    "rtnLongFullDatesOpt": "retain-longitudinal-full-dates",
    "rtnLongModifDatesOpt": "retain-longitudinal-modified-dates",
    "cleanDescOpt": "clean-descriptors",
    "cleanStructContOpt": "clean-structured-content",
    "cleanGraphOpt": "clean-graphics",
}
#: Action codes of PS3.15 Table E.1-1a.
KNOWN_CODES = frozenset({"D", "Z", "X", "K", "C", "U", "X/Z", "X/D", "X/Z/D", "Z/D", "X/Z/U*"})
KNOWN_FIELDS = frozenset({"name", "tag", "id", "stdCompIOD", "basicProfile", *OPTION_COLUMNS})
TAG_RE = re.compile(r"\(([0-9A-Fa-fXx]{4}),([0-9A-Fa-fXx]{4})\)")
ODD_GROUP_TAG = "(GGGG,EEEE) WHERE GGGG IS ODD"
SAFE_PRIVATE_TAG_RE = re.compile(r"\(([0-9A-Fa-f]{4}),xx([0-9A-Fa-f]{2})\)")
EDITION_RE = re.compile(r"_(\d{4}[a-e])\.json$")
SOURCE_URL = "https://dicom.nema.org/medical/dicom/{edition}/output/html/part15.html"


class GenerationError(Exception):
    """The source data is not what the generator expects."""


def _edition_of(path: Path, asked: str) -> str:
    match = EDITION_RE.search(path.name)
    if match is None:
        raise GenerationError(
            f"{path.name}: no edition in the file name (expected *_<edition>.json)"
        )
    if match.group(1) != asked:
        raise GenerationError(
            f"{path.name}: file is edition {match.group(1)}, but edition {asked} was asked for"
        )
    return asked


def _parse_tag(text: str) -> str:
    if text.strip().upper() == ODD_GROUP_TAG:
        return "odd"
    match = TAG_RE.fullmatch(text.strip())
    if match is None:
        raise GenerationError(f"malformed tag {text!r}")
    return (match.group(1) + match.group(2)).lower()


def _code(value: Any, where: str) -> str:
    if not isinstance(value, str) or value not in KNOWN_CODES:
        raise GenerationError(f"{where}: unknown action code {value!r}")
    return value


def parse_e11(data: Any) -> list[tuple[str, str, bool, str, tuple[tuple[str, str], ...]]]:
    """Validate Table E.1-1 rows and return them as plain tuples, sorted by tag."""
    if not isinstance(data, list):
        raise GenerationError("Table E.1-1 source must be a JSON list")
    rows = []
    seen: set[str] = set()
    for raw in data:
        if not isinstance(raw, dict):
            raise GenerationError(f"row is not an object: {raw!r}")
        unknown = set(raw) - KNOWN_FIELDS
        if unknown:
            raise GenerationError(f"{raw.get('tag')}: unknown column(s) {sorted(unknown)}")
        tag = _parse_tag(str(raw["tag"]))
        if tag in seen:
            raise GenerationError(f"duplicate tag {raw['tag']}")
        seen.add(tag)
        if raw["stdCompIOD"] not in ("Y", "N"):
            raise GenerationError(f"{raw['tag']}: stdCompIOD must be Y or N")
        basic = _code(raw["basicProfile"], f"{raw['tag']} basicProfile")
        options = tuple(
            sorted(
                (OPTION_COLUMNS[col], _code(raw[col], f"{raw['tag']} {col}"))
                for col in OPTION_COLUMNS
                if col in raw
            )
        )
        name = " ".join(re.sub(r"\(see Note \d+\)", "", str(raw["name"])).split())
        rows.append((tag, name, raw["stdCompIOD"] == "Y", basic, options))
    rows.sort(key=lambda r: r[0])
    return rows


def parse_safe_private(data: Any) -> list[tuple[str, str, str, str, str]]:
    """Validate Table E.3.10-1 rows and return them as plain tuples, sorted."""
    if not isinstance(data, dict) or not isinstance(data.get("rows"), list):
        raise GenerationError("Table E.3.10-1 source must be an object with a 'rows' list")
    rows = []
    seen: set[tuple[str, str, str]] = set()
    if not data["rows"]:
        raise GenerationError("Table E.3.10-1 source has no rows")
    for raw in data["rows"]:
        if not isinstance(raw, dict):
            raise GenerationError(f"row is not an object: {raw!r}")
        match = SAFE_PRIVATE_TAG_RE.fullmatch(str(raw.get("tag", "")).strip())
        if match is None:
            raise GenerationError(f"malformed safe private tag {raw.get('tag')!r}")
        group, element = match.group(1).lower(), match.group(2).lower()
        if int(group, 16) % 2 == 0:
            raise GenerationError(f"safe private tag {raw['tag']} is not in an odd group")
        creator = str(raw.get("creator", "")).rstrip()
        if not creator:
            raise GenerationError(f"{raw['tag']}: missing private creator")
        key = (creator, group, element)
        if key in seen:
            raise GenerationError(f"duplicate safe private row {raw['tag']} {creator!r}")
        seen.add(key)
        vr = str(raw.get("vr", "")).strip()
        rows.append((creator, group, element, vr, str(raw.get("name", "")).strip()))
    rows.sort()
    return rows


def render_e11(edition: str, source: Path, digest: str, rows: list[Any]) -> str:
    lines = [
        '"""GENERATED by tools/gen_ps315.py from PS3.15 Table E.1-1. Do not edit."""',
        "",
        "from __future__ import annotations",
        "",
        "from typing import Final",
        "",
        "from dicomveil.profile._rows import Ps315Row",
        "",
        f"EDITION: Final = {edition!r}",
        f"SOURCE_URL: Final = {SOURCE_URL.format(edition=edition)!r}",
        f"SOURCE_FILE: Final = {source.relative_to(ROOT).as_posix()!r}",
        f"SOURCE_SHA256: Final = {digest!r}",
        "",
        "ROWS: Final[tuple[Ps315Row, ...]] = (",
    ]
    for tag, name, std, basic, options in rows:
        lines.append(f"    Ps315Row({tag!r}, {name!r}, {std!r}, {basic!r}, {options!r}),")
    lines.append(")")
    return "\n".join(lines) + "\n"


def render_safe_private(edition: str, source: Path, digest: str, rows: list[Any]) -> str:
    lines = [
        '"""GENERATED by tools/gen_ps315.py from PS3.15 Table E.3.10-1. Do not edit."""',
        "",
        "from __future__ import annotations",
        "",
        "from typing import Final",
        "",
        "from dicomveil.profile._rows import SafePrivateRow",
        "",
        f"EDITION: Final = {edition!r}",
        f"SOURCE_URL: Final = {SOURCE_URL.format(edition=edition)!r}",
        f"SOURCE_FILE: Final = {source.relative_to(ROOT).as_posix()!r}",
        f"SOURCE_SHA256: Final = {digest!r}",
        "",
        "ROWS: Final[tuple[SafePrivateRow, ...]] = (",
    ]
    for row in rows:
        lines.append(f"    SafePrivateRow{row!r},")
    lines.append(")")
    return "\n".join(lines) + "\n"


def generate(edition: str, source: Path, safe_private: Path | None) -> dict[Path, str]:
    """Return ``{output path: module text}`` for the given sources."""
    outputs: dict[Path, str] = {}
    raw = source.read_bytes()
    _edition_of(source, edition)
    outputs[OUT_DIR / "_ps315.py"] = render_e11(
        edition, source.resolve(), hashlib.sha256(raw).hexdigest(), parse_e11(json.loads(raw))
    )
    if safe_private is not None:
        raw_sp = safe_private.read_bytes()
        _edition_of(safe_private, edition)
        outputs[OUT_DIR / "_safe_private.py"] = render_safe_private(
            edition,
            safe_private.resolve(),
            hashlib.sha256(raw_sp).hexdigest(),
            parse_safe_private(json.loads(raw_sp)),
        )
    return outputs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--edition", required=True, help="DICOM edition, e.g. 2025b")
    parser.add_argument("--source", required=True, type=Path, help="Table E.1-1 JSON file")
    parser.add_argument("--safe-private", type=Path, help="Table E.3.10-1 JSON file")
    parser.add_argument("--check", action="store_true", help="fail if committed modules differ")
    args = parser.parse_args(argv)
    try:
        outputs = generate(args.edition, args.source, args.safe_private)
    except (GenerationError, OSError, json.JSONDecodeError) as exc:
        print(f"gen_ps315: error: {exc}", file=sys.stderr)
        return 2
    stale = []
    for path, text in outputs.items():
        if args.check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(path)
        else:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path.relative_to(ROOT)}")
    if stale:
        for path in stale:
            print(
                f"gen_ps315: {path.relative_to(ROOT)} differs from the generator's output",
                file=sys.stderr,
            )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
