"""The ``dms`` command line (Typer + Rich). Nothing imports this package."""
