"""Validation: each dimension's range, every problem named with the value asked and the range."""

from __future__ import annotations

import msgspec
import pytest

from dms.errors import InputError, OnboardingError, UnitError
from dms.onboarding import GPUShare, InvalidOnboarding, OnboardRequest, validate
from dms.resources import HardwareUsage, idle_usage
from dms.types import CPU, GPU, Location, Resources
from tests.onboarding.conftest import SPEC, GiB

IDLE = idle_usage(SPEC, disk_free=200 * GiB)


def ask(**changes: object) -> OnboardRequest:
    base = OnboardRequest(cpu=2, ram=8 * GiB, disk=50 * GiB, gpus=(GPUShare(1, 40 * GiB),))
    return msgspec.structs.replace(base, **changes)


def problems_of(request: OnboardRequest, usage: HardwareUsage = IDLE) -> list[str]:
    with pytest.raises(InvalidOnboarding) as raised:
        validate(request, SPEC, usage)
    return [p.field for p in raised.value.problems]


class TestAccepted:
    """A request within every range becomes onboarded Resources."""

    def test_the_result_carries_the_machine_cpu_and_the_gpu_devices(self) -> None:
        resources = validate(ask(cpu=2.5), SPEC, IDLE)
        assert resources.cpu == CPU(
            cores=2.5, clock_hz=3_000_000_000, architecture="x86_64", model="EPYC"
        )
        assert resources.gpus == (msgspec.structs.replace(SPEC.gpus[1], vram=40 * GiB),)
        assert resources.gpus[0].is_device()

    @pytest.mark.parametrize(
        "request_",
        [
            pytest.param(ask(cpu=1), id="one-core"),
            pytest.param(ask(cpu=8), id="all-cores"),
            pytest.param(ask(ram=int(32 * GiB * 0.1) + 1), id="ram-10%"),
            pytest.param(ask(ram=int(32 * GiB * 0.9)), id="ram-90%"),
            pytest.param(ask(disk=200 * GiB), id="all-free-disk"),
            pytest.param(ask(gpus=()), id="no-gpu"),
            pytest.param(ask(gpus=(GPUShare(0, 12 * GiB), GPUShare(1, 8 * GiB))), id="two-gpus"),
        ],
    )
    def test_edges_of_the_ranges_are_accepted(self, request_: OnboardRequest) -> None:
        validate(request_, SPEC, IDLE)


class TestRefused:
    """Out-of-range values are refused, naming the field, the value asked and the range."""

    @pytest.mark.parametrize(
        ("request_", "field", "message"),
        [
            pytest.param(
                ask(cpu=0.5), "cpu", "0.5 cores asked; allowed 1 to 8 cores", id="cpu-low"
            ),
            pytest.param(ask(cpu=9), "cpu", "9 cores asked; allowed 1 to 8 cores", id="cpu-high"),
            pytest.param(
                ask(ram=GiB), "ram", "1GiB asked; allowed 3.20GiB to 28.80GiB", id="ram-low"
            ),
            pytest.param(ask(ram=30 * GiB), "ram", "30GiB asked; allowed 3.20GiB", id="ram-high"),
            pytest.param(ask(disk=0), "disk", "0B asked; allowed 1B to 200GiB", id="disk-zero"),
            pytest.param(ask(disk=201 * GiB), "disk", "201GiB asked", id="disk-high"),
            pytest.param(
                ask(gpus=(GPUShare(2, GiB),)), "gpus[0].index", "one of: 0, 1", id="gpu-unknown"
            ),
            pytest.param(
                ask(gpus=(GPUShare(1, 40 * GiB), GPUShare(1, 20 * GiB))),
                "gpus[1].index",
                "each GPU index once",
                id="gpu-twice",
            ),
            pytest.param(
                ask(gpus=(GPUShare(0, GiB),)), "gpus[0].vram", "2.40GiB to 21.60GiB", id="vram-low"
            ),
            pytest.param(
                ask(gpus=(GPUShare(0, 23 * GiB),)), "gpus[0].vram", "23GiB asked", id="vram-high"
            ),
            pytest.param(ask(currency="€uro"), "currency", "starting with a letter", id="currency"),
        ],
    )
    def test_each_dimension(self, request_: OnboardRequest, field: str, message: str) -> None:
        with pytest.raises(InvalidOnboarding) as raised:
            validate(request_, SPEC, IDLE)
        assert raised.value.field == field
        assert message in str(raised.value)

    def test_every_problem_is_reported_at_once(self) -> None:
        assert problems_of(ask(cpu=0, ram=0, disk=0)) == ["cpu", "ram", "disk"]

    def test_what_is_busy_now_narrows_the_range(self) -> None:
        busy = msgspec.structs.replace(
            IDLE,
            cpu_percent=75.0,
            ram_available=4 * GiB,
            gpus=tuple(msgspec.structs.replace(g, vram_used=g.vram_total - GiB) for g in IDLE.gpus),
        )
        with pytest.raises(InvalidOnboarding) as raised:
            validate(ask(cpu=3, ram=8 * GiB), SPEC, busy)
        text = str(raised.value)
        assert "cpu: 3 cores asked; allowed 1 to 2 cores (the machine has 8; 2 idle now)" in text
        assert "at most the 4GiB available now" in text
        assert "gpus[0].vram: 40GiB asked; allowed nothing now" in text

    def test_a_machine_with_no_idle_core_allows_nothing(self) -> None:
        saturated = msgspec.structs.replace(IDLE, cpu_percent=100.0)
        with pytest.raises(InvalidOnboarding, match="cpu: 1 cores asked; allowed nothing now"):
            validate(ask(cpu=1), SPEC, saturated)

    def test_the_error_is_an_input_error_and_an_onboarding_error(self) -> None:
        with pytest.raises(InvalidOnboarding) as raised:
            validate(ask(cpu=99), SPEC, IDLE)
        assert isinstance(raised.value, InputError) and isinstance(raised.value, OnboardingError)

    def test_re_onboarding_counts_this_nodes_own_reservations_as_available(self) -> None:
        busy = msgspec.structs.replace(IDLE, ram_available=2 * GiB, disk_free=GiB)
        reserved = Resources(
            cpu=CPU(cores=1),
            ram=6 * GiB,
            disk=49 * GiB,
            gpus=(msgspec.structs.replace(SPEC.gpus[1], vram=40 * GiB),),
        )
        validate(ask(ram=8 * GiB, disk=50 * GiB), SPEC, busy, reserved=reserved)
        with pytest.raises(InvalidOnboarding):
            validate(ask(ram=8 * GiB, disk=50 * GiB), SPEC, busy)


class TestParse:
    """Command-line text becomes a typed request; bad text names the flag."""

    def test_text_with_units_price_location_and_gpus(self) -> None:
        request = OnboardRequest.parse(
            cpu="2",
            ram="4GiB",
            disk="20GiB",
            gpus=["0:8GiB", "1:16GiB"],
            price="0.25NTX",
            location="EU/DE/Berlin",
        )
        assert request == OnboardRequest(
            cpu=2.0,
            ram=4 * GiB,
            disk=20 * GiB,
            gpus=(GPUShare(0, 8 * GiB), GPUShare(1, 16 * GiB)),
            price_per_hour=250_000,
            currency="NTX",
            location=Location(continent="EU", country="DE", city="Berlin"),
        )

    def test_none_offers_no_gpu(self) -> None:
        assert OnboardRequest.parse(cpu=1, ram="1GiB", disk="1GiB", gpus=["none"]).gpus == ()

    @pytest.mark.parametrize(
        ("kwargs", "field"),
        [
            pytest.param({"cpu": "two"}, "cpu", id="cpu"),
            pytest.param({"ram": "4 gigs"}, "ram", id="ram"),
            pytest.param({"gpus": ["8GiB"]}, "gpus[0]", id="gpu-no-index"),
            pytest.param({"gpus": ["0:lots"]}, "gpus[0].vram", id="gpu-vram"),
            pytest.param({"price": "-1"}, "price", id="price"),
            pytest.param({"location": "EU//Berlin"}, "location", id="location"),
        ],
    )
    def test_bad_text_names_the_field(self, kwargs: dict[str, object], field: str) -> None:
        base: dict[str, object] = {"cpu": "1", "ram": "1GiB", "disk": "1GiB"}
        with pytest.raises((InputError, UnitError)) as raised:
            OnboardRequest.parse(**{**base, **kwargs})  # type: ignore[arg-type]
        assert isinstance(raised.value, InputError) and raised.value.field == field

    def test_a_wire_request_with_unknown_fields_is_refused(self) -> None:
        with pytest.raises(msgspec.ValidationError, match="memory"):
            msgspec.json.decode(
                b'{"cpu": 1, "ram": 1, "disk": 1, "memory": 5}', type=OnboardRequest
            )

    def test_gpu_devices_keep_their_identity(self) -> None:
        resources = validate(ask(gpus=(GPUShare(0, 10 * GiB),)), SPEC, IDLE)
        assert resources.gpus[0].identity == GPU(uuid="GPU-aaa").identity
