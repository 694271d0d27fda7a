"""``dms run``: start the node and serve until SIGINT or SIGTERM."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from dms.cli.state import CLIState


def run(
    ctx: typer.Context,
    bootstrap: Annotated[
        list[str] | None,
        typer.Option(
            "--bootstrap", help="Also connect to this peer at start (repeat): /ip4/.../p2p/<id>"
        ),
    ] = None,
    json: Annotated[
        bool, typer.Option("--json", help="Print one JSON line when ready (for scripts).")
    ] = False,
) -> None:
    """Start the node: store, sanity check, network, actors, REST API. Ctrl-C stops it cleanly.

    Configuration comes from config.toml in the home and DMS_* variables (dms config show).
    Logs go to stderr. A protected node key needs DMS_PASSPHRASE or a terminal.
    """
    import msgspec
    import trio

    from dms import config as cfg
    from dms.log import configure
    from dms.node.setup import load_key, read_runtime

    limit_malloc_arenas()
    state: CLIState = ctx.obj
    home = state.home
    config = cfg.load(home.config_file)
    configure(config.log.level, config.log.format)
    running = read_runtime(home)
    if running is not None:
        from dms.errors import DMSError

        raise DMSError(
            f"a node already runs from {home.root} (pid {running.pid}, API {running.api_url}); "
            "stop it first, or use another --home"
        )
    keypair = load_key(home)

    async def serve() -> None:
        import signal

        from dms.app import DMS

        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with DMS(home, config, keypair, bootstrap=tuple(bootstrap or ())) as node:
                info = node.runtime_info()
                if json:
                    line = {"event": "ready", **msgspec.to_builtins(info)}
                    sys.stdout.write(msgspec.json.encode(line).decode() + "\n")
                else:
                    sys.stdout.write(
                        f"dms node ready in {info.ready_s:.2f} s\n"
                        f"  DID      {info.did}\n"
                        f"  peer id  {info.peer_id}\n"
                        f"  address  {(info.addresses or ('-',))[0]}\n"
                        f"  API      {info.api_url or 'off'}\n"
                        "Ctrl-C stops it.\n"
                    )
                sys.stdout.flush()
                async for _ in signals:
                    break

    trio.run(serve)


MALLOC_ARENAS = 2
_M_ARENA_MAX = -8


def limit_malloc_arenas() -> None:
    """At most two glibc malloc arenas (the default is 8 per core): worker threads (SQLite,
    WASM runs) then share memory instead of each keeping its own. Saves ~5 MB of a node's RSS;
    does nothing where the C library is not glibc."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if name is None:
        return
    try:
        ctypes.CDLL(name).mallopt(_M_ARENA_MAX, MALLOC_ARENAS)
    except (OSError, AttributeError):
        return
