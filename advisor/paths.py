"""Where peft-advisor keeps its own files, and how it writes them safely.

User data (a refreshed benchmark snapshot, the method-capability cache) lives outside the
installed package so an install in a read-only site-packages still works; the shipped copies
inside the package are the fallback.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

PACKAGE_DATA = Path(__file__).resolve().parent / "data"


def user_data_dir() -> Path:
    """``$PEFT_ADVISOR_HOME``, else ``$XDG_CACHE_HOME/peft-advisor``, else ``~/.cache/peft-advisor``."""
    explicit = os.environ.get("PEFT_ADVISOR_HOME")
    if explicit:
        return Path(explicit).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "peft-advisor"


@contextlib.contextmanager
def atomic_destination(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed onto ``path``.

    A crash, a full disk or an exception leaves either the old file or the new one, never half
    of one, and no temporary file behind. Writers that only take a file name (matplotlib) can
    use it as well as our own text writers.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix or ".tmp", dir=path.parent)
    os.close(fd)
    try:
        os.chmod(tmp, 0o666 & ~_current_umask())  # mkstemp makes 0600; keep normal file modes
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_destination`)."""
    with atomic_destination(path) as tmp, open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json_atomic(path: Path, data: Any) -> None:
    """Atomic JSON write; ``allow_nan=False`` keeps the file strict JSON for other tools."""
    write_text_atomic(path, json.dumps(data, indent=1, sort_keys=False, allow_nan=False) + "\n")


def read_json(path: Path) -> Any:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)
