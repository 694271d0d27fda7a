"""``dms config show|get|set``."""

from __future__ import annotations

from typing import Annotated

import typer

from dms.cli.output import emit_json, out
from dms.cli.state import CLIState

app = typer.Typer(
    help="Read and change the node's configuration (config.toml in the home).", no_args_is_help=True
)
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]


@app.command("show")
def show(ctx: typer.Context, json: JsonOption = False) -> None:
    """Print the effective configuration (file plus DMS_* overrides)."""
    from dms import config as cfg

    state: CLIState = ctx.obj
    config = cfg.load(state.home.config_file)
    if json:
        emit_json(config)
        return
    for key in cfg.all_keys():
        out().print(f"{key} = {cfg.get_value(config, key)!r}")


@app.command("get")
def get(ctx: typer.Context, key: str, json: JsonOption = False) -> None:
    """Print one setting, e.g. ``dms config get api.port``."""
    import msgspec

    from dms import config as cfg

    state: CLIState = ctx.obj
    value = cfg.get_value(cfg.load(state.home.config_file), key)
    if json:
        emit_json({"key": key, "value": value})
    else:
        out().print(msgspec.json.encode(value).decode())


@app.command("set")
def set_(ctx: typer.Context, key: str, value: str) -> None:
    """Set one setting in config.toml, e.g. ``dms config set api.port 9998``.

    Lists are comma-separated: ``dms config set network.bootstrap /ip4/.../p2p/A,/ip4/.../p2p/B``.
    A running node reads its configuration when it starts: restart it to apply.
    """
    from dms import config as cfg

    state: CLIState = ctx.obj
    cfg.set_value(state.home.config_file, key, value)
    out().print(f"{key} set in {state.home.config_file}")
