"""Logging: JSON lines carry bound context; console output is readable."""

from __future__ import annotations

import io
import json

from dms.log import configure, get_logger


class TestLogging:
    """configure() picks the renderer; get_logger() binds node/deployment/allocation ids."""

    def test_json_lines_carry_bound_context(self) -> None:
        out = io.StringIO()
        configure("info", "json", stream=out)
        get_logger(node="n1").bind(deployment="d1").info("placed", allocation="a1")
        record = json.loads(out.getvalue().strip().splitlines()[-1])
        assert record["event"] == "placed"
        assert (record["node"], record["deployment"], record["allocation"]) == ("n1", "d1", "a1")
        assert record["level"] == "info"

    def test_level_filters(self) -> None:
        out = io.StringIO()
        configure("warning", "console", stream=out)
        log = get_logger(node="n1")
        log.info("hidden")
        log.warning("shown")
        text = out.getvalue()
        assert "shown" in text and "hidden" not in text
        assert "node" in text and "n1" in text

    def test_a_logger_made_before_configure_follows_it(self) -> None:
        early = get_logger(node="n0")
        out = io.StringIO()
        configure("error", "json", stream=out)
        early.warning("hidden")
        early.error("shown")
        lines = [json.loads(line) for line in out.getvalue().splitlines()]
        assert [(r["event"], r["node"]) for r in lines] == [("shown", "n0")]
