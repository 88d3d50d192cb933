"""What the engine did to one dataset, by tag and action, never by value."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Report"]


@dataclass(slots=True)
class Report:
    """The PHI-free account of one de-identification.

    Attributes
    ----------
    actions:
        ``(attribute, operation) -> count``; attribute is a keyword or ``(gggg,eeee)``.
    flags:
        Warnings for a human, e.g. ``possible-burned-in-annotation``.
    options:
        The options applied, by name.
    """

    actions: Counter[tuple[str, str]] = field(default_factory=Counter)
    flags: list[str] = field(default_factory=list)
    options: list[str] = field(default_factory=list)

    def count(self, attribute: str, operation: str) -> None:
        """Record one operation on one attribute."""
        self.actions[(attribute, operation)] += 1

    def flag(self, message: str) -> None:
        """Record a warning once."""
        if message not in self.flags:
            self.flags.append(message)

    def operations(self) -> Counter[str]:
        """Return how many elements each operation touched."""
        totals: Counter[str] = Counter()
        for (_, op), n in self.actions.items():
            totals[op] += n
        return totals

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready summary (no values, only keywords and counts)."""
        by_attribute: dict[str, dict[str, int]] = {}
        for (attribute, op), n in sorted(self.actions.items()):
            by_attribute.setdefault(attribute, {})[op] = n
        return {
            "options": list(self.options),
            "flags": list(self.flags),
            "operations": dict(sorted(self.operations().items())),
            "attributes": by_attribute,
        }
