"""From the user's setup flags (CLI options, Space widgets) to a :class:`MemoryRequest`, in one place.

Unset flags keep the benchmark's own values; no flag at all means no request, and the recommender
shows the measured figures as stored.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from advisor.errors import UserError
from advisor.memory.model import BENCHMARK_SETUP, BENCHMARK_SHAPE, IMAGE_BENCHMARK_SETUP, MemoryRequest
from advisor.memory.setup import MemorySetup, validate_setup
from advisor.memory.shapes import ModelShape, read_shape_and_tensors
from advisor.memory.user_adapter import UserAdapter, from_adapter_config, shortcut_lora


def memory_request(
    model: str | None = None,
    *,
    quant: str | None = None,
    dtype: str | None = None,
    batch_size: int | None = None,
    seq_len: int | None = None,
    grad_checkpointing: bool | None = None,
    optimizer: str | None = None,
    mode: str | None = None,
    force: bool = False,
    adapter_config: Path | None = None,
    lora_r: int | None = None,
    target_modules: str | None = None,
    use_dora: bool = False,
    attention: str | None = None,
    amp: str | None = None,
    gpus: int | None = None,
    sharding: str | None = None,
    offload: str | None = None,
    domain: str = "llm",
    resolution: int | None = None,
) -> MemoryRequest | None:
    """None when nothing differs from the benchmark (unless ``force``); else the validated request.

    ``gpus`` above 1 without a ``sharding`` means plain data parallelism (ddp); ``amp`` holds the weights in
    fp32 unless ``dtype`` says otherwise (which :func:`validate_setup` refuses). ``domain`` is the task's:
    for ``image`` the model is a diffusion transformer, ``resolution`` sets the image tokens and ``seq_len``
    the prompt tokens, and unset flags keep the image benchmark's setup (batch 2, 512 px, checkpointing).
    """
    model = (model or "").strip() or None
    flags = (model, quant, dtype, batch_size, seq_len, grad_checkpointing, optimizer, mode, adapter_config, lora_r)
    setup_flags = (attention, amp, gpus, sharding, offload, resolution)
    if all(flag is None for flag in flags + setup_flags) and not force:
        return None
    if resolution is not None and domain != "image":
        raise UserError("--resolution is for image models (--task image); a language model's length is --seq-len")
    image = domain == "image"
    base = IMAGE_BENCHMARK_SETUP if image else BENCHMARK_SETUP
    gpus = base.gpus if gpus is None else gpus
    sharding = (sharding or "").strip().lower() or ("ddp" if gpus > 1 else "none")
    amp = (amp or "").strip().lower() or None
    setup = MemorySetup(
        batch_size=base.batch_size if batch_size is None else batch_size,
        seq_len=base.seq_len if seq_len is None else seq_len,  # an image model's: the prompt tokens, for now
        dtype=(dtype or ("fp32" if amp else base.dtype)).lower(),
        quant=(quant or base.quant).lower(),
        grad_checkpointing=base.grad_checkpointing if grad_checkpointing is None else grad_checkpointing,
        optimizer=(optimizer or base.optimizer).lower(),
        mode=(mode or base.mode).lower(),
        attention=(attention or base.attention).strip().lower(),
        amp=amp,
        gpus=gpus,
        sharding=sharding,
        offload=(offload or base.offload).strip().lower(),
        resolution=(base.resolution if resolution is None else resolution) if image else None,
    )
    validate_setup(setup)  # every flag checked before any file or the Hub is read
    shape, tensors = _read_model(model, domain)
    if shape.checkpoint_quant and setup.quant != shape.checkpoint_quant:
        if quant is not None:  # the checkpoint decides how the base loads; a contrary flag is a mistake
            raise UserError(
                f"--quant {setup.quant}: {model} is saved quantised and loads as --quant {shape.checkpoint_quant}; "
                f"drop --quant, or pass the unquantised original with --model"
            )
        setup = replace(setup, quant=shape.checkpoint_quant)
        validate_setup(setup)
    if not shape.sdpa:  # transformers has no SDPA path for this model: eager is its default
        if setup.attention == "sdpa" and attention:
            raise UserError(
                f"--attention sdpa: transformers has no SDPA path for {shape.architecture or shape.name} (its class "
                "says _supports_sdpa = False); use --attention eager (its default) or flash (FlashAttention-2)"
            )
        if not attention:
            setup = replace(setup, attention="eager")
    if shape.kind == "unet" and setup.quant != "none":
        raise UserError(
            f"--quant {setup.quant} on a UNet: quantisers convert its linear layers and leave its convolutions, "
            "a split the memory model does not make for UNets; drop --quant"
        )
    if image:  # a step's tokens: the latent patches at the resolution, plus the prompt's
        from advisor.memory.denoiser import image_tokens

        prompt = shape.text_tokens if seq_len is None else seq_len
        setup = replace(setup, seq_len=image_tokens(shape, setup.resolution or 512) + prompt)
    adapter = user_adapter(model, shape, tensors, adapter_config, lora_r, target_modules, use_dora)
    return MemoryRequest(shape, setup, model_given=model is not None, adapter=adapter)


def task_domain(task: str) -> str:
    """ "llm" or "image": the domain of the benchmark that answers for ``task`` (what kind of model it trains)."""
    from advisor.benchmarks.definitions import BENCHMARKS
    from advisor.vocabulary import resolve_task

    return BENCHMARKS[resolve_task(task).benchmark].domain


def _read_model(model: str | None, domain: str) -> tuple[ModelShape, dict[str, tuple[int, ...]] | None]:
    """The user's model for the task's domain; a language model for an image task (or back) is refused."""
    if domain == "image":
        from advisor.memory.denoiser import IMAGE_BENCHMARK_SHAPE, read_denoiser_shape

        return read_denoiser_shape(model) if model else (IMAGE_BENCHMARK_SHAPE, None)
    if model and (Path(model).expanduser() / "model_index.json").is_file():
        raise UserError(f"--model {model} is a diffusers pipeline: pass --task image for an image model")
    return read_shape_and_tensors(model) if model else (BENCHMARK_SHAPE, None)


def user_adapter(
    model: str | None,
    shape: ModelShape,
    tensors: dict[str, tuple[int, ...]] | None,
    adapter_config: Path | None,
    lora_r: int | None,
    target_modules: str | None,
    use_dora: bool,
) -> UserAdapter | None:
    """The user's adapter from ``--adapter-config`` or the LoRA shortcuts (not both), counted on their model."""
    if adapter_config is not None and (lora_r is not None or target_modules or use_dora):
        raise UserError("pass either --adapter-config or --lora-r/--target-modules/--use-dora, not both")
    if adapter_config is not None:
        return from_adapter_config(adapter_config, model, shape, tensors)
    if lora_r is None:
        if target_modules or use_dora:
            raise UserError("--target-modules and --use-dora describe a LoRA: pass --lora-r too (e.g. --lora-r 16)")
        return None
    if not target_modules:
        raise UserError("--lora-r needs --target-modules: layer names such as q_proj,v_proj, or all-linear")
    names = target_modules.strip()
    targets: list[str] | str = (
        "all-linear" if names == "all-linear" else [t.strip() for t in names.split(",") if t.strip()]
    )
    return shortcut_lora(model, shape, tensors, lora_r, targets, use_dora=use_dora)
