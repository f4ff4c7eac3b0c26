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


def invoke(*args: object):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def flux_pipeline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    root = tmp_path_factory.mktemp("flux-pipeline")
    torch.manual_seed(0)
    diffusers.FluxTransformer2DModel(**TINY_FLUX).save_pretrained(root / "transformer")
    index = {"_class_name": "FluxPipeline", "_diffusers_version": diffusers.__version__}
    index["transformer"] = ["diffusers", "FluxTransformer2DModel"]
    (root / "model_index.json").write_text(json.dumps(index))
    return root


@pytest.fixture(scope="module")
def flux_oft(flux_pipeline: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    import peft
    import torch

    torch.manual_seed(1)
    model = diffusers.FluxTransformer2DModel.from_pretrained(flux_pipeline / "transformer")
    config = peft.OFTConfig(r=0, oft_block_size=8, target_modules=["to_q", "to_k", "to_v", "to_out.0"])
    adapted = peft.get_peft_model(model, config)
    with torch.no_grad():
        for param in adapted.parameters():
            if param.requires_grad:
                param.add_(torch.randn_like(param) * 0.1)
    folder = tmp_path_factory.mktemp("flux-oft")
    adapted.save_pretrained(folder)
    return folder


def _inputs():
    import torch

    generator = torch.Generator().manual_seed(7)
    return {
        "hidden_states": torch.randn(2, 16, 16, generator=generator),
        "encoder_hidden_states": torch.randn(2, 8, 32, generator=generator),
        "pooled_projections": torch.randn(2, 32, generator=generator),
        "timestep": torch.rand(2, generator=generator),
        "img_ids": torch.zeros(16, 3),
        "txt_ids": torch.zeros(8, 3),
    }


@pytest.mark.slow
def test_oft_on_a_flux_pipeline_converts_and_diffusers_reproduces_it(
    flux_pipeline: Path, flux_oft: Path, tmp_path: Path
) -> None:
    import peft
    import torch

    out = tmp_path / "lora"
    result = invoke("convert", flux_oft, out, "--for", "diffusers", "--rank", "4096", "--base-model", flux_pipeline)
    assert result.exit_code == 0, result.output
    assert "fidelity       1.0000" in result.stdout and "ready for diffusers" in result.stdout

    def load() -> diffusers.FluxTransformer2DModel:
        return diffusers.FluxTransformer2DModel.from_pretrained(flux_pipeline / "transformer").eval()

    inputs = _inputs()
    with torch.no_grad():
        bare = load()(**inputs).sample
        original = peft.PeftModel.from_pretrained(load(), flux_oft).eval()(**inputs).sample
        served = load()
        served.load_lora_adapter(out, weight_name="pytorch_lora_weights.safetensors", prefix="transformer")
        converted = served(**inputs).sample
    effect = float((original - bare).norm())
    assert effect > 1e-2, "the adapter must change the outputs, or the check proves nothing"
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
