"""Entry point of the ``dms`` command. Exit codes: 0 ok, 1 operation failed, 2 bad usage/input.

Command modules import only Typer at the top and everything else inside the command, so that
``dms --help`` stays quick.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from dms import __version__
from dms.cli import (
    cap_cmd,
    config_cmd,
    deploy_cmd,
    devstack_cmd,
    init_cmd,
    key_cmd,
    node_cmd,
    peers_cmd,
    run_cmd,
    validate_cmd,
)
from dms.cli.output import emit_json, fail
from dms.cli.state import CLIState
from dms.errors import ConfigError, DMSError, InputError
from dms.home import Home

app = typer.Typer(
    name="dms",
    help="dms: device management service for a decentralized compute network.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,
)
app.command("init")(init_cmd.init)
app.command("run")(run_cmd.run)
app.command("status")(node_cmd.status)
app.command("onboard")(node_cmd.onboard)
app.command("offboard")(node_cmd.offboard)
app.command("resources")(node_cmd.resources)
app.add_typer(peers_cmd.app, name="peers")
app.command("validate")(validate_cmd.validate)
app.command("deploy")(deploy_cmd.deploy)
app.add_typer(deploy_cmd.app, name="deployments")
app.add_typer(node_cmd.allocations_app, name="allocations")
app.add_typer(key_cmd.app, name="key")
app.add_typer(cap_cmd.app, name="cap")
app.add_typer(config_cmd.app, name="config")
app.command("devstack")(devstack_cmd.devstack)


@app.callback()
def main_options(
    ctx: typer.Context,
    home: Annotated[
        str | None,
        typer.Option("--home", envvar="DMS_HOME", help="Node home folder (default ~/.dms)."),
    ] = None,
    api: Annotated[
        str | None,
        typer.Option(
            "--api",
            envvar="DMS_API_URL",
            help="The node's REST API (default: the running node of --home).",
        ),
    ] = None,
) -> None:
    from dms.log import configure

    # Before anything logs: components bind their loggers at import, and structlog's default
    # set-up prints to stdout, which must carry only the command's own output. `dms run`
    # configures again from the node's config.
    configure("warning")
    ctx.obj = CLIState(home=Home.resolve(home), api_url=api)


@app.command()
def version(json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Print the dms version."""
    if json:
        emit_json({"version": __version__})
    else:
        typer.echo(f"dms {__version__}")


EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
_INPUT_ERRORS = frozenset({"InvalidDID", "InvalidToken", "DelegationError"})
"""Security errors about what the user typed (a DID, a token, a delegation): bad input."""


def _ours(group: BaseExceptionGroup[BaseException]) -> DMSError | None:
    """The first of our errors inside (nested) exception groups from task groups."""
    for inner in group.exceptions:
        if isinstance(inner, DMSError):
            return inner
        if isinstance(inner, BaseExceptionGroup):
            found = _ours(inner)
            if found is not None:
                return found
    return None


def main(argv: list[str] | None = None) -> int:
    """Run the CLI, turning our errors into a message and an exit code, never a traceback."""
    try:
        try:
            app(args=argv, standalone_mode=False)
        except BaseExceptionGroup as group:
            ours = _ours(group)
            if ours is None:
                raise
            raise ours from group
    except (InputError, ConfigError) as exc:
        fail(str(exc))
        return EXIT_USAGE
    except DMSError as exc:
        fail(str(exc))
        return EXIT_USAGE if type(exc).__name__ in _INPUT_ERRORS else EXIT_FAILED
    except typer.Exit as exc:
        return int(exc.exit_code or 0)
    except typer.Abort:
        fail("aborted")
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        # Typer's (vendored) click reports usage errors as exceptions with show()/exit_code.
        show, code = getattr(exc, "show", None), getattr(exc, "exit_code", None)
        if callable(show) and isinstance(code, int):
            show()
            return code
        raise
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
