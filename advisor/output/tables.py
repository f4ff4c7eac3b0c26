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
    """One column. Right-justified columns hold numbers: on a terminal they are never wrapped or cut.

    ``drop`` orders what a narrow terminal hides: 0 is always shown; among the others the highest
    number goes first. Text columns wrap instead of being cut.
    """

    header: str
    justify: str = "left"  # "left" (text: wraps) or "right" (numbers: kept whole)
    drop: int = 0


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

    console = Console(file=stream, soft_wrap=False)
    table, hidden = fit_table(spec, console)
    console.print(table)
    if hidden:
        console.print(
            f"(hidden at {console.width} columns: {', '.join(hidden)}; see --json)",
            markup=False,
            highlight=False,
        )


def fit_table(spec: TableSpec, console: Any) -> tuple[Any, list[str]]:
    """A rich table that fits the console without cutting a number: low-priority columns are hidden first.

    Every column gets at least its minimum (numbers: the widest cell; text: its longest word, so wrapping
    happens between words), columns are hidden by :attr:`Column.drop` until those minimums fit, and the
    room left goes to the columns that want more, smallest needs first (a header that would wrap, then
    long text). Widths are fixed before rich renders, because rich's own squeezing ignores minimums and
    shortens numbers to "0.52…".
    """
    shown = list(range(len(spec.columns)))
    hidden: list[str] = []
    while True:
        mins = {i: _min_width(spec, i) for i in shown}
        room = console.width - _overhead(spec, shown, console)
        droppable = [i for i in shown if spec.columns[i].drop > 0]
        if sum(mins.values()) <= room or not droppable:
            break
        victim = max(droppable, key=lambda i: (spec.columns[i].drop, i))
        shown.remove(victim)
        hidden.append(spec.columns[victim].header)
    return _rich_table(spec, shown, _share_room(spec, mins, room)), hidden


def _share_room(spec: TableSpec, mins: dict[int, int], room: int) -> dict[int, int]:
    """Water-filling: every column that wants more gets an equal share of the spare room, up to its need."""
    widths = dict(mins)
    spare = room - sum(widths.values())
    wanting = [i for i in widths if _natural_width(spec, i) > widths[i]]
    while spare > 0 and wanting:
        share = max(1, spare // len(wanting))
        for i in list(wanting):
            give = min(share, _natural_width(spec, i) - widths[i], spare)
            widths[i] += give
            spare -= give
            if widths[i] >= _natural_width(spec, i):
                wanting.remove(i)
            if spare == 0:
                break
    return widths


TEXT_WORD_CAP = 16  # a text column may fold words longer than this (long variant names), never shorter ones


def _min_width(spec: TableSpec, i: int) -> int:
    """Numbers: the widest cell. Text: its longest word (capped). Either way at least the header's longest word."""
    column = spec.columns[i]
    cells = [row[i] for row in spec.rows]
    header = max((len(word) for word in column.header.split()), default=1)
    if column.justify == "right":
        return max(header, max((len(cell) for cell in cells), default=0))
    longest = max((len(word) for cell in cells for word in cell.split()), default=0)
    return max(header, min(longest, TEXT_WORD_CAP))


def _natural_width(spec: TableSpec, i: int) -> int:
    """The width at which nothing in the column wraps."""
    return (
        max(len(spec.columns[i].header), *(len(row[i]) for row in spec.rows))
        if spec.rows
        else len(spec.columns[i].header)
    )


def _overhead(spec: TableSpec, shown: list[int], console: Any) -> int:
    """Cells rich adds around the columns (padding, separators): measured, not assumed."""
    from rich.measure import Measurement

    ones = dict.fromkeys(shown, 1)
    wide = console.options.update(max_width=1 << 16)
    return int(Measurement.get(console, wide, _rich_table(spec, shown, ones)).maximum) - len(shown)


def _rich_table(spec: TableSpec, shown: list[int], widths: dict[int, int]) -> Any:
    from rich import box
    from rich.table import Table

    table = Table(
        title=spec.title,
        title_justify="left",
        header_style="bold",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        collapse_padding=True,
    )
    for i in shown:
        column = spec.columns[i]
        table.add_column(
            column.header,
            justify=column.justify,  # type: ignore[arg-type]
            overflow="fold",
            width=widths[i],
        )
    for index, row in enumerate(spec.rows):
        table.add_row(*(row[i] for i in shown), style="bold" if index in spec.highlight_rows else None)
    return table


def print_lines(lines: list[str] | tuple[str, ...], stream: TextIO | None = None) -> None:
    """Free text around a table (headers, notes); rich markup is not interpreted."""
    stream = stream or sys.stdout
    for text in lines:
        print(text, file=stream)


def emit_json(data: Any, stream: TextIO | None = None) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False, allow_nan=False), file=stream or sys.stdout)
