"""A decoder layer's linear layers as the model's own code names and fuses them, when only its config is read.

Safetensors headers give every linear layer's name and shape; without them the layer is rebuilt from the config,
and that is only right if the names and the fusions are the model's own. Fusion changes what a LoRA costs, not
only what it is called: a LoRA on a fused ``q|k|v`` projection has ``r × (in + q + k + v)`` parameters, on three
separate ones ``r × (3·in + q + k + v)``. So each known layout lists its linears with the Llama names each one
stands for (``covers``), and a target list written in Llama names (``q_proj,v_proj``: the stored runs', a
published setup's) is carried onto the fused module that holds them, as PEFT's own default targets for these
models do (``c_attn`` for Qwen (v1), ``query_key_value`` for ChatGLM, ``W_pack`` for Baichuan).

The layouts are read from each model's modeling code (Qwen (v1), ChatGLM2/3, InternLM2 and Baichuan 2 remote code;
transformers' Phi-3, GLM/GLM-4 and Starcoder2); every other known type is the Llama layout. Checked against the
headers of the same models and against PEFT's all-linear count in tests/test_model_shapes.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from advisor.memory.shapes import ModelShape


# The Llama names of a layer's attention projections: what a mixture of experts' layer offers besides a shared expert
ATTENTION_NAMES = frozenset({"q_proj", "k_proj", "v_proj", "o_proj"})


@dataclass(frozen=True)
class LayerLinear:
    name: str  # path inside one block, e.g. "self_attn.q_proj"
    out: int
    inp: int
    covers: tuple[str, ...]  # the Llama names this linear stands for (a fused one: several)


@dataclass(frozen=True)
class DecoderLayout:
    prefix: str  # the block stack's path, e.g. "model.layers"
    linears: tuple[LayerLinear, ...]

    def per_layer(self) -> dict[str, tuple[int, int]]:
        """name inside a block → (out, in)."""
        return {linear.name: (linear.out, linear.inp) for linear in self.linears}


def decoder_layout(shape: ModelShape) -> DecoderLayout:
    """One dense decoder layer of ``shape`` in its model's own names and fusions (the Llama layout by default)."""
    h, f = shape.hidden, shape.intermediate
    q, kv = shape.heads * shape.head_dim, shape.kv_heads * shape.head_dim
    builder = _LAYOUTS.get(shape.model_type, _llama)
    return builder(h, f, q, kv)


def layout_targets(shape: ModelShape, targets: list[str] | str | None) -> list[str] | str | None:
    """A target list in Llama names carried onto this layout's fused modules (a module is targeted when it holds
    any of the named ones); names of the layout itself, a regex or all-linear are returned as they are."""
    if not isinstance(targets, list):
        return targets
    layout = decoder_layout(shape)
    own = {linear.name.rsplit(".", 1)[-1] for linear in layout.linears}
    if any(t in own or "." in t for t in targets):
        return targets
    wanted = set(targets)
    carried = [linear.name.rsplit(".", 1)[-1] for linear in layout.linears if wanted & set(linear.covers)]
    return carried or targets


def _llama(h: int, f: int, q: int, kv: int) -> DecoderLayout:
    return DecoderLayout(
        "model.layers",
        (
            LayerLinear("self_attn.q_proj", q, h, ("q_proj",)),
            LayerLinear("self_attn.k_proj", kv, h, ("k_proj",)),
            LayerLinear("self_attn.v_proj", kv, h, ("v_proj",)),
            LayerLinear("self_attn.o_proj", h, q, ("o_proj",)),
            LayerLinear("mlp.gate_proj", f, h, ("gate_proj",)),
            LayerLinear("mlp.up_proj", f, h, ("up_proj",)),
            LayerLinear("mlp.down_proj", h, f, ("down_proj",)),
        ),
    )


def _qwen_v1(h: int, f: int, q: int, kv: int) -> DecoderLayout:
    # QWenAttention: c_attn = Linear(hidden, 3 × projection), c_proj; QWenMLP: w1, w2 (hidden → ff/2 each,
    # a1 * silu(a2)) and c_proj. ``f`` is already the MLP width (half the config's intermediate_size).
    return DecoderLayout(
        "transformer.h",
        (
            LayerLinear("attn.c_attn", 3 * q, h, ("q_proj", "k_proj", "v_proj")),
            LayerLinear("attn.c_proj", h, q, ("o_proj",)),
            LayerLinear("mlp.w1", f, h, ("up_proj",)),
            LayerLinear("mlp.w2", f, h, ("gate_proj",)),
            LayerLinear("mlp.c_proj", h, f, ("down_proj",)),
        ),
    )


def _chatglm(h: int, f: int, q: int, kv: int) -> DecoderLayout:
    # SelfAttention.query_key_value: hidden → q + 2 × (multi_query_group_num × kv_channels); MLP.dense_h_to_4h:
    # hidden → 2 × ffn_hidden_size (gate and up, swiglu), dense_4h_to_h back.
    return DecoderLayout(
        "transformer.encoder.layers",
        (
            LayerLinear("self_attention.query_key_value", q + 2 * kv, h, ("q_proj", "k_proj", "v_proj")),
            LayerLinear("self_attention.dense", h, q, ("o_proj",)),
            LayerLinear("mlp.dense_h_to_4h", 2 * f, h, ("gate_proj", "up_proj")),
            LayerLinear("mlp.dense_4h_to_h", h, f, ("down_proj",)),
        ),
    )


def _internlm2(h: int, f: int, q: int, kv: int) -> DecoderLayout:
    return DecoderLayout(
        "model.layers",
        (
            LayerLinear("attention.wqkv", q + 2 * kv, h, ("q_proj", "k_proj", "v_proj")),
            LayerLinear("attention.wo", h, q, ("o_proj",)),
            LayerLinear("feed_forward.w1", f, h, ("gate_proj",)),
            LayerLinear("feed_forward.w3", f, h, ("up_proj",)),
            LayerLinear("feed_forward.w2", h, f, ("down_proj",)),
        ),
    )


def _baichuan(h: int, f: int, q: int, kv: int) -> DecoderLayout:
    llama = _llama(h, f, q, kv).linears
    return DecoderLayout(
        "model.layers",
        (LayerLinear("self_attn.W_pack", 3 * q, h, ("q_proj", "k_proj", "v_proj")), *llama[3:]),
    )


def _phi3(h: int, f: int, q: int, kv: int) -> DecoderLayout:
    return DecoderLayout(
        "model.layers",
        (
            LayerLinear("self_attn.qkv_proj", q + 2 * kv, h, ("q_proj", "k_proj", "v_proj")),
            LayerLinear("self_attn.o_proj", h, q, ("o_proj",)),
            LayerLinear("mlp.gate_up_proj", 2 * f, h, ("gate_proj", "up_proj")),
            LayerLinear("mlp.down_proj", h, f, ("down_proj",)),
        ),
    )


def _glm(h: int, f: int, q: int, kv: int) -> DecoderLayout:
    llama = _llama(h, f, q, kv).linears
    return DecoderLayout(
        "model.layers",
        (*llama[:4], LayerLinear("mlp.gate_up_proj", 2 * f, h, ("gate_proj", "up_proj")), llama[6]),
    )


def _starcoder2(h: int, f: int, q: int, kv: int) -> DecoderLayout:
    llama = _llama(h, f, q, kv).linears
    return DecoderLayout(
        "model.layers",
        (*llama[:4], LayerLinear("mlp.c_fc", f, h, ("up_proj",)), LayerLinear("mlp.c_proj", h, f, ("down_proj",))),
    )


_LAYOUTS = {
    "qwen": _qwen_v1,
    "chatglm": _chatglm,
    "internlm2": _internlm2,
    "baichuan": _baichuan,
    "phi3": _phi3,
    "glm": _glm,
    "glm4": _glm,
    "starcoder2": _starcoder2,
}
