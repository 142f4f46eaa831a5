"""One error type for everything a user can get wrong (exit code 2)."""

from __future__ import annotations

import difflib


class PaperrlError(Exception):
    """A user error: printed as one line per problem, exit code 2, no traceback."""

    exit_code = 2

    def __init__(self, *problems: str):
        self.problems = [p for p in problems if p]
        super().__init__("\n".join(self.problems))


def closest(name: str, choices) -> str:
    """' (did you mean X?)' for a typo, or ''."""
    match = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1, cutoff=0.6)
    return f" (did you mean '{match[0]}'?)" if match else ""


class Problems:
    """Collects problems so that all of them are reported together."""

    def __init__(self):
        self.items: list[str] = []

    def add(self, message: str) -> None:
        self.items.append(message)

    def raise_if_any(self) -> None:
        if self.items:
            raise PaperrlError(*self.items)
