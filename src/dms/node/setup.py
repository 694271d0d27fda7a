"""Set up a node home in one step (``dms init``) and read its secrets back (``dms run``).

What ``init_home`` creates, each only when missing (running it again changes nothing):

- ``keys/node.key``: the node's identity (its DID, and its libp2p peer id from the same key);
- ``keys/user.key``: the user's key, which signs capability tokens (``dms cap grant``);
- ``trust.json``: a trust context with the user as root (the node's own DID is always trusted);
- ``config.toml``: every setting with its default, plus what was given;
- ``api-token``: the bearer token of the REST API (mode 0600).

Keys are sealed with a passphrase (``DMS_PASSPHRASE`` or a prompt). With ``passphrase=None``
(``dms init --no-passphrase``) they are sealed under a fixed, public passphrase and listed in
``keys/UNPROTECTED``: anyone who can read the home can use them. That is for devstacks, tests
and throw-away nodes, and only when asked for.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec

from dms import config as cfg
from dms.errors import ConfigError
from dms.home import Home
from dms.security import (
    INTERACTIVE,
    MINIMUM,
    KeyPair,
    Keystore,
    TrustContext,
    passphrase_from_env_or_prompt,
    trust_path,
)
from dms.security.errors import KeystoreError

NODE_KEY = "node"
USER_KEY = "user"
UNPROTECTED_FILE = "UNPROTECTED"
UNPROTECTED_PASSPHRASE = "dms-unprotected-key"
"""Seals keys created with ``--no-passphrase``: public, so it protects nothing."""
TOKEN_BYTES = 32


class InitResult(msgspec.Struct, frozen=True, kw_only=True):
    home: str
    node_did: str
    user_did: str
    config_file: str
    trust_file: str
    api_token_file: str
    protected: bool
    """False when the keys were created with --no-passphrase."""
    created: tuple[str, ...]
    """What this run created (empty when the home was complete already)."""


def unprotected_names(home: Home) -> set[str]:
    path = home.keys_dir / UNPROTECTED_FILE
    if not path.exists():
        return set()
    return {line.strip() for line in path.read_text().splitlines() if line.strip()}


def mark_unprotected(home: Home, name: str) -> None:
    names = unprotected_names(home) | {name}
    path = home.keys_dir / UNPROTECTED_FILE
    path.write_text("".join(f"{n}\n" for n in sorted(names)))
    path.chmod(0o600)


def keystore_for(home: Home, *, unprotected: bool = False) -> Keystore:
    return Keystore(home.keys_dir, cost=MINIMUM if unprotected else INTERACTIVE)


def load_key(
    home: Home,
    name: str = NODE_KEY,
    *,
    env: Mapping[str, str] | None = None,
    passphrase: str | None = None,
) -> KeyPair:
    """Decrypt a key of the home: unprotected ones at once, others with the passphrase."""
    store = keystore_for(home)
    if not store.exists(name):
        raise KeystoreError(
            name, f"no such key in {home.keys_dir}; run `dms --home {home.root} init` first"
        )
    if name in unprotected_names(home):
        return store.load(name, UNPROTECTED_PASSPHRASE)
    return store.load(name, passphrase or passphrase_from_env_or_prompt(env=env))


def ensure_api_token(home: Home) -> str:
    """The REST API's bearer token, created (random, mode 0600) when missing."""
    path = home.api_token_file
    if path.exists():
        token = path.read_text().strip()
        if token:
            return token
    token = secrets.token_urlsafe(TOKEN_BYTES)
    home.root.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(token + "\n")
    return token


def read_api_token(home: Home) -> str:
    path = home.api_token_file
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def write_config(home: Home, settings: Mapping[str, Any]) -> Path:
    """config.toml with every section at its default, ``settings`` (``"api.port": 9100``) on top."""
    data: dict[str, dict[str, Any]] = msgspec.to_builtins(cfg.Config())
    existing = cfg.read_file(home.config_file)
    for section, values in existing.items():
        data.setdefault(section, {}).update(values)
    for key, value in settings.items():
        if key not in cfg.all_keys():
            raise ConfigError(key, f"unknown key; valid keys: {', '.join(cfg.all_keys())}")
        section, _, name = key.partition(".")
        data[section][name] = value
    cfg.build(data, str(home.config_file))
    home.config_file.write_text(cfg.dump(data))
    return home.config_file


def init_home(
    home: Home,
    *,
    passphrase: str | None,
    settings: Mapping[str, Any] | None = None,
    extra_roots: tuple[str, ...] = (),
) -> InitResult:
    """Create what the home lacks (see the module docstring). ``passphrase=None``: unprotected."""
    home.ensure()
    created: list[str] = []
    protected = passphrase is not None
    store = keystore_for(home, unprotected=not protected)
    dids: dict[str, str] = {}
    for name in (NODE_KEY, USER_KEY):
        if store.exists(name):
            dids[name] = store.did(name)
            continue
        if protected:
            assert passphrase is not None
            store.create(name, passphrase)
        else:
            store.create(name, UNPROTECTED_PASSPHRASE)
            mark_unprotected(home, name)
        dids[name] = store.did(name)
        created.append(f"key {name}")
    trust_file = trust_path(home.root)
    if trust_file.exists():
        trust = TrustContext.load(trust_file, local_did=dids[NODE_KEY])
    else:
        trust = TrustContext(local_did=dids[NODE_KEY], path=trust_file)
        created.append("trust context")
    changed = not trust_file.exists()
    for did in (dids[USER_KEY], *extra_roots):
        if did not in trust.roots:
            trust.add_root(did)
            changed = True
    if changed:
        trust.save()
    if not home.config_file.exists() or settings:
        if not home.config_file.exists():
            created.append("config")
        write_config(home, settings or {})
    if not home.api_token_file.exists():
        ensure_api_token(home)
        created.append("api token")
    return InitResult(
        home=str(home.root),
        node_did=dids[NODE_KEY],
        user_did=dids[USER_KEY],
        config_file=str(home.config_file),
        trust_file=str(trust_file),
        api_token_file=str(home.api_token_file),
        protected=NODE_KEY not in unprotected_names(home),
        created=tuple(created),
    )


def ask_passphrase(env: Mapping[str, str] | None = None) -> str:
    """For a new key: ``DMS_PASSPHRASE``, else ask twice on the terminal."""
    return passphrase_from_env_or_prompt(confirm=True, env=env)


# -- the running node, for the CLI ----------------------------------------------------------

RUNTIME_FILE = "node.json"


class RuntimeInfo(msgspec.Struct, frozen=True, kw_only=True):
    """What a running node writes into its home once ready (removed when it stops)."""

    pid: int
    did: str
    peer_id: str
    addresses: tuple[str, ...]
    api_url: str
    version: str
    started_ns: int
    ready_s: float = 0.0
    """Seconds from the process start to ready."""


def runtime_path(home: Home) -> Path:
    return home.root / RUNTIME_FILE


def write_runtime(home: Home, info: RuntimeInfo) -> Path:
    path = runtime_path(home)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    tmp.write_bytes(msgspec.json.encode(info))
    os.replace(tmp, path)
    return path


def read_runtime(home: Home) -> RuntimeInfo | None:
    """The running node's runtime file, or None (missing, unreadable, or its process is gone)."""
    path = runtime_path(home)
    try:
        info = msgspec.json.decode(path.read_bytes(), type=RuntimeInfo)
    except (OSError, msgspec.DecodeError):
        return None
    try:
        os.kill(info.pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return info


def remove_runtime(home: Home, pid: int | None = None) -> None:
    path = runtime_path(home)
    info = read_runtime(home)
    if info is None or pid is None or info.pid == pid:
        path.unlink(missing_ok=True)
