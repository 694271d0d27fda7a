"""The dms commands: init, keys, capabilities, bad input, and the commands that talk to a node."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import trio

from dms.cli.main import main
from dms.security import KeyPair, token_from_text
from tests.node.harness import running_node

ROOT = Path(__file__).resolve().parents[2]
HELLO = ROOT / "examples" / "hello.yaml"


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def last_json(out: str) -> Any:
    """The JSON a command printed (its last line: loggers bound before the CLI configured
    logging, by modules other tests imported first, may print above it)."""
    return json.loads(out.strip().splitlines()[-1])


class TestInit:
    """dms init sets up a home in one command and is safe to run again."""

    def test_init_then_again(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        home = str(tmp_path / "h")
        code, out, _ = run(capsys, "--home", home, "init", "--no-passphrase", "--json")
        assert code == 0
        first = last_json(out)
        assert first["protected"] is False and "key node" in first["created"]
        code, out, _ = run(capsys, "--home", home, "init", "--no-passphrase", "--json")
        again = last_json(out)
        assert code == 0 and again["created"] == []
        assert again["node_did"] == first["node_did"]

    def test_init_with_a_passphrase(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("DMS_PASSPHRASE", "a long passphrase")
        code, out, _ = run(capsys, "--home", str(tmp_path), "init", "--json", "--api-port", "9200")
        assert code == 0 and last_json(out)["protected"] is True
        code, out, _ = run(capsys, "--home", str(tmp_path), "config", "get", "api.port")
        assert out.strip() == "9200"


class TestKeysAndCapabilities:
    """dms key and dms cap manage the home's keys and trust context."""

    def test_keys(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        home = str(tmp_path)
        run(capsys, "--home", home, "init", "--no-passphrase")
        code, out, _ = run(capsys, "--home", home, "key", "new", "ops", "--no-passphrase", "--json")
        assert code == 0
        created = last_json(out)["did"]
        code, out, _ = run(capsys, "--home", home, "key", "did", "ops")
        assert out.strip() == created
        code, out, _ = run(capsys, "--home", home, "key", "list", "--json")
        assert sorted(entry["name"] for entry in last_json(out)) == ["node", "ops", "user"]

    def test_grant_delegate_anchor_revoke(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        home = str(tmp_path)
        run(capsys, "--home", home, "init", "--no-passphrase")
        run(capsys, "--home", home, "key", "new", "ops", "--no-passphrase")
        code, out, _ = run(capsys, "--home", home, "key", "did", "ops")
        ops = out.strip()
        stranger = KeyPair.generate().did
        code, out, _ = run(
            capsys,
            "--home",
            home,
            "cap",
            "grant",
            "--to",
            ops,
            "--cap",
            "/dms/deployment",
            "--depth",
            "1",
            "--expiry",
            "1h",
        )
        assert code == 0
        granted = token_from_text(out.strip())
        assert (granted.subject, granted.capabilities) == (ops, ("/dms/deployment",))
        code, out, _ = run(
            capsys,
            "--home",
            home,
            "cap",
            "delegate",
            out.strip(),
            "--to",
            stranger,
            "--cap",
            "/dms/deployment/commit",
            "--action",
            "invoke",
            "--key",
            "ops",
        )
        assert code == 0
        delegated = token_from_text(out.strip())
        assert delegated.chain[0].subject == ops and delegated.subject == stranger
        code, _, _ = run(capsys, "--home", home, "cap", "anchor", "--root", stranger)
        assert code == 0
        code, out, _ = run(capsys, "--home", home, "cap", "list", "--json")
        assert stranger in last_json(out)["roots"]
        code, out, err = run(capsys, "--home", home, "cap", "revoke", token_to_text(granted))
        assert code == 0 and granted.revocation_id in err
        code, out, _ = run(capsys, "--home", home, "cap", "list", "--json")
        assert len(last_json(out)["revocations"]) == 1


def token_to_text(token: object) -> str:
    from dms.security import token_to_text as encode

    return encode(token)  # type: ignore[arg-type]


DID = "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK"


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["deploy", "missing.yaml"], "cannot be read"),
        (["deploy", str(HELLO), "--timeout", "soon"], "--timeout"),
        (["deploy", str(HELLO), "--timeout", "0s"], "--timeout"),
        (["deployments", "list", "--status", "Sleeping"], "--status"),
        (["deployments", "prune", "--older-than", "ages"], "--older-than"),
        (["cap", "grant", "--to", DID, "--expiry", "forever"], "--expiry"),
        (["cap", "grant", "--to", DID, "--action", "revoke"], "--action"),
        (["cap", "anchor"], "--root"),
        (["cap", "anchor", "--root", "did:web:example.com"], "did:web:example.com"),
        (["cap", "delegate", "garbage!", "--to", DID], "token"),
        (["onboard", "--cpu", "1"], "--ram"),
        (["devstack", "--nodes", "0"], "--nodes"),
        (["peers", "frobnicate"], "frobnicate"),
        (["config", "get", "api.portt"], "api.portt"),
    ],
    ids=lambda value: " ".join(value)[:40] if isinstance(value, list) else None,
)
def test_bad_input_exits_2_naming_the_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], names: str
) -> None:
    main(["--home", str(tmp_path), "init", "--no-passphrase"])
    capsys.readouterr()
    code, out, err = run(capsys, "--home", str(tmp_path), *args)
    assert code == 2, (out, err)
    assert names in out + err


def test_no_node_running_exits_1_and_says_how_to_start_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "--home", str(tmp_path), "--api", "http://127.0.0.1:9", "status")
    assert code == 1
    assert "dms run" in err


class TestAgainstARunningNode:
    """Commands that read or change a running node, through its REST API."""

    async def test_status_onboard_resources_peers(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        async with running_node(tmp_path) as node:
            base = ["--home", str(node.home.root), "--api", node.api_url]

            def commands() -> None:
                code, out, _ = run(capsys, *base, "status", "--json")
                assert code == 0 and last_json(out)["did"] == node.did
                code, out, _ = run(capsys, *base, "status")
                assert node.did in out and "onboarded    no" in out
                code, out, _ = run(
                    capsys, *base, "onboard", "--cpu", "2", "--ram", "4GiB", "--disk", "10GiB"
                )
                assert code == 0 and "onboarded" in out
                code, out, err = run(
                    capsys, *base, "onboard", "--cpu", "2", "--ram", "lots", "--disk", "10GiB"
                )
                assert code == 2 and "ram" in err
                code, out, _ = run(capsys, *base, "resources", "--json")
                assert last_json(out)["onboarded"]["ram"] == 4 * 1024**3
                code, out, _ = run(capsys, *base, "resources")
                assert "onboarded" in out and "4GiB" in out
                code, out, _ = run(capsys, *base, "peers", "--json")
                assert code == 0 and last_json(out) == {"peers": []}
                code, out, _ = run(capsys, *base, "peers", "self", "--json")
                assert last_json(out)["did"] == node.did
                code, out, _ = run(capsys, *base, "allocations", "list", "--json")
                assert last_json(out) == {"allocations": []}
                code, _, err = run(capsys, *base, "peers", "ping", "12D3KooWnobody")
                assert code == 2 and "12D3KooWnobody" in err
                code, out, _ = run(capsys, *base, "offboard", "--json")
                assert code == 0 and last_json(out)["offboarded"] is True

            await trio.to_thread.run_sync(commands)


SERVICE = """
version: V1
metadata: {name: idle}
allocations:
  idle:
    type: service
    executor: "null"
    resources: {cpu: 0.5, ram: 64MiB, disk: 16MiB}
    execution: {args: [duration=1h]}
"""


class TestDeploymentsAgainstANode:
    """dms deploy and dms deployments against a node with an orchestrator (no provider)."""

    async def test_deploy_list_show_explain_cancel(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        ensemble = tmp_path / "idle.yaml"
        ensemble.write_text(SERVICE)
        async with running_node(tmp_path, orchestrator=True) as node:
            if node.orchestrator is None:
                pytest.skip("this build has no orchestrator")
            base = ["--home", str(node.home.root), "--api", node.api_url]

            def commands() -> None:
                code, out, err = run(capsys, *base, "deploy", str(ensemble), "--json")
                assert code == 0, err
                ident = last_json(out)["deployment_id"]
                code, out, _ = run(capsys, *base, "deployments", "list", "--json")
                assert [d["deployment_id"] for d in last_json(out)["items"]] == [ident]
                code, out, _ = run(capsys, *base, "deployments", "list")
                assert ident in out and "Preparing" in out
                code, out, _ = run(capsys, *base, "deployments", "show", ident)
                assert code == 0 and "idle" in out
                code, out, _ = run(capsys, *base, "deployments", "explain", ident)
                assert code == 0 and "waiting" in out
                code, _, err = run(capsys, *base, "deployments", "logs", ident)
                assert code == 2 and "allocation" in err
                code, out, _ = run(capsys, *base, "deployments", "cancel", ident)
                assert code == 0 and ident in out
                code, _, err = run(capsys, *base, "deployments", "show", "d-nothing")
                assert code == 2 and "d-nothing" in err

            await trio.to_thread.run_sync(commands)
