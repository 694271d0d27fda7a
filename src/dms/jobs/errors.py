"""Errors of ensemble specs and jobs."""

from __future__ import annotations

from collections.abc import Sequence

from dms.errors import SpecError


class InvalidEnsemble(SpecError):
    """An ensemble with one or more problems; each is a SpecError with its path."""

    def __init__(self, source: str, problems: Sequence[SpecError]) -> None:
        self.source = source
        self.problems = tuple(problems)
        first = self.problems[0]
        lines = "\n".join(f"  {p}" for p in self.problems)
        count = len(self.problems)
        noun = "problem" if count == 1 else "problems"
        super().__init__(first.field, first.value, first.accepted, detail=first.detail)
        self.args = (f"{source}: {count} {noun}\n{lines}",)

    def __str__(self) -> str:
        return str(self.args[0])
