"""Named variants of a method, read from a run's PEFT config and training settings.

LoRA has many switches that change its behaviour, memory or servability (rsLoRA, DoRA,
LoRA-FA ...). The recommender needs them to tell "plain LoRA" from "the best LoRA variant".
"""

from __future__ import annotations

from typing import Any

# Initialisations vLLM accepts (docs/lora-consumers.md, vLLM); others change the base.
VLLM_OK_INITS = frozenset({"gaussian", "eva", "orthogonal", "mica", "lora_ga"})


def split_method_spec(spec: str) -> tuple[str, str]:
    """``lora:rank32-dora`` (or ``lora/rank32-dora``) → ("lora", "rank32-dora"); a bare method → (method, "").

    One syntax for every command that names a benchmark run: ``--show-config``, ``trial --candidates``.
    """
    text = spec.strip()
    for separator in (":", "/"):
        if separator in text:
            method, _, variant = text.partition(separator)
            return method.strip(), variant.strip()
    return text, ""


def variant_flags(peft_type: str | None, peft_config: dict[str, Any], train_config: dict[str, Any]) -> list[str]:
    """Short labels for every non-default switch that makes a run a variant of its method."""
    from advisor.vocabulary import LORA_SWITCHES

    flags: list[str] = []
    if peft_type == "LORA":
        flags += [label for switch, label in LORA_SWITCHES.items() if peft_config.get(switch)]
        init = peft_config.get("init_lora_weights", True)
        if isinstance(init, str):
            flags.append(f"init={init}")
        elif init is False:
            flags.append("init=zeros")
    optimizer = str(train_config.get("optimizer_type") or "")
    if optimizer.lower() in ("lora-fa", "lorafa"):
        flags.append("LoRA-FA")
    return flags


def vllm_blockers(peft_type: str | None, peft_config: dict[str, Any]) -> list[str]:
    """Why vLLM would refuse this adapter as trained (empty: it loads with --enable-lora).

    Rules from docs/lora-consumers.md (vLLM 0.33): plain LoRA only; DoRA, bias,
    base-changing initialisations, layer replication and saved full modules are rejected.
    """
    if peft_type != "LORA":
        return ["vLLM loads only LoRA adapters"]
    blockers = []
    if peft_config.get("use_dora"):
        blockers.append("DoRA")
    if peft_config.get("bias", "none") != "none" or peft_config.get("lora_bias"):
        blockers.append("bias")
    init = peft_config.get("init_lora_weights", True)
    if isinstance(init, str) and init not in VLLM_OK_INITS:
        blockers.append(f"init_lora_weights={init}")
    for key in ("use_bdlora", "use_qalora", "layer_replication", "alora_invocation_tokens", "modules_to_save"):
        if peft_config.get(key):
            blockers.append(key)
    return blockers
