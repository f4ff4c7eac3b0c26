"""Files people upload to the Space: size-limited, archives unpacked safely, and never a pickle.

A public Space takes files from anyone, so an upload is treated as hostile until checked:

- size: the file itself, and for an archive the *declared uncompressed* total and member count
  (a zip bomb is refused before anything is written);
- paths: members with absolute paths, ``..`` components, drive letters or backslashes are refused
  (no writing outside the target folder), and so are symlinks and other special files;
- content: only the files an adapter or a data set needs (JSON, safetensors, text, parquet, csv);
  pickled weights (``.bin``, ``.pt``, ``.pth``, ``.pkl``, ``.ckpt``) are refused outright, as the CLI
  refuses them without ``--allow-pickle``.

Everything is extracted into a fresh temporary folder; a refused archive leaves nothing behind.
"""

from __future__ import annotations

import shutil
import stat
import tempfile
import zipfile
from pathlib import Path, PurePosixPath

from advisor.errors import UserError
from advisor.peft_files import CONFIG_NAME

MAX_UPLOAD_BYTES = 200 * 2**20  # an adapter of a 7B model at rank 64 is ~160 MiB
MAX_UNPACKED_BYTES = 400 * 2**20
MAX_MEMBERS = 64
MAX_DATA_BYTES = 20 * 2**20  # a trial on a free CPU Space reads a few thousand rows at most
ADAPTER_SUFFIXES = (".json", ".safetensors", ".md", ".txt")
DATA_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")


def check_size(path: Path, limit: int, what: str) -> None:
    size = Path(path).stat().st_size
    if size > limit:
        raise UserError(f"{what} is {size / 2**20:.1f} MiB; the limit here is {limit / 2**20:.0f} MiB")


def _safe_member(name: str) -> PurePosixPath:
    if "\\" in name or name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise UserError(f"refused: the archive member {name!r} has an absolute or Windows path")
    path = PurePosixPath(name)
    if any(part == ".." for part in path.parts):
        raise UserError(f"refused: the archive member {name!r} points outside the archive")
    return path


def _is_link_or_special(info: zipfile.ZipInfo) -> bool:
    kind = stat.S_IFMT(info.external_attr >> 16)  # 0 when the archiver recorded no Unix type
    return kind not in (0, stat.S_IFREG, stat.S_IFDIR)


def extract_zip(archive: Path, allowed: tuple[str, ...] = ADAPTER_SUFFIXES, *, into: Path | None = None) -> Path:
    """Unpack ``archive`` into a new temporary folder after checking every member; return the folder."""
    archive = Path(archive)
    check_size(archive, MAX_UPLOAD_BYTES, archive.name)
    try:
        bundle = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as exc:
        raise UserError(f"{archive.name} is not a readable zip archive ({exc})") from None
    with bundle:
        members = [m for m in bundle.infolist() if not m.is_dir()]
        if len(members) > MAX_MEMBERS:
            raise UserError(f"refused: {len(members)} files in the archive; at most {MAX_MEMBERS}")
        total = sum(m.file_size for m in members)
        if total > MAX_UNPACKED_BYTES:
            raise UserError(
                f"refused: the archive unpacks to {total / 2**20:.0f} MiB; at most {MAX_UNPACKED_BYTES / 2**20:.0f}"
            )
        for member in members:
            path = _safe_member(member.filename)
            if _is_link_or_special(member):
                raise UserError(f"refused: {member.filename} is a symlink or special file")
            suffix = path.suffix.lower()
            if suffix in PICKLE_SUFFIXES:
                raise UserError(
                    f"refused: {member.filename} is a pickle file, which can run code when loaded; "
                    "upload safetensors weights (adapter_model.safetensors)"
                )
            if suffix not in allowed:
                raise UserError(f"refused: {member.filename}: only {', '.join(allowed)} files are accepted")
        target = _fresh_folder(into)
        try:
            for member in members:
                destination = target.joinpath(*_safe_member(member.filename).parts)
                if not destination.resolve().is_relative_to(target.resolve()):
                    raise UserError(f"refused: {member.filename} points outside the archive")
                destination.parent.mkdir(parents=True, exist_ok=True)
                try:
                    with bundle.open(member) as source, open(destination, "wb") as sink:
                        shutil.copyfileobj(source, sink, 2**20)  # zipfile stops at the declared size
                except (zipfile.BadZipFile, OSError) as exc:
                    raise UserError(f"refused: {member.filename} is damaged ({exc})") from None
                if destination.stat().st_size != member.file_size:
                    raise UserError(f"refused: {member.filename} is not the size the archive declares")
        except BaseException:
            shutil.rmtree(target, ignore_errors=True)
            raise
    return target


def adapter_folder(paths: list[Path], *, into: Path | None = None) -> Path:
    """The uploaded adapter as a folder (under ``into``, a request's workspace, when given): one zip, or
    loose files (adapter_config.json + weights)."""
    paths = [Path(p) for p in paths if p]
    if not paths:
        raise UserError("upload an adapter: a .zip of its folder, or adapter_config.json and adapter_model.safetensors")
    if len(paths) == 1 and paths[0].suffix.lower() == ".zip":
        root = extract_zip(paths[0], into=into)
    else:
        root = _fresh_folder(into)
        for path in paths:
            name = Path(path).name
            if Path(name).suffix.lower() in PICKLE_SUFFIXES:
                shutil.rmtree(root, ignore_errors=True)
                raise UserError(f"refused: {name} is a pickle file; upload adapter_model.safetensors")
            if Path(name).suffix.lower() not in ADAPTER_SUFFIXES:
                shutil.rmtree(root, ignore_errors=True)
                raise UserError(f"refused: {name}: only {', '.join(ADAPTER_SUFFIXES)} files are accepted")
            check_size(path, MAX_UPLOAD_BYTES, name)
            shutil.copyfile(path, root / name)
    configs = sorted(root.rglob(CONFIG_NAME))
    if len(configs) != 1:
        shutil.rmtree(root, ignore_errors=True)
        found = "none" if not configs else f"{len(configs)}"
        raise UserError(f"the upload must hold exactly one adapter_config.json (found {found})")
    return configs[0].parent


def _fresh_folder(into: Path | None) -> Path:
    """``into`` (created, and empty), or a new temporary folder of our own."""
    if into is None:
        return Path(tempfile.mkdtemp(prefix="peft-advisor-upload-"))
    into.mkdir(parents=True, exist_ok=False)
    return into


def data_file(path: Path) -> Path:
    """An uploaded trial data set: a data file type, within the size limit."""
    path = Path(path)
    if path.suffix.lower() not in DATA_SUFFIXES:
        raise UserError(f"{path.name}: upload a {', '.join(DATA_SUFFIXES)} file")
    check_size(path, MAX_DATA_BYTES, path.name)
    return path
