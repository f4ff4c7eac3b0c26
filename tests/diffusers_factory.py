"""Tiny Diffusers models in pipeline folders and OFT adapters on them, for the converter's tests and the
consumer check (benchmarks/consumers/diffusers_models.py)."""

from __future__ import annotations

import json
from pathlib import Path

import diffusers
from adapter_factory import save_trained

TINY_FLUX = {
    "patch_size": 1,
    "in_channels": 16,
    "num_layers": 1,
    "num_single_layers": 1,
    "attention_head_dim": 16,
    "num_attention_heads": 2,
    "joint_attention_dim": 32,
    "pooled_projection_dim": 32,
    "axes_dims_rope": (4, 6, 6),
}
TINY_SD3 = {
    "sample_size": 8,
    "patch_size": 2,
    "in_channels": 4,
    "num_layers": 1,
    "attention_head_dim": 8,
    "num_attention_heads": 2,
    "joint_attention_dim": 16,
    "caption_projection_dim": 16,
    "pooled_projection_dim": 16,
    "out_channels": 4,
}
TINY_UNET = {
    "block_out_channels": (8, 16),
    "layers_per_block": 1,
    "sample_size": 8,
    "in_channels": 4,
    "out_channels": 4,
    "down_block_types": ("CrossAttnDownBlock2D", "DownBlock2D"),
    "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D"),
    "cross_attention_dim": 16,
    "norm_num_groups": 4,
    "attention_head_dim": 4,
}
TINY_SDXL_UNET = {**TINY_UNET, "addition_embed_type": "text_time", "addition_time_embed_dim": 4,
                  "projection_class_embeddings_input_dim": 16 + 6 * 4}  # fmt: skip
# (pipeline class, component, model class, config, OFT block size fitting its attention width)
MODELS = {
    "flux": ("FluxPipeline", "transformer", "FluxTransformer2DModel", TINY_FLUX, 8),
    "sd3": ("StableDiffusion3Pipeline", "transformer", "SD3Transformer2DModel", TINY_SD3, 8),
    "sd15-unet": ("StableDiffusionPipeline", "unet", "UNet2DConditionModel", TINY_UNET, 4),
    "sdxl-unet": ("StableDiffusionXLPipeline", "unet", "UNet2DConditionModel", TINY_SDXL_UNET, 4),
}


def make_pipeline(root: Path, kind: str) -> Path:
    """A pipeline folder holding only the adapted component (that is all the converter reads)."""
    import torch

    pipeline, component, model_class, config, _ = MODELS[kind]
    torch.manual_seed(0)
    getattr(diffusers, model_class)(**config).save_pretrained(root / component)
    index = {"_class_name": pipeline, "_diffusers_version": diffusers.__version__}
    index[component] = ["diffusers", model_class]
    (root / "model_index.json").write_text(json.dumps(index))
    return root


def make_oft(pipeline: Path, kind: str, folder: Path) -> Path:
    import peft
    import torch

    _, component, model_class, _, block = MODELS[kind]
    torch.manual_seed(1)
    model = getattr(diffusers, model_class).from_pretrained(pipeline / component)
    config = peft.OFTConfig(r=0, oft_block_size=block, target_modules=["to_q", "to_k", "to_v", "to_out.0"])
    return save_trained(peft.get_peft_model(model, config), folder, None)


def served_by_diffusers(pipeline: Path, kind: str, adapter: Path, lora: Path) -> tuple[float, float]:
    """Diffusers' own ``load_lora_adapter(prefix=...)`` on a fresh component, against PEFT's OFT outputs on
    seeded inputs: (the adapter's effect ‖y_oft − y_bare‖, the served error ‖y_served − y_oft‖)."""
    import peft
    import torch

    from converters.diffusion import component_inputs

    _, component, model_class, _, _ = MODELS[kind]

    def load() -> object:
        return getattr(diffusers, model_class).from_pretrained(pipeline / component).eval()

    inputs = component_inputs(load(), 2, seed=7, batch_size=2, device="cpu")[0]
    with torch.no_grad():
        bare = load()(**inputs).sample
        original = peft.PeftModel.from_pretrained(load(), adapter).eval()(**inputs).sample
        served = load()
        served.load_lora_adapter(lora, weight_name="pytorch_lora_weights.safetensors", prefix=component)
        converted = served(**inputs).sample
    return float((original - bare).norm()), float((converted - original).norm())
