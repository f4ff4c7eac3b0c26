"""Image models in the memory model: diffusion transformers read from diffusers layouts, calibrated on PEFT's
image runs, and refused with the reason where the model cannot carry them (no headers, a language model).
UNets: tests/test_memory_unet.py."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest
from header_only import write_header_only
from typer.testing import CliRunner

from advisor.benchmarks.store import load_snapshot
from advisor.cli import app
from advisor.memory.denoiser import IMAGE_BENCHMARK_SHAPE, image_tokens, read_denoiser_shape
from advisor.memory.model import benchmark_of, predict

runner = CliRunner()
HIDDEN, HEADS, HEAD_DIM = 256, 4, 64


def image_runs():
    return [r for r in load_snapshot().runs if r.benchmark == "image-gen"]


def test_every_image_run_is_reproduced_on_its_own_setup() -> None:
    runs = image_runs()
    assert len(runs) >= 30
    for run in runs:
        shape, setup = benchmark_of(run)
        assert shape is IMAGE_BENCHMARK_SHAPE and setup.grad_checkpointing and setup.resolution == 512
        assert setup.seq_len == 1024 + 512  # (512 px / 16)² latent patches + FLUX.2's 512 prompt tokens
        breakdown = predict(run, shape, setup)
        assert breakdown.total == pytest.approx(run.peak_memory_bytes, rel=1e-9), run.id
        assert "logits" not in breakdown.terms  # a denoiser has no vocabulary
        assert breakdown.activation_factor > 0, run.id


def test_resolution_and_batch_grow_the_activations_only() -> None:
    run = next(r for r in image_runs() if r.method == "lora" and r.variant == "default")
    shape, setup = benchmark_of(run)
    base = predict(run, shape, setup).terms
    big = predict(run, shape, replace(setup, seq_len=image_tokens(shape, 1024) + 512, resolution=1024)).terms
    assert big["base weights"] == base["base weights"]
    assert big["activations"] == pytest.approx(base["activations"] * (4096 + 512) / (1024 + 512))


def flux_pipeline(root: Path, double: int = 2, single: int = 3) -> tuple[Path, int]:
    """A FLUX.1-layout pipeline folder whose transformer has real headers and no weights."""
    h, m = HIDDEN, 4 * HIDDEN
    tensors: dict[str, list[int]] = {"x_embedder.weight": [h, 64], "context_embedder.weight": [h, 128]}
    tensors["proj_out.weight"] = [64, h]
    for i in range(double):
        p = f"transformer_blocks.{i}."
        for name in ("attn.to_q", "attn.to_k", "attn.to_v", "attn.to_out.0", "attn.add_q_proj", "attn.add_k_proj"):
            tensors[p + name + ".weight"] = [h, h]
        tensors |= {p + "ff.net.0.proj.weight": [m, h], p + "ff.net.2.weight": [h, m]}
    for i in range(single):
        p = f"single_transformer_blocks.{i}."
        tensors |= {p + "attn.to_q.weight": [h, h], p + "proj_mlp.weight": [m, h], p + "proj_out.weight": [h, h + m]}
    (root / "transformer").mkdir(parents=True)
    (root / "model_index.json").write_text(json.dumps({"_class_name": "FluxPipeline", "transformer": ["x", "y"]}))
    config = {
        "_class_name": "FluxTransformer2DModel",
        "num_layers": double,
        "num_single_layers": single,
        "num_attention_heads": HEADS,
        "attention_head_dim": HEAD_DIM,
        "in_channels": 64,
        "patch_size": 1,
    }
    (root / "transformer" / "config.json").write_text(json.dumps(config))
    write_header_only(root / "transformer" / "diffusion_pytorch_model.safetensors", tensors)
    return root, sum(math.prod(s) for s in tensors.values())


def test_a_flux_pipeline_folder_is_read_from_its_headers(tmp_path: Path) -> None:
    folder, params = flux_pipeline(tmp_path / "flux")
    shape, _ = read_denoiser_shape(str(folder))
    assert (shape.kind, shape.layers, shape.hidden, shape.intermediate) == ("dit", 5, HIDDEN, 4 * HIDDEN)
    assert shape.total_params == params and shape.vocab == 0 and shape.text_tokens == 512
    assert image_tokens(shape, 1024) == 64 * 64  # 2×2-packed 8× latents: 16 px per token
    assert any("mlp_ratio not in the config" in a for a in shape.assumptions)
    result = runner.invoke(
        app, ["--vram", "24", "--task", "image", "--model", str(folder), "--resolution", "1024", "--json"]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["memory_model"]["model"]["kind"] == "dit" and data["memory_model"]["setup"]["sequence_length"] == 4608
    # --lora-r counts both block stacks (double- and single-stream)
    lora = runner.invoke(
        app,
        [
            "--vram",
            "24",
            "--task",
            "image",
            "--model",
            str(folder),
            "--lora-r",
            "4",
            "--target-modules",
            "to_q",
            "--json",
        ],
    )
    assert lora.exit_code == 0, lora.output
    rows = [r for r in json.loads(lora.output)["rows"] if r["method"] == "lora"]
    assert rows and all(r["trainable_params"] == 5 * 4 * (HIDDEN + HIDDEN) for r in rows)


def test_a_diffusion_transformer_of_another_family_says_what_it_is_priced_as(tmp_path: Path) -> None:
    """A DiT the model has no family for (Qwen-Image's MMDiT here: 2×2 patches over an 8× VAE) is read from its
    headers and priced with FLUX.2-klein's blocks of its widths; the assumptions say so, and which token size."""
    folder, params = flux_pipeline(tmp_path / "qwen-image")
    config_path = folder / "transformer" / "config.json"
    config = json.loads(config_path.read_text())
    config.update({"_class_name": "QwenImageTransformer2DModel", "patch_size": 2, "in_channels": 16})
    config_path.write_text(json.dumps(config))
    shape, _ = read_denoiser_shape(str(folder))
    assert shape.total_params == params and shape.pixels_per_token == 16
    said = " ".join(shape.assumptions)
    assert "QwenImageTransformer2DModel is not FLUX or SD3" in said and "16×16 px" in said
    assert "256 text tokens assumed" in said


@pytest.mark.parametrize(
    ("setup", "args", "message"),
    [
        ("unet", ["--task", "image"], "no safetensors files for its unet"),
        ("flux", ["--task", "math"], "is a diffusers pipeline: pass --task image"),
        ("llama", ["--task", "image"], "neither a diffusers pipeline (model_index.json) nor a component folder"),
        ("none", ["--task", "math", "--resolution", "1024"], "--resolution is for image models"),
        ("none", ["--task", "image", "--resolution", "8"], "--resolution must be at least 16 pixels"),
    ],
)
def test_wrong_model_for_the_task_is_one_line_exit_2(tmp_path: Path, setup: str, args: list[str], message: str):
    model: list[str] = []
    if setup == "unet":
        (tmp_path / "unet").mkdir()
        (tmp_path / "model_index.json").write_text(json.dumps({"unet": ["diffusers", "UNet2DConditionModel"]}))
        (tmp_path / "unet" / "config.json").write_text(json.dumps({"_class_name": "UNet2DConditionModel"}))
        model = ["--model", str(tmp_path)]
    elif setup == "flux":
        model = ["--model", str(flux_pipeline(tmp_path / "flux")[0])]
    elif setup == "llama":
        (tmp_path / "llama").mkdir()
        model = ["--model", str(tmp_path / "llama")]
    result = runner.invoke(app, ["--vram", "24", *args, *model])
    assert result.exit_code == 2, result.output
    assert message in result.output and len(result.output.strip().splitlines()) == 1, result.output
