"""The ``peft-advise`` command line: ``app`` (a Typer app) and ``main`` (the console script)."""

from advisor.cli.main import app, main

__all__ = ["app", "main"]
