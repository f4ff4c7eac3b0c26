"""A model's shape for the memory model, read without loading (or downloading) its weights.

What training memory depends on is a handful of numbers: layers, hidden and MLP width, attention
heads, vocabulary, whether the embeddings are tied, and the exact parameter count. The safetensors
headers hold every tensor's name and shape in their first few kilobytes (a local folder's files are
read directly, a Hub repo's through ``huggingface_hub.get_safetensors_metadata``: range requests, no
weights), so layers, widths, vocabulary, tying and the count are *read* from the checkpoint
(:func:`shape_from_tensors`); ``config.json`` only adds what headers cannot say (attention heads).
Configs are not uniform: ChatGLM names the MLP width ``ffn_hidden_size``, Qwen (v1) states
``intermediate_size`` as twice the MLP width. Without headers, the known aliases are read, every
assumption is listed in ``ModelShape.assumptions``, and an architecture whose layout the count does not
know is refused with the reason instead of being counted as a Llama.

No torch, no transformers: this runs on the recommend path.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from advisor.errors import UserError
from advisor.memory.prequantized import checkpoint_storage, fill_widths, logical_shapes, read_bnb_shapes, trains_as
from advisor.vocabulary import QUANTIZATION

if TYPE_CHECKING:
    from advisor.memory.unet import UNetStage

# Config keys across architectures, most common first.
_KEYS = {
    "hidden": ("hidden_size", "n_embd", "d_model"),
    "layers": ("num_hidden_layers", "n_layer", "num_layers", "n_layers"),
    "heads": ("num_attention_heads", "n_head", "num_heads", "n_heads", "attention_heads"),
    "intermediate": ("intermediate_size", "n_inner", "ffn_dim", "d_ff", "ffn_hidden_size"),
    "vocab": ("vocab_size", "padded_vocab_size"),
    "kv_heads": ("num_key_value_heads", "multi_query_group_num", "n_head_kv", "num_kv_heads"),
    "head_dim": ("head_dim", "kv_channels"),
    "experts": ("num_local_experts", "num_experts", "n_routed_experts", "moe_num_experts"),
    "active_experts": ("num_experts_per_tok", "moe_topk", "num_experts_per_token"),
    "expert_intermediate": ("moe_intermediate_size", "expert_intermediate_size"),
    "shared_intermediate": ("shared_expert_intermediate_size",),
}
# Model types transformers runs without SDPA (their PreTrainedModel says ``_supports_sdpa = False``: Gemma 2's
# attention softcapping, gpt-oss's attention sinks, ...): unless FlashAttention is asked for, they train with eager
# attention and keep seq² scores. tests/test_memory_setup.py checks this list against the installed transformers.
NO_SDPA_MODEL_TYPES = frozenset(
    {
        "gemma2",
        "gpt_oss",
        "vaultgemma",
        "granite_swa",
        "granitemoe_swa",
        "mimo_v2_flash",
        "hy_v4",
        "deepseek_v4",
        "flint",
        "got_ocr2",
    }
)
# Model types whose parameters the config arithmetic (:func:`estimate_params`: attention q/k/v/o, a gated
# MLP, embeddings) counts right. Anything else needs its checkpoint's headers.
COUNTED_FROM_CONFIG = frozenset(
    {
        "llama", "mistral", "mixtral", "qwen", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text", "phi3", "yi",
        "chatglm", "internlm2", "baichuan", "olmo", "olmo2", "granite", "cohere", "starcoder2", "deepseek",
        "stablelm", "exaone", "glm", "glm4", "helium", "smollm3", "qwen2_moe", "qwen3_moe", "olmoe",
    }
)  # fmt: skip


# Counted from config above, but with an MLP of two matrices (up, down) instead of a gated three.
UNGATED_MLP_MODEL_TYPES = frozenset({"starcoder2"})
# Models without attention layers: refused with that reason rather than "lacks num_attention_heads".
RECURRENT_MODEL_TYPES = frozenset({"mamba", "mamba2", "falcon_mamba", "rwkv", "xlstm"})
RECURRENT_KEYS = frozenset({"state_size", "ssm_state_size", "d_state", "ssm_cfg", "rescale_every"})


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
    assumptions: tuple[str, ...] = ()  # what was not read but assumed (printed; in --json)
    experts: int = 0  # mixture of experts: experts per MoE layer (0: a dense MLP); every one is held in memory
    active_experts: int = 0  # experts each token is routed to (top-k): only their activations are kept
    shared_intermediate: int = 0  # always-on shared experts' MLP width (Qwen2-MoE, DeepSeek)
    kind: str = "lm"  # "lm": a language model; "dit": a diffusion transformer; "unet" (advisor.memory.denoiser)
    pixels_per_token: int = 0  # dit: image pixels per latent-patch token, per side
    text_tokens: int = 0  # dit: the prompt tokens its pipeline pads to
    stages: tuple[UNetStage, ...] = ()  # unet: its resolution stages (advisor.memory.unet)
    logit_softcap: bool = False  # final_logit_softcapping (Gemma 2): tanh keeps one more vocabulary-wide tensor
    attention_softcap: bool = False  # attn_logit_softcapping (Gemma 2): eager attention keeps one more score tensor
    sdpa: bool = True  # False: transformers has no SDPA path for it, so eager attention is its default
    model_type: str = ""  # config.json's model_type: which layer physics (advisor.memory.layer_physics) applies
    checkpoint_quant: str | None = None  # saved quantised: the --quant it loads as (advisor.memory.prequantized)

    @property
    def active_mlp(self) -> int:
        """The MLP width one token's activations span: ``intermediate`` (one expert's width for an MoE) times
        the experts it is routed to, plus the shared experts."""
        if self.experts <= 1:
            return self.intermediate
        return self.intermediate * max(1, self.active_experts) + self.shared_intermediate

    @property
    def is_denoiser(self) -> bool:
        """An image model's denoiser (a diffusion transformer or a UNet), which the image runs predict."""
        return self.kind in ("dit", "unet")

    @property
    def adapter_widths(self) -> int:
        """Σ over layers of (hidden + MLP width): what an adapter on the layers' linear layers scales with (a
        UNet's transformer layers run at several widths)."""
        if self.stages:
            from advisor.memory.unet import adapter_width_sum

            return adapter_width_sum(self.stages)
        return self.layers * (self.hidden + self.intermediate)

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
    config: dict[str, Any],
    name: str,
    total_params: int | None = None,
    params_source: str = "",
    tensors: dict[str, tuple[int, ...]] | None = None,
) -> ModelShape:
    """The shape of a decoder LM: read from the checkpoint's tensor shapes when given, else from its config.

    A :class:`UserError` names what is missing; a config-only model of a layout the count does not know is
    refused rather than counted as a Llama.
    """
    text = config.get("text_config") if isinstance(config.get("text_config"), dict) else None
    cfg = {**config, **text} if text else config
    values = {key: _first(cfg, key) for key in _KEYS}
    model_type = str(cfg.get("model_type") or config.get("model_type") or "") or _type_from_architecture(config)
    assumptions: list[str] = []
    read = shape_from_tensors(tensors) if tensors else {}
    for key in ("hidden", "layers", "intermediate", "vocab"):
        if read.get(key):
            values[key] = read[key]
    if not read.get("intermediate") and model_type == "qwen" and values["intermediate"]:
        values["intermediate"] //= 2  # Qwen (v1) states intermediate_size as twice the MLP width
        assumptions.append("Qwen (v1) config: the MLP width is half its intermediate_size")
    missing = [f"{'/'.join(_KEYS[k])}" for k in ("hidden", "layers", "heads", "vocab") if values[k] is None]
    if cfg.get("is_encoder_decoder") is True or {"encoder_layers", "decoder_layers"} <= set(cfg):
        raise UserError(
            f"--model {name}: {model_type or 'this model'} is an encoder-decoder (seq2seq) model; the memory model "
            "prices decoder-only language models and FLUX/SD3/SDXL denoisers"
        )
    recurrent_keys = values["heads"] is None and bool(RECURRENT_KEYS & set(cfg))
    if model_type in RECURRENT_MODEL_TYPES or (missing and recurrent_keys):  # Mamba-2 has SSM "heads"; no attention
        raise UserError(
            f"--model {name}: {model_type or 'this model'} is a state-space or recurrent model without attention "
            "layers; the memory model prices transformer layers (decoder-only language models, denoisers)"
        )
    if missing:
        raise UserError(
            f"--model {name}: its config.json lacks {', '.join(missing)}; the memory model needs a "
            "transformer language model's config (hidden size, layers, heads, vocabulary)"
        )
    hidden, layers, heads, vocab = values["hidden"], values["layers"], values["heads"], values["vocab"]
    assert hidden and layers and heads and vocab
    intermediate = values["intermediate"]
    if not intermediate:
        intermediate = 4 * hidden
        assumptions.append(f"MLP width not stated: assumed 4 × hidden = {intermediate}")
    kv_heads = values["kv_heads"] or heads
    head_dim = values["head_dim"] or hidden // heads
    nope, rope = cfg.get("qk_nope_head_dim"), cfg.get("qk_rope_head_dim")
    if cfg.get("kv_lora_rank") and isinstance(nope, int) and isinstance(rope, int):
        # Multi-head latent attention (DeepSeek-V2/V3, Kimi): head_dim in its config is the rotary part only; a
        # head's queries and keys are nope + rope wide, which is what its attention computes and keeps
        head_dim = nope + rope
        assumptions.append(
            f"multi-head latent attention: priced as {heads} heads of {head_dim} (qk_nope_head_dim + "
            "qk_rope_head_dim) with a Llama layer's activations; its compressed q/kv projections are counted from "
            "the headers for parameters, not for what they keep"
        )
    stated = cfg.get("tie_word_embeddings", config.get("tie_word_embeddings"))
    tied = bool(stated) if stated is not None else True
    if "tied" in read and not (read["tied"] is False and stated is True):
        tied = read["tied"]
    elif "tied" in read:  # the checkpoint stores a head the config ties: transformers loads one matrix
        if total_params is not None:
            total_params -= vocab * hidden
        assumptions.append(
            "its checkpoint also stores an LM head, which tie_word_embeddings: true makes transformers tie to the "
            "embeddings: counted once"
        )
    elif stated is None:
        assumptions.append("tie_word_embeddings not stated: the LM head is assumed to share the embeddings")
    hybrid = _non_attention_layers(cfg)
    if hybrid:
        assumptions.append(
            f"a hybrid model: its {hybrid} layers are priced as attention layers of the same widths (state-space, "
            "linear-attention and convolution layers keep other tensors for backward: not modelled)"
        )
    experts, active, shared = _experts(cfg, values, read, assumptions)
    if experts > 1:
        intermediate = read.get("expert_intermediate") or values["expert_intermediate"] or intermediate
    if total_params is None:
        if model_type not in COUNTED_FROM_CONFIG:
            raise UserError(
                f"--model {name}: {model_type or 'this architecture'} is not a layout the memory model can count "
                "from config.json alone; pass a local folder with its .safetensors files (their headers give "
                "the exact shapes), or go online so the Hub's safetensors metadata can be read"
            )
        total_params = estimate_params(
            hidden, intermediate, layers, heads, kv_heads, head_dim, vocab, tied, experts=experts, shared=shared,
            gated=model_type not in UNGATED_MLP_MODEL_TYPES,
        )  # fmt: skip
        params_source = "estimated from config.json"
        assumptions.append(f"parameters estimated from config.json ({model_type} layout); no safetensors headers read")
    architecture = (config.get("architectures") or [None])[0]
    dtype = cfg.get("torch_dtype") or cfg.get("dtype") or config.get("torch_dtype")
    return ModelShape(
        name, architecture, hidden, intermediate, layers, heads, kv_heads, head_dim, vocab, tied,
        total_params, params_source, dtype, tuple(assumptions), experts, active, shared,
        logit_softcap=cfg.get("final_logit_softcapping") is not None,
        attention_softcap=cfg.get("attn_logit_softcapping") is not None,
        sdpa=model_type not in NO_SDPA_MODEL_TYPES,
        model_type=model_type,
    )  # fmt: skip


# Layer kinds a hybrid's config lists (``layer_types``, ``layers_block_type``, ``block_types``) that are attention
# under another name, a block that holds attention (Zamba's "hybrid"), or an MLP kind (Nemotron-H's "mlp", "moe").
_ATTENTION_KINDS = frozenset({"attention", "global", "local", "full", "sliding", "hybrid", "dense", "moe", "mlp"})


def _non_attention_layers(cfg: dict[str, Any]) -> str:
    """The kinds of a hybrid's layers that are not attention ("mamba", "linear_attention", "conv"), as one phrase;
    "" for a transformer. Jamba, Zamba, Bamba, Granite 4 and Nemotron-H mix Mamba layers in; Falcon-H1 runs Mamba
    beside attention in every layer; Qwen3-Next and MiniMax mix linear attention in; LFM2 convolutions."""
    kinds: set[str] = set()
    for key in ("layer_types", "layers_block_type", "block_types"):
        listed = cfg.get(key)
        if isinstance(listed, list):
            kinds |= {str(k).lower() for k in listed}
    other = {k for k in kinds if k == "linear_attention" or not ("attention" in k or k in _ATTENTION_KINDS)}
    pattern = cfg.get("hybrid_override_pattern")
    if (isinstance(pattern, str) and "M" in pattern) or any(k.startswith(("mamba_", "ssm_")) for k in cfg):
        other.add("mamba")
    if isinstance(cfg.get("attn_layer_period"), int) and cfg["attn_layer_period"] > 1:  # Jamba: one in N attends
        other.add("mamba")
    return ", ".join(sorted(other))


def _experts(
    cfg: dict[str, Any], values: dict[str, int | None], read: dict[str, Any], assumptions: list[str]
) -> tuple[int, int, int]:
    """A mixture of experts' (experts, experts per token, shared-expert MLP width); (0, 0, 0) for a dense MLP.

    Every expert's weights are held, but a token's activations span only the experts it is routed to.
    """
    experts = read.get("experts") or values["experts"] or 0
    if experts <= 1:
        return 0, 0, 0
    active = values["active_experts"]
    if not active:
        active = 2
        assumptions.append(f"{experts} experts, experts per token not stated: assumed top-2 routing")
    shared = read.get("shared_intermediate") or values["shared_intermediate"] or 0
    n_shared = cfg.get("n_shared_experts")
    if not shared and isinstance(n_shared, int) and n_shared > 0 and values["expert_intermediate"]:
        shared = n_shared * values["expert_intermediate"]  # DeepSeek: shared experts of the routed width
    return experts, active, shared


def _type_from_architecture(config: dict[str, Any]) -> str:
    """``LlamaForCausalLM`` → ``llama`` for a config without ``model_type`` (hand-written or very old ones)."""
    architecture = str((config.get("architectures") or [""])[0]).lower()
    known = sorted((t for t in COUNTED_FROM_CONFIG if architecture.startswith(t.replace("_text", ""))), key=len)
    return known[-1] if known else ""


_BLOCK = re.compile(r"^(.*?)\.(\d+)\.(.+)$")
_EMBEDDING = re.compile(r"(embed_tokens|wte|word_embeddings|tok_embeddings|embedding\.word|embeddings?)\.weight$")
_HEAD = re.compile(r"(^|\.)(lm_head|output_layer|embed_out|output)\.weight$")
_DOWN = re.compile(r"(down_proj|dense_4h_to_h|c_proj|w2|fc2|fc_out|wo|out_proj)\.weight$")
_MLP = re.compile(r"(mlp|ffn|feed_forward|feedforward|moe)")
_EXPERT = re.compile(r"\.experts\.(\d+)\.")


def _stacks(tensors: dict[str, tuple[int, ...]]) -> dict[str, dict[int, int]]:
    """Repeated ``prefix.N.`` groups: prefix → {N: parameters}."""
    stacks: dict[str, dict[int, int]] = {}
    for name, shape in tensors.items():
        match = _BLOCK.match(name)
        if match:
            per_layer = stacks.setdefault(match.group(1), {})
            per_layer[int(match.group(2))] = per_layer.get(int(match.group(2)), 0) + math.prod(shape)
    return stacks


def block_stacks(tensors: dict[str, tuple[int, ...]]) -> list[str]:
    """The prefix of every block stack that is not inside another one (``model.layers``, a vision tower's
    ``vision_model.encoder.layers``), and not a numbered group inside a block (``experts.0``)."""
    prefixes = sorted(_stacks(tensors))
    return [p for p in prefixes if not any(p.startswith(q + ".") for q in prefixes if q != p)]


def block_stack(tensors: dict[str, tuple[int, ...]]) -> str | None:
    """The prefix of the model's block stack (``model.layers``), the repeated group holding the most parameters."""
    stacks = _stacks(tensors)
    return max(stacks, key=lambda p: sum(stacks[p].values())) if stacks else None


def shape_from_tensors(tensors: dict[str, tuple[int, ...]]) -> dict[str, Any]:
    """Layers, hidden width, vocabulary, MLP width and tying read from tensor names and shapes.

    The block stack is the repeated ``prefix.N.`` group holding the most parameters (a vision tower or an
    encoder beside a language model holds fewer); the MLP width is the input width of a block's MLP output
    projection, which every layout has whatever it calls it (``down_proj``, ``dense_4h_to_h``, ``c_proj``).
    """
    stacks = _stacks(tensors)
    if not stacks:
        return {}
    prefix = max(stacks, key=lambda p: sum(stacks[p].values()))
    found: dict[str, Any] = {"layers": len(stacks[prefix])}
    outside = {n: s for n, s in tensors.items() if not n.startswith(prefix + ".") and len(s) == 2}
    embeddings = [s for n, s in outside.items() if _EMBEDDING.search(n)]
    if embeddings:
        vocab, hidden = max(embeddings, key=lambda s: s[0] * s[1])
        found.update(vocab=vocab, hidden=hidden)
        found["tied"] = not any(_HEAD.search(n) and s == (vocab, hidden) for n, s in outside.items())
    first = f"{prefix}.{min(stacks[prefix])}."
    hidden = found.get("hidden")
    expert_ids = {int(m.group(1)) for n in tensors if n.startswith(prefix + ".") for m in [_EXPERT.search(n)] if m}
    if len(expert_ids) > 1:
        found["experts"] = max(expert_ids) + 1
    for name in sorted(tensors):
        shape = tensors[name]
        is_down = name.startswith(prefix + ".") and len(shape) == 2 and _DOWN.search(name) and _MLP.search(name)
        if not is_down or (hidden is not None and (hidden not in shape or shape[0] == shape[1])):
            continue
        # (hidden, width) for a Linear; GPT-2's Conv1D stores it transposed, (width, hidden)
        width = shape[0] if hidden is not None and shape[1] == hidden else shape[1]
        if "shared_expert" in name:
            found.setdefault("shared_intermediate", width)
        elif _EXPERT.search(name):
            found.setdefault("expert_intermediate", width)
        elif name.startswith(first):
            found.setdefault("intermediate", width)
    if "expert_intermediate" in found and "intermediate" not in found:
        found["intermediate"] = found["expert_intermediate"]
    return found


def estimate_params(
    hidden: int,
    intermediate: int,
    layers: int,
    heads: int,
    kv_heads: int,
    head_dim: int,
    vocab: int,
    tied: bool,
    *,
    experts: int = 0,
    shared: int = 0,
    gated: bool = True,
) -> int:
    """Llama-style count: attention q/k/v/o, a gated MLP (every expert's, plus the router and shared experts
    for a mixture of experts), two norms per layer, embeddings (+ untied head). ``gated=False``: an MLP of two
    matrices (StarCoder2's c_fc/c_proj), which a gated count would overstate by a fifth of the model."""
    attention = hidden * heads * head_dim * 2 + hidden * kv_heads * head_dim * 2
    mlp = (3 if gated else 2) * hidden * intermediate
    if experts > 1:
        mlp = experts * mlp + hidden * experts + 3 * hidden * shared
    per_layer = attention + mlp + 2 * hidden
    return layers * per_layer + vocab * hidden * (1 if tied else 2) + hidden


def read_shape(model: str, revision: str | None = None) -> ModelShape:
    """A local folder, or a Hub repo id (config.json through the HF cache; weights never downloaded)."""
    return read_shape_and_tensors(model, revision)[0]


def read_shape_and_tensors(
    model: str, revision: str | None = None
) -> tuple[ModelShape, dict[str, tuple[int, ...]] | None]:
    """The shape and, when headers were read, every tensor's shape (for counting a user's adapter on it)."""
    config = read_model_config(model, revision)
    path = Path(model).expanduser()
    if path.is_dir():
        from advisor.safetensors_headers import folder_tensors

        entries = folder_tensors(path)
        quant = saved_storage(config, model)
        if not entries:
            return with_saved_quant(shape_from_config(config, model), quant, []), None
        bnb_shapes = read_bnb_shapes(entries) if quant == "4bit" else None
        stored, notes = loaded_tensors({name: entry.shape for name, entry in entries.items()})
        tensors, params, more = logical_shapes(stored, quant, bnb_shapes)
        notes += more
        shape = shape_from_config(config, model, params, "safetensors headers", tensors)
        return with_saved_quant(shape, quant, notes), tensors
    return _hub_shape(model, config, revision)


# Buffers older checkpoints saved beside the weights, which transformers now makes non-persistent and skips on
# load: GPT-2/GPT-J/GPT-Neo/GPT-NeoX/CodeGen causal masks (``attn.bias`` of [1, 1, n, n]: 12.6M elements in GPT-2's
# 124M checkpoint, 50M in Pythia-160M's), their ``masked_bias`` scalars, and rotary ``inv_freq`` / cos / sin caches.
_STALE_BUFFER = re.compile(r"(^|\.)(inv_freq|masked_bias|cos_cached|sin_cached|_float_tensor)$")


def loaded_tensors(stored: dict[str, tuple[int, ...]]) -> tuple[dict[str, tuple[int, ...]], list[str]]:
    """The stored tensors transformers loads into the model, and a note naming any it would skip (stale buffers)."""
    skipped = {
        name
        for name, dims in stored.items()
        if _STALE_BUFFER.search(name)
        or (name.endswith(("bias", "causal_mask")) and len(dims) == 4 and dims[:2] == (1, 1) and dims[2] == dims[3])
    }
    if not skipped:
        return stored, []
    kinds = sorted({name.rsplit(".", 1)[-1] for name in skipped})
    note = (
        f"left out {len(skipped)} stored buffers transformers does not load as parameters ({', '.join(kinds)}: causal "
        f"masks and rotary caches saved by older versions; {sum(math.prod(stored[n]) for n in skipped):,} elements)"
    )
    return {name: dims for name, dims in stored.items() if name not in skipped}, [note]


def saved_storage(config: dict[str, Any], model: str) -> str | None:
    try:
        return checkpoint_storage(config)
    except UserError as exc:
        raise UserError(f"--model {model}: {exc}") from None


def with_saved_quant(shape: ModelShape, storage: str | None, notes: list[str]) -> ModelShape:
    """The shape of a checkpoint saved quantised: which --quant it loads as, and what its headers could not say
    (``notes``, which are added whatever the storage: the stored buffers left out of the count, for example)."""
    if storage is None:
        return replace(shape, assumptions=(*shape.assumptions, *notes)) if notes else shape
    quant = trains_as(storage)
    if quant is None:  # stored quantised, trained dequantised (gpt-oss's MXFP4 experts)
        said = (f"saved in {storage.upper()}: counted as the weights it holds and priced as the bf16 base it is "
                "dequantised to for training (LoRA on a float8/MXFP4 base is not modelled)")  # fmt: skip
    else:
        label = QUANTIZATION[quant].label.format(dtype="half-precision")
        said = f"saved quantised: it loads, and trains, as --quant {quant} ({label})"
    return replace(shape, checkpoint_quant=quant, assumptions=(*shape.assumptions, said, *notes))


def read_model_config(model: str, revision: str | None = None) -> dict[str, Any]:
    """``config.json`` of a local model folder or a Hub repo (through the HF cache), with one-line errors.

    A path that does not exist is said to be missing, not sent to the Hub as a malformed repo id.
    """
    path = Path(model).expanduser()
    if path.is_dir():
        config_path = path / "config.json"
        if not config_path.is_file():
            adapter = path / "adapter_config.json"
            if adapter.is_file():  # a common slip: the trained adapter's folder instead of its base model
                base = _adapter_base(adapter)
                raise UserError(
                    f"--model {model} is a PEFT adapter folder, not a model: pass its base model with --model"
                    f"{f' ({base})' if base else ''} and the adapter with --adapter-config {adapter}"
                )
            raise UserError(f"--model {model}: the folder has no config.json")
        return read_json_object(config_path, model)
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
    return read_json_object(Path(config_path), model)


def _adapter_base(path: Path) -> str | None:
    """The base model an adapter_config.json names, if it is readable and names one."""
    try:
        base = json.loads(path.read_text(encoding="utf-8")).get("base_model_name_or_path")
    except (OSError, ValueError, AttributeError):
        return None
    return base if isinstance(base, str) and base else None


def read_json_object(path: Path, model: str) -> dict[str, Any]:
    """A JSON object file of the model (config.json, model_index.json), or a one-line error naming it."""
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UserError(f"--model {model}: cannot read {path.name} ({exc})") from None
    if not isinstance(config, dict):
        raise UserError(f"--model {model}: {path.name} is not a JSON object")
    return config


def _hub_shape(
    repo_id: str, config: dict[str, Any], revision: str | None
) -> tuple[ModelShape, dict[str, tuple[int, ...]] | None]:
    from huggingface_hub import HfApi

    quant = saved_storage(config, repo_id)
    params, source, tensors, notes = None, "", None, []
    try:
        metadata = HfApi().get_safetensors_metadata(repo_id, revision=revision)
        files = metadata.files_metadata.values()
        stored, notes = loaded_tensors({name: tuple(i.shape) for file in files for name, i in file.tensors.items()})
        source = "Hub safetensors metadata"
        tensors, params, more = logical_shapes(stored, quant)  # the Hub's count would count packed storage
        notes += more
    except Exception:  # offline, no safetensors, or an old endpoint: the config's arithmetic, said so
        params, tensors, notes = None, None, []
    shape = with_saved_quant(shape_from_config(config, repo_id, params, source, tensors), quant, notes)
    if tensors is not None and quant == "4bit":  # layers counted by size: their widths where the names say them
        tensors = fill_widths(tensors, shape)
    return shape, tensors
