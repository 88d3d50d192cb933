"""Synthetic images with burned-in text whose position is known: the corpus of
``benchmarks/pixel_bench.py`` and of ``tests/redaction``.

Each image is a background (speckled ultrasound sector, smooth "anatomy", a CT-like disc) with
PHI-like text rendered by Pillow (names, IDs, dates; DejaVu fonts when installed, else Pillow's
own font at several scales; sizes 9-32 px; bright or dark, high or low contrast; horizontal or
vertical), stored as a DICOM instance whose header holds the same values. The boxes and pixel
masks of the rendered text are returned with it, so a tool's output can be scored:

- a PHI box (the value only, not a label such as "ID") is *removed* when its text pixels no
  longer show: at least 90 % of them changed value or lie in a flat patch of the output;
- a pixel is *non-text* when it lies farther than ``MARGIN`` pixels from every text box; the
  share of those left exactly as they were is the *preserved* rate.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw, ImageFont
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

__all__ = [
    "MARGIN",
    "Sample",
    "TextBox",
    "fonts",
    "make_sample",
    "removed",
    "preserved",
    "to_dataset",
]

MARGIN: Final = 12
"""Pixels around a text box that a cleaner may fill without losing 'non-text' pixels."""
FONT_DIR: Final = Path("/usr/share/fonts/truetype/dejavu")
FONT_NAMES: Final = (
    "DejaVuSans.ttf",
    "DejaVuSansMono.ttf",
    "DejaVuSerif.ttf",
    "DejaVuSans-Bold.ttf",
    "DejaVuSansCondensed.ttf",
)
FIRST: Final = ("JOHN", "ANNA", "MARIE", "PETER", "LUCAS", "EMMA", "OMAR", "SOFIA", "IVAN", "JANE")
LAST: Final = ("DOE", "SMITH", "MULLER", "GARCIA", "NGUYEN", "ROSSI", "KOWALSKI", "DUBOIS", "SATO")

Array = npt.NDArray[np.generic]


@dataclass(frozen=True)
class TextBox:
    """One rendered string: its rectangle ``[top, bottom) x [left, right)`` and text."""

    text: str
    top: int
    left: int
    bottom: int
    right: int
    size: int
    vertical: bool = False


@dataclass
class Sample:
    """A rendered image: stored values (``(frames, rows, columns[, 3])``), the PHI text boxes
    (values only), the mask of text pixels, the identifying values planted in the header, and
    the boxes of the labels written before some values ("ID", "DOB": text, but not PHI)."""

    name: str
    pixels: Array
    boxes: list[TextBox]
    mask: npt.NDArray[np.bool_]
    photometric: str = "MONOCHROME2"
    signed: bool = False
    bits: int = 8
    header: dict[str, str] = field(default_factory=dict)
    labels: list[TextBox] = field(default_factory=list)


def fonts() -> list[ImageFont.FreeTypeFont | ImageFont.ImageFont]:
    """The fonts to render with: DejaVu faces if installed, else Pillow's default font."""
    found = [FONT_DIR / name for name in FONT_NAMES if (FONT_DIR / name).exists()]
    if found:
        return [ImageFont.truetype(str(path), 16) for path in found]
    return [ImageFont.load_default()]


def _font(base: ImageFont.FreeTypeFont | ImageFont.ImageFont, size: int) -> ImageFont.ImageFont:
    if isinstance(base, ImageFont.FreeTypeFont):
        return base.font_variant(size=size)
    return ImageFont.load_default(size=size)


def background(
    kind: str, rows: int, columns: int, rng: np.random.Generator
) -> npt.NDArray[np.float64]:
    """A text-free image in [0, 1]: ``speckle`` (ultrasound sector), ``smooth`` (blobs),
    ``disc`` (CT-like body with noise), ``flat`` (dark, uniform)."""
    yy, xx = np.mgrid[:rows, :columns].astype(np.float64)
    if kind == "speckle":
        angle = np.arctan2(xx - columns / 2, yy + rows * 0.1)
        radius = np.hypot(xx - columns / 2, yy + rows * 0.1)
        sector = (np.abs(angle) < 0.6) & (radius < rows * 0.95)
        tissue = rng.rayleigh(0.12, (rows, columns)) + 0.25 * np.exp(
            -(((yy - rows / 2) / (rows / 5)) ** 2 + ((xx - columns / 2) / (columns / 6)) ** 2)
        )
        return np.clip(tissue * sector + 0.01, 0, 1)
    if kind == "smooth":
        image = np.zeros((rows, columns))
        for _ in range(6):
            cy, cx = rng.uniform(0, rows), rng.uniform(0, columns)
            sy, sx = rng.uniform(rows / 12, rows / 4), rng.uniform(columns / 12, columns / 4)
            image += rng.uniform(0.2, 0.6) * np.exp(
                -(((yy - cy) / sy) ** 2 + ((xx - cx) / sx) ** 2)
            )
        return np.clip(image + rng.normal(0, 0.01, image.shape), 0, 1)
    if kind == "disc":
        body = np.hypot((yy - rows / 2) / (rows * 0.42), (xx - columns / 2) / (columns * 0.38)) < 1
        image = 0.05 + 0.35 * body + rng.normal(0, 0.02, (rows, columns)) * body
        organ = np.hypot((yy - rows * 0.45) / (rows * 0.1), (xx - columns * 0.4) / (columns * 0.12))
        return np.clip(image + 0.2 * (organ < 1), 0, 1)
    return np.full((rows, columns), 0.02)


def phi_strings(rng: random.Random) -> dict[str, str]:
    """A patient's identifying values, as a header holds them."""
    return {
        "PatientName": f"{rng.choice(LAST)}^{rng.choice(FIRST)}",
        "PatientID": f"{rng.randrange(10**6, 10**8)}",
        "PatientBirthDate": (
            f"{rng.randrange(1930, 2015)}{rng.randrange(1, 13):02d}{rng.randrange(1, 29):02d}"
        ),
        "AccessionNumber": f"A{rng.randrange(10**5, 10**7)}",
    }


def written(header: dict[str, str], rng: random.Random) -> list[tuple[str, str]]:
    """How the header's values appear burned in (several written forms), as ``(label,
    value)``: the label ("ID", "DOB", ...) is text but not PHI; only the value is scored."""
    last, first = header["PatientName"].split("^")
    birth = header["PatientBirthDate"]
    y, m, d = birth[:4], birth[4:6], birth[6:]
    patient_id = header["PatientID"]
    return [
        ("", rng.choice([f"{last}^{first}", f"{last}, {first}", f"{first} {last}"])),
        rng.choice([("ID", patient_id), ("MRN:", patient_id), ("", patient_id)]),
        rng.choice([("", f"{y}-{m}-{d}"), ("", f"{d}/{m}/{y}"), ("DOB", f"{m}.{d}.{y}")]),
        ("Acc", header["AccessionNumber"]),
    ]


def _split_box(
    box: tuple[int, int, int, int], font: ImageFont.ImageFont, label: str, vertical: bool
) -> tuple[tuple[int, int, int, int], tuple[int, int, int, int] | None]:
    """The parts of a rendered ``label value`` box that show the value and the label."""
    if not label:
        return box, None
    offset = int(font.getlength(label + " "))  # type: ignore[attr-defined]
    top, left, bottom, right = box
    if vertical:  # turned 90 degrees counter-clockwise: the string starts at the bottom
        return (top, left, bottom - offset, right), (bottom - offset, left, bottom, right)
    return (top, left + offset, bottom, right), (top, left, bottom, left + offset)


def _draw(
    canvas: Image.Image, text: str, font: ImageFont.ImageFont, at: tuple[int, int], vertical: bool
) -> tuple[Image.Image, tuple[int, int, int, int]] | None:
    """Render ``text`` (white on black) and return its mask image placed at ``at`` and its
    box; ``None`` when it does not fit."""
    left, top, right, bottom = ImageDraw.Draw(canvas).textbbox((0, 0), text, font=font)
    width, height = right - left + 2, bottom - top + 2
    patch = Image.new("L", (width, height), 0)
    ImageDraw.Draw(patch).text((1 - left, 1 - top), text, fill=255, font=font)
    if vertical:
        patch = patch.rotate(90, expand=True)
    x, y = at
    if x + patch.width > canvas.width or y + patch.height > canvas.height:
        return None
    layer = Image.new("L", canvas.size, 0)
    layer.paste(patch, (x, y))
    return layer, (y, x, y + patch.height, x + patch.width)


def make_sample(
    name: str,
    seed: int,
    *,
    rows: int = 256,
    columns: int = 256,
    kind: str = "speckle",
    sizes: tuple[int, ...] = (12, 16, 24),
    texts: int = 3,
    contrast: float = 1.0,
    dark: bool = False,
    vertical: bool = False,
    bits: int = 8,
    signed: bool = False,
    photometric: str = "MONOCHROME2",
    frames: int = 1,
    clock: bool = False,
) -> Sample:
    """Render one image (see the module's docstring); ``texts=0`` gives a control."""
    rng = random.Random(seed)
    nrng = np.random.default_rng(seed)
    header = phi_strings(rng)
    base = background(kind, rows, columns, nrng)
    canvas = Image.new("L", (columns, rows), 0)
    faces = fonts()
    boxes: list[TextBox] = []
    labels: list[TextBox] = []
    text_layer = np.zeros((rows, columns))
    candidates = written(header, rng)
    taken = np.zeros((rows, columns), dtype=bool)
    for index in range(texts):
        label, value = candidates[index % len(candidates)]
        text = f"{label} {value}" if label else value
        size = sizes[index % len(sizes)]
        font = _font(faces[(seed + index) % len(faces)], size)
        turned = vertical and index == texts - 1
        for _ in range(40):
            at = (rng.randrange(0, max(1, columns - 40)), rng.randrange(0, max(1, rows - 20)))
            placed = _draw(canvas, text, font, at, turned)
            if placed is None:
                continue
            layer, (t, left, b, r) = placed
            if taken[max(0, t - 6) : b + 6, max(0, left - 6) : r + 6].any():
                continue
            taken[t:b, left:r] = True
            text_layer = np.maximum(text_layer, np.asarray(layer, dtype=np.float64) / 255)
            value_box, label_box = _split_box((t, left, b, r), font, label, turned)
            boxes.append(TextBox(value, *value_box, size, turned))
            if label_box is not None:
                labels.append(TextBox(label, *label_box, size, turned))
            break
    level = (0.0 if dark else 1.0) * contrast + (1 - contrast) * (0.35 if not dark else 0.65)
    if dark:
        base = np.clip(base + 0.5, 0, 1)
    image = base * (1 - text_layer) + level * text_layer
    mask = text_layer > 0.25
    stack = [image]
    if frames > 1:
        stack = []
        for f in range(frames):
            moved = np.roll(base, shift=(f * 3) % rows, axis=0)
            frame = moved * (1 - text_layer) + level * text_layer
            if clock:
                stamp = Image.new("L", (columns, rows), 0)
                font = _font(faces[0], 14)
                ImageDraw.Draw(stamp).text(
                    (columns - 80, rows - 24), f"10:22:{f:02d}", fill=255, font=font
                )
                clock_layer = np.asarray(stamp, dtype=np.float64) / 255
                frame = frame * (1 - clock_layer) + clock_layer
                if f == 0:
                    ys, xs = np.nonzero(clock_layer)
                    boxes.append(
                        TextBox(
                            "10:22:00",
                            int(ys.min()),
                            int(xs.min()),
                            int(ys.max()) + 1,
                            int(xs.max()) + 1,
                            14,
                        )
                    )
                mask = mask | (clock_layer > 0.25)
            stack.append(frame)
    return Sample(
        name=name,
        pixels=_stored(np.stack(stack), bits, signed, photometric),
        boxes=boxes,
        mask=mask,
        photometric=photometric,
        signed=signed,
        bits=bits,
        header=header,
        labels=labels,
    )


def _stored(values: npt.NDArray[np.float64], bits: int, signed: bool, photometric: str) -> Array:
    """Scale [0, 1] display values to stored values."""
    if photometric == "MONOCHROME1":
        values = 1 - values
    if photometric == "RGB":
        tint = np.array([1.0, 0.9, 0.6])
        values = values[..., None] * tint
    top = (1 << bits) - 1
    stored = np.rint(values * top)
    if signed:
        stored = stored - (1 << (bits - 1))
        return stored.astype(np.int16 if bits > 8 else np.int8)
    return stored.astype(np.uint16 if bits > 8 else np.uint8)


def to_dataset(sample: Sample) -> Dataset:
    """The sample as a DICOM instance (Explicit VR Little Endian, native pixel data), with
    the planted identifying values in its header."""
    pixels = sample.pixels
    frames = pixels.shape[0]
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    for key, value in sample.header.items():
        setattr(ds, key, value)
    ds.Modality = "OT"
    ds.Rows, ds.Columns = pixels.shape[1], pixels.shape[2]
    ds.SamplesPerPixel = 3 if sample.photometric == "RGB" else 1
    if ds.SamplesPerPixel == 3:
        ds.PlanarConfiguration = 0
    ds.PhotometricInterpretation = sample.photometric
    ds.BitsAllocated = 16 if sample.bits > 8 else 8
    ds.BitsStored = sample.bits
    ds.HighBit = sample.bits - 1
    ds.PixelRepresentation = int(sample.signed)
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    ds["PixelData"].VR = "OB" if ds.BitsAllocated == 8 else "OW"
    return ds


def removed(box: TextBox, mask: npt.NDArray[np.bool_], before: Array, after: Array) -> bool:
    """Whether ``box``'s text no longer shows in ``after`` (one frame, stored values): at
    least 90 % of its text pixels changed value or lie in a flat 3x3 patch of the output (a
    fill of the text's own colour hides the text as well as a black one; untouched text of
    this corpus scores at most about 15 %, its strokes being thin and anti-aliased)."""
    window = (slice(box.top, box.bottom), slice(box.left, box.right))
    text = mask[window]
    if not text.any():
        return True
    changed = before[window] != after[window]
    if changed.ndim == 3:
        changed = changed.any(axis=-1)
    # flat patches of the output, looked for around the box (colours as one number)
    r = FLAT_RADIUS
    around = np.asarray(after)
    if around.ndim == 3:
        around = (around[..., 0].astype(np.int64) * 65536
                  + around[..., 1].astype(np.int64) * 256 + around[..., 2])  # fmt: skip
    rows, columns = mask.shape
    top, left = max(0, box.top - r), max(0, box.left - r)
    patch = around[top : min(rows, box.bottom + r), left : min(columns, box.right + r)]
    flat = _flat(patch, r)[box.top - top :, box.left - left :]
    flat = flat[: text.shape[0], : text.shape[1]]
    hidden = changed | flat
    return float(np.mean(hidden[text])) >= HIDDEN


FLAT_RADIUS: Final = 1
"""Half-size of the patch that must be flat around a hidden text pixel."""
HIDDEN: Final = 0.9
"""Share of a box's text pixels that must be hidden for the box to count as removed."""


def _flat(image: Array, radius: int) -> npt.NDArray[np.bool_]:
    """Whether each pixel's ``(2 radius + 1)`` square neighbourhood holds a single value."""
    from numpy.lib.stride_tricks import sliding_window_view

    padded = np.pad(image, radius, mode="edge")
    windows = sliding_window_view(padded, (2 * radius + 1, 2 * radius + 1))
    result: npt.NDArray[np.bool_] = windows.max(axis=(2, 3)) == windows.min(axis=(2, 3))
    return result


def preserved(boxes: list[TextBox], before: Array, after: Array) -> tuple[int, int]:
    """``(unchanged, total)`` non-text pixels of one frame: farther than MARGIN from every box
    in ``boxes`` (pass the labels too: they are text)."""
    rows, columns = before.shape[:2]
    far = np.ones((rows, columns), dtype=bool)
    for box in boxes:
        far[
            max(0, box.top - MARGIN) : box.bottom + MARGIN,
            max(0, box.left - MARGIN) : box.right + MARGIN,
        ] = False
    same = before == after
    if same.ndim == 3:
        same = same.all(axis=2)
    return int(np.count_nonzero(same & far)), int(np.count_nonzero(far))
