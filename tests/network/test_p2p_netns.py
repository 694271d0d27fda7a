"""Nodes in separate network namespaces, joined by a veth pair, each with its own address.

This is as close to two machines on a LAN as one machine gets: no shared loopback, real routing,
multicast on a link of its own (so mDNS can be tested without touching the host's network). The
namespaces and the 10.251.x.0/24 link exist only for the test and are deleted afterwards.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from dms.network.p2p.tool import Peers, Ping, Send, WaitConnected
from tests.network.p2p_cluster import cluster
from tests.network.p2p_logs import log_to_current_stderr

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _logs_to_current_stderr() -> None:
    log_to_current_stderr()


class Link(msgspec.Struct, frozen=True):
    """Two namespaces and the address of each end of the veth pair between them."""

    left: str
    right: str
    left_ip: str
    right_ip: str


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=False)


def _why_namespaces_are_unavailable() -> str | None:
    if shutil.which("ip") is None:
        return "the `ip` command (iproute2) is not installed"
    if os.geteuid() != 0:
        return "creating network namespaces needs root (CAP_SYS_ADMIN, CAP_NET_ADMIN)"
    probe = f"dmsprobe{secrets.token_hex(3)}"
    added = _ip("netns", "add", probe)
    if added.returncode != 0:
        return f"`ip netns add` is not permitted here: {added.stderr.strip()}"
    _ip("netns", "del", probe)
    return None


@pytest.fixture
def veth_link() -> Iterator[Link]:
    reason = _why_namespaces_are_unavailable()
    if reason is not None:
        pytest.skip(f"network namespaces unavailable: {reason}")
    tag = secrets.token_hex(3)
    subnet = 1 + secrets.randbelow(250)
    link = Link(f"dmsL{tag}", f"dmsR{tag}", f"10.251.{subnet}.1", f"10.251.{subnet}.2")
    left_if, right_if = f"vl{tag}", f"vr{tag}"
    steps = [
        ("netns", "add", link.left),
        ("netns", "add", link.right),
        ("link", "add", left_if, "type", "veth", "peer", "name", right_if),
        ("link", "set", left_if, "netns", link.left),
        ("link", "set", right_if, "netns", link.right),
        ("-n", link.left, "addr", "add", f"{link.left_ip}/24", "dev", left_if),
        ("-n", link.right, "addr", "add", f"{link.right_ip}/24", "dev", right_if),
        ("-n", link.left, "link", "set", "lo", "up"),
        ("-n", link.right, "link", "set", "lo", "up"),
        ("-n", link.left, "link", "set", left_if, "up"),
        ("-n", link.right, "link", "set", right_if, "up"),
        # multicast (mDNS) leaves through the veth: there is no default route in here
        ("-n", link.left, "route", "add", "224.0.0.0/4", "dev", left_if),
        ("-n", link.right, "route", "add", "224.0.0.0/4", "dev", right_if),
    ]
    try:
        for step in steps:
            done = _ip(*step)
            if done.returncode != 0:
                pytest.skip(f"cannot build the veth link (ip {' '.join(step)}): {done.stderr}")
        yield link
    finally:
        _ip("netns", "del", link.left)  # deleting a namespace deletes its end of the veth
        _ip("netns", "del", link.right)


class TestNamespaces:
    """Nodes in their own network namespaces talk over their own addresses."""

    async def test_nodes_in_two_namespaces_exchange_frames(
        self, veth_link: Link, tmp_path: Path
    ) -> None:
        async with cluster(tmp_path) as nodes:
            left = await nodes.start(
                listen=[f"/ip4/{veth_link.left_ip}/tcp/0"], netns=veth_link.left, extra=["--echo"]
            )
            right = await nodes.start(
                listen=[f"/ip4/{veth_link.right_ip}/tcp/0"],
                bootstrap=[left.address],
                netns=veth_link.right,
            )
            assert left.address.startswith(f"/ip4/{veth_link.left_ip}/tcp/")
            await right.ok(WaitConnected(peer=left.peer_id))
            await right.ok(Send(peer=left.peer_id, data=b"across namespaces"))
            assert (await right.next_frame()).data == b"across namespaces"
            assert await right.ok(Ping(peer=left.peer_id)) > 0
            seen_by_left = await left.ok(Peers())
            assert [p["peer_id"] for p in seen_by_left] == [right.peer_id]
            assert seen_by_left[0]["addresses"][0].startswith(f"/ip4/{veth_link.right_ip}/tcp/")

    async def test_mdns_finds_the_peer_on_the_link(self, veth_link: Link, tmp_path: Path) -> None:
        async with cluster(tmp_path) as nodes:
            left = await nodes.start(
                listen=[f"/ip4/{veth_link.left_ip}/tcp/0"], netns=veth_link.left, extra=["--mdns"]
            )
            right = await nodes.start(
                listen=[f"/ip4/{veth_link.right_ip}/tcp/0"],
                netns=veth_link.right,
                extra=["--mdns", "--echo"],
            )
            await left.ok(WaitConnected(peer=right.peer_id))
            await left.ok(Send(peer=right.peer_id, data=b"found on the LAN"))
            assert (await left.next_frame()).data == b"found on the LAN"
