"""Content negotiation for DICOMweb: which of our media types does the client accept?

References
----------
PS3.18 §8.7 (media types and transfer syntaxes), RFC 9110 §12.5.1 (Accept).
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from dicomveil.web.errors import NotAcceptable
from dicomveil.web.multipart import media_type

__all__ = ["Accepted", "accepted", "negotiate"]


@dataclass(frozen=True, slots=True)
class Accepted:
    """One media range of an Accept header, with its parameters (``type``, ``transfer-syntax``)."""

    kind: str
    params: dict[str, str]

    def covers(self, kind: str, part: str | None = None, syntax: str | None = None) -> bool:
        """Whether this range admits ``kind`` (and, for multipart, the part type ``part``
        in the transfer syntax ``syntax``: a ``transfer-syntax`` parameter other than ``*``
        must name it)."""
        if self.kind in ("*/*", kind) or (
            self.kind.endswith("/*") and kind.startswith(self.kind[:-1])
        ):
            wanted = self.params.get("type", "").lower()
            asked = self.params.get("transfer-syntax", "*").strip()
            if syntax is not None and asked not in ("*", syntax):
                return False
            return part is None or not wanted or wanted == part or wanted == "*/*"
        return False


def accepted(request: Request) -> list[Accepted]:
    """Return the media ranges the client accepts (``*/*`` when it says nothing).

    An ``accept`` query parameter wins over the Accept header (PS3.18 §8.3.3.1: browsers
    cannot set the header on an ``<img>``; OHIF asks for thumbnails this way).
    """
    header = ",".join(request.query_params.getlist("accept")).strip()
    header = header or request.headers.get("accept", "").strip()
    if not header:
        return [Accepted("*/*", {})]
    ranges = []
    for item in _split(header):
        kind, params = media_type(item)
        if params.get("q", "1").strip() in ("0", "0.0", "0.00", "0.000"):
            continue
        ranges.append(Accepted(kind, params))
    return ranges


def _split(header: str) -> list[str]:
    """Split an Accept header on commas outside quoted strings."""
    items: list[str] = []
    current: list[str] = []
    quoted = False
    for char in header:
        if char == '"':
            quoted = not quoted
        if char == "," and not quoted:
            items.append("".join(current))
            current = []
        else:
            current.append(char)
    items.append("".join(current))
    return [item.strip() for item in items if item.strip()]


def negotiate(
    request: Request,
    offers: list[tuple[str, str | None]],
    syntaxes: dict[str, str] | None = None,
) -> tuple[str, str | None]:
    """Return the first of ``offers`` (``(media type, multipart part type)``) the client takes.

    The client's order of preference decides first, then ours. ``syntaxes`` maps a part
    type to the transfer syntax the server would send it in (frames): a range asking for
    another ``transfer-syntax`` does not take that offer.

    Raises
    ------
    NotAcceptable
        None of the offers is acceptable.
    """
    for range_ in accepted(request):
        for kind, part in offers:
            syntax = None if syntaxes is None or part is None else syntaxes.get(part)
            if range_.covers(kind, part, syntax):
                return kind, part
    names = ", ".join(kind if part is None else f'{kind}; type="{part}"' for kind, part in offers)
    raise NotAcceptable(f"this resource is available as {names}")
