"""How the method registry looks as a table and as JSON."""

from __future__ import annotations

from typing import Any

from advisor.methods.registry import MethodInfo, Registry
from advisor.output.tables import Column, TableSpec

# Capability names as the probe stores them, and how a person reads them.
CAPABILITY_LABELS = {
    "peft_reload": "PEFT reloads it",
    "merge": "merges into the base",
    "peft_to_lora": "peft converts it to LoRA",
    "ours_to_lora": "our converter exports it to LoRA",
    "vllm_native": "vLLM serves it as trained",
    "diffusers_native": "Diffusers loads it as trained",
    "vllm_via_convert": "vLLM serves our LoRA export",
    "diffusers_via_convert": "Diffusers loads our LoRA export",
    "bnb-4bit": "trains on a 4-bit base",
    "bnb-8bit": "trains on an 8-bit base",
}


def serving_text(method: MethodInfo, consumer: str) -> str:
    how = method.serving(consumer)
    return {"native": "native", "convert": "convert"}.get(how or "", "-")


def methods_table(registry: Registry, methods: list[MethodInfo]) -> TableSpec:
    rows = tuple(
        (
            m.name,
            m.display_name,
            m.kind,
            "yes" if m.can_merge else "no",
            m.peft_to_lora,
            "yes" if m.ours_to_lora else "no",
            serving_text(m, "vllm"),
            ", ".join(q for q in m.quantization if q.startswith("bnb")) or "-",
            ", ".join(m.layer_types) or "-",
        )
        for m in methods
    )
    return TableSpec(
        columns=(
            Column("name", drop=1),
            Column("method"),
            Column("kind"),
            Column("merge"),
            Column("peft→LoRA", drop=2),
            Column("ours→LoRA"),
            Column("vLLM", drop=2),
            Column("bitsandbytes", drop=3),
            Column("layer types", drop=4),
        ),
        rows=rows,
        title=f"PEFT methods (capabilities established on a tiny Llama with peft {registry.peft_version})",
    )


def evidence_lines(method: MethodInfo) -> list[str]:
    """Each capability of one method with what the probe saw: why a claim holds or does not."""
    if not method.evidence:
        return [f"{method.display_name}: no probe results in this registry (run `peft-advise methods --refresh`)."]
    lines = [f"How {method.display_name}'s capabilities were established (a tiny Llama, seeded update):"]
    for key, label in CAPABILITY_LABELS.items():
        seen = method.evidence.get(key)
        if seen is None:
            continue
        mark = "yes" if seen.get("value") else ("not established" if seen.get("how") != "behaviour" else "no")
        lines.append(f"  {label}: {mark} - {seen.get('detail', '')}")
    return lines


def methods_json(registry: Registry, methods: list[MethodInfo]) -> dict[str, Any]:
    return {"peft_version": registry.peft_version, "methods": [m.to_dict() for m in methods]}
