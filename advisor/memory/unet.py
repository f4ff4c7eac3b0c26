"""A diffusers UNet (SD 1.5, SD 2, SDXL) as resolution stages the memory model can sum over.

A UNet is not a stack of equal layers: its ResNet blocks and transformer layers run at 1, 1/2, 1/4, 1/8 of the
latent's side with different channel counts, so its activations are a sum over those stages, not
``tokens × layers × width``. :func:`unet_stages` follows ``UNet2DConditionModel.__init__`` (down blocks, the mid
block, up blocks with their skip concatenations) and lists, per stage, its channels, its transformer layers and
the channels its ResNets read and write.

What backward keeps per module was counted with autograd on diffusers' own blocks (saved-tensor hooks, bf16,
``tests/test_memory_physics.py`` holds the counts to these constants):

- a ResNet block: 3 vectors of (in + out channels) per latent pixel (GroupNorm input, SiLU input, conv input
  on each side; the frozen convolutions keep nothing else);
- a transformer layer (self-attention, cross-attention, GEGLU feed-forward, LoRA on the attention):
  ~6.9 vectors of (C + 4C) per pixel, where FLUX.2-klein's blocks under PEFT's benchmark LoRA keep ~6.3 of
  (hidden + MLP) per token (5 double blocks at 9.0, 20 single at 5.6);
- a Transformer2DModel's own GroupNorm and projections: ~1 vector of C per pixel.

The image runs' calibration (``a_run``: peak bytes per saved vector, in units of one DiT block's
hidden + MLP width) is carried to a UNet through those counts: a UNet transformer layer is
``UNET_LAYER_VECTORS / DIT_BLOCK_VECTORS`` of a DiT block per (C + 4C), a ResNet ``UNET_RESNET_VECTORS /
DIT_BLOCK_VECTORS`` per (in + out). Gradient checkpointing in diffusers' UNet wraps each ResNet and each
transformer layer: their inputs stay, the wrappers and samplers are kept as they are, and one module is
recomputed at a time.

No torch: this runs on the recommend path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from advisor.errors import UserError

DIT_BLOCK_VECTORS = 6.27  # FLUX.2-klein: (5 × 9.0 + 20 × 5.59) / 25 per (hidden + MLP) per token
UNET_LAYER_VECTORS = 6.9  # a BasicTransformerBlock per (C + 4C) per pixel
UNET_RESNET_VECTORS = 3.0  # a ResnetBlock2D per (in + out channels) per pixel
UNET_WRAPPER_VECTORS = 1.0  # a Transformer2DModel's norm and projections per C per pixel (beyond its layers')
UNET_WRAPPER_GC_VECTORS = 3.0  # the same under checkpointing, where nothing is shared with a layer's saves
UNET_SAMPLER_VECTORS = 1.0  # a down/upsampler per C per pixel at the higher of its two resolutions
UNET_HEAD_VECTORS = 3.0  # conv_norm_out, its SiLU and conv_out per C per full-resolution latent pixel
FF_MULT = 4  # diffusers' BasicTransformerBlock feed-forward: GEGLU to 4 × C
VAE_SCALE = 8  # latent pixels per image pixel, per side (the SD / SDXL VAE)
CLIP_TOKENS = 77


@dataclass(frozen=True)
class UNetStage:
    """One block of the UNet (a down block, the mid block or an up block) at one resolution."""

    name: str  # "down.0", "mid", "up.2"
    scale: int  # the latent's side divided by this
    channels: int  # the block's output channels (its transformer layers' width)
    transformer_layers: int  # BasicTransformerBlocks in all its Transformer2DModels
    wrappers: int  # Transformer2DModels
    resnet_in: tuple[int, ...]  # each ResNet's input channels (an up block's include the skip it concatenates)
    heads: int  # attention heads of its transformer layers
    sampler: int = 0  # pixels of its down/upsampler's larger side, relative to this stage's (0: none)

    @property
    def resnet_channels(self) -> int:
        """Σ (in + out) over its ResNets."""
        return sum(self.resnet_in) + len(self.resnet_in) * self.channels


def _per_block(value: Any, blocks: int, name: str) -> list[int]:
    if isinstance(value, int):
        return [value] * blocks
    if isinstance(value, (list, tuple)) and len(value) == blocks and all(isinstance(v, int) for v in value):
        return list(value)
    raise UserError(f"the UNet config's {name} ({value!r}) is neither a number nor one per block ({blocks})")


def _nested_layers(value: Any, blocks: int) -> list[int]:
    """transformer_layers_per_block: one number, one per block, or (rarely) one list per block."""
    if isinstance(value, (list, tuple)) and len(value) == blocks and all(isinstance(v, (list, tuple)) for v in value):
        return [int(v[0]) if v else 1 for v in value]
    return _per_block(value, blocks, "transformer_layers_per_block")


def unet_stages(config: dict[str, Any]) -> tuple[UNetStage, ...]:
    """The stages of a ``UNet2DConditionModel`` config, in the order the forward pass runs them."""
    channels = config.get("block_out_channels")
    down_types = config.get("down_block_types")
    up_types = config.get("up_block_types")
    if not isinstance(channels, (list, tuple)) or not isinstance(down_types, (list, tuple)) or not up_types:
        raise UserError("the UNet config lacks block_out_channels, down_block_types or up_block_types")
    n = len(channels)
    if len(down_types) != n or len(up_types) != n:
        raise UserError(
            f"the UNet config has {n} block_out_channels but {len(down_types)} down / {len(up_types)} up blocks"
        )
    layers = _per_block(config.get("layers_per_block", 2), n, "layers_per_block")
    transformer = _nested_layers(config.get("transformer_layers_per_block", 1), n)
    reverse = config.get("reverse_transformer_layers_per_block")
    up_transformer = _nested_layers(reverse, n) if reverse else list(reversed(transformer))
    heads = _per_block(
        config.get("num_attention_heads") or config.get("attention_head_dim") or 8, n, "attention_head_dim"
    )

    stages: list[UNetStage] = []
    out = int(channels[0])
    for i, kind in enumerate(down_types):
        inp, out = out, int(channels[i])
        cross = "CrossAttn" in kind
        stages.append(
            UNetStage(
                f"down.{i}", 2**i, out, transformer[i] * layers[i] if cross else 0, layers[i] if cross else 0,
                (inp,) + (out,) * (layers[i] - 1), heads[i], sampler=0 if i == n - 1 else 1,
            )
        )  # fmt: skip
    mid = config.get("mid_block_type", "UNetMidBlock2DCrossAttn")
    if mid:
        cross = "CrossAttn" in str(mid)
        stages.append(
            UNetStage("mid", 2 ** (n - 1), out, transformer[-1] if cross else 0, int(cross), (out, out), heads[-1])
        )
    rev_channels, rev_layers, rev_heads = list(reversed(channels)), list(reversed(layers)), list(reversed(heads))
    out = int(rev_channels[0])
    for i, kind in enumerate(up_types):
        prev, out = out, int(rev_channels[i])
        skip_from = int(rev_channels[min(i + 1, n - 1)])
        count = rev_layers[i] + 1
        ins = tuple(
            (prev if j == 0 else out) + (skip_from if j == count - 1 else out) for j in range(count)
        )  # each ResNet reads the previous output concatenated with a skip from the down path
        cross = "CrossAttn" in kind
        stages.append(
            UNetStage(f"up.{i}", 2 ** (n - 1 - i), out, up_transformer[i] * count if cross else 0,
                      count if cross else 0, ins, rev_heads[i], sampler=0 if i == n - 1 else 4)
        )  # fmt: skip
    return tuple(stages)


def latent_side(resolution: int) -> int:
    return max(1, resolution // VAE_SCALE)


def _pixels(stage: UNetStage, side: int) -> int:
    return max(1, side // stage.scale) ** 2


def module_count(stages: tuple[UNetStage, ...]) -> int:
    """ResNets plus transformer layers: the modules gradient checkpointing wraps one by one."""
    return sum(s.transformer_layers + len(s.resnet_in) for s in stages)


def adapter_width_sum(stages: tuple[UNetStage, ...]) -> int:
    """Σ over transformer layers of (C + 4C): what an adapter on its linear layers scales with, as a DiT's
    layers × (hidden + MLP)."""
    return sum(s.transformer_layers * s.channels * (1 + FF_MULT) for s in stages)


def activation_unit(stages: tuple[UNetStage, ...], batch: int, side: int, element_bytes: int) -> float:
    """Every module's saved vectors, in DiT-block units (what ``a_run`` multiplies)."""
    vectors = sum(_stage_vectors(s, side) for s in stages) + _fixed_vectors(stages, side)
    return batch * element_bytes * vectors / DIT_BLOCK_VECTORS


def _stage_vectors(stage: UNetStage, side: int) -> float:
    pixels = _pixels(stage, side)
    layer = UNET_LAYER_VECTORS * stage.transformer_layers * stage.channels * (1 + FF_MULT)
    resnets = UNET_RESNET_VECTORS * stage.resnet_channels
    return pixels * (layer + resnets)


def _fixed_vectors(stages: tuple[UNetStage, ...], side: int, wrapper: float = UNET_WRAPPER_VECTORS) -> float:
    """What no checkpoint wraps: the Transformer2DModels' norms and projections, the samplers, the output head."""
    wrappers = sum(
        _pixels(s, side) * s.channels * (wrapper * s.wrappers + UNET_SAMPLER_VECTORS * s.sampler) for s in stages
    )
    head = UNET_HEAD_VECTORS * side * side * stages[-1].channels if stages else 0
    return wrappers + head


def largest_module_unit(stages: tuple[UNetStage, ...], batch: int, side: int, element_bytes: int) -> float:
    """The one module gradient checkpointing recomputes at a time, at its largest, in DiT-block units."""
    largest = 0.0
    for s in stages:
        pixels = _pixels(s, side)
        if s.transformer_layers:
            largest = max(largest, pixels * UNET_LAYER_VECTORS * s.channels * (1 + FF_MULT))
        for inp in s.resnet_in:
            largest = max(largest, pixels * UNET_RESNET_VECTORS * (inp + s.channels))
    return batch * element_bytes * largest / DIT_BLOCK_VECTORS


def checkpointed_bytes(stages: tuple[UNetStage, ...], batch: int, side: int, element_bytes: int) -> float:
    """What stays under gradient checkpointing, besides the recomputed module: each ResNet's and transformer
    layer's input, and what diffusers does not checkpoint (wrappers, samplers, the output head)."""
    inputs = sum(_pixels(s, side) * (sum(s.resnet_in) + s.transformer_layers * s.channels) for s in stages)
    # the mid block runs its first ResNet outside any checkpoint: all its vectors stay, not only its input
    mid = sum(_pixels(s, side) * UNET_RESNET_VECTORS * s.channels * 2 for s in stages if s.name == "mid")
    return batch * element_bytes * (inputs + mid + _fixed_vectors(stages, side, UNET_WRAPPER_GC_VECTORS))


def score_elements(stages: tuple[UNetStage, ...], batch: int, side: int, text_tokens: int) -> tuple[float, float]:
    """Eager attention's scores: (all transformer layers', the largest one layer's), in elements."""
    total, largest = 0.0, 0.0
    for s in stages:
        if not s.transformer_layers:
            continue
        pixels = _pixels(s, side)
        per_layer = batch * s.heads * pixels * (pixels + text_tokens)  # self-attention and cross-attention
        total += per_layer * s.transformer_layers
        largest = max(largest, per_layer)
    return total, largest
