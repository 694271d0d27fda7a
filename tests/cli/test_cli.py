"""The dms command: help, version, config, and exit codes 0 / 1 / 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from dms.cli.main import main


class TestCommands:
    """Commands run in-process through main(), which maps errors to exit codes."""

    def test_version_json(self, capsys: pytest.CaptureFixture[str]) -> None:
        assert main(["version", "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["version"]

    def test_config_set_get(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        assert main(["--home", str(tmp_path), "config", "set", "api.port", "9100"]) == 0
        capsys.readouterr()
        assert main(["--home", str(tmp_path), "config", "get", "api.port", "--json"]) == 0
        assert json.loads(capsys.readouterr().out) == {"key": "api.port", "value": 9100}

    def test_bad_value_exits_2_with_message(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        assert main(["--home", str(tmp_path), "config", "set", "api.port", "x"]) == 2
        assert "api.port" in capsys.readouterr().err

    def test_unknown_command_exits_2(self) -> None:
        assert main(["frobnicate"]) == 2


def test_console_script_help_runs() -> None:
    """The installed entry point starts and prints help."""
    exe = Path(sys.executable).parent / "dms"
    out = subprocess.run([str(exe), "--help"], capture_output=True, text=True, check=True)
    assert "Usage" in out.stdout


class TestValidate:
    """dms validate accepts good files (exit 0) and lists problems of bad ones (exit 2)."""

    def test_valid_example(self, capsys: pytest.CaptureFixture[str]) -> None:
        root = Path(__file__).resolve().parents[2]
        assert main(["validate", str(root / "examples" / "hello.yaml"), "--json"]) == 0
        assert (
            json.loads(capsys.readouterr().out)["allocations"]["hello"]["resources"]["ram"]
            == "64MiB"
        )

    def test_invalid_file_names_path_value_and_forms(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        bad = tmp_path / "bad.yaml"
        bad.write_text(
            "version: V1\nallocations:\n  web: {resources: {cpu: 1, ram: 4 gigs}, "
            "execution: {module: a.wasm}}\n"
        )
        assert main(["validate", str(bad)]) == 2
        err = capsys.readouterr().err
        assert 'allocations.web.resources.ram: "4 gigs" is not a size (e.g. 512MiB, 4GiB' in err

    def test_missing_file_exits_2(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        assert main(["validate", str(tmp_path / "none.yaml")]) == 2
        assert "cannot be read" in capsys.readouterr().err
