"""The 8-bit views the detector reads, and the value a region is filled with."""

from __future__ import annotations

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian

from dicomveil.redaction._frames import PixelLayout
from dicomveil.redaction._view import black, views


def _layout(photometric: str = "MONOCHROME2", samples: int = 1, bits: int = 16) -> PixelLayout:
    return PixelLayout(4, 4, samples, bits, bits, True, photometric, 0, 1, ExplicitVRLittleEndian)


def test_monochrome_stretched_and_monochrome1_inverted() -> None:
    frame = np.array([[-1000, 0], [1000, 3000]], dtype=np.int16)
    (view,) = views(frame, _layout(), Dataset())
    assert view.dtype == np.uint8 and view.min() == 0 and view.max() == 255
    assert view[0, 0] == 0 and view[1, 1] == 255
    (inverted,) = views(frame, _layout("MONOCHROME1"), Dataset())
    assert inverted[0, 0] == 255 and inverted[1, 1] == 0


def test_narrow_window_gets_a_view_of_its_own() -> None:
    frame = np.array([[-1024, 30], [50, 3071]], dtype=np.int16)
    ds = Dataset()
    ds.WindowCenter, ds.WindowWidth = [40, 400], [80, 2000]  # first window: 0..80 HU
    ds.RescaleSlope, ds.RescaleIntercept = 1, 0
    full, windowed = views(frame, _layout(), ds)
    assert windowed[0, 1] < windowed[1, 0] < 255  # 30 and 50 HU apart in the window
    assert abs(int(full[0, 1]) - int(full[1, 0])) <= 2  # but one grey in the full range
    ds.WindowWidth = 5000  # as wide as the range: no second view
    assert len(views(frame, _layout(), ds)) == 1


def test_black_is_what_shows_black() -> None:
    frame = np.array([[-1000, 0], [1000, 3000]], dtype=np.int16)
    assert black(frame, _layout()) == [-1000]
    assert black(frame, _layout("MONOCHROME1")) == [3000]
    rgb = np.zeros((2, 2, 3), dtype=np.uint8)
    assert black(rgb, _layout("RGB", 3, 8)) == [0, 0, 0]
    assert black(rgb, _layout("YBR_FULL", 3, 8)) == [0, 128, 128]
