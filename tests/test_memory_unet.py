"""UNets in the memory model: stages that follow diffusers' own UNet2DConditionModel, constants that match what
autograd saves on its blocks, and SD 1.5 / SDXL folders predicted end to end (read from real headers)."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest
from header_only import write_header_only
from typer.testing import CliRunner

from advisor.cli import app
from advisor.memory import unet
from advisor.memory.denoiser import read_denoiser_shape
from advisor.memory.saved_tensors import saved_bytes

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")
peft = pytest.importorskip("peft")

runner = CliRunner()
SD15 = {
    "_class_name": "UNet2DConditionModel",
    "attention_head_dim": 8,
    "block_out_channels": [320, 640, 1280, 1280],
    "cross_attention_dim": 768,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    "layers_per_block": 2,
    "sample_size": 64,
}
SDXL = {
    "_class_name": "UNet2DConditionModel",
    "addition_embed_type": "text_time",
    "addition_embed_type_num_heads": 64,
    "addition_time_embed_dim": 256,
    "attention_head_dim": [5, 10, 20],
    "block_out_channels": [320, 640, 1280],
    "cross_attention_dim": 2048,
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    "layers_per_block": 2,
    "projection_class_embeddings_input_dim": 2816,
    "sample_size": 128,
    "transformer_layers_per_block": [1, 2, 10],
    "use_linear_projection": True,
}
# Small enough to run forward on the CPU, with the shapes of the two families (GroupNorm needs 32 | channels).
TINY = {
    "sdxl-like": {
        "block_out_channels": (32, 64, 128),
        "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        "up_block_types": ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        "transformer_layers_per_block": (1, 2, 3),
        "attention_head_dim": (1, 2, 4),
    },
    "sd15-like": {
        "block_out_channels": (32, 64, 64, 64),
        "down_block_types": ("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        "up_block_types": ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        "attention_head_dim": 2,
    },
}
LORA_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]


def _kwargs(config: dict) -> dict:
    return {k: v for k, v in config.items() if not k.startswith("_")}


def _meta_unet(config: dict):
    with torch.device("meta"):
        return diffusers.UNet2DConditionModel(**_kwargs(config))


def _tiny_unet(name: str, checkpointing: bool = False):
    torch.manual_seed(0)
    model = diffusers.UNet2DConditionModel(
        sample_size=32, in_channels=4, out_channels=4, norm_num_groups=32, cross_attention_dim=64, **TINY[name]
    ).to(torch.bfloat16)
    if checkpointing:
        model.enable_gradient_checkpointing()
    model = peft.get_peft_model(model, peft.LoraConfig(r=4, target_modules=LORA_TARGETS))
    model.train()
    return model


def _unet_step(model, side: int, batch: int = 2) -> int:
    sample = torch.randn(batch, 4, side, side, dtype=torch.bfloat16)
    text = torch.randn(batch, unet.CLIP_TOKENS, 64, dtype=torch.bfloat16)
    return saved_bytes(model, sample, torch.tensor([10] * batch), encoder_hidden_states=text)


@pytest.mark.parametrize("config", [SD15, SDXL, {**_kwargs(SD15), "layers_per_block": [1, 2, 1, 3]}])
def test_stages_follow_diffusers_unet(config: dict) -> None:
    """Each stage's ResNets (input channels, the up path's skip concatenations) and transformer layers are the
    ones diffusers builds."""
    model = _meta_unet(config)
    stages = {s.name: s for s in unet.unet_stages(config)}
    paths = [("down", model.down_blocks), ("up", model.up_blocks)]
    blocks = [(f"{kind}.{i}", block) for kind, seq in paths for i, block in enumerate(seq)] + [("mid", model.mid_block)]
    for name, block in blocks:
        stage = stages[name]
        assert tuple(r.in_channels for r in block.resnets) == stage.resnet_in, name
        assert {r.out_channels for r in block.resnets} == {stage.channels}, name
        layers = sum(1 for m in block.modules() if type(m).__name__ == "BasicTransformerBlock")
        assert layers == stage.transformer_layers, name
        assert len(getattr(block, "attentions", [])) == stage.wrappers, name
        assert (stage.sampler > 0) == bool(getattr(block, "downsamplers", None) or getattr(block, "upsamplers", None))
    assert unet.module_count(tuple(stages.values())) == sum(
        1 for m in model.modules() if type(m).__name__ in ("ResnetBlock2D", "BasicTransformerBlock")
    )


def test_block_constants_match_what_autograd_saves() -> None:
    """A ResNet keeps 3 vectors of (in + out), a transformer layer ~6.9 of (C + 4C), per pixel (bf16)."""
    from diffusers.models.resnet import ResnetBlock2D

    batch, side = 2, 32
    for cin, cout in ((64, 64), (64, 128)):
        block = (
            ResnetBlock2D(in_channels=cin, out_channels=cout, temb_channels=32).to(torch.bfloat16).requires_grad_(False)
        )
        x = torch.randn(batch, cin, side, side, dtype=torch.bfloat16, requires_grad=True)
        saved = saved_bytes(block, x, torch.randn(batch, 32, dtype=torch.bfloat16))
        assert saved / (batch * side * side * (cin + cout) * 2) == pytest.approx(unet.UNET_RESNET_VECTORS, rel=0.02)
    per_layer = []
    for layers in (1, 2):
        channels = 64
        model = diffusers.Transformer2DModel(
            num_attention_heads=2, attention_head_dim=channels // 2, in_channels=channels, num_layers=layers,
            cross_attention_dim=64, norm_num_groups=32, use_linear_projection=True,
        ).to(torch.bfloat16)  # fmt: skip
        model = peft.get_peft_model(model, peft.LoraConfig(r=4, target_modules=LORA_TARGETS))
        x = torch.randn(batch, channels, 64, 64, dtype=torch.bfloat16, requires_grad=True)
        text = torch.randn(batch, unet.CLIP_TOKENS, 64, dtype=torch.bfloat16)
        per_layer.append(saved_bytes(model, x, encoder_hidden_states=text) / (batch * 64 * 64 * channels * 2))
    layer = per_layer[1] - per_layer[0]
    assert layer / (1 + unet.FF_MULT) == pytest.approx(unet.UNET_LAYER_VECTORS, rel=0.05)
    assert per_layer[0] - layer == pytest.approx(unet.UNET_WRAPPER_VECTORS, abs=0.5)


def test_dit_block_constant_matches_flux2_klein_blocks() -> None:
    """The unit the image runs are calibrated in: FLUX.2-klein's 5 double and 20 single blocks under PEFT's
    benchmark LoRA targets, per (hidden + MLP) per token."""
    targets = ["linear_in", "add_v_proj", "to_qkv_mlp_proj", "linear_out", "to_add_out", "to_out.0", "to_v", "to_k"]
    targets += ["add_q_proj", "to_q", "add_k_proj"]
    heads, head_dim, batch, pixels, text = 2, 32, 2, 1024, 64
    saved = {}
    for double, single in ((1, 0), (2, 0), (1, 1), (1, 2)):
        torch.manual_seed(0)
        model = diffusers.Flux2Transformer2DModel(
            patch_size=1, in_channels=16, num_layers=double, num_single_layers=single, attention_head_dim=head_dim,
            num_attention_heads=heads, joint_attention_dim=32, mlp_ratio=3.0, axes_dims_rope=(8, 8, 8, 8),
            guidance_embeds=False,
        ).to(torch.bfloat16)  # fmt: skip
        model = peft.get_peft_model(model, peft.LoraConfig(r=4, target_modules=targets))
        saved[(double, single)] = saved_bytes(
            model,
            hidden_states=torch.randn(batch, pixels, 16, dtype=torch.bfloat16),
            encoder_hidden_states=torch.randn(batch, text, 32, dtype=torch.bfloat16),
            timestep=torch.tensor([0.5] * batch),
            img_ids=torch.zeros(pixels, 4),
            txt_ids=torch.zeros(text, 4),
            return_dict=False,
        )
    unit = batch * (pixels + text) * heads * head_dim * (1 + 3) * 2
    double = (saved[(2, 0)] - saved[(1, 0)]) / unit
    single = (saved[(1, 2)] - saved[(1, 1)]) / unit
    assert (5 * double + 20 * single) / 25 == pytest.approx(unet.DIT_BLOCK_VECTORS, rel=0.05)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(TINY))
def test_whole_unet_saved_bytes_are_predicted(name: str) -> None:
    """Every module's vectors summed over the stages, against a whole UNet's count; under checkpointing, what
    stays outside the checkpoints (inputs, wrappers, samplers, the head)."""
    stages = unet.unet_stages(TINY[name])
    measured = _unet_step(_tiny_unet(name), 64)
    predicted = unet.activation_unit(stages, 2, 64, 2) * unet.DIT_BLOCK_VECTORS
    assert predicted == pytest.approx(measured, rel=0.08)
    kept = _unet_step(_tiny_unet(name, checkpointing=True), 64)
    assert unet.checkpointed_bytes(stages, 2, 64, 2) == pytest.approx(kept, rel=0.1)
    assert kept < measured / 4  # checkpointing keeps a fraction


def unet_pipeline(root: Path, config: dict) -> tuple[Path, int]:
    """A pipeline folder whose unet has the real tensor list (from diffusers on meta) as headers, no weights."""
    shapes = {name: list(t.shape) for name, t in _meta_unet(config).state_dict().items()}
    (root / "unet").mkdir(parents=True)
    (root / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline", "unet": ["d", "U"]}))
    (root / "unet" / "config.json").write_text(json.dumps(config))
    write_header_only(root / "unet" / "diffusion_pytorch_model.safetensors", shapes)
    return root, sum(math.prod(s) for s in shapes.values())


def _recommend(folder: Path, *args: str, vram: str = "24") -> dict:
    result = runner.invoke(app, ["--vram", vram, "--task", "image", "--model", str(folder), "--json", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_sdxl_folder_is_predicted_from_its_headers(tmp_path: Path) -> None:
    folder, params = unet_pipeline(tmp_path / "sdxl", SDXL)
    shape, _ = read_denoiser_shape(str(folder))
    assert (shape.kind, shape.total_params, shape.vocab) == ("unet", params, 0)
    assert params == 2_567_463_684  # SDXL's UNet
    data = _recommend(folder, "--resolution", "1024", "--batch-size", "1", "--explain")
    assert data["memory_model"]["model"]["kind"] == "unet"
    assert any("64×64, 32×32" in a for a in data["memory_model"]["assumptions"])
    peak = {r["method"]: r["peak_memory_gib"] for r in data["rows"]}
    # bf16 weights are the floor; a LoRA step at 1024 px with checkpointing stays well under a 24 GiB card
    assert params * 2 / 2**30 < peak["lora"] < 24, data["memory_model"]["breakdown_gib"]
    small = _recommend(folder, "--resolution", "512", "--batch-size", "1")["rows"]
    assert {r["method"]: r["peak_memory_gib"] for r in small}["lora"] < peak["lora"]
    no_gc = _recommend(folder, "--resolution", "1024", "--batch-size", "1", "--no-grad-checkpointing", vram="141")[
        "rows"
    ]
    assert {r["method"]: r["peak_memory_gib"] for r in no_gc}["lora"] > peak["lora"] + 4


def test_lora_on_a_unet_is_counted_as_peft_counts_it(tmp_path: Path) -> None:
    folder, _ = unet_pipeline(tmp_path / "sd15", SD15)
    model = peft.get_peft_model(_meta_unet(SD15), peft.LoraConfig(r=8, target_modules=LORA_TARGETS))
    expected = model.get_nb_trainable_parameters()[0]
    data = _recommend(folder, "--lora-r", "8", "--target-modules", ",".join(LORA_TARGETS))
    assert {r["trainable_params"] for r in data["rows"] if r["method"] == "lora"} == {expected}


def test_eager_attention_on_a_unet_costs_its_full_resolution_scores(tmp_path: Path) -> None:
    folder, _ = unet_pipeline(tmp_path / "sd15", SD15)
    shape, _ = read_denoiser_shape(str(folder))
    from advisor.memory.model import EAGER_SCORE_BYTES, attention_score_bytes
    from advisor.memory.setup import MemorySetup

    setup = MemorySetup(batch_size=1, seq_len=64 * 64 + 77, resolution=512, attention="eager")
    scores = attention_score_bytes(shape, setup)
    # SD 1.5 at 512 px: 8 heads × 4096 pixels × (4096 + 77) per layer at the top stage, 5 such layers
    assert scores >= 5 * 8 * 4096 * (4096 + 77) * EAGER_SCORE_BYTES
    assert attention_score_bytes(shape, replace(setup, attention="sdpa")) == 0


@pytest.mark.parametrize(
    ("config", "args", "message"),
    [
        (SD15, ["--quant", "4bit"], "--quant 4bit on a UNet"),
        ({**SD15, "_class_name": "UNet2DModel"}, [], "is not a UNet2DConditionModel"),
        ({k: v for k, v in SD15.items() if k != "block_out_channels"}, [], "lacks block_out_channels"),
        ({**SD15, "layers_per_block": [1, 2]}, [], "layers_per_block ([1, 2]) is neither a number nor one per block"),
    ],
)
def test_unets_it_cannot_read_are_one_line_exit_2(tmp_path: Path, config: dict, args: list[str], message: str):
    (tmp_path / "unet").mkdir()
    (tmp_path / "model_index.json").write_text(json.dumps({"unet": ["diffusers", "UNet2DConditionModel"]}))
    (tmp_path / "unet" / "config.json").write_text(json.dumps(config))
    write_header_only(tmp_path / "unet" / "diffusion_pytorch_model.safetensors", {"conv_in.weight": [320, 4, 3, 3]})
    result = runner.invoke(app, ["--vram", "24", "--task", "image", "--model", str(tmp_path), *args])
    assert result.exit_code == 2, result.output
    assert message in result.output and len(result.output.strip().splitlines()) == 1, result.output
