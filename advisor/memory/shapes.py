"""A model's shape for the memory model, read without loading (or downloading) its weights.

What training memory depends on is a handful of numbers: layers, hidden and MLP width, attention
heads, vocabulary, whether the embeddings are tied, and the exact parameter count. They come from
``config.json`` (``text_config`` for vision-language models) and from the safetensors headers,
which hold every tensor's shape in their first few kilobytes: a local folder's files are read
directly, a Hub repo's through ``huggingface_hub.get_safetensors_metadata`` (range requests, no
weights). When neither is reachable the count is computed from the config and the result says so.

No torch, no transformers: this runs on the recommend path.
"""

from __future__ import annotations

import json
import struct
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from advisor.errors import UserError

# Config keys across architectures, most common first.
_KEYS = {
    "hidden": ("hidden_size", "n_embd", "d_model"),
    "layers": ("num_hidden_layers", "n_layer", "num_layers"),
    "heads": ("num_attention_heads", "n_head", "num_heads"),
    "intermediate": ("intermediate_size", "n_inner", "ffn_dim", "d_ff"),
}


@dataclass(frozen=True)
class ModelShape:
    name: str
    architecture: str | None
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    tied_embeddings: bool
    total_params: int
    params_source: str  # "safetensors headers" | "Hub safetensors metadata" | "estimated from config.json"
    dtype: str | None  # the checkpoint's torch_dtype / dtype

    @property
    def embedding_params(self) -> int:
        """Input embeddings plus an untied LM head: the parts bitsandbytes leaves unquantised."""
        return self.vocab * self.hidden * (1 if self.tied_embeddings else 2)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _first(config: dict[str, Any], key: str) -> int | None:
    for name in _KEYS[key]:
        value = config.get(name)
        if isinstance(value, int) and value > 0:
            return value
    return None


def shape_from_config(
    config: dict[str, Any], name: str, total_params: int | None = None, params_source: str = ""
) -> ModelShape:
    """The shape of a decoder LM from its config; a :class:`UserError` naming the missing key otherwise."""
    text = config.get("text_config") if isinstance(config.get("text_config"), dict) else None
    cfg = {**config, **text} if text else config
    values = {key: _first(cfg, key) for key in _KEYS}
    missing = [f"{'/'.join(_KEYS[k])}" for k in ("hidden", "layers", "heads") if values[k] is None]
    vocab = cfg.get("vocab_size")
    if not isinstance(vocab, int) or vocab <= 0:
        missing.append("vocab_size")
    if missing:
        raise UserError(
            f"--model {name}: its config.json lacks {', '.join(missing)}; the memory model needs a "
            "transformer language model's config (hidden size, layers, heads, vocabulary)"
        )
    hidden, layers, heads = values["hidden"], values["layers"], values["heads"]
    assert hidden and layers and heads
    intermediate = values["intermediate"] or 4 * hidden
    kv_heads = cfg.get("num_key_value_heads") or heads
    head_dim = cfg.get("head_dim") or hidden // heads
    tied = bool(cfg.get("tie_word_embeddings", config.get("tie_word_embeddings", True)))
    if total_params is None:
        total_params = estimate_params(hidden, intermediate, layers, heads, kv_heads, head_dim, vocab, tied)
        params_source = "estimated from config.json"
    architecture = (config.get("architectures") or [None])[0]
    dtype = cfg.get("torch_dtype") or cfg.get("dtype") or config.get("torch_dtype")
    return ModelShape(
        name, architecture, hidden, intermediate, layers, heads, kv_heads, head_dim, vocab, tied,
        total_params, params_source, dtype,
    )  # fmt: skip


def estimate_params(
    hidden: int, intermediate: int, layers: int, heads: int, kv_heads: int, head_dim: int, vocab: int, tied: bool
) -> int:
    """Llama-style count: attention q/k/v/o, a gated MLP, two norms per layer, embeddings (+ untied head)."""
    attention = hidden * heads * head_dim * 2 + hidden * kv_heads * head_dim * 2
    mlp = 3 * hidden * intermediate
    per_layer = attention + mlp + 2 * hidden
    return layers * per_layer + vocab * hidden * (1 if tied else 2) + hidden


def safetensors_params(folder: Path) -> int | None:
    """Parameters counted from the safetensors headers of a local folder (8-byte length + JSON each)."""
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        return None
    total = 0
    for path in files:
        try:
            with open(path, "rb") as handle:
                (length,) = struct.unpack("<Q", handle.read(8))
                if length > 100_000_000:
                    raise ValueError("header too large")
                header = json.loads(handle.read(length))
        except (OSError, ValueError, struct.error) as exc:
            raise UserError(f"{path} is not a readable safetensors file ({exc})") from None
        for key, info in header.items():
            if key != "__metadata__":
                count = 1
                for dim in info["shape"]:
                    count *= dim
                total += count
    return total


def read_shape(model: str, revision: str | None = None) -> ModelShape:
    """A local folder, or a Hub repo id (config.json through the HF cache; weights never downloaded)."""
    config = read_model_config(model, revision)
    path = Path(model).expanduser()
    if path.is_dir():
        params = safetensors_params(path)
        return shape_from_config(config, model, params, "safetensors headers" if params else "")
    return _hub_shape(model, config, revision)


def read_model_config(model: str, revision: str | None = None) -> dict[str, Any]:
    """``config.json`` of a local model folder or a Hub repo (through the HF cache), with one-line errors.

    A path that does not exist is said to be missing, not sent to the Hub as a malformed repo id.
    """
    path = Path(model).expanduser()
    if path.is_dir():
        config_path = path / "config.json"
        if not config_path.is_file():
            raise UserError(f"--model {model}: the folder has no config.json")
        return _read_config(config_path, model)
    if path.exists():
        raise UserError(f"--model {model} is a file; pass the model's folder (with config.json) or a Hub id")
    looks_like_id = (
        model.count("/") == 1 and not model.startswith((".", "/", "~")) and path.suffix not in (".json", ".safetensors")
    )
    if not looks_like_id:
        raise UserError(
            f"--model {model}: no such folder; pass a model folder or a Hub id such as meta-llama/Llama-3.2-1B"
        )
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:
        raise UserError(
            f"--model {model}: reading a Hub model needs huggingface_hub (pip install 'peft-advisor[scan]'), "
            "or pass a local folder with its config.json"
        ) from None
    from advisor.hub_access import hub_errors

    with hub_errors(f"{model}'s config.json (no local folder of that name either)"):
        config_path = hf_hub_download(model, "config.json", revision=revision)
    return _read_config(Path(config_path), model)


def _read_config(path: Path, model: str) -> dict[str, Any]:
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UserError(f"--model {model}: cannot read {path.name} ({exc})") from None
    if not isinstance(config, dict):
        raise UserError(f"--model {model}: {path.name} is not a JSON object")
    return config


def _hub_shape(repo_id: str, config: dict[str, Any], revision: str | None) -> ModelShape:
    from huggingface_hub import HfApi

    params, source = None, ""
    try:
        metadata = HfApi().get_safetensors_metadata(repo_id, revision=revision)
        params, source = sum(metadata.parameter_count.values()), "Hub safetensors metadata"
    except Exception:  # offline, no safetensors, or an old endpoint: fall back to the config's arithmetic
        params = None
    return shape_from_config(config, repo_id, params, source)
