"""Keys at rest: encrypted with a passphrase, private to the owner, never overwritten."""

from __future__ import annotations

import stat
from pathlib import Path

import msgspec
import pytest

from dms.errors import SecurityError
from dms.security import (
    INTERACTIVE,
    MINIMUM,
    PASSPHRASE_ENV,
    KeyInfo,
    KeyPair,
    Keystore,
    KeystoreError,
    passphrase_from_env_or_prompt,
)
from dms.security.keystore import KeyFile


@pytest.fixture
def store(tmp_path: Path) -> Keystore:
    return Keystore(tmp_path / "keys", cost=MINIMUM)


class TestCreateAndLoad:
    """A created key loads back with its passphrase and with nothing else."""

    def test_a_created_key_loads_back_with_the_same_identity(self, store: Keystore) -> None:
        created = store.create("node", "correct horse")
        loaded = store.load("node", "correct horse")
        assert loaded.did == created.did
        assert loaded.seed == created.seed

    def test_the_default_cost_is_interactive_argon2id(self, tmp_path: Path) -> None:
        store = Keystore(tmp_path)
        store.create("node", "pw")
        key_file = msgspec.json.decode(store.path("node").read_bytes(), type=KeyFile)
        assert (key_file.opslimit, key_file.memlimit) == (
            INTERACTIVE.opslimit,
            INTERACTIVE.memlimit,
        )
        assert key_file.kdf == "argon2id"
        assert store.load("node", "pw").did == key_file.did

    def test_a_wrong_passphrase_is_refused_with_a_keystore_error(self, store: Keystore) -> None:
        store.create("node", "right")
        with pytest.raises(KeystoreError, match="wrong passphrase") as info:
            store.load("node", "wrong")
        assert isinstance(info.value, SecurityError)

    def test_an_existing_key_is_never_overwritten(self, store: Keystore) -> None:
        first = store.create("node", "pw")
        with pytest.raises(KeystoreError, match="already exists"):
            store.create("node", "pw")
        assert store.load("node", "pw").did == first.did

    def test_an_existing_key_pair_can_be_imported(self, store: Keystore) -> None:
        kp = KeyPair.generate()
        store.add("imported", kp, "pw")
        assert store.load("imported", "pw") == kp

    def test_a_missing_key_is_refused_naming_the_known_keys(self, store: Keystore) -> None:
        store.create("user", "pw")
        with pytest.raises(KeystoreError, match=r"no such key.*user"):
            store.load("node", "pw")

    def test_an_empty_passphrase_is_refused(self, store: Keystore) -> None:
        with pytest.raises(KeystoreError, match="empty"):
            store.create("node", "")
        assert store.names() == []

    @pytest.mark.parametrize(
        "name",
        ["", "../escape", "a/b", ".hidden", "x" * 65, "space name", "new\nline"],
        ids=["empty", "parent", "slash", "dot-first", "too-long", "space", "newline"],
    )
    def test_a_bad_key_name_is_refused(self, store: Keystore, name: str) -> None:
        with pytest.raises(KeystoreError, match="not a valid key name"):
            store.create(name, "pw")


class TestAtRest:
    """The file holds no private key in clear and only its owner may read it."""

    def test_the_key_file_is_mode_0600_in_a_0700_folder(self, store: Keystore) -> None:
        store.create("node", "pw")
        assert stat.S_IMODE(store.path("node").stat().st_mode) == 0o600
        assert stat.S_IMODE(store.keys_dir.stat().st_mode) == 0o700

    def test_the_seed_appears_nowhere_in_the_file(self, store: Keystore) -> None:
        kp = store.create("node", "pw")
        data = store.path("node").read_bytes()
        for form in (kp.seed, kp.seed.hex().encode(), msgspec.json.encode(kp.seed)[1:-1]):
            assert form not in data

    def test_no_temporary_file_is_left_behind(self, store: Keystore) -> None:
        store.create("node", "pw")
        assert sorted(p.name for p in store.keys_dir.iterdir()) == ["node.key"]

    def test_listing_shows_names_and_dids_without_a_passphrase(self, store: Keystore) -> None:
        a = store.create("b-key", "pw1")
        b = store.create("a-key", "pw2")
        assert store.names() == ["a-key", "b-key"]
        assert store.entries() == [KeyInfo("a-key", b.did), KeyInfo("b-key", a.did)]
        assert store.did("b-key") == a.did

    def test_a_missing_folder_lists_no_keys(self, tmp_path: Path) -> None:
        assert Keystore(tmp_path / "none").names() == []


class TestTampering:
    """An altered key file is refused, never loaded as another key."""

    def _edit(self, store: Keystore, name: str, **changes: object) -> None:
        path = store.path(name)
        key_file = msgspec.json.decode(path.read_bytes(), type=KeyFile)
        path.write_bytes(msgspec.json.encode(msgspec.structs.replace(key_file, **changes)))

    def test_a_flipped_ciphertext_byte_is_refused(self, store: Keystore) -> None:
        store.create("node", "pw")
        sealed = bytearray(
            msgspec.json.decode(store.path("node").read_bytes(), type=KeyFile).sealed
        )
        sealed[30] ^= 1
        self._edit(store, "node", sealed=bytes(sealed))
        with pytest.raises(KeystoreError, match="altered"):
            store.load("node", "pw")

    def test_a_swapped_did_is_refused(self, store: Keystore) -> None:
        store.create("node", "pw")
        self._edit(store, "node", did=KeyPair.generate().did)
        with pytest.raises(KeystoreError, match="not the listed"):
            store.load("node", "pw")

    @pytest.mark.parametrize(
        ("field", "value"),
        [("opslimit", 0), ("opslimit", 10**6), ("memlimit", 1024), ("memlimit", 2**40)],
        ids=["ops-zero", "ops-huge", "mem-tiny", "mem-huge"],
    )
    def test_unreasonable_work_factors_are_refused_before_any_work(
        self, store: Keystore, field: str, value: int
    ) -> None:
        store.create("node", "pw")
        self._edit(store, "node", **{field: value})
        with pytest.raises(KeystoreError, match=field):
            store.load("node", "pw")

    @pytest.mark.parametrize(
        "content",
        [b"", b"{}", b"not json", b'{"version": 2}'],
        ids=["empty", "no-fields", "text", "v2"],
    )
    def test_a_file_that_is_not_a_key_file_is_refused(
        self, store: Keystore, content: bytes
    ) -> None:
        store.keys_dir.mkdir(parents=True)
        store.path("node").write_bytes(content)
        with pytest.raises(KeystoreError, match="not a dms key file"):
            store.load("node", "pw")
        assert store.entries() == []


class TestPassphrase:
    """DMS_PASSPHRASE wins; otherwise the terminal is asked."""

    def test_the_environment_variable_is_used_without_prompting(self) -> None:
        def no_prompt(_: str) -> str:
            raise AssertionError("prompted")

        assert (
            passphrase_from_env_or_prompt(env={PASSPHRASE_ENV: "s3cret"}, prompt=no_prompt)
            == "s3cret"
        )

    def test_without_the_variable_the_prompt_is_asked(self) -> None:
        assert passphrase_from_env_or_prompt(env={}, prompt=lambda _: "typed") == "typed"

    def test_a_confirmation_that_differs_is_refused(self) -> None:
        answers = iter(["one", "two"])
        with pytest.raises(KeystoreError, match="differ"):
            passphrase_from_env_or_prompt(confirm=True, env={}, prompt=lambda _: next(answers))

    def test_an_empty_variable_is_refused(self) -> None:
        with pytest.raises(KeystoreError, match=PASSPHRASE_ENV):
            passphrase_from_env_or_prompt(env={PASSPHRASE_ENV: ""})

    def test_no_terminal_is_refused_with_a_hint(self) -> None:
        def eof(_: str) -> str:
            raise EOFError

        with pytest.raises(KeystoreError, match=PASSPHRASE_ENV):
            passphrase_from_env_or_prompt(env={}, prompt=eof)
