"""The user's own adapter: its trainable parameters on the user's model, for the memory prediction.

Two ways in, one count:

- ``--lora-r R --target-modules q_proj,v_proj|all-linear [--use-dora]``: LoRA arithmetic on the
  model's linear layers as the safetensors headers give them (``r × (in + out)`` per adapted layer, plus
  ``out`` for DoRA's magnitude). No torch: this stays on the recommend path's budget; except on a mixture of
  experts, whose stacked experts PEFT adapts in its own way, so PEFT counts there (:func:`shortcut_lora`).
- ``--adapter-config FILE`` (an ``adapter_config.json``, any PEFT method): PEFT itself builds the adapter
  on the model built on the ``meta`` device and counts its trainable parameters (needs the ``[peft]``
  extra; a few seconds, because torch, transformers and peft are imported). A model transformers cannot
  build from its config (remote code) falls back to the arithmetic for a plain LoRA config, said so.

Names follow PEFT's matching: a target matches a module whose path is that name or ends in ``.name``.
Targets that match nothing are an error, not a count of zero.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from advisor.errors import UserError

if TYPE_CHECKING:
    from advisor.memory.shapes import ModelShape


@dataclass(frozen=True)
class UserAdapter:
    peft_type: str  # e.g. "LORA"
    trainable: int
    description: str  # "LoRA r=16 on all-linear (224 layers)"
    counted_by: str  # how the count was made
    # What its method builds per adapted layer ({"held": ..., "transient": ...} coefficients of
    # advisor.memory.adapter_matrices; --adapter-config: counted on one layer with autograd), and the names it
    # targets; None: the stored runs' own
    matrices: dict[str, dict[str, float]] | None = None
    targets: list[str] | str | None = None
    matrices_from: str = ""  # where ``matrices`` come from, for --explain


def linear_layers(shape: ModelShape, tensors: dict[str, tuple[int, ...]] | None) -> dict[str, tuple[int, int]]:
    """Every linear layer of the model's block stack: path → (out, in) (GPT-2's Conv1D: (in, out), which a
    LoRA count does not mind). From the headers when read, else the layout of ``shape``'s model type
    (:mod:`advisor.memory.layer_layouts`: its own names and fused projections; the Llama layout by default)."""
    if shape.is_denoiser:  # several block stacks (double/single blocks, a UNet's stages): every block's linears
        if not tensors:
            raise UserError("counting your adapter on an image model needs its safetensors headers (--model FOLDER)")

        block = re.compile(r"\.\d+\.")
        return {
            name.removesuffix(".weight"): (dims[0], dims[1])
            for name, dims in tensors.items()
            if block.search(name) and name.endswith(".weight") and len(dims) == 2
        }
    if tensors:
        from advisor.memory.shapes import block_stacks

        prefixes = tuple(prefix + "." for prefix in block_stacks(tensors))
        if prefixes:
            # Every block stack: PEFT matches target names anywhere, so a vision-language model's vision tower (its
            # own q_proj/k_proj/v_proj, its MLP) is adapted too, by name or by all-linear.
            layers = {
                name.removesuffix(".weight"): (shape_[0], shape_[1])
                for name, shape_ in tensors.items()
                if name.startswith(prefixes) and name.endswith(".weight") and len(shape_) == 2
            }
            # Stacked experts (transformers 5: ``mlp.experts.gate_up_proj`` of [experts, a, b]): PEFT adapts each
            # with one LoRA of rank r × experts, r × experts × (a + b) parameters, which (experts·a, experts·b)
            # dims give through the same r × (out + in).
            layers.update(
                {
                    name: (shape_[0] * shape_[1], shape_[0] * shape_[2])
                    for name, shape_ in tensors.items()
                    if name.startswith(prefixes) and len(shape_) == 3 and ".experts." in name
                }
            )
            layers.update(_outside_linears(shape, tensors, prefixes))
            return layers
    from advisor.memory.layer_layouts import decoder_layout

    layout = decoder_layout(shape)  # a mixture of experts: one expert's width, which PEFT's own count replaces
    per_layer = layout.per_layer()
    return {f"{layout.prefix}.{i}.{name}": dims for i in range(shape.layers) for name, dims in per_layer.items()}


# A 2-D weight outside the block stacks that is no Linear: token and position embeddings (``embed_tokens``,
# ``wte``/``wpe``, OPT's ``embed_positions``, a tower's ``position_embedding``) and the output head.
_NOT_A_LINEAR = re.compile(r"(^|\.)([^.]*emb[^.]*|wte|wpe|lm_head|output_layer|embed_out|output)\.weight$")


def _outside_linears(
    shape: ModelShape, tensors: dict[str, tuple[int, ...]], prefixes: tuple[str, ...]
) -> dict[str, tuple[int, int]]:
    """The linear layers outside every block stack, which PEFT's all-linear adapts too (it leaves out only the
    output head): OPT's ``project_in``/``project_out``, a vision-language model's projector, a vision tower's
    pooling head. Told from embeddings by name and by a vocabulary-wide side; a named target reaches them too."""
    return {
        name.removesuffix(".weight"): (dims[0], dims[1])
        for name, dims in tensors.items()
        if not name.startswith(prefixes) and name.endswith(".weight") and len(dims) == 2
        and not _NOT_A_LINEAR.search(name) and shape.vocab not in dims
    }  # fmt: skip


def targets_match(path: str, targets: list[str] | str | None) -> bool:
    """PEFT's rule: a list matches a module path by its whole name or a dotted suffix; a string is a regex over the
    whole path ("all-linear": every linear)."""
    if targets is None:
        return False
    if targets == "all-linear":
        return True
    if isinstance(targets, str):
        return re.fullmatch(targets, path) is not None
    return any(path == t or path.endswith("." + t) for t in targets)


def lora_count(
    layers: dict[str, tuple[int, int]], rank: int, targets: list[str] | str, *, use_dora: bool = False
) -> UserAdapter:
    """LoRA's trainable parameters on ``layers``; a :class:`UserError` when the targets match none."""
    if rank < 1:
        raise UserError(f"--lora-r must be a positive integer (got {rank})")
    chosen = {path: dims for path, dims in layers.items() if targets_match(path, targets)}
    if not chosen:
        example = ", ".join(sorted({p.rsplit(".", 1)[-1] for p in layers})[:8])
        raise UserError(
            f"--target-modules {targets if isinstance(targets, str) else ','.join(targets)} matches no linear "
            f"layer of this model; its layers are named {example}"
        )
    count = sum(rank * (out + inp) + (out if use_dora else 0) for out, inp in chosen.values())
    shown = targets if isinstance(targets, str) else ",".join(targets)
    method = "DoRA" if use_dora else "LoRA"
    return UserAdapter(
        "LORA", count, f"{method} r={rank} on {shown} ({len(chosen)} layers)", "LoRA arithmetic on the model's shapes"
    )


def shortcut_lora(
    model: str | None,
    shape: ModelShape,
    tensors: dict[str, tuple[int, ...]] | None,
    rank: int,
    targets: list[str] | str,
    *,
    use_dora: bool = False,
) -> UserAdapter:
    """``--lora-r/--target-modules``: arithmetic on the linear layers, except on a mixture of experts.

    transformers 5 stacks each layer's experts into 3-D parameters (and fuses gate and up), and PEFT adapts
    them with one LoRA per stacked parameter, the fused one at twice the rank: no count of per-expert linear
    layers reproduces that. There PEFT itself counts on the model built on meta, as ``--adapter-config`` does;
    without torch/peft, or for a model transformers cannot build, the per-layer arithmetic stands, said so."""
    from advisor.memory.adapter_matrices import lora_matrices

    adapter = _shortcut_count(model, shape, tensors, rank, targets, use_dora)
    return replace(adapter, matrices=lora_matrices(use_dora), targets=targets, matrices_from=_lora_from(use_dora))


def _lora_from(use_dora: bool) -> str:
    return "the stored DoRA run's (DoRA builds W + ΔW per layer)" if use_dora else "none (a plain LoRA builds none)"


def _shortcut_count(
    model: str | None,
    shape: ModelShape,
    tensors: dict[str, tuple[int, ...]] | None,
    rank: int,
    targets: list[str] | str,
    use_dora: bool,
) -> UserAdapter:
    layers = linear_layers(shape, tensors)
    try:
        arithmetic: UserAdapter | UserError = lora_count(layers, rank, targets, use_dora=use_dora)
    except UserError as exc:  # e.g. only the stacked experts were named: not linear layers in the headers
        arithmetic = exc
    if shape.experts <= 1 or not model:
        if isinstance(arithmetic, UserError):
            raise arithmetic
        return arithmetic
    config = {"peft_type": "LORA", "r": rank, "target_modules": targets, "use_dora": use_dora}
    try:
        count = _peft_count(config, model, flag="--lora-r/--target-modules")
    except _CannotBuild as exc:
        if isinstance(arithmetic, UserError):
            raise arithmetic from None
        note = f"{arithmetic.counted_by}; experts at rank r each, which PEFT may raise for fused gate/up ({exc})"
        return UserAdapter("LORA", arithmetic.trainable, arithmetic.description, note)
    shown = targets if isinstance(targets, str) else ",".join(targets)
    description = f"{'DoRA' if use_dora else 'LoRA'} r={rank} on {shown}"
    return UserAdapter("LORA", count, description, "PEFT, on the model built on meta (its experts stacked)")


def read_adapter_config(path: Path) -> dict[str, Any]:
    try:
        config = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"--adapter-config {path}: no such file") from None
    except (OSError, ValueError) as exc:
        raise UserError(f"--adapter-config {path}: not a readable JSON file ({exc})") from None
    if not isinstance(config, dict) or not config.get("peft_type"):
        raise UserError(f"--adapter-config {path}: not a PEFT adapter config (it has no peft_type)")
    return config


def from_adapter_config(
    path: Path, model: str | None, shape: ModelShape, tensors: dict[str, tuple[int, ...]] | None
) -> UserAdapter:
    """PEFT's own trainable count for the config on the model (built on meta); LoRA arithmetic as a fallback."""
    config = read_adapter_config(path)
    peft_type = str(config["peft_type"]).upper()
    try:
        if shape.is_denoiser:
            raise _CannotBuild("a diffusion model is counted from its headers, not built with transformers")
        count = _peft_count(config, model)
        matrices = _count_matrices(peft_type, config)
        return UserAdapter(
            peft_type, count, f"{peft_type} from {Path(path).name}", "PEFT, on the model built on meta", matrices,
            config.get("target_modules"), "your config's, counted with autograd on one layer" if matrices else "",
        )  # fmt: skip
    except _CannotBuild as exc:
        if peft_type != "LORA" or not isinstance(config.get("r"), int):
            raise UserError(
                f"--adapter-config: {exc}; only a plain LoRA config can be counted without building the model"
            ) from None
        from advisor.memory.adapter_matrices import lora_matrices

        targets = config.get("target_modules") or ["q_proj", "v_proj"]
        use_dora = bool(config.get("use_dora"))
        adapter = lora_count(linear_layers(shape, tensors), config["r"], targets, use_dora=use_dora)
        return UserAdapter(
            "LORA", adapter.trainable, adapter.description, f"{adapter.counted_by} ({exc})", lora_matrices(use_dora),
            targets, _lora_from(use_dora),
        )  # fmt: skip


def _count_matrices(peft_type: str, config: dict[str, Any]) -> dict[str, dict[str, float]] | None:
    """The config's own per-layer matrices (HRA at its rank, BOFT at its block size, DoRA's norm), counted as the
    stored runs' were; None where PEFT cannot build the method on one plain linear layer."""
    from advisor.memory.adapter_matrix_count import count_matrices, one_layer_config, widths_for

    try:
        counted = count_matrices(one_layer_config(peft_type, config), widths_for(config))
    except Exception:
        return None
    return {"held": counted["held"], "transient": counted["transient"]}


class _CannotBuild(Exception):
    """transformers or peft cannot build the model here (not installed, remote code, no config)."""


def _peft_count(config: dict[str, Any], model: str | None, flag: str = "--adapter-config") -> int:
    try:
        import torch
        from accelerate import init_empty_weights
        from peft import PeftConfig, get_peft_model
        from transformers import AutoConfig, AutoModelForCausalLM
    except ImportError:
        raise _CannotBuild("counting with PEFT needs the [peft] extra") from None
    from advisor.torch_runtime import quiet_hf

    try:
        with quiet_hf():
            hf_config = AutoConfig.from_pretrained(model) if model else _benchmark_config()
            model = model or hf_config.name_or_path
            with init_empty_weights():
                skeleton = AutoModelForCausalLM.from_config(hf_config, dtype=torch.bfloat16)
    except Exception as exc:
        raise _CannotBuild(f"transformers cannot build {model} from its config ({type(exc).__name__})") from None
    fields = {k: v for k, v in config.items() if k not in ("base_model_name_or_path", "revision", "auto_mapping")}
    # A saved adapter's config says inference_mode: true (PEFT writes it so on save), which would build the
    # adapter frozen and count nothing: the question is what training it costs.
    fields["inference_mode"] = False
    try:
        peft_config = PeftConfig.from_peft_type(**fields)
        adapted = get_peft_model(skeleton, peft_config)
    except (ValueError, TypeError, KeyError) as exc:
        first = " ".join(str(exc).split())[:200]
        raise UserError(f"{flag} does not fit {model}: {first}") from None
    count = sum(math.prod(p.shape) for p in adapted.parameters() if p.requires_grad)
    if not count:
        raise UserError(f"{flag} trains nothing on {model}: PEFT built the adapter with no trainable parameter")
    return count


def _benchmark_config() -> Any:
    """The benchmark model's config, from the shape the memory model keeps of it: no Hub, so an adapter config
    is counted offline on the model the stored runs trained."""
    from transformers import LlamaConfig

    from advisor.memory.model import BENCHMARK_SHAPE as b

    config = LlamaConfig(
        hidden_size=b.hidden, intermediate_size=b.intermediate, num_hidden_layers=b.layers,
        num_attention_heads=b.heads, num_key_value_heads=b.kv_heads, head_dim=b.head_dim, vocab_size=b.vocab,
        tie_word_embeddings=b.tied_embeddings,
    )  # fmt: skip
    config.name_or_path = b.name
    return config
