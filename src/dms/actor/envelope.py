"""Envelopes: what one actor sends another, and how it is signed.

On the wire a message is a :class:`SignedEnvelope`: the msgpack ``body`` of an
:class:`Envelope` and the sender's Ed25519 signature over ``DOMAIN + body``. The signature
covers the exact bytes received, so verification never re-encodes anything; the domain prefix
keeps an envelope signature from ever passing for a token signature (or the reverse).

The payload is the msgspec JSON of the behavior's typed request (or of a :class:`Reply`), so
the signature covers the exact payload bytes too. Replies to an invoke go to the one-shot
behavior ``/dms/actor/replyto/<nonce>`` on the caller.
"""

from __future__ import annotations

import re
from typing import Annotated

import msgspec

from dms.actor.errors import ErrorCode, MalformedEnvelope
from dms.actor.handle import Handle
from dms.security import InvalidSignature, KeyPair, Token, public_key_from_did, verify_signature
from dms.types import quantity

DOMAIN = b"dms-envelope-v1\x00"
REPLY_PREFIX = "/dms/actor/replyto/"

Path = Annotated[str, msgspec.Meta(max_length=1024)]
Nonce = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Expiry = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
Tokens = Annotated[tuple[Token, ...], msgspec.Meta(max_length=16)]


class Envelope(msgspec.Struct, frozen=True, array_like=True):
    """A message to ``to``'s ``behavior`` (the issue's ``from`` is ``sender`` here).

    ``expiry`` is wall-clock nanoseconds since the epoch. ``reply_to`` is set on invokes (the
    reply behavior on the sender); ``topic`` on broadcasts. ``tokens`` are the capability
    tokens that authorize the sender.
    """

    to: Handle
    sender: Handle
    behavior: Path
    nonce: Nonce
    expiry: Expiry
    reply_to: Path = ""
    topic: Path = ""
    payload: bytes = b""
    tokens: Tokens = ()


class SignedEnvelope(msgspec.Struct, frozen=True, array_like=True):
    """The frame on the wire: an encoded envelope and its signature."""

    body: bytes
    signature: Annotated[bytes, msgspec.Meta(max_length=64)]


class ErrorInfo(msgspec.Struct, frozen=True, kw_only=True):
    """Why an invoke failed, as the caller receives it."""

    code: ErrorCode
    type: str
    message: str
    field: str = ""


class Reply(msgspec.Struct, frozen=True, kw_only=True):
    """The payload of a reply: the handler's JSON result, or an error."""

    result: msgspec.Raw = msgspec.Raw(b"null")
    error: ErrorInfo | None = None


_encoder = msgspec.msgpack.Encoder()
_envelope_decoder = msgspec.msgpack.Decoder(Envelope)
_signed_decoder = msgspec.msgpack.Decoder(SignedEnvelope)
# Quantities (Size, Duration, ...) travel in their exact text form, as in ensemble files.
_json_encoder = msgspec.json.Encoder(enc_hook=quantity.enc_hook)
_reply_decoder = msgspec.json.Decoder(Reply)
_AT = re.compile(r"at `\$(.*?)`")


def encode_payload(message: object) -> bytes:
    return _json_encoder.encode(message)


def field_of(exc: msgspec.ValidationError) -> str:
    """The dotted field a msgspec validation error points at (``""`` for the whole value)."""
    match = _AT.search(str(exc))
    return match.group(1).lstrip(".") if match else ""


def seal(envelope: Envelope, keypair: KeyPair) -> bytes:
    """Encode and sign ``envelope`` as ``keypair`` (which must be the sender's key)."""
    body = _encoder.encode(envelope)
    return _encoder.encode(SignedEnvelope(body=body, signature=keypair.sign(DOMAIN + body)))


def open_frame(frame: bytes, authenticated_did: str | None = None) -> Envelope:
    """Decode a frame and verify its signature against the sender's DID.

    ``authenticated_did`` is the DID whose key the transport proved the frame's sender holds
    (``Network.authenticated_did``). An envelope whose sender is that very DID is not verified
    again: only that key's holder could have put it on that connection. Any other sender (an
    actor with a key of its own, a forgery) is verified. Raises MalformedEnvelope, InvalidDID
    or InvalidSignature.
    """
    try:
        signed = _signed_decoder.decode(frame)
        envelope = _envelope_decoder.decode(signed.body)
    except msgspec.ValidationError as exc:
        raise MalformedEnvelope(
            field_of(exc) or "envelope", None, "a signed dms envelope", detail=str(exc)
        ) from exc
    except msgspec.DecodeError as exc:
        raise MalformedEnvelope(
            "frame", f"{len(frame)} bytes", "a signed dms envelope (msgpack)", detail=str(exc)
        ) from exc
    if authenticated_did and envelope.sender.did == authenticated_did:
        return envelope
    public_key = public_key_from_did(envelope.sender.did)
    if not verify_signature(public_key, DOMAIN + signed.body, signed.signature):
        raise InvalidSignature(
            f"envelope {envelope.nonce} to {envelope.behavior}", envelope.sender.did
        )
    return envelope


def decode_reply(payload: bytes) -> Reply:
    try:
        return _reply_decoder.decode(payload)
    except msgspec.DecodeError as exc:
        raise MalformedEnvelope("payload", None, "a reply", detail=str(exc)) from exc
