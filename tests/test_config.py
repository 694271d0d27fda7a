"""Config: TOML in the home, DMS_* overrides, errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from dms import config
from dms.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


class TestLoad:
    """Defaults, file values and environment overrides, in that order."""

    def test_defaults_without_a_file(self, tmp_path: Path) -> None:
        cfg = config.load(tmp_path / "missing.toml", env={})
        assert cfg.api.port == 9999
        assert cfg.api.host == "127.0.0.1"
        assert cfg.network.listen == ["/ip4/0.0.0.0/tcp/9000"]

    def test_file_then_environment(self, tmp_path: Path) -> None:
        path = write(tmp_path, '[api]\nport = 9000\n[log]\nformat = "json"\n')
        cfg = config.load(
            path,
            env={
                "DMS_API_PORT": "9100",
                "DMS_HOME": "/x",
                "DMS_NETWORK_BOOTSTRAP": "/ip4/127.0.0.1/tcp/1, /ip4/127.0.0.1/tcp/2",
                "DMS_NETWORK_MDNS": "true",
            },
        )
        assert cfg.api.port == 9100
        assert cfg.log.format == "json"
        assert cfg.network.bootstrap == ["/ip4/127.0.0.1/tcp/1", "/ip4/127.0.0.1/tcp/2"]
        assert cfg.network.mdns is True


class TestErrors:
    """Unknown keys and wrong types are refused with the key named."""

    @pytest.mark.parametrize(
        ("text", "key", "fragment"),
        [
            ("[api]\nprt = 1\n", "api.prt", "unknown key"),
            ("[apii]\nport = 1\n", "apii", "unknown key"),
            ('[api]\nport = "high"\n', "api.port", "Expected `int`, got `str`"),
            ("[api]\nport = 70000\n", "api.port", "<= 65535"),
            ('[log]\nlevel = "loud"\n', "log.level", "debug"),
            ('[actor]\ndefault_expiry = "soon"\n', "actor.default_expiry", "30s, 5m"),
            (
                "[resources]\nport_range_start = 9000\nport_range_end = 8000\n",
                "resources.port_range_start",
                "above",
            ),
            ("[api\n", "", "not valid TOML"),
        ],
        ids=[
            "unknown-key",
            "unknown-section",
            "type",
            "range",
            "enum",
            "duration",
            "range-order",
            "syntax",
        ],
    )
    def test_file_errors_name_the_key(
        self, tmp_path: Path, text: str, key: str, fragment: str
    ) -> None:
        with pytest.raises(ConfigError) as info:
            config.load(write(tmp_path, text), env={})
        assert info.value.key == key
        assert fragment in str(info.value)

    @pytest.mark.parametrize(
        ("env", "key"),
        [
            ({"DMS_API_PORTX": "1"}, "api.portx"),
            ({"DMS_API_PORT": "abc"}, "api.port"),
            ({"DMS_NOPE": "1"}, "nope"),
        ],
    )
    def test_environment_errors_name_the_key(
        self, tmp_path: Path, env: dict[str, str], key: str
    ) -> None:
        with pytest.raises(ConfigError) as info:
            config.load(tmp_path / "none.toml", env=env)
        assert info.value.key == key


class TestGetSet:
    """config set writes a typed value that config get reads back."""

    def test_round_trip(self, tmp_path: Path) -> None:
        path = tmp_path / "config.toml"
        config.set_value(path, "api.port", "9998")
        config.set_value(path, "network.bootstrap", "/ip4/127.0.0.1/tcp/9,/ip4/127.0.0.1/tcp/10")
        cfg = config.load(path, env={})
        assert config.get_value(cfg, "api.port") == 9998
        assert config.get_value(cfg, "network.bootstrap") == [
            "/ip4/127.0.0.1/tcp/9",
            "/ip4/127.0.0.1/tcp/10",
        ]

    def test_set_refuses_bad_values_and_leaves_the_file(self, tmp_path: Path) -> None:
        path = tmp_path / "config.toml"
        config.set_value(path, "api.port", "9998")
        before = path.read_text()
        with pytest.raises(ConfigError, match="api.port"):
            config.set_value(path, "api.port", "99999")
        with pytest.raises(ConfigError, match="unknown key"):
            config.set_value(path, "api.nope", "1")
        assert path.read_text() == before
