"""How the method registry looks as a table and as JSON."""

from __future__ import annotations

from typing import Any

from advisor.methods.registry import MethodInfo, Registry
from advisor.output.tables import Column, TableSpec


def methods_table(registry: Registry, methods: list[MethodInfo]) -> TableSpec:
    rows = tuple(
        (
            m.name,
            m.display_name,
            m.kind,
            "yes" if m.can_merge else "no",
            m.peft_to_lora,
            "yes" if m.ours_to_lora else "no",
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
            Column("bitsandbytes", drop=3),
            Column("layer types", drop=4),
        ),
        rows=rows,
        title=f"PEFT methods (capabilities read from peft {registry.peft_version})",
    )


def methods_json(registry: Registry, methods: list[MethodInfo]) -> dict[str, Any]:
    return {"peft_version": registry.peft_version, "methods": [m.to_dict() for m in methods]}
