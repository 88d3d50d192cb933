"""The mutation fuzz campaign, bounded for the test suite, and pydicom's test files.

``test_mutation_campaign`` makes a few hundred hostile variants of pydicom's test files and the
demo study (:mod:`tests.fuzz.mutator`: truncations, lying lengths, wrong VRs, deep nesting,
deflate bombs, character-set garbage, broken encapsulation, missing identifiers, hostile UIDs,
duplicates), de-identifies them folder by folder with the real ``dicomveil deid`` under every
option set in turn, and checks every promise of :mod:`tests.fuzz.campaign` (no traceback, no
hang, bounded RSS, every input accounted for, nothing outside DEST, no planted value in any
output, ``verify`` clean) and that the fast path and the reference agree on every mutant both
accept (:mod:`tests.fuzz.agree`). The long campaign (``benchmarks/fuzz_campaign.py``) runs the
same code on 10,000+ mutants; its figures are in ``docs/fuzz.md``.

``TestPydicomFiles`` de-identifies every pydicom test file all together (the command line,
once per option set, then ``verify``) and one by one (the per-file unit, in a child process).

A finding prints the recipe of the mutant (kind, detail, base file, seed, index): reproduce it
with ``python -m tests.fuzz.mutator --seed S --index I --out DIR``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.fuzz.campaign import (
    OPTION_SETS,
    SPECIALS,
    compare_folder,
    explain,
    run_campaign,
    run_deid,
)
from tests.fuzz.mutator import KINDS, PYDICOM_DATA, mutants, pydicom_test_files

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::UserWarning")]

SEED = 20261203
MUTANTS = 260
"""About 280 files (duplicate groups are three files), 12 folders: every option set but one
gets a folder, in turn. About a minute on two cores."""
FOLDER = 24
IN_SUITE_KINDS: tuple[str, ...] = tuple(KINDS)
"""Every kind of damage the mutator knows is in the suite's campaign."""


def test_mutation_campaign(tmp_path: Path) -> None:
    made = list(mutants(SEED, MUTANTS, kinds=IN_SUITE_KINDS, duplicate_every=40))
    batches, batch = [], []
    for item in made:  # a duplicate group stays in one folder
        batch.append(item)
        if len(batch) >= FOLDER and not (item.group and item.detail != "different"):
            batches.append(batch)
            batch = []
    batches.append(batch)
    figures = run_campaign(batches, tmp_path, list(OPTION_SETS), timeout=120, specials_every=99)
    assert figures.files == len(made) + SPECIALS  # the first folder also has special files
    assert figures.problems == [], "\n".join(explain(figures.problems, made))
    assert (figures.crashes, figures.hangs, figures.leaks, figures.escapes) == (0, 0, 0, 0)
    assert figures.compared > len(made) // 4  # the comparison really compared


@pytest.fixture(scope="module")
def pydicom_source(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    """A copy of every pydicom test file, in pydicom's own folder layout."""
    source = tmp_path_factory.mktemp("pydicom") / "source"
    files = pydicom_test_files()
    for path in files:
        target = source / path.relative_to(PYDICOM_DATA)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    return source, len(files)


class TestPydicomFiles:
    @pytest.mark.parametrize("option_set", list(OPTION_SETS))
    def test_all_together(
        self, option_set: str, pydicom_source: tuple[Path, int], tmp_path: Path
    ) -> None:
        source, count = pydicom_source
        run = run_deid(source, tmp_path, option_set, inputs=count)
        assert run.problems == []
        assert run.outputs > count // 3

    def test_one_by_one(self, pydicom_source: tuple[Path, int], tmp_path: Path) -> None:
        """Every file alone through the per-file unit, under every option set."""
        source, count = pydicom_source
        lines, finished = compare_folder(
            source, tmp_path, list(OPTION_SETS), single=True, timeout=600
        )
        assert finished.code == 0
        assert len(lines) == count * len(OPTION_SETS)
        problems = [
            f"{line['set']} {line['name']}: {p}" for line in lines for p in line["problems"]
        ]
        assert problems == []
        assert all(line["reference"] in ("ok", "failed", "skipped") for line in lines)
