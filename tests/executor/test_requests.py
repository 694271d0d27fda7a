"""Requests, limits, programs and the status machine: validation and invariants."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dms.errors import ExecutorError, InputError
from dms.executor import (
    DockerProgram,
    ExecutionRequest,
    ExecutionStatus,
    InvalidRequest,
    Limits,
    NetworkMode,
    NullProgram,
    ProcessProgram,
    WasmProgram,
)
from dms.types.jobs import ExecutorType

TEXT = st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",))
"""Text a process can receive: no NUL, no lone surrogates."""


def request(**fields: object) -> ExecutionRequest:
    base: dict[str, object] = {"id": "alloc-1", "program": ProcessProgram(argv=("true",))}
    base.update(fields)
    return ExecutionRequest(**base)  # type: ignore[arg-type]


class TestRequestValidation:
    """Bad requests are refused at construction, naming the field, the value and what fits."""

    @pytest.mark.parametrize(
        ("fields", "field"),
        [
            ({"id": ""}, "id"),
            ({"id": "../escape"}, "id"),
            ({"id": "a" * 129}, "id"),
            ({"id": "has space"}, "id"),
            ({"args": ("ok", "nul\x00")}, "args"),
            ({"args": ("\ud800",)}, "args"),
            ({"env": (("1BAD", "x"),)}, "env"),
            ({"env": (("A=B", "x"),)}, "env"),
            ({"env": (("OK", "nul\x00"),)}, "env.OK"),
            ({"input_dir": "relative/path"}, "input_dir"),
            ({"output_dir": "out"}, "output_dir"),
            ({"working_dir": "work"}, "working_dir"),
        ],
        ids=[
            "empty-id",
            "id-with-slash",
            "id-too-long",
            "id-with-space",
            "nul-in-args",
            "surrogate-in-args",
            "env-name-digit",
            "env-name-equals",
            "nul-in-env-value",
            "relative-input",
            "relative-output",
            "relative-working-dir",
        ],
    )
    def test_refuses_bad_fields(self, fields: dict[str, object], field: str) -> None:
        with pytest.raises(InvalidRequest) as info:
            request(**fields)
        assert info.value.field == field
        assert field in str(info.value)

    def test_invalid_request_is_both_an_executor_error_and_an_input_error(self) -> None:
        with pytest.raises(ExecutorError):
            request(id="")
        with pytest.raises(InputError):
            request(id="")

    @pytest.mark.parametrize(
        "limits",
        [{"memory": -1}, {"timeout": -5}, {"cores": -0.5}, {"cores": float("nan")}],
        ids=["negative-memory", "negative-timeout", "negative-cores", "nan-cores"],
    )
    def test_refuses_negative_or_meaningless_limits(self, limits: dict[str, object]) -> None:
        with pytest.raises(InvalidRequest) as info:
            Limits(**limits)  # type: ignore[arg-type]
        assert info.value.field.startswith("limits.")

    @pytest.mark.parametrize(
        ("build", "field"),
        [
            (lambda: WasmProgram(), "program.path"),
            (lambda: WasmProgram(path="/a.wasm", module=b"\0asm"), "program.path"),
            (lambda: WasmProgram(path="/a.wasm", entry=""), "program.entry"),
            (lambda: ProcessProgram(argv=()), "program.argv"),
            (lambda: ProcessProgram(argv=("",)), "program.argv"),
            (lambda: DockerProgram(image=""), "program.image"),
            (lambda: DockerProgram(image="bad image"), "program.image"),
            (lambda: NullProgram(duration=-1), "program.duration"),
            (lambda: NullProgram(exit_code=256), "program.exit_code"),
        ],
        ids=[
            "wasm-nothing",
            "wasm-both",
            "wasm-no-entry",
            "process-empty",
            "process-empty-command",
            "docker-no-image",
            "docker-space",
            "null-negative",
            "null-exit-256",
        ],
    )
    def test_refuses_bad_programs(self, build: object, field: str) -> None:
        with pytest.raises(InvalidRequest) as info:
            build()  # type: ignore[operator]
        assert info.value.field == field

    @pytest.mark.parametrize(
        ("program", "kind"),
        [
            (WasmProgram(path="/x.wasm"), ExecutorType.WASM),
            (ProcessProgram(argv=("true",)), ExecutorType.PROCESS),
            (DockerProgram(image="busybox"), ExecutorType.DOCKER),
            (NullProgram(), ExecutorType.NULL),
        ],
        ids=["wasm", "process", "docker", "null"],
    )
    def test_the_program_names_the_executor_type(self, program: object, kind: ExecutorType) -> None:
        assert request(program=program).executor is kind


class TestRequestWire:
    """Requests survive a JSON round trip, and bad JSON is refused, not half-decoded."""

    @given(
        args=st.lists(st.text(alphabet=TEXT), max_size=4),
        env=st.dictionaries(
            st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True),
            st.text(alphabet=TEXT, max_size=8),
            max_size=4,
        ),
        memory=st.integers(min_value=0, max_value=2**40),
        timeout=st.integers(min_value=0, max_value=10**12),
        network=st.sampled_from(list(NetworkMode)),
    )
    def test_round_trips_through_json(
        self,
        args: list[str],
        env: dict[str, str],
        memory: int,
        timeout: int,
        network: NetworkMode,
    ) -> None:
        original = request(
            args=tuple(args),
            env=tuple(env.items()),
            limits=Limits(memory=memory, timeout=timeout),
            network=network,
            stdin=b"\x00\x01",
        )
        decoded = msgspec.json.decode(msgspec.json.encode(original), type=ExecutionRequest)
        assert decoded == original
        assert decoded.executor is ExecutorType.PROCESS

    def test_decoding_a_bad_id_fails_naming_the_field(self) -> None:
        wire = b'{"id": "../x", "program": {"type": "null"}}'
        with pytest.raises(msgspec.ValidationError, match="id"):
            msgspec.json.decode(wire, type=ExecutionRequest)

    def test_decoding_an_unknown_program_type_fails(self) -> None:
        wire = b'{"id": "a", "program": {"type": "vm"}}'
        with pytest.raises(msgspec.ValidationError):
            msgspec.json.decode(wire, type=ExecutionRequest)


TERMINAL = [status for status in ExecutionStatus if status.terminal]


class TestStatusMachine:
    """Executions move forward only: pending, running, then exactly one terminal status."""

    def test_terminal_statuses_allow_no_further_change(self) -> None:
        for status in TERMINAL:
            assert not any(status.can_become(other) for other in ExecutionStatus)

    def test_a_pending_execution_cannot_succeed_without_running(self) -> None:
        assert not ExecutionStatus.PENDING.can_become(ExecutionStatus.SUCCEEDED)
        assert not ExecutionStatus.PENDING.can_become(ExecutionStatus.TIMED_OUT)

    @given(st.lists(st.sampled_from(list(ExecutionStatus)), max_size=12))
    def test_any_allowed_path_visits_at_most_one_terminal_status(
        self, attempts: list[ExecutionStatus]
    ) -> None:
        current = ExecutionStatus.PENDING
        path = [current]
        for wanted in attempts:
            if current.can_become(wanted):
                current = wanted
                path.append(current)
        assert sum(status.terminal for status in path) <= 1
        assert path.count(ExecutionStatus.RUNNING) <= 1
        assert path == sorted(path, key=lambda s: (s.terminal, s is ExecutionStatus.RUNNING))
