"""Under clean-pixel-data no path passes an image whose pixels were not examined."""

from __future__ import annotations

from pathlib import Path

import pytest
from benchmarks.pixel_corpus import make_sample, to_dataset

from dicomveil.engine.deidentify import deidentify
from dicomveil.engine.keys import PseudonymKeys
from dicomveil.engine.rules import compile_policy
from dicomveil.errors import UnsupportedInputError
from dicomveil.pipeline import files
from dicomveil.profile.policy import Policy, policy_from_mapping

KEYS = PseudonymKeys(b"guard-test-secret-0123456789abcdef")


def _ct(tmp_path: Path) -> Path:
    ds = to_dataset(make_sample("ct", 1, rows=32, columns=32, texts=0, kind="disc"))
    ds.Modality = "CT"  # not a class that "often" carries text, no Burned In Annotation
    path = tmp_path / "ct.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path


def test_engine_refuses_unexamined_pixels() -> None:
    ds = to_dataset(make_sample("ct", 1, rows=32, columns=32, texts=0, kind="disc"))
    policy = Policy.from_names(["clean-pixel-data"])
    with pytest.raises(UnsupportedInputError, match="not examined"):
        deidentify(ds, policy, KEYS)
    assert deidentify(ds, policy, KEYS, pixels_checked=True).dataset.PatientIdentityRemoved


def test_fast_path_leaves_images_to_the_cleaner(tmp_path: Path) -> None:
    compiled = compile_policy(Policy.from_names(["clean-pixel-data"]))
    source = _ct(tmp_path)
    assert files._fast(source, tmp_path / "out", compiled, KEYS, False, False) is None
    plain = compile_policy(Policy())
    assert files._fast(source, tmp_path / "out2", plain, KEYS, False, False) is not None


def test_trusted_no_is_not_examined(tmp_path: Path) -> None:
    ds = to_dataset(make_sample("ct", 1, rows=32, columns=32, texts=0, kind="disc"))
    ds.BurnedInAnnotation = "NO"
    path = tmp_path / "no.dcm"
    ds.save_as(path, enforce_file_format=True)
    policy = policy_from_mapping(
        {"options": ["clean-pixel-data"], "trust_burned_in_annotation_no": True}
    )
    outcome = files.deidentify_file(path, tmp_path / "out", compile_policy(policy), KEYS)
    assert outcome.status == "ok"
    assert "clean-pixel-data" not in outcome.operations  # trusted, not examined


def test_trust_setting_survives_a_batch_journal() -> None:
    from dicomveil.pipeline.batch_state import policy_to_mapping

    policy = Policy.from_names(["clean-pixel-data"], trust_burned_in_annotation_no=True)
    assert policy_from_mapping(policy_to_mapping(policy)) == policy
    assert policy.with_options(["retain-uids"]).trust_burned_in_annotation_no
    assert "trust_burned_in_annotation_no" not in policy_to_mapping(Policy())  # unchanged
