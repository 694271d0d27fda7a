"""The libyaml-backed loader reads every document as the pure-Python one does, and refuses the
same hostile ones."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dms.errors import SpecError
from dms.jobs import yamlsafe
from dms.jobs.load import dump_ensemble
from tests.jobs.test_spec import BASE, ensembles

pytestmark = pytest.mark.skipif(
    yamlsafe._FastLoader is None, reason="PyYAML was built without libyaml"
)


def outcome(text: str, *, fast: bool) -> object:
    try:
        return ("ok", yamlsafe.load(text, fast=fast))
    except SpecError as exc:
        return ("refused", exc.accepted)


class TestSameAnswers:
    """Where both loaders read a document they read the same one; ensemble files always are.

    The two parsers differ at the edges of YAML: libyaml accepts a tab after a scalar, and
    reads a bare ``!`` tag as an empty string where PyYAML reads null. Those characters are
    left out of the comparison; neither loader ever raises anything but a SpecError.
    """

    @settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
    @given(st.text(alphabet=":-[]{}&*|>'\"#, \nabxy01", max_size=80))
    def test_fuzzed_text(self, text: str) -> None:
        fast, slow = outcome(text, fast=True), outcome(text, fast=False)
        if fast[0] == "ok" and slow[0] == "ok":
            assert fast == slow

    @settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
    @given(st.text(max_size=120))
    def test_any_text_is_read_or_refused_with_a_spec_error(self, text: str) -> None:
        outcome(text, fast=True)

    @settings(max_examples=50, suppress_health_check=[HealthCheck.too_slow])
    @given(ensembles())
    def test_written_ensembles(self, ens: object) -> None:
        text = dump_ensemble(ens)  # type: ignore[arg-type]
        assert outcome(text, fast=True) == outcome(text, fast=False)

    def test_the_base_file(self) -> None:
        assert outcome(BASE, fast=True) == outcome(BASE, fast=False)


class TestHostile:
    """Aliases are counted on the composed graph; duplicate keys and deep nesting refused."""

    @pytest.mark.parametrize(("count", "refused"), [(100, False), (101, True)], ids=["100", "101"])
    def test_alias_limit(self, count: int, refused: bool) -> None:
        text = "a: &a x\nb: [" + ", ".join(["*a"] * count) + "]\n"
        for fast in (True, False):
            result = outcome(text, fast=fast)
            assert (result[0] == "refused") is refused, (fast, result)

    def test_duplicate_keys(self) -> None:
        with pytest.raises(SpecError, match="duplicate key"):
            yamlsafe.load("a: 1\na: 2\n", fast=True)

    @pytest.mark.parametrize(
        "text",
        ["&a [*a]", "a: &x {b: *x}", "a: &x {b: [1, {c: *x}]}\n", "- &s [x, [y, *s]]\n"],
        ids=["list-in-itself", "map-in-itself", "deep-in-itself", "nested"],
    )
    def test_a_recursive_document_is_refused_not_walked_forever(self, text: str) -> None:
        for fast in (True, False):
            with pytest.raises(SpecError, match="recursive"):
                yamlsafe.load(text, fast=fast)

    def test_a_value_shared_by_aliases_is_not_recursive(self) -> None:
        text = "a: &x [1, {b: 2}]\nc: [*x, *x]\nd: {e: *x}\n"
        for fast in (True, False):
            assert yamlsafe.load(text, fast=fast)["c"] == [[1, {"b": 2}]] * 2

    @pytest.mark.parametrize(
        ("levels", "refused"),
        [(yamlsafe.MAX_DEPTH, False), (yamlsafe.MAX_DEPTH + 1, True)],
        ids=["at-limit", "past-limit"],
    )
    def test_depth_limit(self, levels: int, refused: bool) -> None:
        text = "[" * (levels - 1) + "1" + "]" * (levels - 1)
        for fast in (True, False):
            assert (outcome(text, fast=fast)[0] == "refused") is refused

    def test_flow_nesting_past_libyaml_limit_is_refused(self) -> None:
        with pytest.raises(SpecError):
            yamlsafe.load("[" * 5000 + "]" * 5000, fast=True)


class TestDump:
    """The libyaml emitter writes what the pure-Python one writes."""

    @settings(max_examples=50, suppress_health_check=[HealthCheck.too_slow])
    @given(ensembles())
    def test_same_text_as_the_pure_python_emitter(self, ens: object) -> None:
        import yaml

        from dms.jobs.load import to_document

        written = yaml.safe_dump(to_document(ens), sort_keys=False, allow_unicode=False)  # type: ignore[arg-type]
        assert dump_ensemble(ens) == written  # type: ignore[arg-type]
