"""The node's home folder: keys, config, database, work dir, logs, API token.

``--home DIR``, else ``DMS_HOME``, else ``~/.dms``. Several nodes on one machine use several
homes. Nothing here creates files except :meth:`Home.ensure`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import msgspec


class Home(msgspec.Struct, frozen=True):
    root: Path

    @classmethod
    def resolve(
        cls, explicit: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None
    ) -> Home:
        env = os.environ if env is None else env
        chosen = explicit or env.get("DMS_HOME") or Path.home() / ".dms"
        return cls(Path(chosen).expanduser().absolute())

    @property
    def config_file(self) -> Path:
        return self.root / "config.toml"

    @property
    def keys_dir(self) -> Path:
        return self.root / "keys"

    @property
    def database(self) -> Path:
        return self.root / "dms.sqlite3"

    @property
    def work_dir(self) -> Path:
        return self.root / "work"

    @property
    def logs_dir(self) -> Path:
        return self.root / "logs"

    @property
    def api_token_file(self) -> Path:
        return self.root / "api-token"

    def ensure(self) -> Home:
        """Create the home and its folders (private to the owner)."""
        for folder in (self.root, self.keys_dir, self.work_dir, self.logs_dir):
            folder.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o700)
        self.keys_dir.chmod(0o700)
        return self
