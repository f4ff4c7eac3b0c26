"""Render a table as rich on a terminal and as aligned plain text anywhere else.

Pipes get plain text with no box drawing or colour, so ``peft-advise ... | grep`` and log
files stay readable; rich is not even imported then, which keeps the recommend path fast.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from typing import Any, TextIO


@dataclass(frozen=True)
class Column:
    header: str
    justify: str = "left"  # "left" or "right"


@dataclass(frozen=True)
class TableSpec:
    columns: tuple[Column, ...]
    rows: tuple[tuple[str, ...], ...]
    title: str | None = None
    highlight_rows: frozenset[int] = field(default_factory=frozenset)  # row indexes to emphasise


def is_terminal(stream: TextIO) -> bool:
    if os.environ.get("PEFT_ADVISOR_PLAIN"):
        return False
    if os.environ.get("FORCE_COLOR") or os.environ.get("PEFT_ADVISOR_RICH"):
        return True
    return hasattr(stream, "isatty") and stream.isatty()


def _plain(spec: TableSpec) -> str:
    headers = [c.header for c in spec.columns]
    widths = [max(len(h), *(len(r[i]) for r in spec.rows)) if spec.rows else len(h) for i, h in enumerate(headers)]

    def line(cells: tuple[str, ...] | list[str]) -> str:
        parts = [
            cell.rjust(width) if col.justify == "right" else cell.ljust(width)
            for cell, width, col in zip(cells, widths, spec.columns, strict=True)
        ]
        return "  ".join(parts).rstrip()

    out = [spec.title] if spec.title else []
    out += [line(headers), "  ".join("-" * w for w in widths)]
    out += [line(row) for row in spec.rows]
    return "\n".join(out)


def print_table(spec: TableSpec, stream: TextIO | None = None) -> None:
    stream = stream or sys.stdout
    if not is_terminal(stream):
        print(_plain(spec), file=stream)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=spec.title, title_justify="left", header_style="bold")
    for column in spec.columns:
        table.add_column(column.header, justify=column.justify)  # type: ignore[arg-type]
    for index, row in enumerate(spec.rows):
        table.add_row(*row, style="bold" if index in spec.highlight_rows else None)
    Console(file=stream, soft_wrap=False).print(table)


def print_lines(lines: list[str] | tuple[str, ...], stream: TextIO | None = None) -> None:
    """Free text around a table (headers, notes); rich markup is not interpreted."""
    stream = stream or sys.stdout
    for text in lines:
        print(text, file=stream)


def emit_json(data: Any, stream: TextIO | None = None) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False, allow_nan=False), file=stream or sys.stdout)
