"""What every command shares: the one-line error wrapper, list parsing and the common options."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from advisor.errors import UserError

F = TypeVar("F", bound=Callable[..., Any])


def user_errors(func: F) -> F:
    """Turn a :class:`UserError` into ``Error: <message>`` on stderr and exit code 2."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except UserError as exc:
            print(f"Error: {exc}", file=sys.stderr)
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]


def split_csv(value: str | None) -> tuple[str, ...]:
    """``"a, B,,c"`` → ``("a", "b", "c")``: comma lists as users type them."""
    return tuple(part.strip().lower() for part in (value or "").split(",") if part.strip())


def choices(values: Any) -> str:
    """``a | b | c`` for help texts, from the vocabulary (never written out twice)."""
    return " | ".join(values)


JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable output (stable shape, see README).")]
PlotOption = Annotated[
    Path | None, typer.Option("--plot", help="Also write a chart: .png/.svg/.pdf, or .html (interactive).")
]
