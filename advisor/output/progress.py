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


@contextmanager
def trial_progress(*, enabled: bool = True) -> Iterator[Callable[[object], None] | None]:
    """Yield a callback for :class:`~advisor.trial.run.TrialEvent`: an overall bar and one bar per candidate."""
    if not enabled or not is_terminal(sys.stderr):
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[loss]}"),
        TimeElapsedColumn(),
        console=Console(file=sys.stderr),
    ) as bar:
        overall = bar.add_task("candidates", total=None, loss="")
        bars: dict[str, int] = {}

        def update(event: object) -> None:
            kind, name = getattr(event, "kind", ""), getattr(event, "name", "")
            total, step, loss = getattr(event, "total", 0), getattr(event, "step", 0), getattr(event, "loss", None)
            if kind == "plan":
                bar.update(overall, total=total)
            elif kind in ("start", "probe"):
                label = f"  {name}" + (" (timing the baseline)" if kind == "probe" else "")
                bars[name] = bar.add_task(label, total=total, loss="")
            elif kind == "step" and name in bars:
                bar.update(bars[name], completed=step, loss=f"loss {loss:.4f}" if loss is not None else "")
            elif kind == "end":
                result = getattr(event, "result", None)
                status = getattr(result, "status", "")
                if name not in bars:  # resumed: finished in an earlier run
                    bars[name] = bar.add_task(f"  {name} (resumed)", total=total, completed=step, loss="")
                bar.update(bars[name], loss=status if status != "ok" else "done")
                bar.advance(overall)

        yield update


@contextmanager
def stage_progress(*, enabled: bool = True) -> Iterator[Callable[[object], None] | None]:
    """Yield a callback for ``auto``'s :class:`~advisor.auto.flow.StageEvent`: one line per stage on
    stderr, and the trial's own bars while it trains."""
    if not enabled or not is_terminal(sys.stderr):
        yield None
        return
    with trial_progress(enabled=enabled) as trial_bars:
        seen: set[tuple[str, str]] = set()

        def update(event: object) -> None:
            stage, text, trial = getattr(event, "stage", ""), getattr(event, "text", ""), getattr(event, "trial", None)
            if trial is not None:
                if trial_bars is not None:
                    trial_bars(trial)
                return
            if text and (stage, text) not in seen and not text.startswith("converting:"):
                seen.add((stage, text))
                print(f"[{stage}] {text}", file=sys.stderr)

        yield update
