"""The public names of dms.security, pinned: dms.actor and the CLI are written against them."""

from __future__ import annotations

import inspect

import dms.security as security
from dms.errors import SecurityError


class TestPublicAPI:
    """What the package exports, with the signatures other parts rely on."""

    def test_every_exported_name_exists(self) -> None:
        for name in security.__all__:
            assert hasattr(security, name), name

    def test_the_contract_names_are_exported(self) -> None:
        contract = {
            "KeyPair",
            "verify_signature",
            "did_from_public_key",
            "public_key_from_did",
            "Keystore",
            "passphrase_from_env_or_prompt",
            "Action",
            "Token",
            "TrustContext",
            "InvalidSignature",
            "TokenExpired",
            "Revoked",
            "Unauthorized",
            "DelegationError",
            "InvalidDID",
            "KeystoreError",
        }
        assert contract <= set(security.__all__)

    def test_every_exported_error_is_a_security_error(self) -> None:
        errors = [
            v
            for v in map(security.__dict__.get, security.__all__)
            if inspect.isclass(v) and issubclass(v, Exception)
        ]
        assert len(errors) >= 15
        assert all(issubclass(e, SecurityError) for e in errors)

    def test_authorize_and_tokens_for_take_the_agreed_arguments(self) -> None:
        authorize = inspect.signature(security.TrustContext.authorize).parameters
        assert list(authorize)[:6] == [
            "self",
            "caller_did",
            "action",
            "capability",
            "tokens",
            "now_ns",
        ]
        tokens_for = inspect.signature(security.TrustContext.tokens_for).parameters
        assert list(tokens_for)[:5] == ["self", "audience_did", "capability", "action", "now_ns"]

    def test_the_actions_have_the_agreed_values(self) -> None:
        assert {a.value for a in security.Action} == {"invoke", "delegate", "broadcast", "revoke"}
