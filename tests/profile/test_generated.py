"""The generated PS3.15 tables: provenance, freshness, strictness, and full coverage."""

from __future__ import annotations

import hashlib
import itertools
import json
from pathlib import Path

import pytest
from pydicom.datadict import dictionary_has_tag, dictionary_VR
from tools import gen_ps315

from dicomveil import __ps315_edition__
from dicomveil.engine.rules import Op, compile_policy
from dicomveil.profile import _ps315, _safe_private
from dicomveil.profile.options import Action, Option
from dicomveil.profile.policy import Policy
from dicomveil.profile.table import is_safe_private, row_for, rows

ROOT = Path(__file__).resolve().parents[2]
E11 = ROOT / "data/ps315/confidentiality_profile_attributes_2025b.json"
E3101 = ROOT / "data/ps315/safe_private_attributes_2025b.json"


class TestProvenance:
    def test_edition_and_hash_recorded(self) -> None:
        assert __ps315_edition__ == _ps315.EDITION == "2025b"
        assert _ps315.SOURCE_SHA256 == hashlib.sha256(E11.read_bytes()).hexdigest()
        assert _safe_private.SOURCE_SHA256 == hashlib.sha256(E3101.read_bytes()).hexdigest()

    def test_committed_modules_match_the_generator(self) -> None:
        outputs = gen_ps315.generate("2025b", E11, E3101)
        for path, text in outputs.items():
            assert path.read_text(encoding="utf-8") == text, f"{path.name} is stale or edited"

    def test_check_mode_passes(self) -> None:
        args = ["--edition", "2025b", "--source", str(E11), "--safe-private", str(E3101)]
        assert gen_ps315.main([*args, "--check"]) == 0

    def test_row_counts(self) -> None:
        assert len(rows()) == len(json.loads(E11.read_text()))
        assert len(_safe_private.ROWS) == 479


class TestGeneratorIsStrict:
    def _write(self, tmp_path: Path, rows_: object, name: str = "t_2025b.json") -> Path:
        path = tmp_path / name
        path.write_text(json.dumps(rows_))
        return path

    def test_wrong_edition(self, tmp_path: Path) -> None:
        path = self._write(tmp_path, [], "t_2024a.json")
        with pytest.raises(gen_ps315.GenerationError, match="edition 2024a"):
            gen_ps315.generate("2025b", path, None)

    def test_unknown_action_code(self) -> None:
        row = {"name": "X", "tag": "(0010,0010)", "id": "1", "stdCompIOD": "Y", "basicProfile": "Q"}
        with pytest.raises(gen_ps315.GenerationError, match="unknown action code"):
            gen_ps315.parse_e11([row])

    def test_malformed_tag(self) -> None:
        row = {"name": "X", "tag": "(0010;0010)", "id": "1", "stdCompIOD": "Y", "basicProfile": "X"}
        with pytest.raises(gen_ps315.GenerationError, match="malformed tag"):
            gen_ps315.parse_e11([row])

    def test_unknown_column(self) -> None:
        row = {"name": "X", "tag": "(0010,0010)", "id": "1", "stdCompIOD": "Y",
               "basicProfile": "X", "newOpt": "K"}  # fmt: skip
        with pytest.raises(gen_ps315.GenerationError, match="unknown column"):
            gen_ps315.parse_e11([row])

    def test_safe_private_in_even_group(self) -> None:
        data = {"rows": [{"tag": "(0018,xx0C)", "creator": "ACME", "vr": "IS"}]}
        with pytest.raises(gen_ps315.GenerationError, match="odd group"):
            gen_ps315.parse_safe_private(data)


class TestLookups:
    def test_exact_and_masked(self) -> None:
        assert row_for(0x00100010) is not None
        overlay = row_for(0x60223000)
        assert overlay is not None and overlay.name == "Overlay Data"
        assert row_for(0x50041234) is not None  # curve data
        assert row_for(0x00280010) is None  # Rows: not in the table

    def test_safe_private(self) -> None:
        assert is_safe_private("SIEMENS MR HEADER", 0x0019, 0x0C)
        assert is_safe_private("SIEMENS MR HEADER ", 0x0019, 0x0C)  # trailing space
        assert not is_safe_private("SIEMENS MR HEADER", 0x0019, 0xFE)
        assert not is_safe_private("ACME", 0x0019, 0x0C)


OPTION_COMBOS = [
    frozenset(combo)
    for n in range(3)
    for combo in itertools.combinations([o for o in Option if o is not Option.CLEAN_PIXEL_DATA], n)
    if not {Option.RETAIN_LONGITUDINAL_FULL_DATES, Option.RETAIN_LONGITUDINAL_MODIFIED_DATES}
    <= set(combo)
]


@pytest.mark.parametrize("vr_override", [None, "SQ"])
def test_every_row_maps_to_an_operation_for_every_option_combination(
    vr_override: str | None,
) -> None:
    """Table-driven: every row of Table E.1-1, under every combination of up to two options
    (and all of them), resolves to a known operation; nothing is ever passed through unknown."""
    combos = [*OPTION_COMBOS, frozenset(o for o in Option if o not in (
        Option.RETAIN_LONGITUDINAL_FULL_DATES, Option.CLEAN_PIXEL_DATA))]  # fmt: skip
    codes = {a.value for a in Action}
    for options in combos:
        compiled = compile_policy(Policy(options=options))
        for row in rows():
            assert row.basic in codes
            if row.tag == "odd" or "x" in row.tag:
                continue
            tag = int(row.tag, 16)
            if tag >> 16 == 0x0002:
                continue  # file meta: rewritten by the writer, never copied from the input
            vr = vr_override or (
                dictionary_VR(tag).split(" or ")[0] if dictionary_has_tag(tag) else "UN"
            )
            rule = compiled.rule(tag, vr)
            assert isinstance(rule.op, Op)
            assert rule.op is not Op.PRIVATE
            effective = {code for name, code in row.options if Option(name) in options}
            if not effective and row.basic == "X":
                assert rule.op is Op.REMOVE, row.name
            if "K" in effective and vr != "SQ":
                assert rule.op is Op.KEEP, row.name
