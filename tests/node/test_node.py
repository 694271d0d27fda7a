"""The Node root actor: its behaviors, served locally and to peers, and after a restart."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import anyio
import pytest

from dms.actor import Empty, Envelope, RemoteError
from dms.actor.actor import Actor
from dms.actor.handle import Address, Handle
from dms.app import DMS
from dms.network.base import PeerUnreachable
from dms.network.memory import Fabric
from dms.node import NodeActor, Registrar
from dms.node import behaviors as names
from dms.node.messages import (
    AllocationList,
    ConnectReply,
    ConnectRequest,
    Hello,
    NodeStatus,
    PeerList,
    PeerSelf,
    PingReply,
    PingRequest,
    PublicStatus,
)
from dms.onboarding.records import OnboardRequest, OnboardStatus
from tests.node.harness import make_home, running_node


def root_of(node: DMS) -> Handle:
    return node.system.root


def remote_root(of: DMS) -> Handle:
    """The handle another node uses to reach ``of``'s root actor."""
    return Handle(
        id=of.keypair.public_key.hex(),
        did=of.did,
        address=Address(host=of.network.peer_id, inbox="root"),
    )


async def ask(node: DMS, behavior: str, message: object, reply: type) -> object:
    return await node.system.invoke(node.system.root, behavior, message, reply)


class TestLocalBehaviors:
    """Each behavior of the node answers its typed reply on the node itself."""

    async def test_status_names_identity_addresses_and_onboarding(self, tmp_path: Path) -> None:
        async with running_node(tmp_path, api=False) as node:
            status = await ask(node, names.NODE_STATUS, Empty(), NodeStatus)
            assert isinstance(status, NodeStatus)
            assert status.did == node.did
            assert status.peer_id == node.network.peer_id
            assert status.addresses == tuple(node.network.addresses())
            assert status.onboarded is False
            assert status.peers == 0
            assert status.executors == ("null",)

    async def test_status_follows_onboarding(self, tmp_path: Path) -> None:
        async with running_node(tmp_path, api=False) as node:
            request = OnboardRequest.parse(cpu=2, ram="4GiB", disk="10GiB")
            await ask(node, names.ONBOARD, request, OnboardStatus)
            status = await ask(node, names.NODE_STATUS, Empty(), NodeStatus)
            assert isinstance(status, NodeStatus) and status.onboarded is True

    async def test_self_hello_and_public_status_agree(self, tmp_path: Path) -> None:
        async with running_node(tmp_path, api=False) as node:
            me = await ask(node, names.PEERS_SELF, Empty(), PeerSelf)
            hello = await ask(node, names.PUBLIC_HELLO, Empty(), Hello)
            public = await ask(node, names.PUBLIC_STATUS, Empty(), PublicStatus)
            assert isinstance(me, PeerSelf) and isinstance(hello, Hello)
            assert isinstance(public, PublicStatus)
            assert me.did == hello.did == public.did == node.did
            assert me.peer_id == hello.peer_id == public.peer_id

    async def test_allocations_are_empty_without_a_provider(self, tmp_path: Path) -> None:
        async with running_node(tmp_path, api=False) as node:
            reply = await ask(node, names.ALLOCATIONS_LIST, Empty(), AllocationList)
            assert reply == AllocationList(allocations=())


class TestPeers:
    """Peers, ping and connect between two nodes on one in-memory fabric."""

    async def test_connect_then_list_and_ping(self, tmp_path: Path) -> None:
        fabric = Fabric()
        async with (
            running_node(tmp_path, fabric, name="a", api=False) as a,
            running_node(tmp_path, fabric, name="b", api=False) as b,
        ):
            address = b.network.addresses()[0]
            connected = await ask(
                a, names.PEERS_CONNECT, ConnectRequest(address=address), ConnectReply
            )
            assert connected == ConnectReply(peer_id=b.network.peer_id)
            listed = await ask(a, names.PEERS_LIST, Empty(), PeerList)
            assert isinstance(listed, PeerList)
            assert [(p.peer_id, p.did) for p in listed.peers] == [(b.network.peer_id, b.did)]
            by_did = await ask(a, names.PEERS_PING, PingRequest(peer=b.did), PingReply)
            assert isinstance(by_did, PingReply) and by_did.peer_id == b.network.peer_id
            assert by_did.rtt_ms >= 0

    async def test_ping_of_an_unknown_peer_is_refused_with_its_id(self, tmp_path: Path) -> None:
        async with running_node(tmp_path, api=False) as node:
            with pytest.raises(PeerUnreachable, match="12D3KooWnobody"):
                await node.node.ping(PingRequest(peer="12D3KooWnobody"))


class TestRemoteCallers:
    """What another node may ask: public behaviors always, the rest only when trusted."""

    async def test_an_untrusted_peer_gets_hello_but_not_status(self, tmp_path: Path) -> None:
        fabric = Fabric()
        async with (
            running_node(tmp_path, fabric, name="a", api=False) as a,
            running_node(tmp_path, fabric, name="b", api=False) as b,
        ):
            hello = await b.system.invoke(remote_root(a), names.PUBLIC_HELLO, Empty(), Hello)
            assert hello.did == a.did
            with pytest.raises(RemoteError) as refused:
                await b.system.invoke(remote_root(a), names.NODE_STATUS, Empty(), NodeStatus)
            assert refused.value.code == "unauthorized"

    async def test_a_peer_listed_as_root_gets_status(self, tmp_path: Path) -> None:
        fabric = Fabric()
        b_home = make_home(tmp_path, "b")
        from dms.node.setup import keystore_for

        b_did = keystore_for(b_home).did("node")
        async with (
            running_node(tmp_path, fabric, name="a", api=False, roots=[b_did]) as a,
            running_node(tmp_path, fabric, home=b_home, api=False) as b,
        ):
            status = await b.system.invoke(remote_root(a), names.NODE_STATUS, Empty(), NodeStatus)
            assert status.did == a.did


class TestRegistrars:
    """Behaviors other components put on the root actor survive a restart of the root."""

    async def test_registrars_run_again_when_the_root_restarts(self, tmp_path: Path) -> None:
        async with running_node(tmp_path, api=False) as node:
            starts: list[Actor] = []
            restarted = anyio.Event()

            def crash(message: Empty, envelope: Envelope) -> None:
                raise RuntimeError("boom")

            def registrar(actor: Actor) -> None:
                actor.register("/test/crash", Empty, None, crash)
                starts.append(actor)
                if len(starts) == 2:
                    restarted.set()

            root = node.system.actor("root")
            assert isinstance(root, NodeActor)
            cast(list[Registrar], root.registrars).append(registrar)
            registrar(root)
            await node.system.send(node.system.root, "/test/crash", Empty())
            with anyio.fail_after(5):
                await restarted.wait()
            fresh = node.system.actor("root")
            assert fresh is not root
            assert names.ONBOARD in fresh.cell.behaviors
            assert "/test/crash" in fresh.cell.behaviors


def test_behavior_names_are_unique_and_cover_the_node_actor() -> None:
    assert len(set(names.ALL)) == len(names.ALL)
    assert set(NodeActor._declared) == set(names.NODE)
    assert all(path.startswith(("/dms/", "/public/")) for path in names.ALL)


async def test_a_node_serves_every_listed_behavior_it_has_parts_for(tmp_path: Path) -> None:
    async with running_node(tmp_path, api=False) as node:
        served = set(node.system.actor("root").cell.behaviors)
    expected = {*names.NODE, *names.ONBOARDING, *names.SYSTEM}
    assert expected <= served
    assert served <= set(names.ALL)
