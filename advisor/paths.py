"""Where peft-advisor keeps its own files, and how it writes them safely.

User data (a refreshed benchmark snapshot, the method-capability cache) lives outside the
installed package so an install in a read-only site-packages still works; the shipped copies
inside the package are the fallback.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from advisor.errors import UserError

PACKAGE_DATA = Path(__file__).resolve().parent / "data"


def user_data_dir() -> Path:
    """``$PEFT_ADVISOR_HOME``, else ``$XDG_CACHE_HOME/peft-advisor``, else ``~/.cache/peft-advisor``."""
    explicit = os.environ.get("PEFT_ADVISOR_HOME")
    if explicit:
        return Path(explicit).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "peft-advisor"


def check_output_file(path: Path, option: str, suffixes: tuple[str, ...] | None = None) -> Path:
    """Refuse, before any work is done, a file the command could not write at the end.

    A run that trains for ten minutes and then fails on ``--plot x.html`` (or a folder named ``x.png``)
    wastes the user's time; so every output path is checked first. See :func:`_check_parent` for
    which missing folders are created.
    """
    path = Path(path).expanduser()
    if suffixes is not None and path.suffix.lower() not in suffixes:
        raise UserError(f"{option} {path}: use a file name ending in {', '.join(suffixes)}")
    if path.is_dir():
        example = path / ("out" + (suffixes[0] if suffixes else ""))
        raise UserError(f"{option} {path} is a folder; pass a file name, e.g. {example}")
    _check_parent(path, option)
    if path.exists() and not os.access(path, os.W_OK):
        raise UserError(f"{option} {path}: the file exists and is not writable")
    return path


def check_output_folder(path: Path, option: str) -> Path:
    """Like :func:`check_output_file` for a folder output; whether an existing folder may be replaced is
    the command's own rule (``--overwrite``)."""
    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        raise UserError(f"{option} {path} is a file; pass a folder")
    _check_parent(path, option)
    return path


def _check_parent(path: Path, option: str) -> None:
    """The nearest existing ancestor must be a writable folder. A missing parent is created later only when
    it lies inside the working directory (``--out runs/a`` is convenient there); elsewhere it is an error,
    because a typo such as ``/nonexistent/dir`` would otherwise create folders anywhere on the disk."""
    parent = path.absolute().parent
    existing = parent
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"{option} {path}: {existing} is a file, not a folder")
    if existing != parent:
        cwd = Path.cwd().resolve()
        if not parent.resolve().is_relative_to(cwd):
            raise UserError(
                f"{option} {path}: the folder {parent} does not exist; create it first (only folders inside the "
                "working directory are created for you)"
            )
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"{option} {path}: cannot write in {existing} (permission denied)")


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


def check_destination(out: Path, *, overwrite: bool, option: str = "OUT") -> Path:
    """Can a folder be published at ``out``? Checked before any work, and again when writing."""
    out = check_output_folder(Path(out), option)
    if out.exists() and not overwrite and any(out.iterdir()):
        raise UserError(f"{out} already exists; pass --overwrite to replace it, or choose another folder.")
    return out


@contextlib.contextmanager
def staging_folder(out: Path, *, overwrite: bool, option: str = "OUT") -> Iterator[Path]:
    """A temporary folder beside ``out``; :func:`publish` moves it into place, otherwise it vanishes.

    The one way this project writes a folder (a converted LoRA, a fixed copy, a Space export, a trial's
    adapter): the user sees the old folder or the complete new one, never half of one.
    """
    out = check_destination(out, overwrite=overwrite, option=option)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def publish(staging: Path, out: Path) -> None:
    """Move a finished staging folder onto ``out``; an old ``out`` is removed only afterwards.

    The staging folder (``mkdtemp``: mode 0700) and any file written through a private temporary file
    get the modes the user's umask gives: a server running as another user must be able to read it.
    """
    out = Path(out)
    umask = _current_umask()
    os.chmod(staging, 0o777 & ~umask)
    for path in Path(staging).rglob("*"):
        if path.is_file() and not path.is_symlink():
            os.chmod(path, 0o666 & ~umask)
        elif path.is_dir():
            os.chmod(path, 0o777 & ~umask)
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
    os.replace(staging, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
