"""Checkpoints saved already quantised: real parameter counts and widths from packed headers, and the base they load as.

A bitsandbytes 4-bit checkpoint is saved by transformers itself (bitsandbytes' CPU backend); GPTQ and AWQ
checkpoints are written as headers in their published layouts (int32 ``qweight`` with scales, zero points and
group indices). Each is held against the unquantised Llama it stands for.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from header_only import write_header_only
from typer.testing import CliRunner

from advisor.cli import app
from advisor.errors import UserError
from advisor.memory.prequantized import checkpoint_storage, fill_widths, logical_shapes
from advisor.memory.request import memory_request
from advisor.memory.shapes import read_shape

LLAMA = {
    "model_type": "llama",
    "architectures": ["LlamaForCausalLM"],
    "hidden_size": 256,
    "intermediate_size": 768,
    "num_hidden_layers": 3,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "vocab_size": 1024,
    "tie_word_embeddings": False,
}
GROUP = 128


def _llama_tensors() -> dict[str, list[int]]:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    with torch.device("meta"):
        model = LlamaForCausalLM(LlamaConfig(**{k: v for k, v in LLAMA.items() if k != "architectures"}))
    return {name: list(p.shape) for name, p in model.state_dict().items()}


def _peft_all_linear(r: int) -> int:
    import peft
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    with torch.device("meta"):
        model = LlamaForCausalLM(LlamaConfig(**{k: v for k, v in LLAMA.items() if k != "architectures"}))
    adapted = peft.get_peft_model(model, peft.LoraConfig(r=r, target_modules="all-linear"))
    return adapted.get_nb_trainable_parameters()[0]


def _packed(method: str, bits: int, folder: Path) -> Path:
    """The Llama as a GPTQ or AWQ (GEMM) checkpoint: every linear layer of the blocks packed 32 / bits to an int32."""
    per_int = 32 // bits
    tensors: dict = {}
    for name, shape in _llama_tensors().items():
        if ".layers." not in name or not name.endswith("proj.weight"):
            tensors[name] = shape
            continue
        out_features, in_features = shape
        layer = name.removesuffix(".weight")
        if method == "gptq":
            tensors[f"{layer}.qweight"] = ([in_features // per_int, out_features], "I32")
            tensors[f"{layer}.g_idx"] = ([in_features], "I32")
        else:
            tensors[f"{layer}.qweight"] = ([in_features, out_features // per_int], "I32")
        tensors[f"{layer}.qzeros"] = ([in_features // GROUP, out_features // per_int], "I32")
        tensors[f"{layer}.scales"] = ([in_features // GROUP, out_features], "F16")
    folder.mkdir(parents=True)
    quant = {"quant_method": method, "bits": bits, "group_size": GROUP}
    if method == "awq":
        quant["version"] = "gemm"
    (folder / "config.json").write_text(json.dumps({**LLAMA, "quantization_config": quant}))
    write_header_only(folder / "model.safetensors", tensors)
    return folder


@pytest.fixture(scope="module")
def bnb_checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The Llama saved by transformers through bitsandbytes, 4-bit NF4 and 8-bit, on CPU."""
    pytest.importorskip("bitsandbytes")
    import torch
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig, LlamaConfig, LlamaForCausalLM

    root = tmp_path_factory.mktemp("bnb")
    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(**{k: v for k, v in LLAMA.items() if k != "architectures"})).save_pretrained(
        root / "bf16"
    )
    configs = {
        "4bit": BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16),
        "8bit": BitsAndBytesConfig(load_in_8bit=True),
    }
    folders = {"bf16": root / "bf16"}
    for name, config in configs.items():
        model = AutoModelForCausalLM.from_pretrained(root / "bf16", quantization_config=config, device_map="cpu")
        model.save_pretrained(root / name)
        folders[name] = root / name
    return folders


def test_a_bitsandbytes_checkpoint_counts_as_the_model_it_stands_for(bnb_checkpoints: dict[str, Path]) -> None:
    plain = read_shape(str(bnb_checkpoints["bf16"]))
    for quant in ("4bit", "8bit"):
        shape = read_shape(str(bnb_checkpoints[quant]))
        assert shape.total_params == plain.total_params  # not the packed bytes, not the absmax/SCB companions
        assert (shape.hidden, shape.intermediate, shape.layers, shape.vocab) == (256, 768, 3, 1024)
        assert shape.checkpoint_quant == quant
        assert any(f"loads, and trains, as --quant {quant}" in a for a in shape.assumptions)


def test_a_4bit_checkpoint_trains_4bit_and_the_users_lora_counts_on_its_real_layers(
    bnb_checkpoints: dict[str, Path],
) -> None:
    request = memory_request(str(bnb_checkpoints["4bit"]), lora_r=16, target_modules="all-linear")
    assert request is not None and request.setup.quant == "4bit"  # no --quant: the checkpoint decides
    assert request.adapter is not None and request.adapter.trainable == _peft_all_linear(16)


def test_a_contrary_quant_flag_is_one_line_and_exit_2(bnb_checkpoints: dict[str, Path]) -> None:
    run = CliRunner().invoke(
        app, ["--vram", "24", "--task", "math", "--model", str(bnb_checkpoints["4bit"]), "--quant", "none"]
    )
    assert run.exit_code == 2
    assert "saved quantised and loads as --quant 4bit" in run.output and "Traceback" not in run.output
    assert len(run.output.strip().splitlines()) == 1


@pytest.mark.parametrize(("method", "bits", "quant"), [("gptq", 4, "gptq-4bit"), ("gptq", 8, "gptq-8bit"),
                                                     ("awq", 4, "awq-4bit")])  # fmt: skip
def test_gptq_and_awq_checkpoints_unpack_to_their_layers(method: str, bits: int, quant: str, tmp_path: Path) -> None:
    folder = _packed(method, bits, tmp_path / method)
    shape = read_shape(str(folder))
    assert shape.total_params == sum(_numel(s) for s in _llama_tensors().values())
    assert (shape.hidden, shape.intermediate, shape.checkpoint_quant) == (256, 768, quant)
    request = memory_request(str(folder), lora_r=8, target_modules="all-linear")
    assert request is not None and request.setup.quant == quant
    assert request.adapter is not None and request.adapter.trainable == _peft_all_linear(8)


def test_headers_alone_count_a_4bit_layer_by_its_bytes_and_say_its_widths_are_unknown() -> None:
    """The Hub's metadata gives headers, not the quant-state blob: two weights a byte, widths unknown, said."""
    stored = {
        "model.layers.0.mlp.down_proj.weight": (256 * 768 // 2, 1),
        "model.layers.0.mlp.down_proj.weight.absmax": (256 * 768 // 64,),
        "model.layers.0.mlp.down_proj.weight.quant_map": (16,),
        "model.layers.0.mlp.down_proj.weight.quant_state.bitsandbytes__nf4": (79,),
        "model.embed_tokens.weight": (1024, 256),
    }
    tensors, params, notes = logical_shapes(stored, "4bit")
    assert params == 256 * 768 + 1024 * 256
    assert set(tensors) == {"model.layers.0.mlp.down_proj.weight", "model.embed_tokens.weight"}
    assert len(tensors["model.layers.0.mlp.down_proj.weight"]) == 1  # not a layer an adapter is counted on
    assert notes and "counted by size" in notes[0]


def test_fused_and_older_projection_names_get_their_widths_where_the_sizes_agree() -> None:
    """Phi-3's qkv_proj/gate_up_proj, GPT-2's two c_proj (attention: hidden × hidden, MLP: hidden × intermediate,
    told apart by size), ChatGLM's dense_h_to_4h; a norm's 1-D weight and a layer whose size disagrees stay as
    they are (never a guessed width)."""
    from advisor.memory.model import BENCHMARK_SHAPE as shape  # hidden 3072, MLP 8192, q 3072, k/v 1024

    h, i = shape.hidden, shape.intermediate
    sized = {
        "layers.0.self_attn.qkv_proj.weight": (h + 2 * 1024) * h,
        "layers.0.mlp.gate_up_proj.weight": 2 * i * h,
        "h.0.attn.c_proj.weight": h * h,
        "h.0.mlp.c_proj.weight": h * i,
        "layers.0.mlp.dense_h_to_4h.weight": 2 * i * h,
        "layers.0.input_layernorm.weight": h,
        "layers.0.mlp.down_proj.weight": h * i + 1,
    }
    filled = fill_widths({name: (n,) for name, n in sized.items()}, shape)
    assert filled["layers.0.self_attn.qkv_proj.weight"] == (h + 2 * 1024, h)
    assert filled["layers.0.mlp.gate_up_proj.weight"] == (2 * i, h)
    assert filled["h.0.attn.c_proj.weight"] == (h, h) and filled["h.0.mlp.c_proj.weight"] == (h, i)
    assert filled["layers.0.mlp.dense_h_to_4h.weight"] == (2 * i, h)
    assert filled["layers.0.input_layernorm.weight"] == (h,) and filled["layers.0.mlp.down_proj.weight"] == (h * i + 1,)


@pytest.mark.slow
@pytest.mark.subprocess
def test_a_4bit_upload_on_the_hub_is_read_from_its_metadata(bnb_checkpoints: dict[str, Path], tmp_path: Path) -> None:
    """``--model user/...-bnb-4bit``: the Hub's safetensors metadata (headers only) gives the exact count, the
    config the widths by projection name, and the user's LoRA is counted on them."""
    import os
    import subprocess
    import sys

    from fake_hub import FakeHub, FakeRepo, HubState

    files = {p.name: p.read_bytes() for p in bnb_checkpoints["4bit"].iterdir() if p.is_file()}
    state = HubState(models=[FakeRepo(id="user/llama-bnb-4bit", files=files)])
    args = ["--vram", "24", "--task", "math", "--model", "user/llama-bnb-4bit", "--lora-r", "16",
            "--target-modules", "all-linear", "--json"]  # fmt: skip
    with FakeHub(state) as hub:
        env = {**os.environ, "HF_ENDPOINT": hub.url, "HF_HUB_OFFLINE": "0", "HF_HOME": str(tmp_path / "hf")}
        run = subprocess.run([sys.executable, "-m", "advisor.cli", *args], env=env, capture_output=True, text=True,
                             timeout=300)  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads(run.stdout)
    model = result["memory_model"]["model"]
    assert model["params_source"] == "Hub safetensors metadata" and model["checkpoint_quant"] == "4bit"
    assert model["total_params"] == read_shape(str(bnb_checkpoints["bf16"])).total_params
    assert result["memory_model"]["setup"]["quant"] == "4bit"
    assert any(f"{_peft_all_linear(16):,} trainable" in note for note in result["notes"])


def test_a_quantisation_it_cannot_price_is_refused_with_the_reason(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="saved quantised with hqq"):
        checkpoint_storage({"quantization_config": {"quant_method": "hqq", "bits": 4}})
    folder = tmp_path / "hqq"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({**LLAMA, "quantization_config": {"quant_method": "hqq"}}))
    run = CliRunner().invoke(app, ["--vram", "24", "--task", "math", "--model", str(folder)])
    assert run.exit_code == 2 and "hqq" in run.output and "Traceback" not in run.output


def test_an_fp8_checkpoint_counts_its_weights_without_their_scales(tmp_path: Path) -> None:
    """DeepSeek-V3 / Qwen3-FP8 layout: float8 weights with per-block ``weight_scale_inv``: one element a weight,
    the scales dropped, priced as the bf16 base it is dequantised to."""
    tensors: dict = {}
    for name, shape in _llama_tensors().items():
        if ".layers." in name and name.endswith("proj.weight"):
            tensors[name] = (shape, "U8")  # float8 storage: one byte a weight
            blocks = [max(1, shape[0] // 128), max(1, shape[1] // 128)]
            tensors[name.removesuffix(".weight") + ".weight_scale_inv"] = (blocks, "F32")
        else:
            tensors[name] = shape
    folder = tmp_path / "fp8"
    folder.mkdir()
    fp8 = {"quant_method": "fp8", "weight_block_size": [128, 128]}
    (folder / "config.json").write_text(json.dumps({**LLAMA, "quantization_config": fp8}))
    write_header_only(folder / "model.safetensors", tensors)
    shape = read_shape(str(folder))
    assert shape.total_params == sum(_numel(s) for s in _llama_tensors().values())
    assert shape.checkpoint_quant is None and any("FP8" in a for a in shape.assumptions)


def _numel(shape: list[int]) -> int:
    count = 1
    for dim in shape:
        count *= dim
    return count


def test_a_flux_transformer_saved_4bit_counts_its_weights_and_trains_4bit(tmp_path: Path) -> None:
    """A diffusers transformer saved through bitsandbytes (packed uint8 blocks, absmax, quant state): the same
    parameters and layer widths as the bf16 folder, a 4-bit base by default, the same LoRA count."""
    import torch
    from safetensors.torch import save_file
    from test_memory_image import flux_pipeline

    plain, params = flux_pipeline(tmp_path / "plain")
    quantised = tmp_path / "nf4"
    flux_pipeline(quantised)
    from advisor.safetensors_headers import read_header

    tensors = {}
    for name, entry in read_header(plain / "transformer" / "diffusion_pytorch_model.safetensors").items():
        shape = list(entry.shape)
        if "blocks." in name and name.endswith(".weight") and len(shape) == 2:
            blob = json.dumps({"quant_type": "nf4", "blocksize": 64, "dtype": "bfloat16", "shape": shape}).encode()
            tensors[name] = torch.zeros(shape[0] * shape[1] // 2, 1, dtype=torch.uint8)
            tensors[name + ".absmax"] = torch.zeros(shape[0] * shape[1] // 64)
            tensors[name + ".quant_map"] = torch.zeros(16)
            tensors[name + ".quant_state.bitsandbytes__nf4"] = torch.tensor(list(blob), dtype=torch.uint8)
        else:
            tensors[name] = torch.zeros(shape, dtype=torch.bfloat16)
    save_file(tensors, quantised / "transformer" / "diffusion_pytorch_model.safetensors")
    config_path = quantised / "transformer" / "config.json"
    nf4 = {"quant_method": "bitsandbytes", "load_in_4bit": True, "bnb_4bit_quant_type": "nf4"}
    config_path.write_text(json.dumps({**json.loads(config_path.read_text()), "quantization_config": nf4}))

    from advisor.memory.denoiser import read_denoiser_shape

    shape, _ = read_denoiser_shape(str(quantised))
    assert shape.total_params == params and shape.checkpoint_quant == "4bit"
    counts = {}
    for name, folder in (("plain", plain), ("nf4", quantised)):
        request = memory_request(str(folder), domain="image", lora_r=4, target_modules="to_q")
        assert request is not None and request.adapter is not None
        counts[name] = (request.setup.quant, request.adapter.trainable)
    assert counts == {"plain": ("none", counts["plain"][1]), "nf4": ("4bit", counts["plain"][1])}


def test_gpt_oss_mxfp4_experts_count_unpacked_and_train_as_bf16(tmp_path: Path) -> None:
    """gpt-oss ships its experts in MXFP4 (``*_blocks`` of 16 bytes per 32 values, ``*_scales``); transformers
    dequantises them for training, so the count is unpacked and the base is priced bf16, not refused."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.for_model(
        "gpt_oss", hidden_size=256, intermediate_size=512, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=64, vocab_size=1024, num_local_experts=4, num_experts_per_tok=2,
        layer_types=["sliding_attention", "full_attention"],
    )  # fmt: skip
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    real = sum(p.numel() for p in model.parameters())
    tensors: dict = {}
    for name, param in model.state_dict().items():
        shape = list(param.shape)
        if name.endswith(("experts.gate_up_proj", "experts.down_proj")):  # [experts, in, out] → out-major blocks
            experts, inputs, outputs = shape
            tensors[name + "_blocks"] = ([experts, outputs, inputs // 32, 16], "U8")
            tensors[name + "_scales"] = ([experts, outputs, inputs // 32], "U8")
        else:
            tensors[name] = shape
    folder = tmp_path / "gpt-oss"
    folder.mkdir()
    quant = {"quant_method": "mxfp4", "modules_to_not_convert": ["model.layers.*.self_attn", "lm_head"]}
    (folder / "config.json").write_text(json.dumps({**config.to_dict(), "quantization_config": quant}, default=str))
    write_header_only(folder / "model.safetensors", tensors)
    shape = read_shape(str(folder))
    assert shape.total_params == real and shape.checkpoint_quant is None
    assert any("MXFP4" in a and "bf16" in a for a in shape.assumptions)
    request = memory_request(str(folder), lora_r=16, target_modules="all-linear")
    assert request is not None and request.setup.quant == "none"
    assert request.adapter is not None and request.adapter.counted_by.startswith("PEFT")
