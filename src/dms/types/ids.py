"""Identifiers. Random, URL-safe, sortable by nothing: never parse meaning out of them."""

from __future__ import annotations

import secrets


def new_id(prefix: str = "") -> str:
    """A 128-bit random id as 32 hex characters, with an optional readable prefix."""
    token = secrets.token_hex(16)
    return f"{prefix}-{token}" if prefix else token
