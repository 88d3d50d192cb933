"""Every DICOM file shipped with pydicom, through the real pipeline: readable output in the
input's transfer syntax, pixel bytes untouched, no new IOD errors, and nothing leaks."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pydicom
import pytest

from dicomveil.dicomio import read_instance
from dicomveil.engine.keys import PseudonymKeys
from dicomveil.engine.rules import compile_policy
from dicomveil.pipeline.files import deidentify_file
from dicomveil.pipeline.verify import verify_folders
from dicomveil.profile.options import Option
from dicomveil.profile.policy import Policy
from tests.support.servers import require_binary

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

KEYS = PseudonymKeys(b"corpus-test-secret-0123456789")
TEST_FILES = Path(pydicom.data.__file__).parent / "test_files"
CHARSET_FILES = Path(pydicom.data.__file__).parent / "charset_files"
CORPUS = sorted(p for p in [*TEST_FILES.rglob("*"), *CHARSET_FILES.glob("*.dcm")] if p.is_file())
#: Transfer syntaxes that must each be exercised at least once.
REQUIRED_SYNTAXES = {
    "1.2.840.10008.1.2",  # implicit VR little endian
    "1.2.840.10008.1.2.1",  # explicit VR little endian
    "1.2.840.10008.1.2.2",  # explicit VR big endian
    "1.2.840.10008.1.2.1.99",  # deflated
    "1.2.840.10008.1.2.4.50",  # JPEG baseline
    "1.2.840.10008.1.2.4.90",  # JPEG 2000 lossless
    "1.2.840.10008.1.2.5",  # RLE lossless
}


def _pixel_bytes(path: Path) -> bytes | None:
    span = read_instance(path).pixel
    if span is None:
        return None
    if span.data is not None:
        return bytes(span.data)
    with path.open("rb") as handle:
        handle.seek(span.offset + span.header_length)
        return handle.read(span.length - span.header_length)


@pytest.fixture(scope="module")
def processed(tmp_path_factory: pytest.TempPathFactory) -> dict[Path, Path]:
    """De-identify the whole corpus once; map each input to its output."""
    dest = tmp_path_factory.mktemp("corpus-out")
    compiled = compile_policy(Policy(allow_burned_in_annotation=True))
    done: dict[Path, Path] = {}
    for index, source in enumerate(CORPUS):
        # several pydicom files share a SOP Instance UID: one folder each
        outcome = deidentify_file(source, dest / str(index), compiled, KEYS)
        if outcome.status == "ok":
            done[source] = dest / str(index) / outcome.output
    return done


def test_most_of_the_corpus_is_processed(processed: dict[Path, Path]) -> None:
    assert len(processed) > 100
    syntaxes = {str(pydicom.dcmread(o, stop_before_pixels=True).file_meta.TransferSyntaxUID)
                for o in processed.values()}  # fmt: skip
    assert syntaxes >= REQUIRED_SYNTAXES


def test_output_keeps_transfer_syntax_and_pixel_bytes(processed: dict[Path, Path]) -> None:
    for source, output in processed.items():
        original = pydicom.dcmread(source, stop_before_pixels=True, force=True)
        result = pydicom.dcmread(output, stop_before_pixels=True)
        source_ts = getattr(original, "file_meta", {}).get("TransferSyntaxUID")
        if source_ts:
            assert result.file_meta.TransferSyntaxUID == source_ts, source.name
        if str(source_ts) != "1.2.840.10008.1.2.1.99":  # deflated is re-compressed
            assert _pixel_bytes(output) == _pixel_bytes(source), source.name


def test_decoded_pixels_are_unchanged() -> None:
    """Encapsulated pixel data decodes to the same values after de-identification."""
    np = pytest.importorskip("numpy")
    for name in ("JPEG2000.dcm", "MR_small_RLE.dcm", "SC_rgb_jpeg_dcmtk.dcm", "MR_small.dcm"):
        source = TEST_FILES / name
        out = Path(f"/tmp/dicomveil-pixels-{name}")  # noqa: S108 - unique per name
        dest = out.parent / (out.name + ".d")
        outcome = deidentify_file(source, dest, compile_policy(Policy()), KEYS)
        assert outcome.status == "ok", outcome.reason
        before = pydicom.dcmread(source).pixel_array
        after = pydicom.dcmread(dest / outcome.output).pixel_array
        assert np.array_equal(before, after), name


def test_nothing_leaks(processed: dict[Path, Path], tmp_path: Path) -> None:
    originals, outputs = tmp_path / "o", tmp_path / "d"
    originals.mkdir()
    outputs.mkdir()
    for index, (source, output) in enumerate(processed.items()):
        (originals / f"{index}.dcm").symlink_to(source)
        (outputs / f"{index}.dcm").symlink_to(output)
    result = verify_folders(originals, outputs, Policy())
    assert result.needles > 500
    assert result.leaks == []


#: Files shipped inside the pydicom wheel (others would be downloaded: no network here).
IOD_SAMPLES = (
    "CT_small.dcm", "MR_small.dcm", "JPEG2000.dcm", "rtplan.dcm", "rtdose.dcm", "rtstruct.dcm",
    "test-SR.dcm", "waveform_ecg.dcm", "examples_ybr_color.dcm", "SC_rgb_jpeg_dcmtk.dcm",
    "MR_small_RLE.dcm", "JPEG-lossy.dcm", "SC_rgb_small_odd.dcm",
)  # fmt: skip


def _iod_errors(path: Path, dciodvfy: str) -> set[str]:
    run = subprocess.run([dciodvfy, str(path)], capture_output=True, text=True, check=False)
    errors = set()
    for line in run.stderr.splitlines():
        if line.startswith("Error"):
            # compare by message, not by the values it quotes
            errors.add(re.sub(r"<[^>]*>|\"[^\"]*\"|[\d.]+", "#", line))
    return errors


@pytest.mark.parametrize(
    "options",
    [
        [],
        [
            o.value
            for o in Option
            if o not in (Option.RETAIN_LONGITUDINAL_FULL_DATES, Option.CLEAN_PIXEL_DATA)
        ],
    ],  # fmt: skip
    ids=["basic", "all-options"],
)
def test_no_new_iod_errors(options: list[str], tmp_path: Path) -> None:
    """De-identified output must not gain dciodvfy errors compared with its input."""
    dciodvfy = require_binary("dciodvfy")
    compiled = compile_policy(Policy.from_names(options, allow_burned_in_annotation=True))
    checked = 0
    for name in IOD_SAMPLES:
        source = TEST_FILES / name
        outcome = deidentify_file(source, tmp_path, compiled, KEYS)
        assert outcome.status == "ok", (name, outcome.reason)
        new = _iod_errors(tmp_path / outcome.output, dciodvfy) - _iod_errors(source, dciodvfy)
        assert new == set(), name
        checked += 1
    assert checked == len(IOD_SAMPLES)
