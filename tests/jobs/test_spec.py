"""Ensemble specs: valid files load, every invalid one is refused with its path and reason."""

from __future__ import annotations

import contextlib
import textwrap
from pathlib import Path

import msgspec
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dms.errors import InputError
from dms.jobs import (
    AllocationSpec,
    Ensemble,
    Execution,
    InvalidEnsemble,
    NodeSpec,
    ResourcesSpec,
    dump_ensemble,
    load_ensemble,
    parse_ensemble,
)
from dms.jobs import schema as schema_mod
from dms.jobs.spec import PriceSpec, SupervisorSpec, TimeSpec
from dms.types import ExecutorType, JobType
from dms.types.quantity import Cores, Duration, Size

GiB = 1024**3

BASE = """\
version: V1
allocations:
  web:
    type: service
    executor: process
    resources: {cpu: 1, ram: 512MiB}
    execution: {command: [python3, -m, http.server]}
"""


def doc(extra: str = "", base: str = BASE) -> str:
    return base + extra


class TestValid:
    """Well-formed files load into the typed model, normalised."""

    def test_minimal_file_gets_a_node_per_allocation(self) -> None:
        ens = parse_ensemble(BASE)
        assert ens.allocations["web"].resources.ram == 512 * 1024**2
        assert ens.nodes == {"web": NodeSpec(allocations=("web",))}

    def test_full_file(self) -> None:
        ens = parse_ensemble(
            textwrap.dedent("""\
            version: V1
            metadata: {team: ml, purpose: demo}
            allocations:
              db:
                type: service
                executor: docker
                resources: {cpu: 2, ram: 4GiB, disk: 20GiB,
                            gpus: [{vendor: nvidia, model: A100, vram: 40GiB}]}
                execution: {image: "postgres:16", network: bridge}
                healthcheck: {type: tcp, port: 5432, interval: 5s}
              job:
                type: batch
                replicas: 4
                resources: {cpu: 0.5, ram: 128MiB}
                execution: {module: job.wasm, args: [--fast], timeout: 2m}
                depends_on: [db]
                inputs: [{source: data.csv}]
                outputs: ["*.json"]
              tick:
                type: recurring
                resources: {cpu: 0.25, ram: 64MiB}
                execution: {module: tick.wasm}
                schedule: {every: 5m, times: 3}
            nodes:
              a:
                allocations: [db]
                ports: [{private: 5432, public: 15432, allocation: db}]
                location: {accept: [EU], reject: [EU/FR]}
              b: {allocations: [job, tick], redundancy: 2}
            edges: [{from: a, to: b, rtt: 50ms, bandwidth: 100Mbps}]
            supervisor: {strategy: AllForOne, intensity: 5, period: 1m}
            price: {currency: NTX, max_per_hour: 1.5, budget: 100, preference: 80}
            time: {max: 2h, preference: 20}
            """)
        )
        assert ens.allocations["job"].replicas == 4
        assert ens.edges[0].rtt == 50 * 10**6
        assert ens.edges[0].bandwidth == 100 * 10**6
        assert ens.price.max_per_hour == 1_500_000
        need = ens.requirement("b")
        assert need.resources.cpu.cores == 0.75
        assert set(need.job_types) == {JobType.BATCH, JobType.RECURRING}
        assert need.price.currency == "NTX"
        assert ens.requirement("a").connectivity.ports == (15432,)
        assert ens.requirement("a").resources.gpus[0].vram == 40 * GiB

    def test_loads_from_a_file(self, tmp_path: Path) -> None:
        path = tmp_path / "e.yaml"
        path.write_text(BASE)
        assert "web" in load_ensemble(path).allocations


INVALID = [
    (
        "bad-size",
        doc().replace("512MiB", "4 gigs"),
        'allocations.web.resources.ram: "4 gigs" is not a size (e.g. 512MiB, 4GiB, 2GB or a number of bytes)',
    ),
    (
        "bad-cores",
        doc().replace("cpu: 1", "cpu: -2"),
        "allocations.web.resources.cpu: -2 is not a number of cores",
    ),
    (
        "unknown-field",
        doc().replace("cpu: 1", "cpu: 1, cpus: 2"),
        'allocations.web.resources.cpus: "cpus" is not a known field',
    ),
    (
        "missing-field",
        doc().replace("    resources: {cpu: 1, ram: 512MiB}\n", ""),
        "allocations.web.resources: is missing; it is required",
    ),
    (
        "bad-enum",
        doc().replace("type: service", "type: daemon"),
        'allocations.web.type: "daemon" is not one of: task, batch, recurring, service',
    ),
    ("bad-version", doc().replace("V1", "V2"), 'version: "V2" is not one of: V1'),
    ("bad-name", doc().replace("  web:", "  Web:"), 'allocations: "Web" is not a valid name'),
    ("bad-env", doc("    env: {A: [1]}\n"), "allocations.web.env.A: [1] is not a string"),
    (
        "bad-duration",
        doc("    execution: {command: [x], timeout: soon}\n").replace(
            "    execution: {command: [python3, -m, http.server]}\n", ""
        ),
        'allocations.web.execution.timeout: "soon" is not a duration',
    ),
    (
        "replicas-range",
        doc("    replicas: 0\n"),
        "allocations.web.replicas: 0 is not an integer >= 1",
    ),
    (
        "unknown-dependency",
        doc("    depends_on: [db]\n"),
        'allocations.web.depends_on[0]: "db" is not an allocation of this ensemble',
    ),
    (
        "self-dependency",
        doc("    depends_on: [web]\n"),
        'allocations.web.depends_on[0]: "web" is the allocation itself',
    ),
    (
        "missing-command",
        doc().replace("command: [python3, -m, http.server]", "module: x.wasm"),
        "allocations.web.execution.command: () is required by the process executor",
    ),
    (
        "wasm-gpu",
        doc()
        .replace("executor: process", "executor: wasm")
        .replace("command: [python3, -m, http.server]", "module: a.wasm")
        .replace("ram: 512MiB", "ram: 512MiB, gpus: [{vram: 1GiB}]"),
        "allocations.web.resources.gpus: 1 GPU(s) requested; the wasm executor cannot use GPUs",
    ),
    (
        "replicas-not-batch",
        doc("    replicas: 3\n"),
        "allocations.web.replicas: 3 needs type batch (type is service)",
    ),
    (
        "recurring-no-schedule",
        doc().replace("type: service", "type: recurring"),
        "allocations.web.schedule: None is required for type recurring",
    ),
    (
        "healthcheck-on-task",
        doc("    healthcheck: {command: [ok]}\n").replace("type: service", "type: task"),
        'allocations.web.healthcheck: "healthcheck" applies only to services',
    ),
    (
        "http-check-no-url",
        doc("    healthcheck: {type: http}\n"),
        'allocations.web.healthcheck.url: "" is required by a http health check',
    ),
    (
        "too-big",
        doc().replace("ram: 512MiB", "ram: 100TiB"),
        'nodes.web: "100TiB" needs 100TiB RAM; no provider offers more than 64TiB',
    ),
    (
        "too-many-cores",
        doc().replace("cpu: 1", "cpu: 4096"),
        'nodes.web: "4096 cores" needs 4096 cores',
    ),
    (
        "price-no-currency",
        doc("price: {budget: 10}\n"),
        'price.currency: "" is required when max_per_hour or budget is set',
    ),
    ("not-a-mapping", "- a\n- b\n", '"list" is not an ensemble'),
    ("empty", "", '"empty" is not an ensemble'),
    ("syntax", "version: [V1\n", "not valid YAML at line 2"),
    ("duplicate-key", doc("    type: task\n"), '"type" is a duplicate key (line 8)'),
    ("python-tag", "version: !!python/object/apply:os.system [ls]\n", "not valid YAML"),
]


class TestInvalid:
    """Each invalid file is refused with the path, the bad value and what is accepted."""

    @pytest.mark.parametrize(
        ("text", "message"), [(t, m) for _, t, m in INVALID], ids=[i for i, _, _ in INVALID]
    )
    def test_refused_with_message(self, text: str, message: str) -> None:
        with pytest.raises(InvalidEnsemble) as info:
            parse_ensemble(text, "e.yaml")
        assert message in str(info.value), str(info.value)
        assert str(info.value).startswith("e.yaml: ")

    def test_cycles_are_reported_with_their_path(self) -> None:
        text = textwrap.dedent("""\
            version: V1
            allocations:
              a: {resources: {cpu: 1, ram: 1MiB}, execution: {module: a.wasm}, depends_on: [b]}
              b: {resources: {cpu: 1, ram: 1MiB}, execution: {module: b.wasm}, depends_on: [c]}
              c: {resources: {cpu: 1, ram: 1MiB}, execution: {module: c.wasm}, depends_on: [a]}
            """)
        with pytest.raises(InvalidEnsemble, match=r"closes a cycle: a -> b -> c -> a"):
            parse_ensemble(text)

    def test_every_cross_check_problem_is_listed_at_once(self) -> None:
        text = textwrap.dedent("""\
            version: V1
            allocations:
              a: {resources: {cpu: 1, ram: 1MiB}, execution: {module: a.wasm}, depends_on: [x]}
              b: {resources: {cpu: 1, ram: 1MiB}, execution: {module: b.wasm}}
            nodes:
              n1:
                allocations: [a, ghost]
                ports: [{private: 80, public: 8080, allocation: a},
                        {private: 81, public: 8080, allocation: a},
                        {private: 82, allocation: b}]
                location: {accept: [EU/DE], reject: [EU]}
            edges: [{from: n1, to: n9}]
            """)
        with pytest.raises(InvalidEnsemble) as info:
            parse_ensemble(text)
        fields = {p.field for p in info.value.problems}
        assert fields >= {
            "nodes.n1.allocations[1]",
            "nodes.n1.ports[2].allocation",
            "allocations.b",
            "allocations.a.depends_on[0]",
            "nodes.n1.ports[1].public",
            "edges[0].to",
            "nodes.n1.location.accept[0]",
        }

    def test_unreadable_file(self, tmp_path: Path) -> None:
        with pytest.raises(InvalidEnsemble, match="cannot be read"):
            load_ensemble(tmp_path / "missing.yaml")


class TestHostileYAML:
    """Alias bombs, oversized files and deep nesting are refused before they cost anything."""

    def test_alias_bomb(self) -> None:
        lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
        lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
        with pytest.raises(InvalidEnsemble, match="aliases"):
            parse_ensemble("\n".join(lines))

    def test_expansion_bomb_under_the_alias_limit(self) -> None:
        lines = ["a0: &a0 [" + ", ".join(["x"] * 50) + "]"]
        lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 6)]
        with pytest.raises(InvalidEnsemble, match="expands to more than"):
            parse_ensemble("\n".join(lines))

    def test_oversized_file(self) -> None:
        with pytest.raises(InvalidEnsemble, match="at most 1048576 are accepted"):
            parse_ensemble("a: " + "x" * (1024 * 1024 + 10))

    def test_deep_nesting(self) -> None:
        with pytest.raises(InvalidEnsemble, match="nested"):
            parse_ensemble("[" * 200 + "]" * 200)

    @settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
    @given(st.text(max_size=300))
    def test_fuzzed_text_only_yields_typed_errors(self, text: str) -> None:
        with contextlib.suppress(InputError):
            parse_ensemble(text)

    @settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])
    @given(st.data())
    def test_mutated_valid_files_only_yield_typed_errors(self, data: st.DataObject) -> None:
        text = BASE
        position = data.draw(st.integers(min_value=0, max_value=len(text) - 1))
        junk = data.draw(st.text(alphabet=":-[]{}&*!|>'\"#, \n\tx0", max_size=5))
        with contextlib.suppress(InputError):
            parse_ensemble(text[:position] + junk + text[position + 1 :])


names = st.from_regex(r"[a-z][a-z0-9]{0,6}", fullmatch=True)


@st.composite
def ensembles(draw: st.DrawFn) -> Ensemble:
    allocs: dict[str, AllocationSpec] = {}
    for name in draw(st.lists(names, min_size=1, max_size=4, unique=True)):
        executor = draw(st.sampled_from(list(ExecutorType)[:3]))
        execution = {
            ExecutorType.WASM: Execution(module=f"{name}.wasm"),
            ExecutorType.PROCESS: Execution(command=("echo", name)),
            ExecutorType.DOCKER: Execution(image="busybox"),
        }[executor]
        kind = draw(st.sampled_from([JobType.TASK, JobType.SERVICE, JobType.BATCH]))
        allocs[name] = AllocationSpec(
            type=kind,
            executor=executor,
            resources=ResourcesSpec(
                cpu=Cores(draw(st.integers(1, 64)) / 4),
                ram=Size(draw(st.integers(1, 1 << 20)) * 1024),
                disk=Size(draw(st.integers(0, 100)) * GiB),
            ),
            execution=execution,
            env=draw(
                st.dictionaries(
                    st.from_regex(r"[A-Z]{1,5}", fullmatch=True), st.text(max_size=5), max_size=2
                )
            ),
            replicas=draw(st.integers(1, 5)) if kind is JobType.BATCH else 1,
        )
    return Ensemble(
        version="V1",
        metadata=draw(st.dictionaries(names, st.text(max_size=8), max_size=2)),
        allocations=allocs,
        nodes={name: NodeSpec(allocations=(name,)) for name in allocs},
        supervisor=SupervisorSpec(
            intensity=draw(st.integers(0, 10)), period=Duration(draw(st.integers(1, 3600)) * 10**9)
        ),
        price=PriceSpec(preference=draw(st.integers(0, 100))),
        time=TimeSpec(max=Duration(draw(st.integers(0, 10**6)) * 10**9)),
    )


class TestRoundTrip:
    """A spec written out in normalised form reads back equal."""

    @settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])
    @given(ensembles())
    def test_dump_then_parse_is_identity(self, ens: Ensemble) -> None:
        text = dump_ensemble(ens)
        assert parse_ensemble(text) == ens
        assert dump_ensemble(parse_ensemble(text)) == text


class TestSchema:
    """The shipped JSON Schema is generated from the model and kept in sync."""

    def test_shipped_schema_matches_the_model(self) -> None:
        assert schema_mod.shipped() == msgspec.json.decode(schema_mod.render())

    def test_schema_describes_quantities_and_required_fields(self) -> None:
        schema = schema_mod.generate()
        alloc = schema["$defs"]["AllocationSpec"]
        assert set(alloc["required"]) == {"resources", "execution"}
        ram = schema["$defs"]["ResourcesSpec"]["properties"]["ram"]
        assert "512MiB" in ram["description"]

    def test_examples_in_repo_are_valid(self) -> None:
        root = Path(__file__).resolve().parents[2] / "examples"
        files = sorted(root.glob("*.yaml"))
        for path in files:
            data = yaml.safe_load(path.read_text())
            assert data["version"] == "V1"
            load_ensemble(path)
