"""How the user will train: every setting besides the model and the method that decides training memory.

One frozen value, validated in one place, so the CLI, the Space and the trial build the same thing and a
wrong combination (``--gpus 0``, a sharding on one GPU, ``--offload`` without a sharded optimizer) is one
line and exit 2 wherever it comes from.

Precision has two knobs because PyTorch has two ways to train in half precision: ``--dtype bf16`` holds the
weights in bf16 and computes in bf16; ``--amp bf16`` holds them in fp32 and lets autocast compute in bf16
(the weights cost 4 bytes each, and autocast keeps a half-precision copy of the weights it uses).
"""

from __future__ import annotations

from dataclasses import dataclass

from advisor.errors import UserError
from advisor.vocabulary import (
    AMP_CHOICES,
    ATTENTION_CHOICES,
    MEMORY_MODES,
    OFFLOAD_CHOICES,
    OPTIMIZERS,
    QUANTIZATION,
    SHARDING_CHOICES,
)

DTYPE_BYTES = {"bf16": 2, "fp16": 2, "fp32": 4}


@dataclass(frozen=True)
class MemorySetup:
    """The training setup; defaults are PEFT's MetaMathQA benchmark setup (one GPU, bf16, SDPA, AdamW)."""

    batch_size: int = 4  # sequences per step on each GPU
    seq_len: int = 768
    dtype: str = "bf16"  # the weights' dtype (and the compute dtype unless ``amp``)
    quant: str = "none"
    grad_checkpointing: bool = False
    optimizer: str = "adamw"
    mode: str = "peak"  # peak: calibrated on accelerator_memory_max; train: on the 99th percentile
    attention: str = "sdpa"
    amp: str | None = None  # fp16 | bf16: autocast over fp32 weights
    gpus: int = 1
    sharding: str = "none"  # none (one GPU) | ddp | fsdp | zero2 | zero3
    offload: str = "none"  # cpu: optimizer states (and, for fsdp/zero3, parameters and gradients) in CPU memory
    resolution: int | None = None  # image models: pixels a side; seq_len is then image + prompt tokens

    @property
    def tokens(self) -> int:
        """Tokens on one GPU in one step: what its activations scale with."""
        return self.batch_size * self.seq_len

    @property
    def compute_dtype(self) -> str:
        return self.amp or self.dtype

    @property
    def weight_bytes(self) -> int:
        return DTYPE_BYTES[self.dtype]

    @property
    def activation_bytes(self) -> int:
        return DTYPE_BYTES[self.compute_dtype]

    @property
    def upcasts_rest(self) -> bool:
        """PEFT's ``prepare_model_for_kbit_training`` casts a quantised model's other parameters to fp32."""
        return QUANTIZATION[self.quant].upcasts_rest

    @property
    def shards_params(self) -> bool:
        return self.sharding in ("fsdp", "zero3")

    @property
    def shards_optimizer(self) -> bool:
        return self.sharding in ("fsdp", "zero2", "zero3")

    @property
    def layer_share(self) -> float:
        """The fraction of the block stack (its weights, adapters, activations) on one GPU: 1/N under naive model
        parallelism, where each GPU holds consecutive layers and the batch passes through them in turn."""
        return 1 / self.gpus if self.sharding == "mp" else 1.0

    def describe(self) -> str:
        quant = QUANTIZATION[self.quant].label.format(dtype=self.compute_dtype)
        if self.amp:
            quant = f"fp32 weights, {self.amp} autocast" if self.quant == "none" else quant
        checkpointing = "gradient checkpointing" if self.grad_checkpointing else "no gradient checkpointing"
        length = f"{self.resolution} px ({self.seq_len} tokens)" if self.resolution else f"seq {self.seq_len}"
        parts = [quant, f"batch {self.batch_size}", length, checkpointing, self.optimizer]
        if self.attention != "sdpa":
            parts.append(f"{self.attention} attention")
        if self.sharding == "mp":
            parts.append(f"{self.gpus} GPUs, mp (layers split across them; figure for the last GPU)")
        elif self.gpus > 1:
            offload = ", optimizer offloaded to CPU" if self.offload == "cpu" else ""
            parts.append(f"{self.gpus} GPUs, {self.sharding}{offload} (per-GPU figure, batch per GPU)")
        return ", ".join(parts)


def validate_setup(setup: MemorySetup) -> None:
    """One line per mistake, naming the flag and what to pass instead."""
    if setup.resolution is not None and setup.resolution < 16:
        raise UserError(f"--resolution must be at least 16 pixels (got {setup.resolution})")
    if setup.batch_size < 1 or setup.seq_len < 1:
        raise UserError(f"--batch-size and --seq-len must be at least 1 (got {setup.batch_size}, {setup.seq_len})")
    _choice("--dtype", setup.dtype, tuple(DTYPE_BYTES))
    _choice("--quant", setup.quant, tuple(QUANTIZATION))
    _choice("--optimizer", setup.optimizer, tuple(OPTIMIZERS))
    _choice("--memory", setup.mode, MEMORY_MODES)
    _choice("--attention", setup.attention, ATTENTION_CHOICES)
    _choice("--offload", setup.offload, OFFLOAD_CHOICES)
    if setup.amp is not None:
        _choice("--amp", setup.amp, AMP_CHOICES)
        if setup.dtype != "fp32":
            raise UserError(
                f"--amp {setup.amp} trains fp32 weights under autocast; drop --dtype {setup.dtype} (or pass --dtype "
                f"fp32), or drop --amp to hold the weights in {setup.dtype}"
            )
    if setup.gpus < 1:
        raise UserError(f"--gpus must be at least 1 (got {setup.gpus})")
    if setup.sharding != "none":
        _choice("--sharding", setup.sharding, SHARDING_CHOICES)
        if setup.gpus < 2:
            raise UserError(
                f"--sharding {setup.sharding} splits work across several GPUs; "
                "pass --gpus 2 or more, or drop --sharding"
            )
    elif setup.gpus > 1:
        raise UserError("--gpus above 1 needs --sharding ddp|fsdp|zero2|zero3 (how the GPUs share the model)")
    if setup.offload == "cpu" and not setup.shards_optimizer:
        raise UserError("--offload cpu needs a sharded optimizer: pass --sharding fsdp, zero2 or zero3 with --gpus 2+")


def _choice(flag: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise UserError(f"{flag} must be one of {', '.join(allowed)} (got {value!r})")
