"""An image model's denoiser as a shape the memory model can carry PEFT's image runs to.

PEFT's image benchmark trains FLUX.2-klein's transformer, a diffusion transformer (DiT): a stack of blocks
over a sequence of latent-patch tokens joined by the prompt's tokens. Its training memory has the same
terms as a language model's (weights, trainable state, per-token per-block activations) minus the logits,
so a DiT maps onto :class:`ModelShape` with ``kind="dit"``: layers = double + single blocks, hidden =
heads × head dim, MLP width = hidden × mlp_ratio, and a step's tokens are the image's latent patches
(``resolution / pixels_per_token`` per side) plus the prompt's tokens.

A UNet (SD 1.5, SD 2, SDXL: ``UNet2DConditionModel``) is read as its resolution stages
(:mod:`advisor.memory.unet`): what each ResNet and transformer layer saves was counted on diffusers' own
blocks, and the same runs' calibration is carried to it through those counts.

Read from a diffusers layout: a pipeline folder (``model_index.json`` and ``transformer/`` or ``unet/``), the
component folder itself, or a Hub repo (configs through the HF cache; the parameter count from the
safetensors headers by range requests, no weights).

No torch: this runs on the recommend path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from advisor.errors import UserError
from advisor.memory.prequantized import logical_shapes, read_bnb_shapes
from advisor.memory.shapes import ModelShape, read_json_object, saved_storage, with_saved_quant
from advisor.memory.unet import CLIP_TOKENS, FF_MULT, VAE_SCALE, module_count, unet_stages

# Prompt tokens the pipelines pad to (their max_sequence_length): FLUX.1/FLUX.2 512; SD3's CLIP 77 + T5 256.
TEXT_TOKENS = {"Flux": 512, "Flux2": 512, "SD3": 333}
DEFAULT_MLP_RATIO = 4.0  # FLUX.1 and SD3 hard-code 4; FLUX.2's config states its own (3.0)

# PEFT's image benchmark model: black-forest-labs/FLUX.2-klein-base-4B's transformer (5 double + 20 single
# blocks, 24 heads × 128, mlp_ratio 3, 128-channel latents at 1/16 of the image side); parameters as the
# full fine-tuning run reports them.
IMAGE_BENCHMARK_SHAPE = ModelShape(
    name="black-forest-labs/FLUX.2-klein-base-4B",
    architecture="Flux2Transformer2DModel",
    hidden=3072,
    intermediate=9216,
    layers=25,
    heads=24,
    kv_heads=24,
    head_dim=128,
    vocab=0,
    tied_embeddings=True,
    total_params=3_875_544_576,
    params_source="PEFT benchmark (num_trainable_params of the full fine-tuning run)",
    dtype="bfloat16",
    kind="dit",
    pixels_per_token=16,
    text_tokens=512,
)


def image_tokens(shape: ModelShape, resolution: int) -> int:
    """Latent-patch tokens of one square image at ``resolution`` pixels a side."""
    side = max(1, resolution // shape.pixels_per_token)
    return side * side


def read_denoiser_shape(model: str, revision: str | None = None) -> tuple[ModelShape, dict[str, tuple[int, ...]]]:
    """The denoiser of a local diffusers folder or a Hub repo, with its tensors' shapes (from the headers)."""
    path = Path(model).expanduser()
    if path.is_dir():
        folder = _component_folder(path, model)
        config = read_json_object(folder / "config.json", model)
        from advisor.safetensors_headers import folder_tensors

        entries = folder_tensors(folder)
        quant = saved_storage(config, model)
        stored = {name: entry.shape for name, entry in entries.items()}
        bnb_shapes = read_bnb_shapes(entries) if quant == "4bit" else None
        tensors, params, notes = logical_shapes(stored, quant, bnb_shapes)
        shape = denoiser_shape(config, model, params or None, "safetensors headers", tensors)
        return with_saved_quant(shape, quant, notes), tensors
    if path.exists():
        raise UserError(f"--model {model} is a file; pass the pipeline's folder (with model_index.json) or a Hub id")
    return _hub_denoiser(model, revision)


def denoiser_shape(
    config: dict[str, Any], name: str, params: int | None, params_source: str, tensors: dict | None = None
) -> ModelShape:
    """A denoiser's shape from its diffusers config (a DiT, or a UNet's stages); configs without headers are
    refused with the reason."""
    cls = str(config.get("_class_name") or "")
    if "UNet" in cls:
        return unet_shape(config, name, params, params_source)
    layers = int(config.get("num_layers") or 0) + int(config.get("num_single_layers") or 0)
    heads, head_dim = config.get("num_attention_heads"), config.get("attention_head_dim")
    if not layers or not isinstance(heads, int) or not isinstance(head_dim, int):
        raise UserError(
            f"--model {name}: {cls or 'its denoiser'} is not a diffusion transformer the memory model reads "
            "(its config lacks num_layers, num_attention_heads or attention_head_dim)"
        )
    if not params:
        raise UserError(
            f"--model {name}: no safetensors files for its transformer; the memory model counts a diffusion "
            "model's parameters from their headers (pass the pipeline folder with its weights, or go online)"
        )
    assumptions = []
    ratio = config.get("mlp_ratio")
    if not isinstance(ratio, (int, float)):
        ratio = DEFAULT_MLP_RATIO
        assumptions.append(f"mlp_ratio not in the config: {DEFAULT_MLP_RATIO:g} as diffusers' {cls or 'DiT'} uses")
    patch = int(config.get("patch_size") or 1)
    packed = patch == 1 and int(config.get("in_channels") or 0) >= 64  # FLUX packs 2×2 latent patches itself
    pixels = 16 if packed else 8 * patch
    family = "Flux2" if cls.startswith("Flux2") else "Flux" if cls.startswith("Flux") else "SD3" if "SD3" in cls else ""
    text = TEXT_TOKENS.get(family, 256)
    if not family:
        assumptions.append("prompt length not known for this pipeline: 256 text tokens assumed (--seq-len sets it)")
        assumptions.append(
            f"{cls or 'this diffusion transformer'} is not FLUX or SD3: its blocks are priced as FLUX.2-klein's of the "
            f"same widths, and a latent token as {pixels}×{pixels} px (an 8× VAE and {patch}×{patch} patches; a VAE "
            "that compresses more, as SANA's does, makes fewer tokens)"
        )
    hidden = heads * head_dim
    return ModelShape(
        name, cls or None, hidden, int(hidden * ratio), layers, heads, heads, head_dim, 0, True, params,
        params_source, None, tuple(assumptions), kind="dit", pixels_per_token=pixels, text_tokens=text,
    )  # fmt: skip


def unet_shape(config: dict[str, Any], name: str, params: int | None, params_source: str) -> ModelShape:
    """A ``UNet2DConditionModel`` (SD 1.5, SD 2, SDXL) as its resolution stages; other UNets are refused."""
    cls = str(config.get("_class_name") or "")
    if cls != "UNet2DConditionModel":
        raise UserError(
            f"--model {name}: {cls} is not a UNet2DConditionModel (SD 1.5, SD 2, SDXL), the one UNet layout the "
            "memory model reads"
        )
    if not params:
        raise UserError(
            f"--model {name}: no safetensors files for its unet; the memory model counts a diffusion model's "
            "parameters from their headers (pass the pipeline folder with its weights, or go online)"
        )
    stages = unet_stages(config)
    widest = max(stages, key=lambda s: s.channels)
    assumptions = (
        f"latents at 1/{VAE_SCALE} of the image side (the SD/SDXL VAE); {CLIP_TOKENS} prompt tokens (CLIP)",
        "PEFT's FLUX.2 runs carried to a UNet through what each of its blocks saves (advisor.memory.unet: counted "
        "with autograd on diffusers' ResNet and transformer blocks)",
    )
    return ModelShape(
        name, cls, widest.channels, widest.channels * FF_MULT, module_count(stages), widest.heads, widest.heads,
        widest.channels // max(1, widest.heads), 0, True, params, params_source, None, assumptions, kind="unet",
        pixels_per_token=VAE_SCALE, text_tokens=CLIP_TOKENS, stages=stages,
    )  # fmt: skip


def _component_folder(path: Path, model: str) -> Path:
    """``transformer/`` of a pipeline folder, or the folder itself when it is the component."""
    if (path / "model_index.json").is_file():
        index = read_json_object(path / "model_index.json", model)
        for component in ("transformer", "unet", "prior"):
            if component in index and (path / component / "config.json").is_file():
                return path / component
        raise UserError(f"--model {model}: its model_index.json names no transformer or unet folder with a config")
    if (path / "config.json").is_file():
        return path
    raise UserError(f"--model {model}: neither a diffusers pipeline (model_index.json) nor a component folder")


def _hub_denoiser(repo_id: str, revision: str | None) -> tuple[ModelShape, dict[str, tuple[int, ...]]]:
    try:
        from huggingface_hub import HfApi, hf_hub_download
    except ImportError:
        raise UserError(
            f"--model {repo_id}: reading a Hub model needs huggingface_hub (pip install 'peft-advisor[scan]')"
        ) from None
    from advisor.hub_access import hub_errors

    with hub_errors(f"{repo_id}'s model_index.json (no local folder of that name either)"):
        index = read_json_object(Path(hf_hub_download(repo_id, "model_index.json", revision=revision)), repo_id)
    component = next((c for c in ("transformer", "unet") if c in index), None)
    if component is None:
        raise UserError(f"--model {repo_id}: its model_index.json names no transformer or unet")
    with hub_errors(f"{repo_id}'s {component}/config.json"):
        config = read_json_object(
            Path(hf_hub_download(repo_id, f"{component}/config.json", revision=revision)), repo_id
        )
    quant = saved_storage(config, repo_id)
    tensors: dict[str, tuple[int, ...]] = {}
    try:
        api = HfApi()
        files = [
            f
            for f in api.list_repo_files(repo_id, revision=revision)
            if f.startswith(component + "/") and f.endswith(".safetensors")
        ]
        for filename in files:
            metadata = api.parse_safetensors_file_metadata(repo_id, filename, revision=revision)
            tensors.update({name: tuple(info.shape) for name, info in metadata.tensors.items()})
    except Exception:  # offline or an old endpoint: refused below, with the reason
        tensors = {}
    tensors, params, notes = logical_shapes(tensors, quant)  # packed storage counted as the weights it holds
    shape = denoiser_shape(config, repo_id, params or None, "Hub safetensors metadata", tensors)
    return with_saved_quant(shape, quant, notes), tensors
