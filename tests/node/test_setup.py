"""dms init in one step: keys, trust, config, API token; idempotent; runtime file."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from dms import config as cfg
from dms.errors import ConfigError
from dms.home import Home
from dms.node.setup import (
    NODE_KEY,
    USER_KEY,
    RuntimeInfo,
    ensure_api_token,
    init_home,
    load_key,
    read_runtime,
    remove_runtime,
    runtime_path,
    write_runtime,
)
from dms.security import TrustContext, trust_path
from dms.security.errors import KeystoreError


class TestInit:
    """init_home creates every part once, with the user as the trust root."""

    def test_creates_keys_trust_config_and_token(self, tmp_path: Path) -> None:
        home = Home(tmp_path / "h")
        result = init_home(home, passphrase=None)
        assert set(result.created) == {
            "key node",
            "key user",
            "trust context",
            "config",
            "api token",
        }
        trust = TrustContext.load(trust_path(home.root), local_did=result.node_did)
        assert trust.roots == (result.user_did,)
        assert cfg.load(home.config_file, env={}) == cfg.Config()
        assert stat.S_IMODE(home.api_token_file.stat().st_mode) == 0o600
        assert len(home.api_token_file.read_text().strip()) >= 40
        assert result.protected is False

    def test_running_it_again_changes_nothing(self, tmp_path: Path) -> None:
        home = Home(tmp_path / "h")
        first = init_home(home, passphrase=None)
        token = home.api_token_file.read_text()
        again = init_home(home, passphrase=None)
        assert again.created == ()
        assert (again.node_did, again.user_did) == (first.node_did, first.user_did)
        assert home.api_token_file.read_text() == token

    def test_settings_land_in_the_config_file(self, tmp_path: Path) -> None:
        home = Home(tmp_path / "h")
        init_home(home, passphrase=None, settings={"api.port": 9100, "log.level": "debug"})
        config = cfg.load(home.config_file, env={})
        assert (config.api.port, config.log.level) == (9100, "debug")

    def test_an_unknown_setting_names_the_key(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigError, match="api.portt"):
            init_home(Home(tmp_path / "h"), passphrase=None, settings={"api.portt": 1})

    def test_extra_roots_are_trusted(self, tmp_path: Path) -> None:
        other = init_home(Home(tmp_path / "o"), passphrase=None)
        home = Home(tmp_path / "h")
        result = init_home(home, passphrase=None, extra_roots=(other.node_did,))
        trust = TrustContext.load(trust_path(home.root))
        assert set(trust.roots) == {result.user_did, other.node_did}


class TestKeys:
    """Unprotected keys load without a passphrase; protected ones need the right one."""

    def test_unprotected_keys_load_as_is(self, tmp_path: Path) -> None:
        home = Home(tmp_path / "h")
        result = init_home(home, passphrase=None)
        assert load_key(home, NODE_KEY, env={}).did == result.node_did
        assert load_key(home, USER_KEY, env={}).did == result.user_did

    def test_protected_keys_need_the_passphrase(self, tmp_path: Path) -> None:
        home = Home(tmp_path / "h")
        result = init_home(home, passphrase="correct horse")
        assert result.protected is True
        env = {"DMS_PASSPHRASE": "correct horse"}
        assert load_key(home, env=env).did == result.node_did
        with pytest.raises(KeystoreError, match="wrong passphrase"):
            load_key(home, env={"DMS_PASSPHRASE": "battery staple"})

    def test_a_missing_key_says_how_to_create_it(self, tmp_path: Path) -> None:
        with pytest.raises(KeystoreError, match="dms --home .* init"):
            load_key(Home(tmp_path / "empty"), env={})


class TestToken:
    """The API token is made once and kept."""

    def test_made_once(self, tmp_path: Path) -> None:
        home = Home(tmp_path / "h")
        token = ensure_api_token(home)
        assert ensure_api_token(home) == token


class TestRuntimeFile:
    """node.json says where a running node is, and only while its process lives."""

    def info(self, pid: int) -> RuntimeInfo:
        return RuntimeInfo(
            pid=pid,
            did="did:key:z",
            peer_id="p",
            addresses=(),
            api_url="http://127.0.0.1:1",
            version="0",
            started_ns=1,
        )

    def test_read_back_while_the_process_lives(self, tmp_path: Path) -> None:
        home = Home(tmp_path)
        write_runtime(home, self.info(os.getpid()))
        assert read_runtime(home) == self.info(os.getpid())
        remove_runtime(home, os.getpid())
        assert not runtime_path(home).exists()

    def test_a_dead_process_reads_as_none(self, tmp_path: Path) -> None:
        home = Home(tmp_path)
        write_runtime(home, self.info(2**22 + 12345))
        assert read_runtime(home) is None

    def test_another_process_file_is_kept(self, tmp_path: Path) -> None:
        home = Home(tmp_path)
        write_runtime(home, self.info(os.getppid()))
        remove_runtime(home, os.getpid())
        assert runtime_path(home).exists()
