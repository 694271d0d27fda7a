"""Key files in the node home, encrypted with a passphrase.

One file per key, ``<keys_dir>/<name>.key``, mode 0600: msgspec JSON holding the DID (so keys can
be listed without the passphrase), the Argon2id parameters and salt, and the seed sealed with
XSalsa20-Poly1305 (PyNaCl ``SecretBox``) under the key Argon2id derives from the passphrase.
A private key is never written in clear. Files are written to a temporary name and linked into
place, so a crash leaves either no key or a whole key, and an existing key is never overwritten.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import re
import secrets
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Literal

import msgspec
import nacl.exceptions
import nacl.pwhash
import nacl.secret

from dms.log import get_logger
from dms.security.did import is_did
from dms.security.errors import KeystoreError
from dms.security.keys import KeyPair

log = get_logger(component="keystore")

PASSPHRASE_ENV = "DMS_PASSPHRASE"
KEY_SUFFIX = ".key"
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_ACCEPTED_NAME = "1-64 letters, digits, '_', '.', '-', starting with a letter or digit"
_argon = nacl.pwhash.argon2id


class KdfCost(msgspec.Struct, frozen=True):
    """Argon2id work factors. ``INTERACTIVE`` (64 MiB, 2 passes, ~0.1 s) is the default."""

    opslimit: int
    memlimit: int


INTERACTIVE = KdfCost(_argon.OPSLIMIT_INTERACTIVE, _argon.MEMLIMIT_INTERACTIVE)
MODERATE = KdfCost(_argon.OPSLIMIT_MODERATE, _argon.MEMLIMIT_MODERATE)
MINIMUM = KdfCost(_argon.OPSLIMIT_MIN, _argon.MEMLIMIT_MIN)
"""For tests only: offers no protection against guessing."""
_MAX_OPSLIMIT = 16
_MAX_MEMLIMIT = _argon.MEMLIMIT_SENSITIVE
"""A key file may not ask for more than this work (a crafted file must not exhaust the node)."""


class KeyFile(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    version: Literal[1] = 1
    type: Literal["ed25519"] = "ed25519"
    did: str
    kdf: Literal["argon2id"] = "argon2id"
    opslimit: int
    memlimit: int
    salt: bytes
    sealed: bytes
    """nonce + ciphertext + MAC of the 32-byte seed (``SecretBox.encrypt``)."""


class KeyInfo(msgspec.Struct, frozen=True):
    """What ``dms key list`` shows: no secret in it."""

    name: str
    did: str


def check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise KeystoreError(str(name), f"is not a valid key name ({_ACCEPTED_NAME})")
    return name


def _derive(passphrase: str, salt: bytes, cost: KdfCost) -> bytes:
    return bytes(
        _argon.kdf(
            nacl.secret.SecretBox.KEY_SIZE,
            passphrase.encode("utf-8"),
            salt,
            opslimit=cost.opslimit,
            memlimit=cost.memlimit,
        )
    )


def seal(name: str, keypair: KeyPair, passphrase: str, cost: KdfCost = INTERACTIVE) -> KeyFile:
    if not passphrase:
        raise KeystoreError(name, "the passphrase is empty; accepted: a non-empty passphrase")
    salt = secrets.token_bytes(_argon.SALTBYTES)
    box = nacl.secret.SecretBox(_derive(passphrase, salt, cost))
    return KeyFile(
        did=keypair.did,
        opslimit=cost.opslimit,
        memlimit=cost.memlimit,
        salt=salt,
        sealed=bytes(box.encrypt(keypair.seed)),
    )


def unseal(name: str, key_file: KeyFile, passphrase: str) -> KeyPair:
    if not 1 <= key_file.opslimit <= _MAX_OPSLIMIT:
        raise KeystoreError(name, f"opslimit {key_file.opslimit} is not in 1..{_MAX_OPSLIMIT}")
    if not _argon.MEMLIMIT_MIN <= key_file.memlimit <= _MAX_MEMLIMIT:
        raise KeystoreError(
            name,
            f"memlimit {key_file.memlimit} is not in {_argon.MEMLIMIT_MIN}..{_MAX_MEMLIMIT}",
        )
    if len(key_file.salt) != _argon.SALTBYTES:
        raise KeystoreError(name, f"salt has {len(key_file.salt)} bytes, not {_argon.SALTBYTES}")
    cost = KdfCost(key_file.opslimit, key_file.memlimit)
    box = nacl.secret.SecretBox(_derive(passphrase, key_file.salt, cost))
    try:
        seed = bytes(box.decrypt(key_file.sealed))
    except nacl.exceptions.CryptoError as exc:
        raise KeystoreError(name, "wrong passphrase, or the key file was altered") from exc
    keypair = KeyPair.from_seed(seed)
    if keypair.did != key_file.did:
        raise KeystoreError(name, f"the key inside is {keypair.did}, not the listed {key_file.did}")
    return keypair


class Keystore:
    """Named, passphrase-encrypted Ed25519 keys in one folder (``Home.keys_dir``)."""

    def __init__(self, keys_dir: Path, *, cost: KdfCost = INTERACTIVE) -> None:
        self.keys_dir = Path(keys_dir)
        self.cost = cost

    def path(self, name: str) -> Path:
        return self.keys_dir / f"{check_name(name)}{KEY_SUFFIX}"

    def exists(self, name: str) -> bool:
        return self.path(name).exists()

    def create(self, name: str, passphrase: str) -> KeyPair:
        """Generate and store a new key; refuses to overwrite an existing one."""
        return self.add(name, KeyPair.generate(), passphrase)

    def add(self, name: str, keypair: KeyPair, passphrase: str) -> KeyPair:
        """Store an existing key pair (an import); refuses to overwrite an existing one."""
        path = self.path(name)
        if path.exists():
            raise KeystoreError(name, f"already exists at {path}; choose another name")
        data = msgspec.json.encode(seal(name, keypair, passphrase, self.cost))
        self._ensure_dir()
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.link(tmp, path)  # fails if the name was taken meanwhile: never overwrites
        except FileExistsError as exc:
            raise KeystoreError(name, f"already exists at {path}; choose another name") from exc
        except OSError as exc:
            raise KeystoreError(name, f"cannot write {path}: {exc.strerror}") from exc
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        log.info("key created", key=name, did=keypair.did)
        return keypair

    def load(self, name: str, passphrase: str) -> KeyPair:
        """Decrypt a key; a wrong passphrase or altered file raises :class:`KeystoreError`."""
        return unseal(name, self._read(name), passphrase)

    def did(self, name: str) -> str:
        """A key's DID, read without the passphrase."""
        return self._read(name).did

    def names(self) -> list[str]:
        if not self.keys_dir.is_dir():
            return []
        found = (p.name[: -len(KEY_SUFFIX)] for p in self.keys_dir.glob(f"*{KEY_SUFFIX}"))
        return sorted(n for n in found if NAME_PATTERN.fullmatch(n))

    def entries(self) -> list[KeyInfo]:
        """Name and DID of every readable key (``dms key list``)."""
        infos: list[KeyInfo] = []
        for name in self.names():
            try:
                infos.append(KeyInfo(name, self.did(name)))
            except KeystoreError as exc:
                log.warning("unreadable key file skipped", key=name, error=str(exc))
        return infos

    def _ensure_dir(self) -> None:
        try:
            self.keys_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise KeystoreError("", f"cannot create {self.keys_dir}: {exc.strerror}") from exc

    def _read(self, name: str) -> KeyFile:
        path = self.path(name)
        try:
            mode = path.stat().st_mode
            data = path.read_bytes()
        except FileNotFoundError as exc:
            known = ", ".join(self.names()) or "none"
            raise KeystoreError(name, f"no such key in {self.keys_dir} (keys: {known})") from exc
        except OSError as exc:
            raise KeystoreError(name, f"cannot read {path}: {exc.strerror}") from exc
        if mode & 0o077:
            log.warning("key file readable by others", key=name, path=str(path), mode=oct(mode))
        try:
            key_file = msgspec.json.decode(data, type=KeyFile)
        except msgspec.DecodeError as exc:
            raise KeystoreError(name, f"{path} is not a dms key file: {exc}") from exc
        if not is_did(key_file.did):
            raise KeystoreError(name, f"{path} lists an invalid DID {key_file.did!r}")
        return key_file


def passphrase_from_env_or_prompt(
    *,
    confirm: bool = False,
    env: Mapping[str, str] | None = None,
    prompt: Callable[[str], str] = getpass.getpass,
) -> str:
    """``DMS_PASSPHRASE`` if set, else ask on the terminal (twice when ``confirm``)."""
    env = os.environ if env is None else env
    if PASSPHRASE_ENV in env:
        value = env[PASSPHRASE_ENV]
        if not value:
            raise KeystoreError("", f"{PASSPHRASE_ENV} is set but empty; accepted: a passphrase")
        return value
    try:
        first = prompt("Passphrase: ")
        if not first:
            raise KeystoreError("", "the passphrase is empty; accepted: a non-empty passphrase")
        if confirm and prompt("Repeat passphrase: ") != first:
            raise KeystoreError("", "the two passphrases differ")
    except EOFError as exc:
        raise KeystoreError(
            "", f"no passphrase: set {PASSPHRASE_ENV} or run on a terminal"
        ) from exc
    return first
