"""Progress for long work: a rich bar on a terminal (stderr), silence elsewhere."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from advisor.output.tables import is_terminal


@contextmanager
def progress_reporter(description: str, *, enabled: bool = True) -> Iterator[Callable[[int, int], None] | None]:
    """Yield a ``(done, total)`` callback that drives a progress bar, or ``None`` when quiet."""
    with phase_reporter(enabled=enabled) as phases:
        if phases is None:
            yield None
            return
        phases(description, 0, 0)
        yield lambda done, total: phases(description, done, total)


@contextmanager
def phase_reporter(*, enabled: bool = True) -> Iterator[Callable[[str, int, int], None] | None]:
    """Yield a ``(phase, done, total)`` callback: one bar whose label follows the current phase."""
    if not enabled or not is_terminal(sys.stderr):
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(file=sys.stderr),
        transient=True,
    ) as bar:
        task = bar.add_task("starting", total=None)

        def update(phase: str, done: int, total: int) -> None:
            bar.update(task, description=phase, completed=done, total=total if total > 1 else None)

        yield update
