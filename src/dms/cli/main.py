"""Entry point of the ``dms`` command. Exit codes: 0 ok, 1 operation failed, 2 bad usage/input."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from dms import __version__
from dms.cli import config_cmd, validate_cmd
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
)
app.add_typer(config_cmd.app, name="config")
app.command("validate")(validate_cmd.validate)


@app.callback()
def main_options(
    ctx: typer.Context,
    home: Annotated[
        str | None,
        typer.Option("--home", envvar="DMS_HOME", help="Node home folder (default ~/.dms)."),
    ] = None,
) -> None:
    ctx.obj = CLIState(home=Home.resolve(home))


@app.command()
def version(json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Print the dms version."""
    if json:
        emit_json({"version": __version__})
    else:
        typer.echo(f"dms {__version__}")


EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def main(argv: list[str] | None = None) -> int:
    """Run the CLI, turning our errors into a message and an exit code, never a traceback."""
    try:
        app(args=argv, standalone_mode=False)
    except (InputError, ConfigError) as exc:
        fail(str(exc))
        return EXIT_USAGE
    except DMSError as exc:
        fail(str(exc))
        return EXIT_FAILED
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
