"""Adapters that build matrices the size of the layers they adapt: memory that grows with the layer, not the tokens.

HRA multiplies r fp32 d_in × d_in Householder reflections per layer and keeps r + 1 products for backward; LoHa, LoKr,
FourierFT, WaveFT, PEANuT and MiSS's "bat" build the whole delta weight; OSF and RandLoRA factors of the smaller
width; DoRA builds W + ΔW for its norm and frees it again. What each stored run allocates per adapted layer beyond
its per-token activations was counted with autograd on one PEFT-wrapped linear layer
(``benchmarks/adapter_matrices.py``, ``advisor/data/adapter_matrices.json``), in two parts, each fitting

    bytes = a·d_in² + b·d_in·d_out + c·d_out² + m·min(d_in, d_out)² + p·min·d_in + e·d_in + f·d_out + g

to the byte (integer bytes per element: HRA's 132·d_in² held is its 33 fp32 products):

- held: kept from the layer's forward to its backward, like activations: every adapted layer's at once without
  gradient checkpointing, the recomputed block's with it;
- transient: built and freed again within the layer's own forward or backward (DoRA's W + ΔW, FourierFT's complex
  spectrum): one layer's worth at a time.

The per-token activation factor cannot carry either to another model: FLUX.2's HRA run holds 34 GiB of them in one
double-stream block, whatever the batch or resolution; OSF's run holds 15.6 GiB of U and V factors on Llama-3.2-3B.
The layers are the user's model's own where the memory model knows its layout (a decoder's Llama-named linears
from its shape, a mixture of experts' attention and shared expert: :func:`decoder_linears`; a diffusion transformer's
blocks by its diffusers class, FLUX.2, FLUX.1 or SD3, scaled to its widths; a UNet's transformer layers' attention
projections), as the run's target names match them. No torch: this runs on the recommend path.
"""

from __future__ import annotations

import json
from functools import lru_cache

from advisor.benchmarks.records import BenchmarkRun
from advisor.memory.layer_layouts import ATTENTION_NAMES, decoder_layout, layout_targets
from advisor.memory.shapes import ModelShape
from advisor.memory.user_adapter import UserAdapter, targets_match
from advisor.paths import PACKAGE_DATA

# A diffusion transformer's blocks by its diffusers class: each linear's (d_in, d_out) as multiples of (hidden, MLP
# width), so the layout scales to the model's widths, and each kind of block's share of the blocks (the family's
# released sizes: FLUX.2-klein 5 double + 20 single, FLUX.1 19 + 38, SD3 all joint). Checked against diffusers'
# own classes on the meta device (tests/test_adapter_matrices.py). Another class is counted as FLUX.2's.
Layout = dict[str, tuple[float, dict[str, tuple[tuple[int, int], tuple[int, int]]]]]
_ATTENTION = ("to_q", "to_k", "to_v", "to_out.0", "add_q_proj", "add_k_proj", "add_v_proj", "to_add_out")
_SQUARE = ((1, 0), (1, 0))
_GELU_MLP = {  # FLUX.1's and SD3's FeedForward: proj to the MLP width, GELU, back
    f"{ff}.{name}": dims
    for ff in ("ff", "ff_context")
    for name, dims in (("net.0.proj", ((1, 0), (0, 1))), ("net.2", ((0, 1), (1, 0))))
}
DIT_LAYOUTS: dict[str, Layout] = {
    "Flux2Transformer2DModel": {  # attention and gated MLPs of both streams; modulation lives outside the blocks
        "transformer_blocks": (
            5 / 25,
            {
                **{f"attn.{name}": _SQUARE for name in _ATTENTION},
                **{f"{ff}.linear_in": ((1, 0), (0, 2)) for ff in ("ff", "ff_context")},
                **{f"{ff}.linear_out": ((0, 1), (1, 0)) for ff in ("ff", "ff_context")},
            },
        ),
        "single_transformer_blocks": (
            20 / 25,
            {"attn.to_qkv_mlp_proj": ((1, 0), (3, 2)), "attn.to_out": ((1, 1), (1, 0))},
        ),
    },
    "FluxTransformer2DModel": {
        "transformer_blocks": (
            19 / 57,
            {
                "norm1.linear": ((1, 0), (6, 0)),
                "norm1_context.linear": ((1, 0), (6, 0)),
                **{f"attn.{name}": _SQUARE for name in _ATTENTION},
                **_GELU_MLP,
            },
        ),
        "single_transformer_blocks": (
            38 / 57,
            {
                "norm.linear": ((1, 0), (3, 0)),
                "proj_mlp": ((1, 0), (0, 1)),
                "proj_out": ((1, 1), (1, 0)),
                **{f"attn.{name}": _SQUARE for name in ("to_q", "to_k", "to_v")},
            },
        ),
    },
    "SD3Transformer2DModel": {
        "transformer_blocks": (
            1.0,
            {
                "norm1.linear": ((1, 0), (6, 0)),
                "norm1_context.linear": ((1, 0), (6, 0)),
                **{f"attn.{name}": _SQUARE for name in _ATTENTION},
                **_GELU_MLP,
            },
        )
    },
}
# A UNet's transformer layer (diffusers' BasicTransformerBlock): self- and cross-attention projections at the
# stage's width (cross-attention's keys and values read the text width, taken as the stage's); its GEGLU MLP is
# named ff.net.*, which no image run targets.
UNET_LAYER = tuple(f"{attn}.{name}" for attn in ("attn1", "attn2") for name in ("to_q", "to_k", "to_v", "to_out.0"))


@lru_cache(maxsize=1)
def _table() -> dict[str, dict[str, dict[str, float]]]:
    """Run id → {"held": coefficients, "transient": coefficients}, for the runs that have either."""
    data = json.loads((PACKAGE_DATA / "adapter_matrices.json").read_text(encoding="utf-8"))
    return {
        run_id: {"held": row["held"], "transient": row["transient"]}
        for run_id, row in data["runs"].items()
        if any(row["held"].values()) or any(row["transient"].values())
    }


# The terms a layer's fixed bytes are a sum of: its weight's shape, squared widths (HRA's d_in × d_in products), and
# the smaller width's (OSF's and RandLoRA's min(d_in, d_out)-sized factors). min·d_out is left out: it is
# d_in·d_out + min² − min·d_in, so a fit would not be unique.
FEATURES = ("in2", "in_out", "out2", "min2", "min_in", "in", "out", "one")


def features(d_in: int, d_out: int) -> list[int]:
    low = min(d_in, d_out)
    return [d_in * d_in, d_in * d_out, d_out * d_out, low * low, low * d_in, d_in, d_out, 1]


def layer_bytes(coefficients: dict[str, float], d_in: int, d_out: int) -> float:
    """What one adapted ``d_in → d_out`` layer keeps beyond its per-token activations."""
    value = sum(coefficients[name] * x for name, x in zip(FEATURES, features(d_in, d_out), strict=True))
    return max(0.0, value)


def blocks(shape: ModelShape) -> list[tuple[float, dict[str, tuple[int, int]]]]:
    """The model's blocks as (how many, {linear path: (d_in, d_out)}) per kind of block."""
    if shape.kind == "dit":

        def width(multiple: tuple[int, int]) -> int:
            return multiple[0] * shape.hidden + multiple[1] * shape.intermediate

        layout = DIT_LAYOUTS.get(shape.architecture or "", DIT_LAYOUTS["Flux2Transformer2DModel"])
        return [
            (share * shape.layers, {f"{kind}.0.{name}": (width(i), width(o)) for name, (i, o) in layers.items()})
            for kind, (share, layers) in layout.items()
        ]
    if shape.kind == "unet":
        return [
            (stage.transformer_layers, {f"{stage.name}.0.{name}": (stage.channels,) * 2 for name in UNET_LAYER})
            for stage in shape.stages
            if stage.transformer_layers
        ]
    layer = {f"model.layers.0.{name}": (d_in, d_out) for name, (d_out, d_in) in decoder_linears(shape).items()}
    return [(shape.layers, layer)]


def decoder_linears(shape: ModelShape) -> dict[str, tuple[int, int]]:
    """One decoder layer's linear layers, name → (out, in), as PEFT finds them on the model transformers builds.

    A dense model's is its model type's layout (:mod:`advisor.memory.layer_layouts`: the Llama layout unless its
    code names or fuses them otherwise, as Qwen (v1)'s ``c_attn`` does). A mixture of experts' routed experts are
    stacked parameters (``mlp.experts.gate_up_proj`` of [experts, a, b] in transformers 5), not linear layers: the
    methods that build layer-sized matrices cannot adapt them (PEFT puts only LoRA on parameters), and the router is
    not a linear layer either. What such a method adapts in the MLP is the always-on shared expert where the model
    has one (Qwen2-MoE's ``mlp.shared_expert``, DeepSeek's ``mlp.shared_experts``), at its own width; a Mixtral or
    Qwen3-MoE layer offers only its attention. Counted against PEFT on tiny MoE models in
    tests/test_adapter_matrices.py."""
    layout = decoder_layout(shape)
    if shape.experts <= 1:
        return layout.per_layer()
    attention = {lin.name: (lin.out, lin.inp) for lin in layout.linears if set(lin.covers) <= ATTENTION_NAMES}
    if not shape.shared_intermediate:
        return attention
    prefix = "mlp.shared_experts" if shape.model_type.startswith("deepseek") else "mlp.shared_expert"
    hidden, shared = shape.hidden, shape.shared_intermediate
    return {
        **attention,
        f"{prefix}.gate_proj": (shared, hidden),
        f"{prefix}.up_proj": (shared, hidden),
        f"{prefix}.down_proj": (hidden, shared),
    }


def held_and_transient(
    run: BenchmarkRun,
    shape: ModelShape,
    grad_checkpointing: bool,
    layer_share: float,
    adapter: UserAdapter | None = None,
) -> tuple[float, float]:
    """What the run's adapted layers on ``shape`` hold from forward to backward at once (the largest block's under
    gradient checkpointing, one block being recomputed at a time; else every adapted layer's, on this GPU's
    ``layer_share`` of the layers), and what the largest of them builds and frees again in its own forward or
    backward (DoRA's W + ΔW for the norm, FourierFT's complex spectrum), one layer's at a time.

    The user's own adapter (``--adapter-config``, counted the same way; the LoRA shortcuts) replaces the run's on
    its method's rows, with its own target names."""
    row = _table().get(run.id)
    targets = (run.peft_config or {}).get("target_modules")
    if not shape.is_denoiser:  # the run's Llama names carried onto the fused modules that hold them (Qwen's c_attn)
        targets = layout_targets(shape, targets)
    layout = blocks(shape)
    if adapter is not None and adapter.matrices is not None and adapter.peft_type == run.peft_type:
        row = adapter.matrices
        # The user's names where they match the layout; names of another layout (GPT-2's c_attn against the Llama
        # names a decoder is counted in) keep the run's positions rather than count nothing
        if any(targets_match(path, adapter.targets) for _, layers in layout for path in layers):
            targets = adapter.targets
    if not row:
        return 0.0, 0.0
    adapted = [
        (count, [dims for path, dims in layers.items() if targets_match(path, targets)]) for count, layers in layout
    ]
    per_block = [(count, sum(layer_bytes(row["held"], i, o) for i, o in dims)) for count, dims in adapted]
    transient = max((layer_bytes(row["transient"], i, o) for _, dims in adapted for i, o in dims), default=0.0)
    if grad_checkpointing:
        return max((block for _, block in per_block), default=0.0), transient
    return sum(count * block for count, block in per_block) * layer_share, transient


def adapter_matrix_bytes(
    run: BenchmarkRun,
    shape: ModelShape,
    grad_checkpointing: bool,
    layer_share: float,
    adapter: UserAdapter | None = None,
) -> float:
    """The run's weight-shaped tensors on ``shape`` at the step's peak: held + one layer's transient."""
    return sum(held_and_transient(run, shape, grad_checkpointing, layer_share, adapter))


# The stored DoRA run: --use-dora's matrices (DoRA's transient W + ΔW barely depends on the rank)
DORA_RUN = "MetaMathQA/lora/llama-3.2-3B-rank32-dora"


def lora_matrices(use_dora: bool) -> dict[str, dict[str, float]]:
    """--lora-r/--use-dora: a plain LoRA builds nothing layer-sized (so it replaces the DoRA row's too); DoRA
    builds what the stored DoRA run's config does."""
    if use_dora:
        return _table()[DORA_RUN]
    nothing = dict.fromkeys(FEATURES, 0.0)
    return {"held": nothing, "transient": nothing}


def counted(run: BenchmarkRun) -> bool:
    """Whether the run keeps any weight-shaped tensors (the term is shown only then)."""
    return run.id in _table()
