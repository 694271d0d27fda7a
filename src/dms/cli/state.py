"""What every command gets from the global options."""

from __future__ import annotations

import msgspec

from dms.home import Home


class CLIState(msgspec.Struct, frozen=True):
    home: Home
