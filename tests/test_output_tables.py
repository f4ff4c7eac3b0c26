"""The one table renderer: a terminal of any width shows whole numbers, wraps text and names what it hides."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from advisor.output.tables import Column, TableSpec, fit_table, print_table

_COLUMNS = [  # (header, justify, drop): as wide as the trial leaderboard, the widest table the tool prints
    ("#", "right", 0), ("candidate", "left", 0), ("status", "left", 0), ("accuracy", "right", 0),
    ("eval loss", "right", 1), ("gap ± SE", "right", 0), ("frontier", "left", 3), ("peak MiB", "right", 0),
    ("s/step", "right", 2), ("tok/s", "right", 6), ("trainable", "right", 4), ("ckpt KiB", "right", 7),
    ("wall s", "right", 8),
]  # fmt: skip
LEADERBOARD = TableSpec(
    columns=tuple(Column(header, justify, drop) for header, justify, drop in _COLUMNS),
    rows=(
        ("1", "ia3", "ok", "0.812", "0.4521", "winner", "yes", "150", "0.231", "4,410", "12,288", "52", "14.2"),
        (
            "2",
            "oft (baseline)",
            "ok (resumed)",
            "0.750",
            "0.5120",
            "0.062 ± 0.041 ≈",
            "",
            "146",
            "0.262",
            "3,890",
            "110,592",
            "436",
            "16.0",
        ),
        ("3", "lora", "ok", "0.708", "0.5532", "0.104 ± 0.050", "", "158", "0.201", "5,070", "73,728", "292", "12.9"),
    ),
)


def _render(spec: TableSpec, width: int) -> str:
    buffer = io.StringIO()
    console = Console(file=buffer, width=width, force_terminal=True, color_system=None)
    table, hidden = fit_table(spec, console)
    console.print(table)
    return buffer.getvalue() + ("hidden: " + ", ".join(hidden) if hidden else "")


@pytest.mark.parametrize("width", [60, 80, 100, 200])
def test_numbers_are_never_cut_at_any_width(width: int) -> None:
    text = _render(LEADERBOARD, width)
    table_lines = [line for line in text.splitlines() if not line.startswith("hidden:")]
    assert "…" not in text and all(len(line) <= width for line in table_lines)
    for cell in ("0.812", "0.750", "0.708", "0.062 ± 0.041 ≈", "0.104 ± 0.050", "150", "146", "158"):
        assert cell in text, (width, cell)  # essential columns, whole, at every width


def test_columns_are_hidden_lowest_priority_first_and_named() -> None:
    narrow = _render(LEADERBOARD, 80)
    assert narrow.splitlines()[-1].startswith("hidden: wall s, ckpt KiB, tok/s")
    assert "hidden" not in _render(LEADERBOARD, 200)


def test_text_wraps_between_words() -> None:
    spec = TableSpec((Column("method"), Column("score", "right")), (("Multitask prompt tuning", "0.3430"),))
    text = _render(spec, 22)
    assert "Multitask" in text and "0.3430" in text and "Multit…" not in text


def test_a_pipe_gets_every_column_as_plain_text(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "40")
    out = io.StringIO()
    print_table(LEADERBOARD, out)  # PEFT_ADVISOR_PLAIN is set by conftest: a pipe
    assert "wall s" in out.getvalue() and "14.2" in out.getvalue() and "─" not in out.getvalue()
