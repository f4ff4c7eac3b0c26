"""A local folder of model repos (one sub-folder each, README.md and maybe adapter_config.json) or of cards.

The layout of a cloned repo, of ``huggingface-cli download`` output, or of a labelled card collection:
every folder holding a README.md or an adapter_config.json is one repo, its id the path relative
to the root. The root's own README.md and other loose ``*.md`` files describe the collection when
it has repo sub-folders; in a folder without any, each ``*.md`` file is a card (id = its name
without ``.md``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from advisor.errors import UserError
from advisor.peft_files import CONFIG_NAME
from hub_scan.records import CardRecord, config_base_model, config_facts

CARD_NAMES = ("README.md", "readme.md", "model_card.md")


def _read_text(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace")


def _config(folder: Path) -> tuple[str | None, tuple[str, ...], str | None]:
    """``(peft_type, flags, base_model_name_or_path)`` of the folder's adapter_config.json."""
    path = folder / CONFIG_NAME
    if not path.is_file():
        return None, (), None
    try:
        config = json.loads(_read_text(path))
    except ValueError:  # an adapter_config.json that is not JSON says nothing about the method
        return None, (), None
    return (*config_facts(config), config_base_model(config))


def _files(folder: Path) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The folder's own file names, and tensor names from its weight files' headers (cheap: the first
    kilobytes of each file), which say kohya/LyCORIS LoRA where no PEFT config does."""
    names = tuple(sorted(p.name for p in folder.iterdir() if p.is_file()))
    keys: list[str] = []
    for name in names:
        if name.endswith(".safetensors") and not (folder / CONFIG_NAME).is_file():
            keys += _header_keys(folder / name)
    return names, tuple(keys)


def _header_keys(path: Path, limit: int = 64) -> list[str]:
    from advisor.safetensors_headers import read_header

    try:
        return sorted(read_header(path))[:limit]
    except (UserError, OSError, ValueError):  # not a readable safetensors file: it says nothing
        return []


def repo_folders(root: Path) -> list[Path]:
    """Folders that are repos, sorted, so ids and their order do not depend on the file system."""
    found = set()
    for name in (*CARD_NAMES, CONFIG_NAME):
        for path in root.rglob(name):
            if not any(part.startswith(".") for part in path.relative_to(root).parts):
                found.add(path.parent)
    return sorted(found)


def read_local_dir(root: Path) -> Iterator[CardRecord]:
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{root} is not a folder; pass a folder of model repos (sub-folders with README.md)")
    folders = [f for f in repo_folders(root) if f != root]
    loose = [] if folders else sorted(root.glob("*.md"))
    if not folders and not loose:
        raise UserError(
            f"{root} holds no model cards: expected sub-folders with README.md (and maybe adapter_config.json) "
            "or *.md card files"
        )
    for folder in folders:
        card_path = next((folder / n for n in CARD_NAMES if (folder / n).is_file()), None)
        peft_type, flags, base = _config(folder)
        files, keys = _files(folder)
        yield CardRecord(
            id=folder.relative_to(root).as_posix(),
            card=_read_text(card_path) if card_path else None,
            config_peft_type=peft_type,
            config_flags=flags,
            config_base_model=base,
            files=files,
            weight_keys=keys,
        )
    for path in loose:
        yield CardRecord(id=path.stem, card=_read_text(path))
