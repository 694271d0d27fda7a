"""What every command gets from the global options."""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec

from dms.home import Home

if TYPE_CHECKING:
    from dms.api.client import Client


class CLIState(msgspec.Struct, frozen=True):
    home: Home
    api_url: str | None = None
    """``--api URL`` / ``DMS_API_URL``; None: found from the home."""

    def client(self, *, timeout_s: float = 60.0) -> Client:
        from dms.api.client import Client

        return Client.for_home(self.home, self.api_url, timeout_s=timeout_s)
