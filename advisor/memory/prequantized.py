"""Checkpoints saved already quantised (bitsandbytes 4/8-bit, GPTQ, AWQ, FP8, MXFP4): real shapes, and how they train.

QLoRA users often start from such a checkpoint (``unsloth/...-bnb-4bit``, ``...-GPTQ``, ``...-AWQ``). Its headers
hold packed storage, not weights: a bitsandbytes 4-bit layer is one uint8 column of out × in / 2 bytes, a GPTQ
layer an int32 ``qweight`` of in × bits / 32 rows, and each comes with companions (absmax, scales, zero points,
group indices). Counting those elements as parameters undercounts a model by up to half and hides its layer
widths, so each packed layer is folded back into the ``.weight`` of shape (out, in) it stands for, and the
companions are dropped. The checkpoint also fixes how the base trains: a 4-bit checkpoint loads 4-bit, whatever
``--quant`` says (:func:`trains_as`); FP8 and MXFP4 are float formats transformers dequantises for training.

No torch: this runs on the recommend path.
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any

from advisor.errors import UserError
from advisor.vocabulary import FUSED_QKV, QUANTIZATION, ROLE_NAMES

if TYPE_CHECKING:
    from advisor.memory.shapes import ModelShape

BNB_4BIT_STATE = ".weight.quant_state.bitsandbytes__"  # + nf4 / fp4: a small uint8 JSON blob with the shape
BNB_COMPANIONS = (".absmax", ".quant_map", ".nested_absmax", ".nested_quant_map", ".SCB", ".weight_format")
GPTQ_COMPANIONS = (".qzeros", ".scales", ".g_idx")
Shapes = dict[str, tuple[int, ...]]


MXFP4 = "mxfp4"  # gpt-oss's experts: stored 4-bit, dequantised to bf16 by transformers for training
MXFP4_COMPANIONS = ("_scales",)
FP8 = "fp8"  # DeepSeek-V3, Qwen3-*-FP8: one float8 element per weight, plus per-block scales
FP8_COMPANIONS = (".weight_scale_inv", ".weight_scale", ".input_scale")
DEQUANTISED_FOR_TRAINING = (MXFP4, FP8)


def trains_as(storage: str | None) -> str | None:
    """The ``--quant`` a checkpoint stored as ``storage`` trains as: its own, except the float formats
    transformers dequantises (MXFP4: ``Mxfp4Config(dequantize=True)``, the gpt-oss fine-tuning recipe; FP8):
    those are priced as the bf16 base they become, LoRA on a float8 base not being modelled."""
    return None if storage in DEQUANTISED_FOR_TRAINING else storage


def checkpoint_storage(config: dict[str, Any]) -> str | None:
    """How a checkpoint saved quantised is stored: a ``--quant`` key, ``fp8`` or ``mxfp4``; None for a plain one.

    A quantisation the memory model does not count (HQQ, compressed-tensors, ...) is refused with the reason rather
    than priced as bf16.
    """
    quant = config.get("quantization_config")
    if not isinstance(quant, dict):
        text = config.get("text_config")
        quant = text.get("quantization_config") if isinstance(text, dict) else None
    if not isinstance(quant, dict):
        return None
    method = str(quant.get("quant_method") or "bitsandbytes").lower()
    if method == "bitsandbytes":
        if quant.get("load_in_4bit") or quant.get("_load_in_4bit"):
            return "4bit"
        if quant.get("load_in_8bit") or quant.get("_load_in_8bit"):
            return "8bit"
        return None
    if method in DEQUANTISED_FOR_TRAINING:
        return method
    bits = quant.get("bits", quant.get("w_bit", 4))
    if method == "gptq" and bits in (4, 8):
        return f"gptq-{bits}bit"
    if method == "awq" and bits == 4 and str(quant.get("version", "gemm")).lower() == "gemm":
        return "awq-4bit"
    raise UserError(
        f"the checkpoint is saved quantised with {method} ({bits} bits), which the memory model does not price; "
        "pass its unquantised original with --model (and --quant for how you load it)"
    )


def logical_shapes(
    tensors: Shapes,
    storage: str | None,
    bnb_shapes: dict[str, tuple[int, int]] | None = None,
) -> tuple[Shapes, int, list[str]]:
    """``tensors`` with every packed layer as the weight it stands for; the parameter count; assumptions.

    ``bnb_shapes``: a bitsandbytes 4-bit layer's (out, in) from its quant-state blob (read from a local file);
    without it (Hub metadata gives headers only) the layer's size is still exact (two weights a byte) but its
    dimensions are unknown, and it is left out of the layers an adapter can be counted on, which is said.
    """
    if storage is None:
        return tensors, _numel(tensors.values()), []
    if storage == FP8:  # one float8 element per weight: the shapes are right, the scales are not parameters
        return (*_without(tensors, FP8_COMPANIONS), [])
    if storage == MXFP4:
        return (*_unpack_mxfp4(tensors), [])
    if QUANTIZATION[storage].backend in ("gptq", "awq"):
        return (*_unpack_int32(tensors, storage), [])
    return _unpack_bitsandbytes(tensors, bnb_shapes or {})


def _without(tensors: Shapes, companions: tuple[str, ...]) -> tuple[Shapes, int]:
    kept = {name: shape for name, shape in tensors.items() if not name.endswith(companions)}
    return kept, _numel(kept.values())


def _unpack_mxfp4(tensors: Shapes) -> tuple[Shapes, int]:
    """``X_blocks`` [..., out, groups, 16 bytes] holds 32 four-bit values a group; ``X_scales`` is dropped."""
    out: Shapes = {}
    for name, shape in tensors.items():
        if name.endswith(MXFP4_COMPANIONS) and name.removesuffix("_scales") + "_blocks" in tensors:
            continue
        if name.endswith("_blocks") and len(shape) >= 3:
            out[name.removesuffix("_blocks")] = (*shape[:-2], shape[-2] * shape[-1] * 2)
        else:
            out[name] = shape
    return out, _numel(out.values())


def _unpack_int32(tensors: Shapes, storage: str) -> tuple[Shapes, int]:
    """GPTQ's ``qweight`` [in × bits / 32, out] and AWQ's [in, out × bits / 32] pack 32 / bits weights an int32;
    zero points, scales and group indices are dropped."""
    per_int = 32 // (8 if storage == "gptq-8bit" else 4)
    out: Shapes = {}
    for name, shape in tensors.items():
        if name.endswith(GPTQ_COMPANIONS):
            continue
        if name.endswith(".qweight") and len(shape) == 2:
            rows, cols = shape
            out[name.removesuffix(".qweight") + ".weight"] = (
                (cols, rows * per_int) if storage.startswith("gptq") else (cols * per_int, rows)
            )
        else:
            out[name] = shape
    return out, _numel(out.values())


def _unpack_bitsandbytes(tensors: Shapes, bnb_shapes: dict[str, tuple[int, int]]) -> tuple[Shapes, int, list[str]]:
    """4-bit: one uint8 column of two weights a byte, widths from the quant state when read; 8-bit: int8 weights
    of the real shape. Quant states, absmax, quant maps and SCB are dropped."""
    out: Shapes = {}
    params = 0
    unknown_dims = 0
    for name, shape in tensors.items():
        if BNB_4BIT_STATE in name or name.endswith(BNB_COMPANIONS) or ".weight." in name:
            continue  # quant state, absmax, quant map: storage, not parameters
        layer = name.removesuffix(".weight")
        is_4bit = name.endswith(".weight") and any(f"{layer}{BNB_4BIT_STATE}{t}" in tensors for t in ("nf4", "fp4"))
        if not is_4bit:
            out[name] = shape
            params += _numel([shape])
            continue
        weights = 2 * _numel([shape])  # uint8 storage: two 4-bit weights a byte
        params += weights
        dims = bnb_shapes.get(layer)
        if dims is None:
            unknown_dims += 1
        out[name] = dims if dims is not None else (weights,)  # size only: not a layer an adapter is counted on
    notes = []
    if unknown_dims:
        notes.append(
            f"{unknown_dims} bitsandbytes 4-bit layers read from headers alone: counted by size (two weights a "
            "byte), their widths taken from the config by projection name where the sizes agree (a local folder "
            "gives them exactly, from each layer's quant state)"
        )
    return out, params, notes


def fill_widths(tensors: Shapes, shape: ModelShape) -> Shapes:
    """A 4-bit layer counted by size gets its (out, in) from the model's widths when its name says which
    projection it is (:data:`advisor.vocabulary.ROLE_NAMES`, the names the trial maps roles by) and those widths
    multiply to its size. A fused q/k/v (GPT-2's c_attn, Baichuan's W_pack, ...) is q + 2 × kv wide, a name that
    is both gate and up (Phi-3's gate_up_proj) twice the MLP width, and an up projection may be that wide too
    (ChatGLM's dense_h_to_4h). Any other layer stays unknown, so an adapter is never counted on a guessed width."""
    h, i = shape.hidden, shape.intermediate
    q, kv = shape.heads * shape.head_dim, shape.kv_heads * shape.head_dim
    filled = dict(tensors)
    for name, dims in tensors.items():
        if len(dims) != 1 or not name.endswith(".weight"):
            continue
        path = name.removesuffix(".weight")
        matched = {role: leaf for role in ("q", "k", "v", "o", "gate", "up", "down")
                   for leaf in ROLE_NAMES[role] if path == leaf or path.endswith("." + leaf)}  # fmt: skip
        readings: list[tuple[int, int]] = []
        if any(leaf in FUSED_QKV for leaf in matched.values()):
            readings.append((q + 2 * kv, h))
        elif {"gate", "up"} <= set(matched):
            readings.append((2 * i, h))
        readings += {"q": [(q, h)], "k": [(kv, h)], "v": [(kv, h)], "o": [(h, q)], "gate": [(i, h)],
                     "up": [(i, h), (2 * i, h)], "down": [(h, i)]}.get(next(iter(matched), ""), [])  # fmt: skip
        for out_in in readings:
            if out_in[0] * out_in[1] == dims[0]:
                filled[name] = out_in
                break
    return filled


def read_bnb_shapes(entries: dict[str, Any]) -> dict[str, tuple[int, int]]:
    """(out, in) of every bitsandbytes 4-bit layer of a local checkpoint, from its quant-state blob (a few bytes
    of JSON per layer, read by byte range: no weight is read)."""
    shapes = {}
    for name, entry in entries.items():
        if BNB_4BIT_STATE not in name:
            continue
        try:
            with entry.file.open("rb") as handle:
                handle.seek(entry.start)
                state = json.loads(handle.read(entry.end - entry.start))
            out_features, in_features = (int(d) for d in state["shape"])
        except (OSError, ValueError, KeyError, TypeError):
            continue  # an unreadable blob: the layer is counted by size
        shapes[name.split(BNB_4BIT_STATE)[0]] = (out_features, in_features)
    return shapes


def _numel(shapes: Any) -> int:
    return sum(math.prod(shape) for shape in shapes)
