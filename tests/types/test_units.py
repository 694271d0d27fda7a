"""Units: parse/format round trips and clear refusals."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dms.errors import UnitError
from dms.types.units import (
    format_clock,
    format_duration,
    format_price,
    format_size,
    parse_clock,
    parse_cores,
    parse_duration,
    parse_price,
    parse_size,
)


class TestSizes:
    """Sizes are bytes; decimal and binary units mean exactly what they say."""

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("512MiB", 512 * 1024**2),
            ("4GiB", 4 * 1024**3),
            ("2GB", 2_000_000_000),
            ("1.5GiB", 1536 * 1024**2),
            ("1048576", 1048576),
            ("10B", 10),
            ("1 KiB", 1024),
            (4096, 4096),
        ],
        ids=lambda v: str(v),
    )
    def test_parses_accepted_forms(self, text: object, expected: int) -> None:
        assert parse_size(text) == expected

    @pytest.mark.parametrize(
        "bad", ["4 gigs", "4gb", "", "-1GiB", "1.5B", "GiB", "1e9", True, None, -5, [1], "0.1KiB"]
    )
    def test_refuses_malformed_sizes_naming_value_and_forms(self, bad: object) -> None:
        with pytest.raises(UnitError) as info:
            parse_size(bad, "allocations.web.resources.ram")
        message = str(info.value)
        assert message.startswith("allocations.web.resources.ram: ")
        assert "512MiB" in message
        assert info.value.value == bad

    def test_error_message_matches_documented_form(self) -> None:
        with pytest.raises(UnitError) as info:
            parse_size("4 gigs", "allocations.web.resources.ram")
        assert str(info.value) == (
            'allocations.web.resources.ram: "4 gigs" is not a size '
            "(e.g. 512MiB, 4GiB, 2GB or a number of bytes)"
        )

    @given(st.integers(min_value=0, max_value=2**62))
    def test_format_round_trips(self, size: int) -> None:
        assert parse_size(format_size(size)) == size


class TestClockAndDuration:
    """Clocks are Hz, durations nanoseconds; both round-trip through their text form."""

    def test_parses_clock(self) -> None:
        assert parse_clock("2.4GHz") == 2_400_000_000
        assert parse_clock("800MHz") == 800_000_000

    @given(st.integers(min_value=0, max_value=10**12))
    def test_clock_round_trips(self, hz: int) -> None:
        assert parse_clock(format_clock(hz)) == hz

    @pytest.mark.parametrize(
        ("text", "ns"),
        [
            ("30s", 30 * 10**9),
            ("5m", 300 * 10**9),
            ("2h", 7200 * 10**9),
            ("1h30m", 5400 * 10**9),
            ("250ms", 250 * 10**6),
            ("1.5s", 1_500_000_000),
            ("1d", 86400 * 10**9),
        ],
    )
    def test_parses_durations(self, text: str, ns: int) -> None:
        assert parse_duration(text) == ns

    @pytest.mark.parametrize("bad", ["", "5 minutes", "m5", "1h 30m", "-3s", "5x", "s", True, None])
    def test_refuses_malformed_durations(self, bad: object) -> None:
        with pytest.raises(UnitError, match="30s, 5m, 2h"):
            parse_duration(bad, "time.max")

    @given(st.integers(min_value=0, max_value=10**18))
    def test_duration_round_trips(self, ns: int) -> None:
        assert parse_duration(format_duration(ns)) == ns


class TestCoresAndPrices:
    """Cores are positive finite floats; prices are integer micro-units plus a currency."""

    def test_parses_cores(self) -> None:
        assert parse_cores("0.5") == 0.5
        assert parse_cores(2) == 2.0

    @pytest.mark.parametrize("bad", ["0", "-1", "nan", "inf", "two", "", None, True])
    def test_refuses_bad_cores(self, bad: object) -> None:
        with pytest.raises(UnitError, match="number of cores"):
            parse_cores(bad)

    def test_parses_prices(self) -> None:
        assert parse_price("1.5NTX") == (1_500_000, "NTX")
        assert parse_price("0.25") == (250_000, "")
        assert parse_price(2) == (2_000_000, "")

    @pytest.mark.parametrize("bad", ["-1", "1.0000001", "NTX", "1.5 NTX/h!", None, float("nan")])
    def test_refuses_bad_prices(self, bad: object) -> None:
        with pytest.raises(UnitError, match="price"):
            parse_price(bad)

    @given(st.integers(min_value=0, max_value=10**15), st.sampled_from(["", "NTX", "USD"]))
    def test_price_round_trips(self, micro: int, currency: str) -> None:
        assert parse_price(format_price(micro, currency)) == (micro, currency)
