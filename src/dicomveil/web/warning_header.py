"""The ``Warning`` response header (RFC 7234 §5.5, as PS3.18 uses it), never an echo.

A warning's text is put in a quoted string: a client's bytes in it (CR/LF, quotes,
characters outside Latin-1) could split the header, forge others, or make the answer fail.
Texts are built by the server from its own words and canonical DICOM keywords; this
module keeps only characters that cannot break out of the quoted string, whatever a caller
passes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final

__all__ = ["warning_header"]

_UNSAFE: Final = re.compile(r"[^A-Za-z0-9 ,.;:()/_+=-]")
_MAX: Final = 500


def warning_header(texts: Iterable[str]) -> dict[str, str]:
    """``{"Warning": ...}`` with one ``299 dicomveil "text"`` value per text (``{}`` if none).

    Examples
    --------
    >>> warning_header(['bad "x"\\r\\nSet-Cookie: a'])
    {'Warning': '299 dicomveil "bad x  Set-Cookie: a"'}
    """
    values = [f'299 dicomveil "{_UNSAFE.sub(" ", text)[:_MAX]}"' for text in texts]
    return {"Warning": ", ".join(values)} if values else {}
