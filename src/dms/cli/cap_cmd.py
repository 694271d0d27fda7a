"""``dms cap new|anchor|grant|delegate|list|revoke``: the node's trust context and tokens.

The trust context is ``<home>/trust.json``. A running node reads it when it starts: restart the
node after changing it. Tokens are printed as one word (``token_to_text``) to pass on.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Annotated

import typer

from dms.cli.output import emit_json, fields, note, out, table
from dms.cli.state import CLIState

if TYPE_CHECKING:
    from dms.home import Home
    from dms.security import KeyPair, Token, TrustContext

app = typer.Typer(
    help="Capabilities: trust roots, anchors, and tokens granted, delegated, revoked.",
    no_args_is_help=True,
)
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]
KeyOption = Annotated[str, typer.Option("--key", help="The key that signs (see dms key list).")]
CapsOption = Annotated[
    list[str] | None,
    typer.Option("--cap", help="A behavior path granted (repeat): /dms/deployment, / for all"),
]
TopicsOption = Annotated[
    list[str] | None, typer.Option("--topic", help="A topic granted for broadcast (repeat)")
]


def _trust(home: Home) -> TrustContext:
    from dms.node.setup import NODE_KEY, keystore_for
    from dms.security import TrustContext, trust_path

    store = keystore_for(home)
    local = store.did(NODE_KEY) if store.exists(NODE_KEY) else ""
    return TrustContext.load(trust_path(home.root), local_did=local)


def _signer(home: Home, name: str) -> KeyPair:
    from dms.node.setup import load_key

    return load_key(home, name)


def _expiry(text: str) -> int:
    from dms.errors import InputError
    from dms.types.units import parse_duration

    ns = parse_duration(text, "--expiry")
    if ns <= 0:
        raise InputError("--expiry", text, "a duration above 0 (e.g. 1h, 30d)")
    return time.time_ns() + ns


def _action(text: str) -> str:
    from dms.errors import InputError
    from dms.security import Action

    allowed = (Action.INVOKE, Action.DELEGATE, Action.BROADCAST)
    if text not in {a.value for a in allowed}:
        raise InputError("--action", text, f"one of {', '.join(a.value for a in allowed)}")
    return text


def _token(text: str) -> Token:
    from dms.security import token_from_text

    return token_from_text(text)


def _emit_token(token: Token, json: bool) -> None:
    from dms.security import token_to_text

    if json:
        emit_json({"token": token_to_text(token), "decoded": token})
        return
    out().print(token_to_text(token))


@app.command("new")
def new(ctx: typer.Context) -> None:
    """Create the trust context (dms init already does); refuses to overwrite one."""
    from dms.node.setup import NODE_KEY, keystore_for
    from dms.security import TrustContext, trust_path

    state: CLIState = ctx.obj
    path = trust_path(state.home.root)
    store = keystore_for(state.home)
    local = store.did(NODE_KEY) if store.exists(NODE_KEY) else ""
    TrustContext.create(path, local_did=local)
    out().print(f"created {path}")


@app.command("anchor")
def anchor(
    ctx: typer.Context,
    root: Annotated[list[str] | None, typer.Option("--root", help="A DID to trust fully")] = None,
    require: Annotated[
        list[str] | None, typer.Option("--require", help="A delegate token admitting chains")
    ] = None,
    provide: Annotated[
        list[str] | None, typer.Option("--provide", help="A token this node presents")
    ] = None,
) -> None:
    """Add roots (DIDs), require anchors or provide anchors (tokens) to the trust context."""
    from dms.errors import InputError

    if not (root or require or provide):
        raise InputError(
            "anchor", "", "at least one of --root DID, --require TOKEN, --provide TOKEN"
        )
    state: CLIState = ctx.obj
    trust = _trust(state.home)
    for did in root or ():
        trust.add_root(did)
    for text in require or ():
        trust.add_require_anchor(_token(text))
    for text in provide or ():
        trust.add_provide_anchor(_token(text))
    path = trust.save()
    count = len(root or ()) + len(require or ()) + len(provide or ())
    out().print(f"added {count} anchor(s) to {path}")
    note("restart the node to apply")


@app.command("grant")
def grant(
    ctx: typer.Context,
    to: Annotated[str, typer.Option("--to", help="The subject's DID")],
    cap: CapsOption = None,
    topic: TopicsOption = None,
    action: Annotated[
        str, typer.Option("--action", help="invoke, delegate or broadcast")
    ] = "delegate",
    audience: Annotated[str, typer.Option("--audience", help="Only towards this DID")] = "",
    expiry: Annotated[str, typer.Option("--expiry", help="Valid for: 1h, 30d")] = "30d",
    depth: Annotated[int, typer.Option("--depth", min=0, help="Delegations allowed below")] = 0,
    key: KeyOption = "user",
    json: JsonOption = False,
) -> None:
    """Grant a capability token, signed by --key (the user key by default)."""
    from dms.security import Action
    from dms.security import grant as make_grant

    state: CLIState = ctx.obj
    expires_ns = _expiry(expiry)
    kind = Action(_action(action))
    signer = _signer(state.home, key)
    token = make_grant(
        signer,
        to,
        expires_ns=expires_ns,
        action=kind,
        capabilities=tuple(cap or ()),
        topics=tuple(topic or ()),
        audience=audience,
        depth=depth,
    )
    _emit_token(token, json)


@app.command("delegate")
def delegate(
    ctx: typer.Context,
    token: Annotated[str, typer.Argument(help="The parent token (granted to --key's DID)")],
    to: Annotated[str, typer.Option("--to", help="The new subject's DID")],
    cap: CapsOption = None,
    topic: TopicsOption = None,
    action: Annotated[str, typer.Option("--action")] = "delegate",
    expiry: Annotated[str | None, typer.Option("--expiry", help="Default: the parent's")] = None,
    depth: Annotated[int | None, typer.Option("--depth", min=0)] = None,
    key: KeyOption = "user",
    json: JsonOption = False,
) -> None:
    """Delegate part of a token to another DID; it may only narrow the parent."""
    from dms.security import Action
    from dms.security import delegate as make_delegation

    state: CLIState = ctx.obj
    parent = _token(token)
    expires_ns = _expiry(expiry) if expiry is not None else None
    kind = Action(_action(action))
    signer = _signer(state.home, key)
    child = make_delegation(
        signer,
        parent,
        to,
        action=kind,
        capabilities=tuple(cap) if cap else None,
        topics=tuple(topic) if topic else None,
        expires_ns=expires_ns,
        depth=depth,
    )
    _emit_token(child, json)


@app.command("list")
def list_(ctx: typer.Context, json: JsonOption = False) -> None:
    """Roots, anchors and revocations of this node's trust context."""
    state: CLIState = ctx.obj
    trust = _trust(state.home)
    snapshot = trust.snapshot()
    if json:
        emit_json(snapshot)
        return
    fields([("trust file", str(trust.path)), ("local DID", trust.local_did or "-")])
    table(("root DID",), [(did,) for did in snapshot.roots] or [("-",)])
    anchors = [
        (kind, t.subject, t.action.value, ", ".join(t.capabilities) or "-", t.revocation_id)
        for kind, tokens in (("require", snapshot.require), ("provide", snapshot.provide))
        for t in tokens
    ]
    if anchors:
        table(("anchor", "subject", "action", "capabilities", "id"), anchors)
    if snapshot.revocations:
        table(("revoked",), [(t.revocation_id,) for t in snapshot.revocations])


@app.command("revoke")
def revoke(
    ctx: typer.Context,
    token: Annotated[str, typer.Argument(help="The token to revoke, or a revoke token to apply")],
    key: KeyOption = "user",
    json: JsonOption = False,
) -> None:
    """Revoke a token you issued (signed by --key), or apply someone's revoke token here.

    Prints the revoke token: apply it on other nodes with ``dms cap revoke REVOKE_TOKEN``.
    """
    from dms.security import Action, revocation

    state: CLIState = ctx.obj
    given = _token(token)
    if given.action == Action.REVOKE:
        revoke_token = given
    else:
        revoke_token = revocation(_signer(state.home, key), given)
    trust = _trust(state.home)
    trust.revoke(revoke_token)
    trust.save()
    _emit_token(revoke_token, json)
    note(f"revoked {revoke_token.revocation_id}; restart the node to apply")
