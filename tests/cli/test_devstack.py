"""The devstack's preparation (homes, trust, config) and its reading of a node's ready line."""

from __future__ import annotations

import sys
from pathlib import Path

import anyio
import pytest

from dms import config as cfg
from dms.devstack import Devstack, _ready_line, least_ram, node_env
from dms.errors import InputError
from dms.node.identity import peer_id_from_did
from dms.node.setup import keystore_for
from dms.security import TrustContext, trust_path

GiB = 2**30


class TestPrepare:
    """Every home is initialised, trusts every devstack key, and bootstraps from node 1."""

    def test_homes_trust_and_config(self, tmp_path: Path) -> None:
        stack = Devstack(tmp_path, 3)
        addresses = stack.prepare()
        dids = [keystore_for(home).did("node") for home in stack.homes]
        users = [keystore_for(home).did("user") for home in stack.homes]
        assert [a.rsplit("/p2p/", 1)[1] for a in addresses] == [peer_id_from_did(d) for d in dids]
        for index, home in enumerate(stack.homes):
            config = cfg.load(home.config_file, env={})
            assert config.network.listen == [addresses[index].rsplit("/p2p/", 1)[0]]
            assert config.network.bootstrap == ([] if index == 0 else [addresses[0]])
            assert (config.api.host, config.api.port) == ("127.0.0.1", 0)
            assert config.resources.require_idle_cpu is False
            roots = set(TrustContext.load(trust_path(home.root)).roots)
            assert roots == set(dids) | set(users)

    @pytest.mark.parametrize("count", [0, 65])
    def test_node_count_is_checked(self, tmp_path: Path, count: int) -> None:
        with pytest.raises(InputError, match="--nodes"):
            Devstack(tmp_path, count)


@pytest.mark.parametrize(
    ("total", "share"),
    [(4 * GiB, 512 * 2**20), (24 * GiB, 2459 * 2**20), (64 * GiB, 6555 * 2**20)],
    ids=["small", "medium", "large"],
)
def test_least_ram_is_just_above_a_tenth(total: int, share: int) -> None:
    assert least_ram(total) == share
    assert least_ram(total) >= total * 0.10


def test_node_environment_drops_dms_variables() -> None:
    env = node_env({"PATH": "/bin", "DMS_HOME": "/x", "DMS_API_PORT": "1"})
    assert env == {"PATH": "/bin"}


async def test_the_ready_line_is_found_among_other_output() -> None:
    script = (
        "print('a log line that is not JSON'); print('{\"event\": \"other\"}');"
        'print(\'{"event": "ready", "pid": 1, "did": "d", "peer_id": "p", "addresses": [],'
        ' "api_url": "http://x"}\', flush=True)'
    )
    process = await anyio.open_process([sys.executable, "-c", script])
    async with process:
        ready = await _ready_line(process)
    assert ready is not None and ready.api_url == "http://x"


async def test_no_ready_line_before_exit_is_none() -> None:
    process = await anyio.open_process([sys.executable, "-c", "print('crashed')"])
    async with process:
        assert await _ready_line(process) is None
