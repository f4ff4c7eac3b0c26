"""What every chart shares: the accepted file names, a headless matplotlib, atomic saves.

One place, so the recommendation plot, the trial plot and the Hub-usage chart accept the same
formats (.png/.svg/.pdf drawn by matplotlib, .html as an interactive plotly page that opens offline),
give the same one-line errors, and never leave half a file.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from advisor.errors import UserError
from advisor.paths import atomic_destination, check_output_file, write_text_atomic

STATIC_SUFFIXES = (".png", ".svg", ".pdf")
PLOT_SUFFIXES = (*STATIC_SUFFIXES, ".html")


def check_plot_path(path: Path, option: str = "--plot") -> Path:
    """Validate a plot destination before any work: a known format, a writable place."""
    return check_output_file(path, option, PLOT_SUFFIXES)


def pyplot_for(path: Path) -> Any:
    """``matplotlib.pyplot`` on the Agg backend, once ``path`` is known to be a static image name."""
    path = Path(path)
    if path.suffix.lower() not in STATIC_SUFFIXES:
        raise UserError(f"--plot {path}: use a .png, .svg or .pdf file name (or .html)")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise UserError("plotting needs matplotlib: pip install 'peft-advisor[plot]'") from exc
    return plt


def save_static(fig: Any, path: Path) -> Path:
    """Write ``fig`` to ``path`` atomically (format from the suffix) and release it."""
    import matplotlib.pyplot as plt

    path = Path(path)
    try:
        with atomic_destination(path) as tmp:
            fig.savefig(tmp, format=path.suffix.lower().lstrip("."))
    finally:
        plt.close(fig)
    return path


def plotly_go() -> Any:
    """``plotly.graph_objects``, or a one-line error naming the extra that brings it."""
    try:
        import plotly.graph_objects as go
    except ImportError as exc:
        raise UserError("interactive plots need plotly: pip install 'peft-advisor[plot]'") from exc
    return go


def save_html(fig: Any, path: Path) -> Path:
    """A plotly figure as a self-contained page (plotly.js embedded: it opens offline)."""
    write_text_atomic(Path(path), fig.to_html(include_plotlyjs=True, full_html=True))
    return Path(path)


def save_plot(path: Path, static: Callable[[Any], Any], interactive: Callable[[], Any]) -> Path:
    """``.html``: ``interactive()`` (a plotly figure); otherwise ``static(plt)`` (a matplotlib figure)."""
    path = check_plot_path(path)
    if path.suffix.lower() == ".html":
        return save_html(interactive(), path)
    return save_static(static(pyplot_for(path)), path)
