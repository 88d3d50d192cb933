"""dicomveil: de-identify DICOM per PS3.15 Annex E and keep a secured way back.

The package root stays thin: it imports nothing heavy, so ``import dicomveil`` is fast.
"""

from __future__ import annotations

from dicomveil.profile._ps315 import EDITION as __ps315_edition__

__version__ = "0.1.0"

__all__ = ["__ps315_edition__", "__version__"]
