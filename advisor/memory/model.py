"""Predicted peak training memory of a PEFT run on the user's model and setup, per GPU.

Small and explainable on purpose: a handful of terms, each a product of the model's shape and the setup,
with one number per benchmark run fitted from its measured peak.

    memory = base weights                       params × bytes (bf16 2; quantised linear layers at their bits,
                                                the rest fp32 when PEFT's kbit preparation upcasts it)
           + trainable state                    trainable params × (weight + gradient + optimizer states)
           + activations                        tokens × layers × (hidden + active MLP width) × bytes × a_run
                                                (the width scaled by the architecture's layer physics)
           + logits                             tokens × vocabulary × (head dtype + 12, + 2 if softcapped) bytes
           + inputs a quantised base keeps      tokens × layers × (3·hidden + active MLP width) × bytes
           + attention scores (eager only)      batch × heads × seq² × 6 bytes per layer kept
           + autocast weight copies (--amp)     the half-precision copies autocast makes and backward keeps
           + gathered layers (fsdp / zero3)     two layers' full parameters, all-gathered around their use
           + optimizer step                     what the step allocates beyond the backward pass's transients
                                                (torch's foreach AdamW: a copy of the second moment; it runs
                                                after backward has freed the activations, so only the excess)

A diffusion transformer's tokens are its latent patches plus the prompt's; a UNet (``advisor.memory.unet``) is
summed over its resolution stages, each module in the same units through what autograd saves in it.

``tokens`` is batch × sequence length on one GPU: every sequence at full length, the worst step. ``a_run``
(how many hidden+MLP-wide vectors per token and layer the run keeps for its backward pass) is the
only fitted number: on the benchmark's own setup it makes the prediction equal the measured peak
of that run, and elsewhere it carries the method's activation footprint to the user's shape.

Why this shape, from measurements (benchmarks/data/gpu_train_memory_h100.json, H100, the
benchmark's Llama-3.2-3B shape, fixed-length batches): memory grows linearly with tokens at fixed
model (b1×2048, b4×768, b8×512 lie on one line, with no seq² term: PyTorch's SDPA attention),
and the intercept is the weights plus trainable state. Gradient checkpointing keeps each layer's
input plus one layer's activations; with 14 bytes per logit (bf16 logits, their fp32 copy for the
loss, log-softmax, its gradient) the model predicts the checkpointed LoRA run within 0.1 GiB.
The other terms are physics of the code that runs, not fitted: eager attention saves the fp32 softmax
output and its bf16 cast for backward (6 bytes per score); bitsandbytes/GPTQ/AWQ layers keep their input;
PEFT's ``prepare_model_for_kbit_training`` upcasts a bitsandbytes or AWQ model's unquantised parameters to
fp32 (so the residual stream, and the checkpoints of it, become fp32 too); autocast saves the half copy
of each weight a matmul used; ZeRO/FSDP divide what they shard by the number of GPUs (FSDP keeps its root
unit, the embeddings and head, whole for the step); naive model parallelism (mp) gives each GPU 1/N of the
layers, and the last one the head and the logits.

No torch: this runs on the recommend path.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from advisor.benchmarks.definitions import BENCHMARKS
from advisor.benchmarks.records import GIB, BenchmarkRun
from advisor.errors import UserError
from advisor.memory import unet
from advisor.memory.adapter_matrices import adapter_matrix_bytes
from advisor.memory.layer_physics import layer_width
from advisor.memory.setup import DTYPE_BYTES, MemorySetup
from advisor.memory.shapes import ModelShape
from advisor.memory.user_adapter import UserAdapter
from advisor.vocabulary import OPTIMIZERS, QUANTIZATION

ADAPTER_BYTES = 4  # PEFT keeps adapter weights (and so their gradients) in fp32 (autocast_adapter_dtype)
LOGIT_EXTRA_BYTES = 12  # fp32 copy for the loss, log-softmax output, its gradient: 4 bytes each
EAGER_SCORE_BYTES = 6  # eager attention saves the fp32 softmax output and its bf16/fp16 cast for backward
EAGER_RECOMPUTE_BYTES = 10  # a recomputed layer's scores: those 6 bytes plus the fp32 gradient of the softmax
SOFTCAP_BYTES = 2  # logit softcapping (x / cap, tanh, × cap) keeps tanh's half-precision output for backward
GATHERED_LAYERS = 2  # FSDP/ZeRO-3 hold the layer in use and the one prefetched

# The shape PEFT's MetaMathQA runs were measured on (meta-llama/Llama-3.2-3B's config.json;
# total parameters as the full fine-tuning run reports them).
BENCHMARK_SHAPE = ModelShape(
    name="meta-llama/Llama-3.2-3B",
    architecture="LlamaForCausalLM",
    model_type="llama",
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
BENCHMARK_SETUP = MemorySetup()
# PEFT's image benchmark: batch 2 at 512 px, checkpointed; (512 / 16)² latent patches + 512 prompt tokens.
IMAGE_BENCHMARK_SETUP = MemorySetup(batch_size=2, seq_len=1024 + 512, grad_checkpointing=True, resolution=512)


def benchmark_of(run: BenchmarkRun) -> tuple[ModelShape, MemorySetup]:
    """The shape and setup a stored run was measured on: Llama-3.2-3B for MetaMathQA, FLUX.2-klein's
    transformer (checkpointed, image + prompt tokens) for the image benchmark."""
    if BENCHMARKS[run.benchmark].domain == "image":
        from advisor.memory.denoiser import IMAGE_BENCHMARK_SHAPE, image_tokens

        shape, resolution = IMAGE_BENCHMARK_SHAPE, run.seq_len or IMAGE_BENCHMARK_SETUP.resolution or 512
        setup = replace(
            IMAGE_BENCHMARK_SETUP,
            batch_size=run.batch_size or IMAGE_BENCHMARK_SETUP.batch_size,
            seq_len=image_tokens(shape, resolution) + shape.text_tokens,
            grad_checkpointing=bool(run.grad_checkpointing),
            resolution=resolution,
        )
        return shape, setup
    return BENCHMARK_SHAPE, replace(BENCHMARK_SETUP, batch_size=run.batch_size or 4, seq_len=run.seq_len or 768)


# Every term, in the order tables show them, and what it counts (--explain; --json "terms").
TERMS: dict[str, str] = {
    "base weights": "the frozen model: parameters × bytes (quantised linear layers at their bits)",
    "trainable + grads + optimizer": "trainable parameters × (weight + gradient + optimizer-state bytes)",
    "activations": "what backward needs, per token and layer: a_run hidden+MLP-wide vectors (fitted per run; the "
    "width scaled by what a layer of this architecture keeps against a Llama layer)",
    "logits": "batch × seq × vocabulary: the head's output, its fp32 copy, log-softmax and its gradient (and "
    "softcapping's tanh output)",
    "quantised-layer inputs": "bitsandbytes/GPTQ/AWQ layers keep their input for backward (no checkpointing)",
    "attention scores": "eager attention: batch × heads × seq² scores saved per layer (fp32 softmax + cast; "
    "softcapping's tanh output)",
    "autocast weight copies": "--amp: the half-precision copy of each weight a matmul used, kept for backward",
    "adapter matrices": "what the method builds per adapted layer whatever the tokens (HRA's Householder products, "
    "LoHa/LoKr/FourierFT's delta weight, DoRA's norms): counted with autograd per run on one layer, summed over the "
    "layers it adapts here (one block's under gradient checkpointing)",
    "gathered layers": "fsdp/zero3: two layers' parameters all-gathered in full around their use (fsdp: and its root "
    "unit, the embeddings and head, whole for the step)",
    "optimizer step": "what the optimizer step allocates (torch's foreach AdamW: a copy of the second moment) beyond "
    "the backward pass's transients, which are freed before the step runs",
}
# The terms that live only between a step's forward and its backward's end: the optimizer step reuses their memory.
TRANSIENT_TERMS = (
    "activations",
    "adapter matrices",
    "logits",
    "quantised-layer inputs",
    "attention scores",
    "autocast weight copies",
    "gathered layers",
)


@dataclass(frozen=True)
class Breakdown:
    """One run's predicted memory, term by term (bytes)."""

    terms: dict[str, float] = field(default_factory=dict)
    activation_factor: float = 0.0
    note: str = ""

    @property
    def total(self) -> float:
        return sum(self.terms.values())


def _is_full(run: BenchmarkRun) -> bool:
    return run.peft_type is None


def measured(run: BenchmarkRun, mode: str) -> int | None:
    """The stored figure each mode is calibrated on."""
    return run.peak_memory_bytes if mode == "peak" else run.p99_memory_bytes


def linear_params(shape: ModelShape) -> int:
    """Parameters outside the embeddings and head: what a quantiser quantises and autocast casts."""
    return max(0, shape.total_params - shape.embedding_params)


def unsharded_weight_bytes(shape: ModelShape, setup: MemorySetup) -> float:
    """The whole frozen model on one device: weights at their dtype, or the linear layers quantised and the
    rest at the dtype (fp32 where PEFT's kbit preparation upcasts it)."""
    bits = QUANTIZATION[setup.quant].bits
    if bits is None:
        return shape.total_params * setup.weight_bytes
    rest = 4 if setup.upcasts_rest else setup.weight_bytes
    return linear_params(shape) * bits / 8 + shape.embedding_params * rest


def base_weight_bytes(shape: ModelShape, setup: MemorySetup) -> float:
    """Per GPU: the whole model, or its 1/N shard under fsdp/zero3 (nothing when those offload to CPU); under mp
    the last GPU's 1/N of the layers and the head (the first GPU's embeddings are the same size)."""
    whole = unsharded_weight_bytes(shape, setup)
    if setup.sharding == "mp":
        rest = _rest_bytes(shape, setup)
        one_matrix = rest * shape.vocab * shape.hidden / shape.embedding_params if shape.embedding_params else 0.0
        return (whole - rest) * setup.layer_share + one_matrix
    if not setup.shards_params:
        return whole
    return 0.0 if setup.offload == "cpu" else whole / setup.gpus


def gathered_layer_bytes(shape: ModelShape, setup: MemorySetup) -> float:
    """fsdp/zero3 all-gather each layer's full parameters around its forward and backward (plus a prefetch).

    FSDP also gathers its root unit, what no decoder-layer unit wraps (the embeddings, the head, the final
    norm), and keeps it whole from forward to the end of backward (the root is not resharded after forward):
    the rest of it beyond this GPU's shard, or all of it when the shards live on the CPU. ZeRO-3 gathers
    those only around their use."""
    if not setup.shards_params:
        return 0.0
    rest = _rest_bytes(shape, setup)
    layers = GATHERED_LAYERS * (unsharded_weight_bytes(shape, setup) - rest) / shape.layers
    if setup.sharding != "fsdp":
        return layers
    return layers + (rest if setup.offload == "cpu" else rest * (1 - 1 / setup.gpus))


def _rest_bytes(shape: ModelShape, setup: MemorySetup) -> float:
    rest = 4 if (setup.quant != "none" and setup.upcasts_rest) else setup.weight_bytes
    return shape.embedding_params * rest


def trainable_params(run: BenchmarkRun, shape: ModelShape, adapter: UserAdapter | None = None) -> float:
    """The run's trainable parameters carried to ``shape``: adapters scale with layers × (hidden + MLP width).

    The user's own adapter (``--adapter-config``, ``--lora-r``) replaces that estimate on the runs of its method.
    """
    if _is_full(run):
        return float(shape.total_params)
    if adapter is not None and run.peft_type == adapter.peft_type:
        return float(adapter.trainable)
    bench = benchmark_of(run)[0]
    scale = shape.adapter_widths / bench.adapter_widths
    return float(run.trainable_params or 0) * scale


def trainable_state_bytes(
    run: BenchmarkRun, shape: ModelShape, setup: MemorySetup, adapter: UserAdapter | None = None
) -> float:
    """Adapters: fp32 weight + gradient + optimizer states. Full fine-tuning: gradient + states at the weights'
    dtype (the weights are the base term), plus autocast's half copy under --amp.

    Several GPUs: ddp keeps a second copy of the gradients in its all-reduce buckets; zero2 shards gradients
    and states, fsdp/zero3 the weights too; --offload cpu moves the states (and, sharding parameters, the
    weights and gradients) to CPU memory.
    """
    params = trainable_params(run, shape, adapter)
    states_per_param = OPTIMIZERS[setup.optimizer].state_bytes
    if _is_full(run):
        weight, grad = 0.0, float(setup.weight_bytes)
        states = states_per_param * setup.weight_bytes / 4  # torch keeps states in the parameters' dtype
        if setup.amp:
            weight = float(DTYPE_BYTES[setup.amp])  # autocast caches a half copy of each trainable weight
    else:
        weight, grad, states = float(ADAPTER_BYTES), float(ADAPTER_BYTES), states_per_param
    gpus = setup.gpus
    if setup.sharding == "mp":  # each GPU trains its own layers' parameters (full fine-tuning: and one V×H matrix)
        mine = params * setup.layer_share
        if _is_full(run):
            mine += shape.vocab * shape.hidden * (1 - setup.layer_share)
        return mine * (weight + grad + states)
    if setup.sharding == "ddp":
        grad *= 2  # the gradients and DDP's bucket copy of them
    if setup.shards_optimizer:
        states = 0.0 if setup.offload == "cpu" else states / gpus
        grad = grad / gpus
    if setup.shards_params:
        if setup.offload == "cpu":
            grad = 0.0
        if not _is_full(run):
            weight = 0.0 if setup.offload == "cpu" else weight / gpus
    return params * (weight + grad + states)


def optimizer_step_bytes(
    run: BenchmarkRun, shape: ModelShape, setup: MemorySetup, adapter: UserAdapter | None = None
) -> float:
    """The temporaries of one optimizer step. torch's AdamW (``foreach``, its default on a GPU) takes
    ``sqrt(exp_avg_sq)`` of every parameter in one list before it updates any: a second-moment-sized copy, in the
    states' dtype (fp32 for adapters, the weights' dtype for full fine-tuning). Negligible for an adapter, a
    whole bf16 copy of the model for full fine-tuning. Sharded optimizers step on their shard; offloaded ones on
    the CPU."""
    moments = OPTIMIZERS[setup.optimizer].step_moments
    if not moments or (setup.shards_optimizer and setup.offload == "cpu"):
        return 0.0
    moment_bytes = OPTIMIZERS[setup.optimizer].state_bytes / 2
    if _is_full(run):
        moment_bytes *= setup.weight_bytes / 4  # torch keeps states in the parameters' dtype
    temporaries = trainable_params(run, shape, adapter) * moment_bytes * moments * setup.layer_share
    return temporaries / setup.gpus if setup.shards_optimizer else temporaries


def activation_unit(shape: ModelShape, setup: MemorySetup) -> float:
    """Bytes of one hidden+MLP-wide vector per token in every layer: what ``a_run`` counts (a UNet's modules
    in the same units, through what each saves: :mod:`advisor.memory.unet`)."""
    if shape.stages:
        return unet.activation_unit(shape.stages, setup.batch_size, _latent_side(setup), setup.activation_bytes)
    width = layer_width(shape) if shape.kind == "lm" else shape.hidden + shape.active_mlp
    return setup.tokens * shape.layers * width * setup.activation_bytes


def _latent_side(setup: MemorySetup) -> int:
    return unet.latent_side(setup.resolution or 512)


def logit_bytes(shape: ModelShape, setup: MemorySetup) -> float:
    head = 4 if setup.quant != "none" and setup.upcasts_rest else setup.activation_bytes  # an upcast head is fp32
    softcap = SOFTCAP_BYTES if shape.logit_softcap else 0
    return setup.tokens * shape.vocab * (head + LOGIT_EXTRA_BYTES + softcap)


def quantised_input_bytes(shape: ModelShape, setup: MemorySetup) -> float:
    """A quantised linear layer (bitsandbytes' matmul, GPTQ/AWQ kernels) keeps its input for backward whenever
    the input needs a gradient (always under an adapter), where a frozen bf16 linear keeps nothing: the norm
    outputs, the attention output and the MLP product, per layer and token."""
    if setup.quant == "none" or setup.grad_checkpointing:
        return 0.0
    kept = setup.tokens * shape.layers * (3 * shape.hidden + shape.active_mlp) * setup.activation_bytes
    return kept * setup.layer_share


def checkpoint_bytes_per_token_layer(shape: ModelShape, setup: MemorySetup) -> float:
    """Gradient checkpointing keeps every layer's input: the residual stream, fp32 once kbit preparation
    upcast the embeddings (their fp32 output makes the whole residual stream fp32)."""
    upcast_stream = setup.quant != "none" and setup.upcasts_rest and shape.kind == "lm"  # a DiT embeds by a Linear
    return shape.hidden * (4 if upcast_stream else setup.activation_bytes)


def activation_bytes(factor: float, shape: ModelShape, setup: MemorySetup) -> float:
    unit = activation_unit(shape, setup)
    if not setup.grad_checkpointing:
        return factor * unit * setup.layer_share  # mp: each GPU keeps its own layers' activations
    if shape.stages:  # each ResNet and transformer layer is checkpointed; the largest is recomputed at the peak
        side, element = _latent_side(setup), setup.activation_bytes
        kept = unet.checkpointed_bytes(shape.stages, setup.batch_size, side, element)
        return kept + factor * unet.largest_module_unit(shape.stages, setup.batch_size, side, element)
    # Checkpointing keeps every layer's input, and recomputes one layer's activations at a time.
    checkpoints = setup.tokens * shape.layers * checkpoint_bytes_per_token_layer(shape, setup) * setup.layer_share
    return checkpoints + factor * unit / shape.layers


def attention_score_bytes(shape: ModelShape, setup: MemorySetup) -> float:
    """Eager attention's [batch, heads, seq, seq] scores: every layer's kept without checkpointing. With it,
    only the recomputed layer's exist, during backward, after the logits are freed: they add only what they
    exceed the logits by."""
    if setup.attention != "eager":
        return 0.0
    if shape.stages:
        side = _latent_side(setup)
        text = max(0, setup.seq_len - side * side)
        every, largest = unet.score_elements(shape.stages, setup.batch_size, side, text)
        return (largest * EAGER_RECOMPUTE_BYTES) if setup.grad_checkpointing else every * EAGER_SCORE_BYTES
    per_layer = setup.batch_size * shape.heads * setup.seq_len**2
    softcap = SOFTCAP_BYTES if shape.attention_softcap else 0
    if not setup.grad_checkpointing:
        return per_layer * shape.layers * (EAGER_SCORE_BYTES + softcap) * setup.layer_share
    return max(0.0, per_layer * (EAGER_RECOMPUTE_BYTES + softcap) - logit_bytes(shape, setup))


def autocast_copy_bytes(run: BenchmarkRun, shape: ModelShape, setup: MemorySetup) -> float:
    """--amp over frozen fp32 weights: each linear's half copy is saved by its matmul for the input's gradient
    (every layer's without checkpointing, one layer's with it). Full fine-tuning's copies are cached by
    autocast instead and counted with the trainable state."""
    if not setup.amp or setup.quant != "none" or _is_full(run):
        return 0.0
    copies = linear_params(shape) * DTYPE_BYTES[setup.amp]
    return copies / shape.layers if setup.grad_checkpointing else copies * setup.layer_share


def fixed_bytes(
    run: BenchmarkRun, shape: ModelShape, setup: MemorySetup, adapter: UserAdapter | None = None
) -> dict[str, float]:
    """Every term except the activations, which the calibration solves for."""
    return {
        "base weights": base_weight_bytes(shape, setup),
        "trainable + grads + optimizer": trainable_state_bytes(run, shape, setup, adapter),
        "logits": logit_bytes(shape, setup),
        "quantised-layer inputs": quantised_input_bytes(shape, setup),
        "attention scores": attention_score_bytes(shape, setup),
        "autocast weight copies": autocast_copy_bytes(run, shape, setup),
        "adapter matrices": adapter_matrix_bytes(run, shape, setup.grad_checkpointing, setup.layer_share, adapter),
        "gathered layers": gathered_layer_bytes(shape, setup),
    }


def activation_factor(run: BenchmarkRun, mode: str) -> float | None:
    """``a_run``: the value that makes the model reproduce the run's measured figure on its own setup.

    The optimizer step is left out: on every stored run its temporaries are smaller than the backward pass's
    transients (an adapter's are tiny; the full fine-tuning run's bf16 moment copy, 6 GiB, is half its
    activations), so its term is zero there."""
    figure = measured(run, mode)
    if figure is None:
        return None
    shape, setup = benchmark_of(run)
    setup = replace(setup, mode=mode)
    rest = sum(fixed_bytes(run, shape, setup).values())
    if setup.grad_checkpointing:  # solve activation_bytes(a) = figure - rest for a
        checkpoints = setup.tokens * shape.layers * checkpoint_bytes_per_token_layer(shape, setup)
        return (figure - rest - checkpoints) * shape.layers / activation_unit(shape, setup)
    return (figure - rest) / activation_unit(shape, setup)


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
    transients = sum(terms[key] for key in TRANSIENT_TERMS)
    terms["optimizer step"] = max(0.0, optimizer_step_bytes(run, shape, setup, adapter) - transients)
    always = ("base weights", "trainable + grads + optimizer", "activations", "logits" if shape.vocab else "")
    ordered = {key: terms[key] for key in TERMS if terms[key] > 0 or key in always}
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
