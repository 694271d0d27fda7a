"""Where a machine is, and which places a job accepts or rejects."""

from __future__ import annotations

import msgspec


class Location(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A place, coarse to fine. Empty fields are unknown (machine) or 'any' (constraint)."""

    continent: str = ""
    country: str = ""
    city: str = ""

    def within(self, area: Location) -> bool:
        """Whether this place lies inside ``area`` (every field ``area`` names matches)."""
        return all(
            not want or want.casefold() == have.casefold()
            for want, have in (
                (area.continent, self.continent),
                (area.country, self.country),
                (area.city, self.city),
            )
        )

    def tags(self) -> tuple[str, ...]:
        """The locality strings a Capability carries: ``EU``, ``EU/DE``, ``EU/DE/Berlin``."""
        parts = [p for p in (self.continent, self.country, self.city) if p]
        return tuple("/".join(parts[: i + 1]) for i in range(len(parts)))

    def describe(self) -> str:
        return "/".join(p for p in (self.continent, self.country, self.city) if p) or "unknown"

    @classmethod
    def parse(cls, text: str) -> Location:
        """``EU/DE/Berlin`` (any prefix of continent/country/city)."""
        from dms.errors import InputError

        parts = [p.strip() for p in text.split("/")] if text.strip() else []
        if len(parts) > 3 or any(not p for p in parts):
            raise InputError(
                "location", text, "a location (continent[/country[/city]], e.g. EU/DE/Berlin)"
            )
        return cls(**dict(zip(("continent", "country", "city"), parts, strict=False)))
