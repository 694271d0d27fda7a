"""``dms config show|get|set``."""

from __future__ import annotations

from typing import Annotated

import msgspec
import typer

from dms import config as cfg
from dms.cli.output import console, emit_json
from dms.cli.state import CLIState

app = typer.Typer(
    help="Read and change the node's configuration (config.toml in the home).", no_args_is_help=True
)


@app.command("show")
def show(
    ctx: typer.Context, json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False
) -> None:
    """Print the effective configuration (file plus DMS_* overrides)."""
    state: CLIState = ctx.obj
    config = cfg.load(state.home.config_file)
    if json:
        emit_json(config)
        return
    for key in cfg.all_keys():
        console.print(f"{key} = {cfg.get_value(config, key)!r}", highlight=False)


@app.command("get")
def get(
    ctx: typer.Context,
    key: str,
    json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Print one setting, e.g. ``dms config get api.port``."""
    state: CLIState = ctx.obj
    value = cfg.get_value(cfg.load(state.home.config_file), key)
    if json:
        emit_json({"key": key, "value": value})
    else:
        console.print(msgspec.json.encode(value).decode(), highlight=False)


@app.command("set")
def set_(ctx: typer.Context, key: str, value: str) -> None:
    """Set one setting in config.toml, e.g. ``dms config set api.port 9998``."""
    state: CLIState = ctx.obj
    cfg.set_value(state.home.config_file, key, value)
    console.print(f"{key} set in {state.home.config_file}", highlight=False)
