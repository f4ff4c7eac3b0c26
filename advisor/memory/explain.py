"""What a memory prediction assumed, in words: printed by ``--explain`` and listed in ``--json``.

A prediction is only as good as its assumptions, and the ones that matter differ by setup (a 4-bit base,
eager attention, several GPUs), so they are derived from the request rather than written once in the docs.
"""

from __future__ import annotations

from advisor.benchmarks.records import GIB
from advisor.memory.model import MemoryRequest, unsharded_weight_bytes
from advisor.memory.setup import MemorySetup
from advisor.memory.shapes import ModelShape
from advisor.vocabulary import OPTIMIZERS, QUANTIZATION


def setup_assumptions(request: MemoryRequest) -> list[str]:
    """Every assumption behind the prediction for this model and setup, the model's own first."""
    shape, setup = request.shape, request.setup
    lines = list(shape.assumptions)
    lines.append(
        "every sequence is --seq-len tokens long (the worst step)"
        if setup.mode == "peak"
        else "a 99th-percentile step (calibrated on the stored p99 figures)"
    )
    lines.append(
        "the figure is PyTorch's reserved memory at that step, as PEFT's benchmark records it; on data whose lengths "
        "vary under --seq-len, a long run that never empties "
        "the cache can show more in torch.cuda.max_memory_reserved or nvidia-smi (blocks cut for earlier lengths "
        "stay cached; how much depends on the order of the lengths, not on the setup: benchmarks/allocator_growth.py), "
        "which PyTorch frees before it runs out; PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True keeps them from "
        "piling up"
    )
    if shape.kind == "unet":
        from advisor.memory.unet import latent_side

        side = latent_side(setup.resolution or 512)
        sides = sorted({max(1, side // s.scale) for s in shape.stages}, reverse=True)
        lines.append(
            f"a {side}×{side} latent per image ({setup.resolution} px / {shape.pixels_per_token}), run at "
            + ", ".join(f"{n}×{n}" for n in sides)
            + f" by {len(shape.stages)} blocks: {shape.layers} ResNets and transformer layers, each checkpointed "
            "on its own under gradient checkpointing (diffusers' UNet)"
        )
    if shape.kind == "dit":
        from advisor.memory.denoiser import image_tokens

        image = image_tokens(shape, setup.resolution or 512)
        lines.append(
            f"a step's tokens per image: {image} latent patches ({setup.resolution} px / {shape.pixels_per_token} px "
            f"per token, squared) + the prompt's tokens, {setup.seq_len} in all"
        )
    if shape.is_denoiser:
        lines.append(
            "only the denoiser is resident: prompts are encoded beforehand and the text encoder is off the GPU, as "
            "in PEFT's image benchmark; the VAE (a few hundred MiB) is not counted"
        )
    else:
        lines.append(_layer_physics(shape))
        lines.append(
            "the loss holds the whole batch × seq × vocabulary logits (frameworks that chunk the loss, such as "
            "Liger kernels or Unsloth, need less: not modelled)"
        )
    lines += _quantisation(request)
    lines.append(_attention(setup))
    if setup.attention == "eager" and not shape.sdpa:
        lines.append(
            f"{shape.architecture or shape.name} has no SDPA path in transformers (_supports_sdpa = False), so eager "
            "attention is its default unless --attention says otherwise (--attention flash with FlashAttention-2)"
        )
    if shape.logit_softcap or shape.attention_softcap:
        capped = " and ".join(
            w for w, on in (("final logits", shape.logit_softcap), ("attention scores", shape.attention_softcap)) if on
        )
        lines.append(f"softcapping of the {capped}: tanh keeps one more half-precision tensor of each for backward")
    if setup.amp:
        lines.append(
            f"--amp {setup.amp}: fp32 weights; autocast computes in {setup.amp} and keeps the half copy of each "
            "weight a matmul used until backward"
        )
    lines.append(f"optimizer: {OPTIMIZERS[setup.optimizer].description}")
    if shape.experts > 1:
        lines.append(
            f"mixture of experts: all {shape.experts} experts per layer are held; each token's activations span "
            f"its top-{shape.active_experts} experts (MLP width {shape.active_mlp} per token)"
        )
    lines += _parallel(setup)
    if request.adapter is not None:
        lines.append(f"your adapter: {request.adapter.description} ({request.adapter.counted_by})")
        lines.append(
            f"the matrices your method builds per adapted layer ('adapter matrices'): {request.adapter.matrices_from}, "
            "on the layers it targets"
            if request.adapter.matrices is not None
            else "the matrices a method builds per adapted layer ('adapter matrices': HRA, BOFT, LoHa, OSF, ...) are "
            "counted for the stored run's configuration (its rank, block sizes and target names), not your adapter's"
        )
    return lines


def _quantisation(request: MemoryRequest) -> list[str]:
    setup = request.setup
    quant = QUANTIZATION[setup.quant]
    if quant.bits is None:
        return []
    lines = [f"{quant.label.format(dtype=setup.compute_dtype)}: {quant.bits:g} bits per linear weight"]
    if quant.upcasts_rest and request.shape.kind == "lm":
        rest = request.shape.embedding_params
        lines.append(
            "PEFT's prepare_model_for_kbit_training casts the unquantised parameters (embeddings, head, norms) "
            f"to fp32 ({rest * 4 / GIB:.2f} GiB for {rest:,} embedding/head parameters), so the head's logits and "
            "the checkpointed residual stream are fp32 too"
        )
    elif not quant.upcasts_rest:
        lines.append("GPTQ: prepare_model_for_kbit_training leaves the unquantised parameters at their dtype")
    whole = unsharded_weight_bytes(request.shape, setup)
    lines.append(f"quantised base: {whole / GIB:.2f} GiB in all on one device")
    return lines


def _layer_physics(shape: ModelShape) -> str:
    from advisor.memory.layer_physics import counted, layer_bytes, layer_width

    kind = shape.model_type or "this architecture"
    if not counted(shape.model_type):
        return f"{kind} layers counted as Llama layers of the same widths (not in benchmarks/layer_physics.py's table)"
    ratio = layer_width(shape) / (shape.hidden + shape.active_mlp)
    per_token = layer_bytes(shape) / 1024
    return (
        f"a {kind} layer keeps {per_token:.0f} KiB per token for backward (autograd counts on tiny {kind} models, "
        f"benchmarks/layer_physics.py): {ratio:.2f}× a Llama layer of its widths, and the runs' activations scale so"
    )


def _attention(setup: MemorySetup) -> str:
    if setup.attention == "eager":
        scope = "one recomputed layer's (gradient checkpointing)" if setup.grad_checkpointing else "every layer's"
        return f"eager attention: {scope} batch × heads × seq² scores are kept (fp32 softmax output and its cast)"
    return f"{setup.attention} attention: fused kernels, no seq² scores kept"


def _parallel(setup: MemorySetup) -> list[str]:
    if setup.gpus == 1:
        return ["one GPU"]
    if setup.sharding == "mp":
        return [
            f"{setup.gpus} GPUs in naive model parallelism (device_map='auto'): each holds 1/{setup.gpus} of the "
            "layers (their weights, adapters, activations) and computes in turn; the figure is the last GPU's, which "
            "also holds the head and the whole batch's logits (the first holds the embeddings instead)"
        ]
    what = {
        "ddp": "every GPU holds the whole model and a second copy of the gradients (DDP's all-reduce buckets)",
        "zero2": "ZeRO-2: gradients and optimizer states split across the GPUs, weights whole on each",
        "zero3": "ZeRO-3: weights, gradients and optimizer states split; two layers gathered in full at a time",
        "fsdp": "FSDP full sharding: weights, gradients and optimizer states split; two layers gathered at a time, and "
        "the root unit (embeddings, head) whole from forward to the end of backward",
    }[setup.sharding]
    lines = [f"{setup.gpus} GPUs, figures per GPU, --batch-size per GPU; {what}"]
    if setup.offload == "cpu":
        moved = "weights, gradients and optimizer states" if setup.shards_params else "optimizer states"
        lines.append(f"--offload cpu: {moved} live in CPU memory")
    lines.append("communication buckets and NCCL buffers are not counted (a few hundred MiB per GPU)")
    return lines
