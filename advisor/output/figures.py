"""What every static chart shares: the file-name check, a headless matplotlib, an atomic save.

One place, so the recommendation plot, the trial plot and the Hub-usage chart accept the same
suffixes, give the same one-line error without matplotlib, and never leave half a file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from advisor.errors import UserError
from advisor.paths import atomic_destination

STATIC_SUFFIXES = (".png", ".svg", ".pdf")


def pyplot_for(path: Path) -> Any:
    """``matplotlib.pyplot`` on the Agg backend, once ``path`` is known to be a static image name."""
    path = Path(path)
    if path.suffix.lower() not in STATIC_SUFFIXES:
        raise UserError(f"--plot {path}: use a .png, .svg or .pdf file name")
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
