"""Predicted peak training memory of a PEFT run on the user's model and setup.

Small and explainable on purpose: five terms, each a product of the model's shape and the setup,
with one number per benchmark run fitted from its measured peak.

    memory = base weights                       params × bytes (bf16 2, 8-bit 1, NF4 4.127 bits)
           + trainable state                    trainable params × (weight + gradient + AdamW states)
           + activations                        tokens × layers × (hidden + MLP width) × bytes × a_run
           + logits                             tokens × vocabulary × (dtype + 12) bytes
           + inputs a quantised base keeps      tokens × layers × (3·hidden + MLP width) × bytes

``tokens`` is batch × sequence length: every sequence at full length, the worst step. ``a_run``
(how many hidden+MLP-wide vectors per token and layer the run keeps for its backward pass) is the
only fitted number: on the benchmark's own setup it makes the prediction equal the measured peak
of that run, and elsewhere it carries the method's activation footprint to the user's shape.

Why this shape, from measurements (benchmarks/data/gpu_train_memory_h100.json, H100, the
benchmark's Llama-3.2-3B shape, fixed-length batches): memory grows linearly with tokens at fixed
model (b1×2048, b4×768, b8×512 lie on one line, with no seq² term: PyTorch's SDPA attention),
and the intercept is the weights plus trainable state. Gradient checkpointing keeps each layer's
input plus one layer's activations; with 14 bytes per logit (bf16 logits, their fp32 copy for the
loss, log-softmax, its gradient) the model predicts the checkpointed LoRA run within 0.1 GiB.

No torch: this runs on the recommend path.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from advisor.benchmarks.records import GIB, BenchmarkRun
from advisor.errors import UserError
from advisor.memory.shapes import ModelShape
from advisor.memory.user_adapter import UserAdapter
from advisor.vocabulary import MEMORY_MODES, QUANTIZATION

DTYPE_BYTES = {"bf16": 2, "fp16": 2, "fp32": 4}
OPTIMIZER_STATE_BYTES = {"adamw": 8, "adamw-8bit": 2}  # two moments per trainable parameter
ADAPTER_BYTES = 4  # PEFT keeps adapter weights (and so their gradients) in fp32 (autocast_adapter_dtype)
LOGIT_EXTRA_BYTES = 12  # fp32 copy for the loss, log-softmax output, its gradient: 4 bytes each

# The shape PEFT's MetaMathQA runs were measured on (meta-llama/Llama-3.2-3B's config.json;
# total parameters as the full fine-tuning run reports them).
BENCHMARK_SHAPE = ModelShape(
    name="meta-llama/Llama-3.2-3B",
    architecture="LlamaForCausalLM",
    hidden=3072,
    intermediate=8192,
    layers=28,
    heads=24,
    kv_heads=8,
    head_dim=128,
    vocab=128256,
    tied_embeddings=True,
    total_params=3_212_749_824,
    params_source="PEFT benchmark (num_total_params of the full fine-tuning run)",
    dtype="bfloat16",
)


@dataclass(frozen=True)
class MemorySetup:
    """How the user will train: what the memory depends on besides the model and the method."""

    batch_size: int = 4
    seq_len: int = 768
    dtype: str = "bf16"
    quant: str = "none"
    grad_checkpointing: bool = False
    optimizer: str = "adamw"
    mode: str = "peak"  # peak: calibrated on accelerator_memory_max; train: on the 99th percentile

    @property
    def tokens(self) -> int:
        return self.batch_size * self.seq_len

    def describe(self) -> str:
        quant = QUANTIZATION[self.quant].label.format(dtype=self.dtype)
        checkpointing = "gradient checkpointing" if self.grad_checkpointing else "no gradient checkpointing"
        return f"{quant}, batch {self.batch_size}, seq {self.seq_len}, {checkpointing}, {self.optimizer}"


BENCHMARK_SETUP = MemorySetup()


@dataclass(frozen=True)
class Breakdown:
    """One run's predicted memory, term by term (bytes)."""

    terms: dict[str, float] = field(default_factory=dict)
    activation_factor: float = 0.0
    note: str = ""

    @property
    def total(self) -> float:
        return sum(self.terms.values())


def validate_setup(setup: MemorySetup) -> None:
    if setup.batch_size < 1 or setup.seq_len < 1:
        raise UserError(f"--batch-size and --seq-len must be at least 1 (got {setup.batch_size}, {setup.seq_len})")
    if setup.dtype not in DTYPE_BYTES:
        raise UserError(f"--dtype must be one of {', '.join(DTYPE_BYTES)} (got {setup.dtype!r})")
    if setup.quant not in QUANTIZATION:
        raise UserError(f"--quant must be one of {', '.join(QUANTIZATION)} (got {setup.quant!r})")
    if setup.optimizer not in OPTIMIZER_STATE_BYTES:
        raise UserError(f"--optimizer must be one of {', '.join(OPTIMIZER_STATE_BYTES)} (got {setup.optimizer!r})")
    if setup.mode not in MEMORY_MODES:
        raise UserError(f"--memory must be one of {', '.join(MEMORY_MODES)} (got {setup.mode!r})")


def _is_full(run: BenchmarkRun) -> bool:
    return run.peft_type is None


def measured(run: BenchmarkRun, mode: str) -> int | None:
    """The stored figure each mode is calibrated on."""
    return run.peak_memory_bytes if mode == "peak" else run.p99_memory_bytes


def base_weight_bytes(shape: ModelShape, setup: MemorySetup) -> float:
    """Weights at the compute dtype, or the linear layers quantised and embeddings/head left as they are."""
    width = DTYPE_BYTES[setup.dtype]
    bits = QUANTIZATION[setup.quant].bits
    if bits is None:
        return shape.total_params * width
    linear = max(0, shape.total_params - shape.embedding_params)
    return linear * bits / 8 + shape.embedding_params * width


def trainable_params(run: BenchmarkRun, shape: ModelShape, adapter: UserAdapter | None = None) -> float:
    """The run's trainable parameters carried to ``shape``: adapters scale with layers × (hidden + MLP width).

    The user's own adapter (``--adapter-config``, ``--lora-r``) replaces that estimate on the runs of its method.
    """
    if _is_full(run):
        return float(shape.total_params)
    if adapter is not None and run.peft_type == adapter.peft_type:
        return float(adapter.trainable)
    bench = BENCHMARK_SHAPE
    scale = shape.layers * (shape.hidden + shape.intermediate) / (bench.layers * (bench.hidden + bench.intermediate))
    return float(run.trainable_params or 0) * scale


def trainable_state_bytes(
    run: BenchmarkRun, shape: ModelShape, setup: MemorySetup, adapter: UserAdapter | None = None
) -> float:
    """Adapters: fp32 weight + gradient + optimizer states. Full fine-tuning: gradient + states at the model dtype."""
    params = trainable_params(run, shape, adapter)
    states = OPTIMIZER_STATE_BYTES[setup.optimizer]
    if _is_full(run):
        width = DTYPE_BYTES[setup.dtype]
        return params * (width + states * width / 4)  # weights already counted; torch keeps states in param dtype
    return params * (ADAPTER_BYTES * 2 + states)


def activation_unit(shape: ModelShape, setup: MemorySetup) -> float:
    """Bytes of one hidden+MLP-wide vector per token in every layer: what ``a_run`` counts."""
    return setup.tokens * shape.layers * (shape.hidden + shape.intermediate) * DTYPE_BYTES[setup.dtype]


def logit_bytes(shape: ModelShape, setup: MemorySetup) -> float:
    head = 4 if setup.quant != "none" else DTYPE_BYTES[setup.dtype]  # kbit training computes the head in fp32
    return setup.tokens * shape.vocab * (head + LOGIT_EXTRA_BYTES)


def quantised_input_bytes(shape: ModelShape, setup: MemorySetup) -> float:
    """bitsandbytes' 4/8-bit matmul keeps its input for backward whenever the input needs a gradient
    (always under an adapter), where a frozen bf16 linear keeps nothing: the norm outputs, the
    attention output and the MLP product, per layer and token."""
    if setup.quant == "none" or setup.grad_checkpointing:
        return 0.0
    return setup.tokens * shape.layers * (3 * shape.hidden + shape.intermediate) * DTYPE_BYTES[setup.dtype]


def activation_bytes(factor: float, shape: ModelShape, setup: MemorySetup) -> float:
    unit = activation_unit(shape, setup)
    if not setup.grad_checkpointing:
        return factor * unit
    # Checkpointing keeps every layer's input, and recomputes one layer's activations at a time.
    checkpoints = setup.tokens * shape.layers * shape.hidden * DTYPE_BYTES[setup.dtype]
    return checkpoints + factor * unit / shape.layers


def fixed_bytes(
    run: BenchmarkRun, shape: ModelShape, setup: MemorySetup, adapter: UserAdapter | None = None
) -> dict[str, float]:
    """Every term except the activations, which the calibration solves for."""
    return {
        "base weights": base_weight_bytes(shape, setup),
        "trainable + grads + optimizer": trainable_state_bytes(run, shape, setup, adapter),
        "logits": logit_bytes(shape, setup),
        "quantised-layer inputs": quantised_input_bytes(shape, setup),
    }


def activation_factor(run: BenchmarkRun, mode: str) -> float | None:
    """``a_run``: the value that makes the model reproduce the run's measured figure on its own setup."""
    figure = measured(run, mode)
    if figure is None:
        return None
    setup = replace(BENCHMARK_SETUP, mode=mode, batch_size=run.batch_size or 4, seq_len=run.seq_len or 768)
    rest = sum(fixed_bytes(run, BENCHMARK_SHAPE, setup).values())
    return (figure - rest) / activation_unit(BENCHMARK_SHAPE, setup)


def predict(
    run: BenchmarkRun,
    shape: ModelShape,
    setup: MemorySetup,
    factor: float | None = None,
    adapter: UserAdapter | None = None,
) -> Breakdown:
    """The run's memory on ``shape`` under ``setup``; ``factor`` overrides the run's own (leave-one-out);
    ``adapter``: the user's own adapter, whose trainable count replaces the run's on runs of its method."""
    if factor is None:
        factor = activation_factor(run, setup.mode)
    if factor is None or not math.isfinite(factor):
        raise UserError(f"{run.id} has no {setup.mode} memory figure to calibrate on; use --memory peak")
    terms = fixed_bytes(run, shape, setup, adapter)
    terms["activations"] = activation_bytes(factor, shape, setup)
    ordered = {
        key: terms[key]
        for key in ("base weights", "trainable + grads + optimizer", "activations", "logits", "quantised-layer inputs")
        if terms[key] > 0 or key != "quantised-layer inputs"
    }
    return Breakdown(ordered, factor)


def gib(value: float) -> float:
    return value / GIB


@dataclass(frozen=True)
class MemoryRequest:
    """The user's model and setup, for the recommender: its runs' memory becomes a prediction."""

    shape: ModelShape
    setup: MemorySetup
    model_given: bool  # False: the benchmark's own model, with another batch/seq/precision
    adapter: UserAdapter | None = None  # the user's own adapter (--adapter-config, --lora-r)

    def describe(self) -> str:
        mine = f"; your adapter: {self.adapter.description}" if self.adapter else ""
        return f"{self.shape.name} ({self.setup.describe()}{mine})"


PREDICTED_FIELDS = ("peak_memory_bytes", "trainable_params", "checkpoint_bytes")


def project(runs: list[BenchmarkRun], request: MemoryRequest) -> tuple[list[BenchmarkRun], dict[str, Breakdown]]:
    """Runs whose :data:`PREDICTED_FIELDS` are the predictions for the request (the measured ones stay in the
    snapshot). Train time is not predicted: it depends on the GPU and kernels, which the model does not know."""
    projected, breakdowns = [], {}
    for run in runs:
        breakdown = predict(run, request.shape, request.setup, adapter=request.adapter)
        breakdowns[run.id] = breakdown
        trainable = round(trainable_params(run, request.shape, request.adapter))
        projected.append(
            replace(
                run,
                peak_memory_bytes=round(breakdown.total),
                p99_memory_bytes=None,
                trainable_params=trainable if run.trainable_params is not None or _is_full(run) else None,
                checkpoint_bytes=checkpoint_bytes(run, trainable),
            )
        )
    return projected, breakdowns


def checkpoint_bytes(run: BenchmarkRun, trainable: float) -> int | None:
    """The saved file scales with the trainable parameters at the run's own bytes per parameter."""
    if run.checkpoint_bytes is None or not run.trainable_params:
        return run.checkpoint_bytes
    return round(run.checkpoint_bytes * trainable / run.trainable_params)
