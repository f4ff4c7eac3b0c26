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
from hub_scan.records import CardRecord, config_facts

CARD_NAMES = ("README.md", "readme.md", "model_card.md")


def _read_text(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace")


def _config(folder: Path) -> tuple[str | None, tuple[str, ...]]:
    path = folder / CONFIG_NAME
    if not path.is_file():
        return None, ()
    try:
        return config_facts(json.loads(_read_text(path)))
    except ValueError:  # an adapter_config.json that is not JSON says nothing about the method
        return None, ()


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
        peft_type, flags = _config(folder)
        yield CardRecord(
            id=folder.relative_to(root).as_posix(),
            card=_read_text(card_path) if card_path else None,
            config_peft_type=peft_type,
            config_flags=flags,
        )
    for path in loose:
        yield CardRecord(id=path.stem, card=_read_text(path))
