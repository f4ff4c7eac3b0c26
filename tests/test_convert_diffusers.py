"""Adapters of Diffusers models: an OFT adapter on a tiny FLUX transformer inside a pipeline folder.

Diffusers' own loader is the judge: the written ``pytorch_lora_weights.safetensors``, loaded with
``FluxTransformer2DModel.load_lora_adapter(prefix="transformer")``, must reproduce what PEFT computes
with the original OFT adapter.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from advisor.cli import app

diffusers = pytest.importorskip("diffusers")
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


def invoke(*args: object):
    return CliRunner().invoke(app, [str(a) for a in args])


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
    adapted = peft.get_peft_model(model, config)
    with torch.no_grad():
        for param in adapted.parameters():
            if param.requires_grad:
                param.add_(torch.randn_like(param) * 0.1)
    adapted.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def flux_pipeline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_pipeline(tmp_path_factory.mktemp("flux-pipeline"), "flux")


@pytest.fixture(scope="module")
def flux_oft(flux_pipeline: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_oft(flux_pipeline, "flux", tmp_path_factory.mktemp("flux-oft"))


def _inputs(kind: str, model: object) -> dict:
    from converters.diffusion import component_inputs

    return component_inputs(model, 2, seed=7, batch_size=2, device="cpu")[0]


@pytest.mark.slow
@pytest.mark.parametrize("kind", list(MODELS))
def test_oft_on_a_pipeline_converts_and_diffusers_reproduces_it(kind: str, tmp_path: Path) -> None:
    import peft
    import torch

    _, component, model_class, _, _ = MODELS[kind]
    pipeline = make_pipeline(tmp_path / "pipeline", kind)
    adapter = make_oft(pipeline, kind, tmp_path / "oft")
    out = tmp_path / "lora"
    result = invoke("convert", adapter, out, "--for", "diffusers", "--rank", "4096", "--base-model", pipeline)
    assert result.exit_code == 0, result.output
    assert "fidelity       1.0000" in result.stdout and "ready for diffusers" in result.stdout

    def load():
        return getattr(diffusers, model_class).from_pretrained(pipeline / component).eval()

    inputs = _inputs(kind, load())
    with torch.no_grad():
        bare = load()(**inputs).sample
        original = peft.PeftModel.from_pretrained(load(), adapter).eval()(**inputs).sample
        served = load()
        served.load_lora_adapter(out, weight_name="pytorch_lora_weights.safetensors", prefix=component)
        converted = served(**inputs).sample
    effect = float((original - bare).norm())
    assert effect > 1e-3, "the adapter must change the outputs, or the check proves nothing"
    assert float((converted - original).norm()) <= 1e-3 * effect  # Diffusers' own loader, Diffusers' own forward


@pytest.mark.slow
def test_pipeline_bad_inputs_are_one_line_and_write_nothing(
    flux_pipeline: Path, flux_oft: Path, tmp_path: Path, tiny_llama: Path
) -> None:
    import shutil

    from adapter_factory import make_adapter

    empty = tmp_path / "no-transformer"
    empty.mkdir()
    shutil.copy(flux_pipeline / "model_index.json", empty / "model_index.json")
    result = invoke("convert", flux_oft, tmp_path / "a", "--for", "diffusers", "--base-model", empty)
    assert result.exit_code == 2 and "transformer listed in model_index.json but not there" in result.stderr
    llama_adapter = make_adapter("OFT", "llama", tiny_llama, tmp_path / "llama-oft")
    result = invoke("convert", llama_adapter, tmp_path / "b", "--for", "diffusers", "--base-model", flux_pipeline)
    assert result.exit_code == 2 and "match no component of the pipeline" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
