"""Capability tokens: signed, expiring grants that may be delegated and only ever narrow.

A token says: ``issuer`` lets ``subject`` perform ``action`` on ``capabilities`` (behavior
paths) and ``topics``, when presented to ``audience`` ("" = to anyone), until ``expires_ns``;
``subject`` may delegate it ``depth`` more times. A path implies every path below it:
``/dms/deployment`` implies ``/dms/deployment/commit``; ``/`` implies everything.

Actions: a ``delegate`` token grants everything in its scope (invoke, broadcast, and further
delegation while ``depth`` > 0); an ``invoke`` token grants calls to its capabilities; a
``broadcast`` token grants publishing on its topics; a ``revoke`` token grants nothing: it
withdraws the token ``issuer#subject#nonce`` (see :func:`revocation`).

A delegated token carries its ancestors in ``chain`` (root grant first, parent last), each
stored as a :class:`Link` (a token without its own chain, so decoding never recurses). Each
link was signed over its fields plus the links before it; the token's own signature covers
the whole chain. Rules checked for every parent -> child step: the parent is a ``delegate``
token; the child is signed by the parent's subject; its capabilities and topics are implied by
the parent's; its audience is the parent's (or any, when the parent's is ""); its expiry is not
later; its depth is lower. Time (expiry), revocation and which DIDs are trusted are checked by
:class:`dms.security.trust.TrustContext`; everything here is independent of them, so the result
of :meth:`ChainVerifier.verify` is cached.

Signatures are over ``b"dms-token-v1\\x00"`` + the msgspec JSON of the token with an empty
signature (fields in definition order: deterministic).
"""

from __future__ import annotations

import base64
import binascii
import enum
import re
import secrets
from collections import OrderedDict
from typing import Annotated

import msgspec

from dms.security.did import public_key_from_did
from dms.security.errors import DelegationError, InvalidDID, InvalidSignature, InvalidToken
from dms.security.keys import KeyPair, verify_signature

DOMAIN = b"dms-token-v1\x00"
MAX_DEPTH = 16
"""The most delegations a grant may allow, and the longest chain a token may carry."""
MAX_ITEMS = 64
"""The most capabilities (and the most topics) one token may list."""

_B58 = "1-9A-HJ-NP-Za-km-z"
DID_PATTERN = rf"^did:key:z[{_B58}]{{40,60}}$"
AUDIENCE_PATTERN = rf"^(did:key:z[{_B58}]{{40,60}})?$"
PATH_PATTERN = r"^(/|(/[A-Za-z0-9_:@+=~-][A-Za-z0-9_.:@+=~-]{0,127}){1,32})$"
"""``/``, or segments of letters, digits and ``_.:@+=~-`` (none starting with a dot)."""
NONCE_PATTERN = r"^[A-Za-z0-9_-]{8,64}$"
_PATH = re.compile(PATH_PATTERN)

DID = Annotated[str, msgspec.Meta(pattern=DID_PATTERN)]
Audience = Annotated[str, msgspec.Meta(pattern=AUDIENCE_PATTERN)]
CapabilityPath = Annotated[str, msgspec.Meta(pattern=PATH_PATTERN, max_length=1024)]
Nonce = Annotated[str, msgspec.Meta(pattern=NONCE_PATTERN)]
Depth = Annotated[int, msgspec.Meta(ge=0, le=MAX_DEPTH)]
Expiry = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
Signature = Annotated[bytes, msgspec.Meta(max_length=64)]
Paths = Annotated[tuple[CapabilityPath, ...], msgspec.Meta(max_length=MAX_ITEMS)]


class Action(enum.StrEnum):
    INVOKE = "invoke"
    DELEGATE = "delegate"
    BROADCAST = "broadcast"
    REVOKE = "revoke"


class Link(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One signed ancestor of a delegated token: the same fields as a token, minus ``chain``."""

    issuer: DID
    subject: DID
    audience: Audience = ""
    action: Action
    capabilities: Paths = ()
    topics: Paths = ()
    expires_ns: Expiry
    nonce: Nonce
    depth: Depth = 0
    signature: Signature = b""


Chain = Annotated[tuple[Link, ...], msgspec.Meta(max_length=MAX_DEPTH)]


class Token(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A signed capability grant with its delegation chain (root grant first, parent last)."""

    issuer: DID
    subject: DID
    audience: Audience = ""
    action: Action
    capabilities: Paths = ()
    topics: Paths = ()
    expires_ns: Expiry
    nonce: Nonce
    depth: Depth = 0
    chain: Chain = ()
    signature: Signature = b""

    @property
    def revocation_id(self) -> str:
        return revocation_id(self)

    def as_link(self) -> Link:
        return Link(
            issuer=self.issuer,
            subject=self.subject,
            audience=self.audience,
            action=self.action,
            capabilities=self.capabilities,
            topics=self.topics,
            expires_ns=self.expires_ns,
            nonce=self.nonce,
            depth=self.depth,
            signature=self.signature,
        )

    def links(self) -> tuple[Token, ...]:
        """The chain as tokens, each with the chain it was signed with, ending with this one."""
        return (*(_link_token(self.chain, i) for i in range(len(self.chain))), self)

    @property
    def root(self) -> Token:
        """The first grant of the chain (this token when it is not delegated)."""
        return _link_token(self.chain, 0) if self.chain else self


Grant = Token | Link


def _link_token(chain: tuple[Link, ...], index: int) -> Token:
    link = chain[index]
    return Token(
        issuer=link.issuer,
        subject=link.subject,
        audience=link.audience,
        action=link.action,
        capabilities=link.capabilities,
        topics=link.topics,
        expires_ns=link.expires_ns,
        nonce=link.nonce,
        depth=link.depth,
        chain=chain[:index],
        signature=link.signature,
    )


def revocation_id(token: Grant) -> str:
    """``issuer#subject#nonce``: what a revocation names."""
    return f"{token.issuer}#{token.subject}#{token.nonce}"


def implies(granted: str, wanted: str) -> bool:
    """Whether the path ``granted`` covers ``wanted`` (itself or any path below it)."""
    if granted == "/" or granted == wanted:
        return True
    return wanted.startswith(granted) and wanted[len(granted) : len(granted) + 1] == "/"


def covers(granted: tuple[str, ...], wanted: str) -> bool:
    return any(implies(g, wanted) for g in granted)


def grants(token: Grant, action: Action, capability: str) -> bool:
    """Whether ``token`` on its own (time, trust and chain aside) allows ``action`` on it.

    Broadcast is checked against topics, every other action against capabilities. A delegate
    token allows every action in its scope (delegate itself only while depth > 0); other tokens
    allow only their own action. Revoke tokens allow nothing.
    """
    if token.action == Action.REVOKE:
        return False
    if token.action != Action.DELEGATE and token.action != action:
        return False
    if action == Action.DELEGATE and token.depth < 1:
        return False
    paths = token.topics if action == Action.BROADCAST else token.capabilities
    return covers(paths, capability)


def check_path(field: str, value: str) -> str:
    """A capability path or topic, or :class:`InvalidToken` naming the field."""
    if not isinstance(value, str) or len(value) > 1024 or not _PATH.fullmatch(value):
        raise InvalidToken(field, value, "a path like /dms/deployment (or / for everything)")
    return value


def new_nonce() -> str:
    return secrets.token_hex(16)


def signing_payload(token: Token) -> bytes:
    """What the issuer signs: the domain tag and the token without its signature."""
    return DOMAIN + msgspec.json.encode(msgspec.structs.replace(token, signature=b""))


def token_id(token: Grant) -> str:
    """A short, readable reference for error messages."""
    return f"{token.nonce} ({token.issuer[:16]}...->{token.subject[:16]}...)"


def check_narrows(parent: Grant, child: Grant) -> None:
    """Raise :class:`DelegationError` unless ``child`` is a valid delegation of ``parent``."""
    cid = token_id(child)
    if parent.action != Action.DELEGATE:
        raise DelegationError(cid, "parent action", str(parent.action), "delegate")
    if child.action == Action.REVOKE:
        raise DelegationError(cid, "action", str(child.action), "invoke, broadcast or delegate")
    if child.issuer != parent.subject:
        raise DelegationError(cid, "issuer", child.issuer, f"the parent's subject {parent.subject}")
    if parent.depth < 1:
        raise DelegationError(cid, "depth", child.depth, "allowed: the parent's depth is 0")
    if child.depth > parent.depth - 1:
        raise DelegationError(
            cid, "depth", child.depth, f"at most {parent.depth - 1} (the parent's depth - 1)"
        )
    for cap in child.capabilities:
        if not covers(parent.capabilities, cap):
            raise DelegationError(
                cid, "capabilities", cap, f"implied by the parent's {list(parent.capabilities)}"
            )
    for topic in child.topics:
        if not covers(parent.topics, topic):
            raise DelegationError(
                cid, "topics", topic, f"implied by the parent's {list(parent.topics)}"
            )
    if child.expires_ns > parent.expires_ns:
        raise DelegationError(
            cid, "expires_ns", child.expires_ns, f"at most the parent's {parent.expires_ns}"
        )
    if parent.audience and child.audience != parent.audience:
        raise DelegationError(cid, "audience", child.audience, f"the parent's {parent.audience}")


class VerifiedChain(msgspec.Struct, frozen=True):
    """What verification found, independent of time and of the trust context."""

    token: Token
    root: Token
    revocation_ids: tuple[str, ...]
    """Of every link and the token itself: any one revoked refuses the token."""
    expires_ns: int
    """The earliest expiry along the chain."""


def _validate_fields(token: Token) -> None:
    """Hold a token built in code to the same schema as one decoded from the wire."""
    try:
        msgspec.json.decode(msgspec.json.encode(token), type=Token)
    except msgspec.ValidationError as exc:
        field = _field_of(exc)
        raise InvalidToken(field, _value_at(token, field), _accepted(exc)) from exc


def _value_at(token: Token, path: str) -> object:
    value: object = token
    for part in re.findall(r"[A-Za-z_]+|\[\d+\]", path):
        try:
            value = value[int(part[1:-1])] if part.startswith("[") else getattr(value, part)  # type: ignore[index]
        except (AttributeError, IndexError, TypeError):
            return None
    return value


def _field_of(exc: msgspec.ValidationError) -> str:
    match = re.search(r"at `\$\.?(.*?)`", str(exc))
    return match.group(1) if match else "token"


def _accepted(exc: msgspec.ValidationError) -> str:
    text = str(exc).split(" - at `", 1)[0]
    return text.removeprefix("Expected ")


def verify_chain(token: Token) -> VerifiedChain:
    """Check every signature and every delegation step of ``token``; no caching.

    Raises :class:`InvalidToken`, :class:`InvalidSignature` or :class:`DelegationError`.
    """
    if not isinstance(token, Token):
        raise InvalidToken("token", type(token).__name__, "a Token")
    _validate_fields(token)
    links = token.links()
    for index, link in enumerate(links):
        try:
            public_key = public_key_from_did(link.issuer)
        except InvalidDID as exc:
            raise InvalidToken("issuer", link.issuer, "an Ed25519 did:key") from exc
        if len(link.signature) != 64 or not verify_signature(
            public_key, signing_payload(link), link.signature
        ):
            where = "token" if index == len(links) - 1 else f"chain[{index}]"
            raise InvalidSignature(f"{where} {token_id(link)}", link.issuer)
        if index:
            check_narrows(links[index - 1], link)
    return VerifiedChain(
        token=token,
        root=links[0],
        revocation_ids=tuple(revocation_id(link) for link in links),
        expires_ns=min(link.expires_ns for link in links),
    )


class ChainVerifier:
    """:func:`verify_chain` with a bounded cache keyed by signature (the hot path: every message).

    A hit is only used when the cached token is equal to the one presented, so a token with a
    copied signature and other content is verified afresh (and refused).
    """

    def __init__(self, max_entries: int = 4096) -> None:
        self._max = max_entries
        self._cache: OrderedDict[bytes, VerifiedChain] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def verify(self, token: Token) -> VerifiedChain:
        signature = getattr(token, "signature", None)
        if isinstance(signature, bytes):
            cached = self._cache.get(signature)
            if cached is not None and cached.token == token:
                self.hits += 1
                self._cache.move_to_end(signature)
                return cached
        self.misses += 1
        verified = verify_chain(token)
        self._cache[token.signature] = verified
        if len(self._cache) > self._max:
            self._cache.popitem(last=False)
        return verified

    def clear(self) -> None:
        self._cache.clear()


def sign(keypair: KeyPair, unsigned: Token) -> Token:
    """Sign ``unsigned`` as its issuer, then verify the result (signature and chain)."""
    if keypair.did != unsigned.issuer:
        raise InvalidToken("issuer", unsigned.issuer, f"the signing key's DID {keypair.did}")
    signed = msgspec.structs.replace(unsigned, signature=keypair.sign(signing_payload(unsigned)))
    verify_chain(signed)
    return signed


def grant(
    issuer: KeyPair,
    subject: str,
    *,
    expires_ns: int,
    action: Action = Action.DELEGATE,
    capabilities: tuple[str, ...] = (),
    topics: tuple[str, ...] = (),
    audience: str = "",
    depth: int = 0,
    nonce: str | None = None,
) -> Token:
    """A new root grant from ``issuer`` to ``subject`` (``dms cap grant``)."""
    return sign(
        issuer,
        Token(
            issuer=issuer.did,
            subject=subject,
            audience=audience,
            action=Action(action),
            capabilities=tuple(capabilities),
            topics=tuple(topics),
            expires_ns=expires_ns,
            nonce=nonce or new_nonce(),
            depth=depth,
        ),
    )


def delegate(
    issuer: KeyPair,
    parent: Token,
    subject: str,
    *,
    action: Action = Action.DELEGATE,
    capabilities: tuple[str, ...] | None = None,
    topics: tuple[str, ...] | None = None,
    audience: str | None = None,
    expires_ns: int | None = None,
    depth: int | None = None,
    nonce: str | None = None,
) -> Token:
    """Delegate (part of) ``parent`` to ``subject``; ``issuer`` must be the parent's subject.

    Omitted fields keep the parent's scope (depth: the parent's minus one). Anything wider than
    the parent raises :class:`DelegationError` before a signature is made.
    """
    if len(parent.chain) >= MAX_DEPTH:
        raise DelegationError(
            token_id(parent), "chain", len(parent.chain) + 1, f"at most {MAX_DEPTH} links"
        )
    child = Token(
        issuer=issuer.did,
        subject=subject,
        audience=parent.audience if audience is None else audience,
        action=Action(action),
        capabilities=parent.capabilities if capabilities is None else tuple(capabilities),
        topics=parent.topics if topics is None else tuple(topics),
        expires_ns=parent.expires_ns if expires_ns is None else expires_ns,
        nonce=nonce or new_nonce(),
        depth=max(parent.depth - 1, 0) if depth is None else depth,
        chain=(*parent.chain, parent.as_link()),
    )
    check_narrows(parent, child)
    return sign(issuer, child)


def revocation(issuer: KeyPair, token: Grant) -> Token:
    """A revoke token withdrawing ``token``; only the token's issuer can make one."""
    if issuer.did != token.issuer:
        raise InvalidToken("issuer", issuer.did, f"the revoked token's issuer {token.issuer}")
    return sign(
        issuer,
        Token(
            issuer=token.issuer,
            subject=token.subject,
            action=Action.REVOKE,
            expires_ns=token.expires_ns,
            nonce=token.nonce,
        ),
    )


def encode_token(token: Token) -> bytes:
    """The token's JSON (what travels; :func:`decode_token` reads it back)."""
    return msgspec.json.encode(token)


def decode_token(data: bytes | str) -> Token:
    """A token from its JSON, refusing anything but the exact bytes :func:`encode_token` makes.

    The canonical check refuses alternative spellings (whitespace, key order, base64 padding
    bits), so any change to a token's bytes is refused, not only changes to its meaning.
    """
    raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    try:
        token = msgspec.json.decode(raw, type=Token)
    except msgspec.ValidationError as exc:
        raise InvalidToken(_field_of(exc), None, _accepted(exc)) from exc
    except (msgspec.DecodeError, RecursionError, UnicodeDecodeError) as exc:
        raise InvalidToken("token", raw[:80], f"a dms token in JSON ({exc})") from exc
    if msgspec.json.encode(token) != raw:
        raise InvalidToken("token", raw[:80], "the canonical JSON of a dms token")
    return token


def token_to_text(token: Token) -> str:
    """One printable word (URL-safe base64 of the JSON): for command lines and files."""
    return base64.urlsafe_b64encode(encode_token(token)).decode("ascii").rstrip("=")


def token_from_text(text: str) -> Token:
    """Read :func:`token_to_text` output (or the token's JSON); any altered byte is refused."""
    text = text.strip()
    if text.startswith("{"):
        return decode_token(text)
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise InvalidToken("token", text[:80], "URL-safe base64 of a dms token") from exc
    token = decode_token(raw)
    if token_to_text(token) != text:
        raise InvalidToken("token", text[:80], "the canonical text of a dms token")
    return token
