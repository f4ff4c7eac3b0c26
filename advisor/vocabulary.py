"""Every word a user picks from: tasks, objectives, requirements, consumers, quantisation, LoRA switches.

One module, imported by the recommender, the trial, the converter, the scanner, the CLI and the Space,
so adding a requirement or a consumer means editing one place (and the code that gives it meaning).
PEFT method names and their capabilities are the method registry's (:mod:`advisor.methods.registry`),
not listed here. ``tests/test_vocabulary.py`` fails when a second literal copy of any of these lists
appears elsewhere in the product.

No imports beyond the standard library and :mod:`advisor.errors`: the recommend path reads this.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from advisor.errors import UserError

# --------------------------------------------------------------------------- recommend

# How the recommender orders the rows that fit (README: "Objectives"), and how the header says it.
OBJECTIVES: dict[str, str] = {
    "score": "by {metric} ({direction})",
    "memory": "by peak memory (lowest first), then {metric}",
    "speed": "by train time (fastest first), then {metric}",
    "size": "by checkpoint size (smallest first), then {metric}",
    "balanced": "by Pareto layer of {metric} vs memory (frontier first), then {metric}",
}

# --require NAME → the Capabilities field that must be true for a row to stay.
REQUIREMENTS: dict[str, str] = {
    "merge": "can_merge",
    "lora-convertible": "lora_convertible",
    "vllm": "vllm_servable",
    "diffusers": "diffusers_loadable",
    "quantized": "quantized_base",
}


# --------------------------------------------------------------------------- tasks


@dataclass(frozen=True)
class TaskChoice:
    """A task name a user types, and the stored benchmark that answers for it."""

    name: str
    benchmark: str
    exact: bool
    note: str | None = None


_LLM_STAND_IN = "no {task} benchmark is stored; MetaMathQA (math word problems on Llama-3.2-3B) stands in for it"

# Only two benchmarks exist, so most task names are stand-ins; the note says so plainly instead of
# pretending MetaMathQA measures coding ability.
TASKS: dict[str, TaskChoice] = {
    "math": TaskChoice("math", "MetaMathQA", True),
    "llm": TaskChoice("llm", "MetaMathQA", True, "MetaMathQA (math word problems) is the stored LLM benchmark"),
    "reasoning": TaskChoice("reasoning", "MetaMathQA", False, _LLM_STAND_IN.format(task="general reasoning")),
    "text": TaskChoice("text", "MetaMathQA", False, _LLM_STAND_IN.format(task="general text")),
    "chat": TaskChoice("chat", "MetaMathQA", False, _LLM_STAND_IN.format(task="chat / instruction")),
    "code": TaskChoice("code", "MetaMathQA", False, _LLM_STAND_IN.format(task="code")),
    "image": TaskChoice("image", "image-gen", True),
    "image-gen": TaskChoice("image-gen", "image-gen", True),
    "diffusion": TaskChoice("diffusion", "image-gen", True),
    "dreambooth": TaskChoice("dreambooth", "image-gen", True),
}
# What menus offer (the Space): one name per kind of work, the aliases above still accepted.
MENU_TASKS: tuple[str, ...] = ("math", "code", "chat", "reasoning", "text", "image")


def resolve_task(name: str) -> TaskChoice:
    key = name.strip().lower().replace("_", "-")
    if key == "metamathqa":
        key = "math"
    if key not in TASKS:
        raise UserError(f"unknown task {name!r}; valid tasks: {', '.join(TASKS)}")
    return TASKS[key]


# --------------------------------------------------------------------------- memory model


@dataclass(frozen=True)
class Quantization:
    """A --quant choice: bits per quantised weight (None: not quantised), how a setup line names it, the
    registry's backend label (which methods can train on it), and whether PEFT's
    ``prepare_model_for_kbit_training`` upcasts the parameters left unquantised (embeddings, head, norms) to
    fp32: it does for bitsandbytes and AWQ, and skips GPTQ (peft/utils/other.py)."""

    bits: float | None
    label: str  # "{dtype}" is the compute precision
    backend: str | None = None  # a MethodInfo.quantization label: bnb-4bit, bnb-8bit, gptq, awq
    upcasts_rest: bool = False


# NF4 with double-quantised absmax (blocks of 64) costs 4.127 bits. GPTQ and AWQ at group size 128 add an
# fp16 scale and a packed zero point per group: 4 + 16/128 + 4/128 = 4.156 bits (8-bit GPTQ: 8.19).
QUANTIZATION: dict[str, Quantization] = {
    "none": Quantization(None, "{dtype}"),
    "8bit": Quantization(8.0, "8-bit bitsandbytes base ({dtype} compute)", "bnb-8bit", True),
    "4bit": Quantization(4.127, "4-bit NF4 bitsandbytes base ({dtype} compute)", "bnb-4bit", True),
    "gptq-4bit": Quantization(4.156, "4-bit GPTQ base ({dtype} compute)", "gptq", False),
    "gptq-8bit": Quantization(8.19, "8-bit GPTQ base ({dtype} compute)", "gptq", False),
    "awq-4bit": Quantization(4.156, "4-bit AWQ base ({dtype} compute)", "awq", True),
}
QUANT_CHOICES: tuple[str, ...] = tuple(QUANTIZATION)

# --memory: which stored figure the prediction is calibrated on.
MEMORY_MODES: tuple[str, ...] = ("peak", "train")

# --attention: how attention scores are computed. flash and PyTorch's SDPA kernels never hold the
# [sequence × sequence] scores; eager attention keeps them (fp32 softmax output and its cast) per layer.
ATTENTION_CHOICES: tuple[str, ...] = ("sdpa", "flash", "eager")


# --optimizer: what each optimizer keeps per trainable parameter, and what its step allocates on top.
class Optimizer(NamedTuple):
    """``state_bytes``: optimizer-state bytes per trainable parameter (fp32 states; full fine-tuning keeps them in
    the weights' dtype). ``step_moments``: how many moment-sized temporaries its step holds at once: torch's
    default AdamW (``foreach``) computes ``sqrt(exp_avg_sq)`` for every parameter in one list before it updates
    any, a copy of the second moment; fused kernels (torch ``fused=True``, bitsandbytes, Adafactor's per-matrix
    loop) update in place."""

    state_bytes: float
    description: str
    step_moments: float = 0.0


OPTIMIZERS: dict[str, Optimizer] = {
    "adamw": Optimizer(
        8.0,
        "AdamW (torch's default foreach kernels): two fp32 moments; its step holds a copy of the second moment",
        1.0,
    ),
    "adamw-fused": Optimizer(
        8.0,
        "fused AdamW (torch fused=True; the Trainer's adamw_torch_fused): two fp32 moments, updated in place",
    ),
    "adamw-8bit": Optimizer(2.0, "8-bit AdamW (bitsandbytes): two 8-bit moments"),
    "paged-adamw": Optimizer(
        8.0, "paged AdamW: two fp32 moments, counted resident (paging only moves them under pressure)"
    ),
    "paged-adamw-8bit": Optimizer(
        2.0,
        "paged 8-bit AdamW: two 8-bit moments, counted resident (paging only moves them under pressure)",
    ),
    "adafactor": Optimizer(0.0, "Adafactor: factored second moments (a row and a column per matrix), no first moment"),
    "sgd": Optimizer(0.0, "SGD without momentum: no state"),
}

# --sharding: how several GPUs share the model (per-GPU figures; --batch-size is per GPU). mp: naive model
# parallelism, consecutive layers on consecutive GPUs (device_map="auto"), one GPU computing at a time.
SHARDING_CHOICES: tuple[str, ...] = ("ddp", "fsdp", "zero2", "zero3", "mp")
OFFLOAD_CHOICES: tuple[str, ...] = ("none", "cpu")
AMP_CHOICES: tuple[str, ...] = ("fp16", "bf16")

# --------------------------------------------------------------------------- projection names

# The trial maps the benchmark's Llama names onto the user's model by role, and the memory model reads a 4-bit
# layer's widths from its role: one list of what architectures call each projection.
# Role -> leaf names architectures use for it, most specific first. "o" before "down": BERT's
# attention output is "attention.output.dense", its MLP output "output.dense".
# DeBERTa-v2/v3 names its projections query_proj/key_proj/value_proj, ALBERT its MLP ffn/ffn_output, ModernBERT
# attn.Wqkv/attn.Wo/mlp.Wi/mlp.Wo. Models that fuse projections (GPT-2's c_attn, Phi-3's qkv_proj and
# gate_up_proj, GPT-NeoX/Falcon/Bloom's query_key_value, MPT's and ModernBERT's Wqkv, Baichuan's W_pack) come
# last: a separate projection is preferred where one exists, else the fused one stands for its parts, as LoRA
# users of those models target it. GPT-2's two c_proj layers are told apart by their parent (attn.c_proj,
# mlp.c_proj), which PEFT's suffix matching accepts.
FUSED_QKV = ("qkv_proj", "c_attn", "query_key_value", "Wqkv", "W_pack")
ROLE_NAMES: dict[str, tuple[str, ...]] = {
    "q": ("q_proj", "query", "query_proj", "to_q", "q_lin", "wq", "q", *FUSED_QKV),
    "k": ("k_proj", "key", "key_proj", "to_k", "k_lin", "wk", "k", *FUSED_QKV),
    "v": ("v_proj", "value", "value_proj", "to_v", "v_lin", "wv", "v", *FUSED_QKV),
    "o": (
        "o_proj",
        "attention.output.dense",
        "out_proj",
        "to_out.0",
        "out_lin",
        "wo",
        "attn.c_proj",
        "attention.dense",
        "self_attention.dense",
        "attn.Wo",
    ),
    "gate": ("gate_proj", "w1", "gate_up_proj", "Wi"),
    "up": ("up_proj", "intermediate.dense", "fc1", "lin1", "c_fc", "w3", "ffn", "gate_up_proj", "dense_h_to_4h", "Wi"),
    "down": ("down_proj", "output.dense", "fc2", "lin2", "w2", "ffn_output", "mlp.c_proj", "dense_4h_to_h", "mlp.Wo"),
    "norm": (
        "input_layernorm",
        "post_attention_layernorm",
        "LayerNorm",
        "layer_norm",
        "ln_1",
        "ln_2",
        "norm1",
        "norm2",
    ),
    "final_norm": ("norm", "ln_f", "final_layer_norm", "LayerNorm"),
}

# --------------------------------------------------------------------------- converter and consumers

# Who loads a converted or checked LoRA (``--for``): each has its own rules in converters/consumers.py.
CONSUMER_TARGETS: tuple[str, ...] = ("peft", "vllm", "diffusers")

# --------------------------------------------------------------------------- LoRA switches

# LoraConfig switches that make a run (or a Hub adapter) a LoRA *variant*, and their short names.
LORA_SWITCHES: dict[str, str] = {
    "use_rslora": "rsLoRA",
    "use_dora": "DoRA",
    "use_bdlora": "BD-LoRA",
    "lora_bias": "LoRA-bias",
    "use_qalora": "QA-LoRA",
}
# Of those, the ones a Hub scan reports from adapter_config.json (DoRA is counted apart from LoRA).
SCANNED_LORA_SWITCHES: tuple[str, ...] = ("use_dora", "use_rslora", "use_qalora")

# --------------------------------------------------------------------------- the Space

# Methods the Space's trial tab offers first (each has a stored MetaMathQA run that maps onto a BERT or
# Llama model); any other registry method is still accepted by `peft-advise trial --candidates`.
SPACE_TRIAL_METHODS: tuple[str, ...] = (
    "lora",
    "oft",
    "ia3",
    "boft",
    "loha",
    "lokr",
    "vera",
    "hra",
    "adalora",
    "prompt_tuning",
)


def choose(value: str, allowed: tuple[str, ...] | dict[str, object], option: str) -> str:
    """``value`` if it is one of ``allowed``, else a one-line error listing them."""
    if value not in allowed:
        raise UserError(f"{option} must be one of {', '.join(allowed)} (got {value!r})")
    return value
