"""What one decoder layer keeps for backward, per architecture, from ``advisor/data/layer_physics.json``.

The stored runs calibrate ``a_run`` on Llama-3.2-3B in units of (hidden + MLP width) per token and layer. A layer of
another architecture keeps a different amount per unit (Gemma 2/3's extra fp32 norms, Qwen3's q/k norms, the ungated
MLP of GPT-NeoX and Falcon), so the memory model carries ``a_run`` through the bytes autograd saves in one layer of
each, counted on tiny models by ``benchmarks/layer_physics.py`` (bf16, LoRA on the attention inputs, SDPA):

    bytes per token per layer = h·hidden + m·MLP width + q·(heads × head_dim) + k·(kv heads × head_dim)
                                (+ n·heads, + r·hidden × experts per token for a mixture of experts)

A type the table lacks is counted as a Llama layer, and that is said. No torch: this runs on the recommend path.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import TYPE_CHECKING

from advisor.paths import PACKAGE_DATA

if TYPE_CHECKING:
    from advisor.memory.shapes import ModelShape

REFERENCE_TYPE = "llama"  # the benchmark's architecture, which a_run is calibrated on
# Text decoders of vision-language models that are their base model's decoder layer (transformers builds them from
# it; only the rotary positions differ, which keep nothing for backward): counted with the base model's row.
# Each was counted with autograd against its base (text-only input): the same bytes per token and layer.
SAME_LAYER_AS = {
    "qwen2_vl_text": "qwen2",
    "qwen2_5_vl_text": "qwen2",
    "qwen3_vl_text": "qwen3",
}


@lru_cache(maxsize=1)
def coefficients() -> dict[str, dict[str, float]]:
    return json.loads((PACKAGE_DATA / "layer_physics.json").read_text(encoding="utf-8"))["types"]


def physics_type(model_type: str) -> str:
    """The table row ``model_type``'s layers are counted with (itself, or the model its decoder layer is)."""
    return SAME_LAYER_AS.get(model_type, model_type)


def counted(model_type: str) -> bool:
    return physics_type(model_type) in coefficients()


def layer_bytes(shape: ModelShape, model_type: str | None = None) -> float:
    """Bytes per token one layer of ``shape`` keeps, with its own type's coefficients (Llama's if not counted)."""
    table = coefficients()
    c = table.get(physics_type(model_type or shape.model_type)) or table[REFERENCE_TYPE]
    q, kv = shape.heads * shape.head_dim, shape.kv_heads * shape.head_dim
    routed = shape.hidden * shape.active_experts if shape.experts > 1 else 0
    own = c["hidden"] * shape.hidden + c["mlp"] * shape.active_mlp + c["q"] * q + c["kv"] * kv
    return own + c.get("heads", 0.0) * shape.heads + c.get("routed", 0.0) * routed


def layer_width(shape: ModelShape) -> float:
    """``shape``'s hidden + MLP width in the benchmark's units: scaled by what its layer keeps against what a Llama
    layer of the same widths keeps. Exactly hidden + MLP for a Llama-layout model, the benchmark's included."""
    own = layer_bytes(shape)
    as_llama = layer_bytes(shape, REFERENCE_TYPE)
    return (shape.hidden + shape.active_mlp) * own / as_llama
