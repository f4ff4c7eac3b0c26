"""Finding and reading a PEFT adapter: a local folder or a Hub repo, safetensors only.

This is the converter's one boundary with files and the Hub. Pickled weights
(``adapter_model.bin``) are never unpickled unless the user passes ``allow_pickle``, and even then
they are read with ``torch.load(weights_only=True)`` into a private safetensors copy, so the rest
of the converter only ever sees safetensors.
"""

from __future__ import annotations

import json
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from advisor.errors import UserError
from advisor.peft_files import CARD_NAME, CONFIG_NAME, PICKLE_NAMES, WEIGHTS_NAME

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")


@dataclass
class AdapterFiles:
    """A readable adapter: its folder, parsed config and safetensors weights path."""

    folder: Path
    config: dict[str, Any]
    weights: Path
    origin: str  # what the user passed: a path or a repo id
    hub_repo: str | None = None
    keep_alive: list[Any] = field(default_factory=list)  # temp dirs that must outlive us

    @property
    def peft_type(self) -> str:
        return str(self.config.get("peft_type", "")).upper()

    @property
    def base_model(self) -> str | None:
        return self.config.get("base_model_name_or_path") or None

    def tensor_names(self) -> list[str]:
        from safetensors import safe_open

        with safe_open(str(self.weights), framework="pt") as handle:
            return list(handle.keys())


def open_adapter(source: str, *, allow_pickle: bool = False, revision: str | None = None) -> AdapterFiles:
    """Resolve ``source`` (folder or Hub repo id) to an :class:`AdapterFiles`, validating both files."""
    path = Path(source).expanduser()
    if path.exists():
        if not path.is_dir():
            raise UserError(f"{source} is a file; pass the adapter folder that holds {CONFIG_NAME}.")
        return _read_folder(path, source, allow_pickle=allow_pickle)
    if _REPO_ID.match(source) and not source.startswith((".", "/")):
        folder = _download(source, revision=revision, allow_pickle=allow_pickle)
        adapter = _read_folder(folder, source, allow_pickle=allow_pickle)
        adapter.hub_repo = source
        return adapter
    raise UserError(f"adapter {source!r} not found: pass an existing folder or a Hub repo id such as user/my-adapter.")


def _download(repo_id: str, *, revision: str | None, allow_pickle: bool) -> Path:
    """Fetch only the adapter's config, weights and card (never a whole model repo)."""
    from huggingface_hub import snapshot_download

    from advisor.hub_access import hub_errors

    patterns = [CONFIG_NAME, WEIGHTS_NAME, CARD_NAME]
    if allow_pickle:
        patterns += list(PICKLE_NAMES)
    with hub_errors(repo_id if revision is None else f"{repo_id}@{revision}"):
        return Path(snapshot_download(repo_id, revision=revision, allow_patterns=patterns))


def _read_folder(folder: Path, origin: str, *, allow_pickle: bool) -> AdapterFiles:
    config_path = folder / CONFIG_NAME
    if not config_path.is_file():
        raise UserError(f"{folder} has no {CONFIG_NAME}: is it a PEFT adapter folder (saved with save_pretrained)?")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{config_path} is not valid JSON ({exc}); re-save the adapter with save_pretrained.") from None
    if not isinstance(config, dict) or not config.get("peft_type"):
        raise UserError(f"{config_path} has no peft_type; it does not look like a PEFT adapter config.")
    keep: list[Any] = []
    weights = folder / WEIGHTS_NAME
    if not weights.is_file():
        pickled = next((folder / name for name in PICKLE_NAMES if (folder / name).is_file()), None)
        if pickled is None:
            raise UserError(f"{folder} has no {WEIGHTS_NAME}; the adapter's weights are missing.")
        if not allow_pickle:
            raise UserError(
                f"{folder} only has pickled weights ({pickled.name}); loading a pickle can run code. "
                "Re-save the adapter with safetensors, or pass --allow-pickle if you trust its source."
            )
        weights, tmp = _pickle_to_safetensors(pickled)
        keep.append(tmp)
    _check_safetensors(weights)
    return AdapterFiles(folder=folder, config=config, weights=weights, origin=origin, keep_alive=keep)


def _check_safetensors(weights: Path) -> None:
    from safetensors import safe_open

    try:
        with safe_open(str(weights), framework="pt") as handle:
            names = list(handle.keys())
    except Exception as exc:  # safetensors raises its own SafetensorError for truncated/garbled files
        raise UserError(f"{weights} is not a readable safetensors file ({exc}); re-download or re-save it.") from None
    if not names:
        raise UserError(f"{weights} holds no tensors; the adapter was saved empty.")


def _pickle_to_safetensors(pickled: Path) -> tuple[Path, Any]:
    import torch
    from safetensors.torch import save_file

    try:
        state = torch.load(pickled, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise UserError(f"cannot read {pickled} as plain tensors ({exc}).") from None
    tmp = tempfile.TemporaryDirectory(prefix="peft-advisor-adapter-")
    target = Path(tmp.name) / WEIGHTS_NAME
    save_file({k: v.contiguous() for k, v in state.items()}, str(target))
    return target, tmp
