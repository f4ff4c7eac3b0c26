"""One temporary folder per Space request, removed once the response has been sent (or at once on failure).

A conversion or a trial writes an upload's files, the result and a zip for the download; Gradio copies
the returned files into its own cache when it sends the response. Everything the request wrote lives
under one folder, which the page's follow-up event (``.then``) removes, so a busy Space does not fill
its disk with ``/tmp/peft-advisor-*`` folders.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

PREFIX = "peft-advisor-"


def new_workspace(kind: str) -> Path:
    """A fresh folder for one request: ``$TMPDIR/peft-advisor-<kind>-XXXX``."""
    return Path(tempfile.mkdtemp(prefix=f"{PREFIX}{kind}-"))


def remove_workspace(path: str | Path | None) -> None:
    """Remove a request's folder; anything that is not one of ours (or is gone already) is left alone."""
    if not path:
        return
    folder = Path(path)
    ours = folder.name.startswith(PREFIX) and folder.parent.resolve() == Path(tempfile.gettempdir()).resolve()
    if ours and folder.is_dir():
        shutil.rmtree(folder, ignore_errors=True)
