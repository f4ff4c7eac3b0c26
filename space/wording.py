"""Messages as a page visitor reads them: no server paths, no command-line advice.

The library speaks to CLI users (``--min-fidelity``, "re-run the same command", ``/tmp/...``
folders). On the Space the same sentence must name the field on the page and the file as the user
has it. Every text a callback returns goes through :func:`for_page`.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

# CLI option -> the label of the widget that sets it on the page.
FIELD_NAMES: dict[str, str] = {
    "--vram": "GPU memory budget",
    "--task": "Task",
    "--min-fidelity": "Minimum fidelity",
    "--sweep": "Ranks to try",
    "--rank": "Rank",
    "--for": "Who will load it",
    "--serve": "Who will serve it",
    "--candidates": "Candidates",
    "--steps": "Steps per candidate",
    "--model": "Model",
    "--base-model": "Base model",
    "--data": "Data",
    "--require": "Required capabilities",
    "--objective": "Objective",
    "--quant": "Base precision",
    "--batch-size": "Batch size per GPU",
    "--seq-len": "Sequence length",
    "--resolution": "Image resolution",
    "--attention": "Attention",
    "--gpus": "GPUs",
    "--sharding": "Sharding",
}

# Sentences (or their tails) that only make sense at a terminal, and what the page says instead.
CLI_ONLY: tuple[tuple[str, str], ...] = (
    (r";? ?(re-?run|run) the same command[^.;]*", ""),
    (r";? ?pass --fresh[^.;]*", ""),
    (r"\(?pass --fresh to [^).;]*\)?", ""),
    (r";? ?unset HF_HUB_OFFLINE[^.;]*", ""),
    (r";? ?or run `peft-advise [^`]*`[^.;]*", ""),
    (r"`peft-advise [^`]*`", "the command-line tool"),
    (r";? ?see `peft-advise --help`", ""),
)

_ABSOLUTE = re.compile(r"(?<![\w.])(/(?:tmp|var|private|home|root|usr|opt|srv|work|app|data)[^\s'\"`),;]*)")


def _server_roots() -> tuple[str, ...]:
    return (tempfile.gettempdir(), str(Path.home()))


def hide_paths(text: str, names: dict[str, str] | None = None) -> str:
    """Replace known server paths by what the user calls them, then any other absolute path by its
    last component (an upload keeps its file name; a workspace becomes "the download")."""
    for path, label in sorted((names or {}).items(), key=lambda kv: -len(kv[0])):
        if path:
            text = text.replace(path, label)

    def short(match: re.Match[str]) -> str:
        tail = Path(match.group(1)).name
        return tail or "the server"

    return _ABSOLUTE.sub(short, text)


def for_page(text: str, names: dict[str, str] | None = None) -> str:
    """A library message as the page shows it: paths hidden, CLI advice dropped, flags named as fields."""
    if not text:
        return text
    text = hide_paths(text, names)
    for pattern, replacement in CLI_ONLY:
        text = re.sub(pattern, replacement, text)
    for flag, label in sorted(FIELD_NAMES.items(), key=lambda kv: -len(kv[0])):
        text = re.sub(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", f'"{label}"', text)
    return re.sub(r"\s{2,}", " ", text).strip()
