"""Model shapes read from checkpoint headers, and configs read without silently assuming a Llama.

Real layouts: Qwen (v1) states ``intermediate_size`` as twice its MLP width, ChatGLM names it
``ffn_hidden_size`` and its layers ``num_layers``. The headers give the truth; without them the known
aliases are read and every assumption is listed; an unknown layout is refused.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
from pathlib import Path

import pytest
from header_only import write_header_only

from advisor.errors import UserError
from advisor.memory.request import memory_request
from advisor.memory.shapes import read_shape, shape_from_config

QWEN_7B = {
    "model_type": "qwen",
    "architectures": ["QWenLMHeadModel"],
    "hidden_size": 4096,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "intermediate_size": 22016,
    "vocab_size": 151936,
    "tie_word_embeddings": False,
}
CHATGLM3_6B = {
    "model_type": "chatglm",
    "architectures": ["ChatGLMModel"],
    "hidden_size": 4096,
    "num_layers": 28,
    "num_attention_heads": 32,
    "ffn_hidden_size": 13696,
    "padded_vocab_size": 65024,
    "multi_query_group_num": 2,
    "kv_channels": 128,
    "tie_word_embeddings": False,
}
H = 4096


def _qwen_tensors(layers: int = 32, mlp: int = 11008, vocab: int = 151936) -> dict[str, list[int]]:
    tensors = {"transformer.wte.weight": [vocab, H], "lm_head.weight": [vocab, H], "transformer.ln_f.weight": [H]}
    for i in range(layers):
        p = f"transformer.h.{i}."
        tensors |= {
            p + "ln_1.weight": [H],
            p + "attn.c_attn.weight": [3 * H, H],
            p + "attn.c_attn.bias": [3 * H],
            p + "attn.c_proj.weight": [H, H],
            p + "ln_2.weight": [H],
            p + "mlp.w1.weight": [mlp, H],
            p + "mlp.w2.weight": [mlp, H],
            p + "mlp.c_proj.weight": [H, mlp],
        }
    return tensors


def _chatglm_tensors(layers: int = 28, ffn: int = 13696, vocab: int = 65024) -> dict[str, list[int]]:
    tensors = {
        "transformer.embedding.word_embeddings.weight": [vocab, H],
        "transformer.output_layer.weight": [vocab, H],
        "transformer.encoder.final_layernorm.weight": [H],
    }
    for i in range(layers):
        p = f"transformer.encoder.layers.{i}."
        tensors |= {
            p + "input_layernorm.weight": [H],
            p + "self_attention.query_key_value.weight": [4608, H],
            p + "self_attention.query_key_value.bias": [4608],
            p + "self_attention.dense.weight": [H, H],
            p + "post_attention_layernorm.weight": [H],
            p + "mlp.dense_h_to_4h.weight": [2 * ffn, H],
            p + "mlp.dense_4h_to_h.weight": [H, ffn],
        }
    return tensors


def _header_only_checkpoint(folder: Path, config: dict, tensors: dict[str, list[int]]) -> Path:
    """A model folder whose safetensors file has a real header and sparse (unwritten) data: no GBs on disk."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config))
    write_header_only(folder / "model.safetensors", tensors)
    return folder


@pytest.mark.parametrize(
    ("config", "tensors", "params", "mlp", "layers", "vocab"),
    [
        (QWEN_7B, _qwen_tensors(), 7_721_324_544, 11008, 32, 151936),
        (CHATGLM3_6B, _chatglm_tensors(), 6_243_584_000, 13696, 28, 65024),
    ],
    ids=["qwen-v1-7b", "chatglm3-6b"],
)
def test_headers_give_the_real_shape_of_configs_that_mislead(
    config: dict, tensors: dict, params: int, mlp: int, layers: int, vocab: int, tmp_path: Path
) -> None:
    shape = read_shape(str(_header_only_checkpoint(tmp_path / "model", config, tensors)))
    assert shape.total_params == sum(math.prod(s) for s in tensors.values()) == params
    assert (shape.intermediate, shape.layers, shape.vocab, shape.hidden) == (mlp, layers, vocab, 4096)
    assert shape.tied_embeddings is False and shape.params_source == "safetensors headers"
    assert shape.assumptions == ()


def test_config_only_reads_the_known_aliases_and_says_what_it_assumed(tmp_path: Path) -> None:
    qwen = shape_from_config(QWEN_7B, "Qwen/Qwen-7B")
    assert qwen.intermediate == 11008  # not 22016: Qwen (v1) states twice the MLP width
    assert qwen.total_params == pytest.approx(7.72e9, rel=0.01)
    assert any("half its intermediate_size" in a for a in qwen.assumptions)
    assert any("estimated from config.json" in a for a in qwen.assumptions)
    glm = shape_from_config(CHATGLM3_6B, "THUDM/chatglm3-6b")
    assert (glm.layers, glm.intermediate, glm.vocab, glm.kv_heads, glm.head_dim) == (28, 13696, 65024, 2, 128)
    assert glm.total_params == pytest.approx(6.24e9, rel=0.01)
    untied = shape_from_config({**CHATGLM3_6B, "tie_word_embeddings": None}, "x")
    assert any("tie_word_embeddings not stated" in a for a in untied.assumptions)


# Small versions of transformers' own default configs: the layouts users bring, built by transformers itself.
SMALL = {
    "hidden_size": 256, "intermediate_size": 512, "num_hidden_layers": 2, "num_attention_heads": 4,
    "num_key_value_heads": 2, "vocab_size": 1000, "moe_intermediate_size": 128, "num_experts": 4,
    "num_local_experts": 4, "head_dim": 64, "n_embd": 256, "n_layer": 2, "n_head": 4, "d_model": 256,
    "n_heads": 4, "n_layers": 2, "ffn_dim": 512, "attention_heads": 4, "num_layers": 2, "pad_token_id": 0,
}  # fmt: skip
COUNTED = ["llama", "mistral", "mixtral", "qwen2", "qwen2_moe", "qwen3_moe", "gemma2", "phi3", "starcoder2", "olmo2",
           "cohere", "glm4", "smollm3"]  # fmt: skip
HEADERS_ONLY = ["gpt2", "gpt_neox", "falcon", "bloom", "opt", "mpt", "xglm", "gpt_bigcode", "jamba", "deepseek_v3"]


def _transformers_model(model_type: str) -> tuple[dict, dict[str, list[int]], int]:
    """The config, the checkpoint's tensors as ``save_pretrained`` writes them (tied weights once, persistent
    buffers) and the parameter count of the model transformers builds from that config on the meta device."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.for_model(model_type)
    for key, value in SMALL.items():
        if hasattr(config, key):
            with contextlib.suppress(AttributeError):  # a derived property (Falcon's head_dim) follows the others
                setattr(config, key, value)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    tensors, seen = {}, set()
    for name, tensor in model.state_dict(keep_vars=True).items():
        if id(tensor) not in seen:
            seen.add(id(tensor))
            tensors[name] = list(tensor.shape)
    return config.to_dict(), tensors, sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("model_type", COUNTED + HEADERS_ONLY)
def test_headers_and_known_configs_count_what_transformers_builds(model_type: str, tmp_path: Path) -> None:
    """Headers give the exact count for any layout (MPT's n_heads, XGLM's attention_heads, tied heads);
    config-only counts of the layouts it claims (a gated or a two-matrix MLP, experts) land within 0.5%."""
    config, tensors, real = _transformers_model(model_type)
    folder = tmp_path / model_type
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config, default=str))
    write_header_only(folder / "model.safetensors", tensors)
    assert read_shape(str(folder)).total_params == real
    if model_type in COUNTED:
        assert shape_from_config(config, model_type).total_params == pytest.approx(real, rel=0.005)


def _peft_all_linear(model_type: str, rank: int = 8) -> int:
    """PEFT's own all-linear LoRA count on the model transformers builds (on meta) from the small config."""
    import peft
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.for_model(model_type)
    for key, value in SMALL.items():
        if hasattr(config, key):
            with contextlib.suppress(AttributeError):
                setattr(config, key, value)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    adapted = peft.get_peft_model(model, peft.LoraConfig(r=rank, target_modules="all-linear"))
    return adapted.get_nb_trainable_parameters()[0]


# qwen2_moe's small config keeps the default's 24 per-layer MLP kinds, which transformers refuses to rebuild from
# config.json for 2 layers; its experts are counted by PEFT in test_lora_on_a_mixture_of_experts_is_counted_by_peft.
@pytest.mark.parametrize("model_type", [m for m in COUNTED + HEADERS_ONLY if m != "qwen2_moe"])
def test_all_linear_counts_every_linear_layer_peft_adapts(model_type: str, tmp_path: Path) -> None:
    """From the headers: every block's linears and those outside any block (OPT's project_in/project_out, whose
    embeddings are narrower than its layers), never the embeddings or the head. From a known config alone: the
    model's own fused projections (Phi-3's qkv_proj and gate_up_proj, GLM's gate_up_proj, Starcoder2's two-matrix
    MLP), whose LoRA costs r × (in + out) once, not once per projection it fuses."""
    from advisor.memory.user_adapter import linear_layers, lora_count

    config, tensors, _ = _transformers_model(model_type)
    folder = _header_only_checkpoint(tmp_path / model_type, json.loads(json.dumps(config, default=str)), tensors)
    expected = _peft_all_linear(model_type)
    request = memory_request(str(folder), lora_r=8, target_modules="all-linear")
    assert request is not None and request.adapter is not None
    assert request.adapter.trainable == expected
    if model_type in COUNTED and model_type not in ("mixtral", "qwen2_moe", "qwen3_moe"):  # experts: PEFT counts
        shape = shape_from_config(config, model_type)
        assert lora_count(linear_layers(shape, None), 8, "all-linear").trainable == expected


@pytest.mark.parametrize(
    ("config", "tensors", "fused", "named"),
    [
        (QWEN_7B, _qwen_tensors(layers=2), "c_attn", ["c_attn", "c_proj", "w1", "w2"]),
        (CHATGLM3_6B, _chatglm_tensors(layers=2), "query_key_value",
         ["query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"]),
    ],
    ids=["qwen-v1", "chatglm3"],
)  # fmt: skip
def test_remote_code_layouts_from_config_alone_match_their_headers(
    config: dict, tensors: dict, fused: str, named: list[str]
) -> None:
    """Qwen (v1) and ChatGLM run remote code that fuses q, k and v into one projection (ChatGLM: gate and up too).
    Their config alone gives the same linear layers as their headers: the same LoRA count under their own target
    names, and a target list in Llama names (q_proj,v_proj, as the stored runs' and published setups' say) lands
    on the fused projection that holds them, as PEFT's defaults for these models do."""
    from advisor.memory.layer_layouts import layout_targets
    from advisor.memory.user_adapter import linear_layers, lora_count

    config = {**config, "num_hidden_layers": 2, "num_layers": 2}
    from_headers = linear_layers(shape_from_config(config, "x", tensors=tensors), tensors)
    shape = shape_from_config(config, "x")
    from_config = linear_layers(shape, None)
    assert from_config == from_headers
    assert lora_count(from_config, 16, named).trainable == lora_count(from_headers, 16, "all-linear").trainable
    assert layout_targets(shape, ["q_proj", "v_proj"]) == [fused]
    with pytest.raises(UserError, match=f"matches no linear layer.*{fused}"):
        lora_count(from_config, 16, ["q_proj", "v_proj"])


@pytest.mark.parametrize(("model_type", "stale"), [("gpt2", "attn"), ("gpt_neox", "attention"), ("llama", "self_attn")])
def test_buffers_older_checkpoints_saved_are_not_counted_as_parameters(
    model_type: str, stale: str, tmp_path: Path
) -> None:
    """GPT-2's Hub checkpoint stores a [1, 1, 1024, 1024] causal mask per layer (12.6M elements beside 124M
    parameters), Pythia's a [1, 1, 2048, 2048] one, older Llama conversions each layer's rotary inv_freq: buffers
    transformers now skips on load. The count is the model's parameters, and the note says what was left out. A
    GPT-2 Conv1D MLP's width is read from its transposed projection, not assumed."""
    config, tensors, real = _transformers_model(model_type)
    layers = sorted({m.group(1) for n in tensors for m in [re.match(r"^(.*\.\d+)\.", n)] if m})
    for layer in layers:
        tensors[f"{layer}.{stale}.bias"] = [1, 1, 64, 64]
        tensors[f"{layer}.{stale}.masked_bias"] = []
        tensors[f"{layer}.{stale}.rotary_emb.inv_freq"] = [32]
    folder = _header_only_checkpoint(tmp_path / model_type, json.loads(json.dumps(config, default=str)), tensors)
    shape = read_shape(str(folder))
    assert shape.total_params == real
    assert any(f"left out {3 * len(layers)} stored buffers" in a for a in shape.assumptions)
    assert not any("MLP width not stated" in a for a in shape.assumptions)
    expected_width = config.get("intermediate_size") or config.get("n_inner") or 4 * config.get("n_embd", 0)
    assert shape.intermediate == expected_width


HYBRIDS = ["jamba", "falcon_h1", "bamba", "qwen3_next", "recurrent_gemma"]


@pytest.mark.parametrize("model_type", [*HYBRIDS, "llama", "gpt_oss"])
def test_a_hybrids_other_layers_are_said_to_be_priced_as_attention(model_type: str, tmp_path: Path) -> None:
    """Mamba, linear-attention and recurrent layers keep other tensors for backward than attention layers do; a
    hybrid is read (its parameters exactly) and priced with attention layers of its widths, which is said. A plain
    transformer (sliding-window layers included) says nothing of the kind."""
    config, tensors, real = _transformers_model(model_type)
    folder = _header_only_checkpoint(tmp_path / model_type, json.loads(json.dumps(config, default=str)), tensors)
    shape = read_shape(str(folder))
    assert shape.total_params == real
    said = [a for a in shape.assumptions if a.startswith("a hybrid model")]
    assert bool(said) == (model_type in HYBRIDS)


def test_multi_head_latent_attention_is_priced_at_its_query_and_key_width(tmp_path: Path) -> None:
    """DeepSeek's config says head_dim = the rotary part (64); a head's queries and keys are nope + rope (192) wide.
    The shape uses the latter, and says how MLA is priced."""
    config, tensors, real = _transformers_model("deepseek_v3")
    folder = _header_only_checkpoint(tmp_path / "dsv3", json.loads(json.dumps(config, default=str)), tensors)
    shape = read_shape(str(folder))
    assert shape.total_params == real
    assert shape.head_dim == config["qk_nope_head_dim"] + config["qk_rope_head_dim"] != config["head_dim"]
    assert any(a.startswith("multi-head latent attention") for a in shape.assumptions)


def test_a_state_space_model_is_refused_even_with_ssm_heads(tmp_path: Path) -> None:
    """Mamba-2's config has num_heads (its SSM heads), so it does not lack attention fields; it has no attention."""
    config, tensors, _ = _transformers_model("mamba2")
    folder = _header_only_checkpoint(tmp_path / "mamba2", json.loads(json.dumps(config, default=str)), tensors)
    with pytest.raises(UserError, match="state-space or recurrent model without attention layers"):
        read_shape(str(folder))


def test_a_checkpoint_that_also_stores_a_tied_head_counts_it_once(tmp_path: Path) -> None:
    """Some exports write lm_head.weight although tie_word_embeddings is true; transformers ties it to the
    embeddings on load, so the model holds one matrix, and that is said."""
    config, tensors, real = _transformers_model("llama")
    assert config["tie_word_embeddings"] is False
    config["tie_word_embeddings"] = True
    tied_real = real - config["vocab_size"] * config["hidden_size"]
    tensors["lm_head.weight"] = tensors["model.embed_tokens.weight"]
    folder = tmp_path / "tied"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config, default=str))
    write_header_only(folder / "model.safetensors", tensors)
    shape = read_shape(str(folder))
    assert shape.tied_embeddings and shape.total_params == tied_real
    assert any("counted once" in a for a in shape.assumptions)
    del config["tie_word_embeddings"]  # not stated: a stored head is a separate head, as the headers say
    (folder / "config.json").write_text(json.dumps(config, default=str))
    assert read_shape(str(folder)).total_params == real and not read_shape(str(folder)).tied_embeddings


def test_an_adapter_folder_passed_as_the_model_says_what_to_pass_instead(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from advisor.cli.main import app

    folder = tmp_path / "my-adapter"
    folder.mkdir()
    adapter = {"peft_type": "LORA", "r": 8, "base_model_name_or_path": "meta-llama/Llama-3.1-8B"}
    (folder / "adapter_config.json").write_text(json.dumps(adapter))
    run = CliRunner().invoke(app, ["--vram", "24", "--task", "math", "--model", str(folder)])
    assert run.exit_code == 2 and len(run.output.strip().splitlines()) == 1
    assert "is a PEFT adapter folder" in run.output and "--model (meta-llama/Llama-3.1-8B)" in run.output
    assert "--adapter-config" in run.output


def test_a_checkpoint_missing_a_shard_is_refused_not_undercounted(tmp_path: Path) -> None:
    """A download cut short: the index names a shard the folder lacks. Counting the rest would price a smaller
    model without a word."""
    from typer.testing import CliRunner

    from advisor.cli.main import app

    tensors = _llama_tensors({**LLAMA2_7B, "num_hidden_layers": 2})
    names = sorted(tensors)
    halves = {"model-00001-of-00002.safetensors": names[: len(names) // 2],
              "model-00002-of-00002.safetensors": names[len(names) // 2 :]}  # fmt: skip
    folder = tmp_path / "llama"
    _header_only_checkpoint(folder, {**LLAMA2_7B, "num_hidden_layers": 2}, {})
    (folder / "model.safetensors").unlink()
    for shard, part in halves.items():
        write_header_only(folder / shard, {name: tensors[name] for name in part})
    weight_map = {name: shard for shard, part in halves.items() for name in part}
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    assert read_shape(str(folder)).total_params == sum(math.prod(s) for s in tensors.values())
    (folder / "model-00002-of-00002.safetensors").unlink()
    run = CliRunner().invoke(app, ["--vram", "24", "--task", "math", "--model", str(folder)])
    assert run.exit_code == 2 and len(run.output.strip().splitlines()) == 1
    assert "missing 1 of the 2 shards" in run.output and "model-00002-of-00002.safetensors" in run.output


def test_an_unknown_layout_without_headers_is_refused_with_the_reason() -> None:
    config = {
        "model_type": "codegen",
        "n_embd": 2048,
        "n_layer": 24,
        "n_head": 32,
        "vocab_size": 51200,
    }
    with pytest.raises(UserError, match=r"codegen is not a layout the memory model can count from config\.json alone"):
        shape_from_config(config, "Salesforce/codegen-350M-mono")


@pytest.mark.parametrize(
    ("config_class", "reason"),
    [("T5Config", "is an encoder-decoder"), ("BartConfig", "is an encoder-decoder"),
     ("MambaConfig", "state-space or recurrent"), ("RwkvConfig", "state-space or recurrent")],
)  # fmt: skip
def test_models_the_memory_model_does_not_price_are_refused_for_what_they_are(config_class: str, reason: str) -> None:
    """T5 has every field a decoder has (d_model, num_layers, num_heads): it must not be priced as one; Mamba
    and RWKV have no attention heads, which is the reason to give, not a missing field."""
    import transformers

    config = getattr(transformers, config_class)().to_dict()
    with pytest.raises(UserError, match=reason):
        shape_from_config(config, config_class)


def test_the_recommend_view_prints_the_assumptions(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from advisor.cli.main import app

    folder = tmp_path / "qwen"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(QWEN_7B))
    run = CliRunner().invoke(app, ["--vram", "80", "--task", "math", "--model", str(folder)])
    assert run.exit_code == 0, run.output
    assert "Assumed: Qwen (v1) config: the MLP width is half its intermediate_size" in run.stdout
    data = json.loads(
        CliRunner().invoke(app, ["--vram", "80", "--task", "math", "--model", str(folder), "--json"]).stdout
    )
    assert any("estimated from config.json" in a for a in json.dumps(data).split('"') if a)


LLAMA2_7B = {
    "model_type": "llama",
    "architectures": ["LlamaForCausalLM"],
    "hidden_size": 4096,
    "intermediate_size": 11008,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 32,
    "vocab_size": 32000,
    "tie_word_embeddings": False,
    "rms_norm_eps": 1e-5,
    "max_position_embeddings": 4096,
}


def _llama_tensors(config: dict) -> dict[str, list[int]]:
    """The tensor names and shapes transformers gives this config (built on meta: no weights)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    with torch.device("meta"):
        model = LlamaForCausalLM(LlamaConfig(**{k: v for k, v in config.items() if k != "architectures"}))
    return {name: list(p.shape) for name, p in model.state_dict().items()}


def _peft_count(config: dict, lora: dict) -> int:
    import peft
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    with torch.device("meta"):
        model = LlamaForCausalLM(LlamaConfig(**{k: v for k, v in config.items() if k != "architectures"}))
    adapted = peft.get_peft_model(model, peft.LoraConfig(**lora))
    return adapted.get_nb_trainable_parameters()[0]


@pytest.mark.parametrize(
    ("flags", "lora"),
    [
        (["--lora-r", "16", "--target-modules", "all-linear"], {"r": 16, "target_modules": "all-linear"}),
        (["--lora-r", "8", "--target-modules", "q_proj,v_proj", "--use-dora"],
         {"r": 8, "target_modules": ["q_proj", "v_proj"], "use_dora": True}),
    ],
    ids=["r16-all-linear", "dora-r8-qv"],
)  # fmt: skip
def test_the_users_lora_is_counted_exactly_as_peft_counts_it(flags: list[str], lora: dict, tmp_path: Path) -> None:
    from advisor.memory.request import memory_request

    folder = _header_only_checkpoint(tmp_path / "llama-2-7b", LLAMA2_7B, _llama_tensors(LLAMA2_7B))
    expected = _peft_count(LLAMA2_7B, {**lora, "task_type": "CAUSAL_LM"})
    r, targets = int(flags[1]), flags[3]
    request = memory_request(str(folder), lora_r=r, target_modules=targets, use_dora="--use-dora" in flags)
    assert request is not None and request.adapter is not None
    assert request.adapter.trainable == expected
    (tmp_path / "adapter_config.json").write_text(
        json.dumps({"peft_type": "LORA", "task_type": "CAUSAL_LM", "lora_alpha": 32, **lora})
    )
    from_file = memory_request(str(folder), adapter_config=tmp_path / "adapter_config.json")
    assert from_file is not None and from_file.adapter is not None
    assert from_file.adapter.trainable == expected and from_file.adapter.counted_by.startswith("PEFT")


@pytest.mark.parametrize("model_type", ["mixtral", "qwen3_moe", "deepseek_v2"])
def test_lora_on_a_mixture_of_experts_is_counted_by_peft(model_type: str, tmp_path: Path) -> None:
    """transformers 5 stacks the experts (and fuses gate with up); PEFT adapts each stacked parameter with one LoRA,
    the fused one at twice the rank. The shortcut flags get PEFT's own count there, not a per-layer sum."""
    import peft
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from advisor.memory.request import memory_request

    config, tensors, _ = _transformers_model(model_type)
    folder = tmp_path / model_type
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config, default=str))
    write_header_only(folder / "model.safetensors", tensors)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(folder))
    expected = peft.get_peft_model(model, peft.LoraConfig(r=16, target_modules="all-linear"))
    request = memory_request(str(folder), lora_r=16, target_modules="all-linear")
    assert request is not None and request.adapter is not None
    assert request.adapter.trainable == expected.get_nb_trainable_parameters()[0]
    assert request.adapter.counted_by.startswith("PEFT")


def test_a_vision_language_models_lora_counts_its_vision_tower_as_peft_does(tmp_path: Path) -> None:
    """PEFT matches target names anywhere: all-linear on Gemma 3 adapts the SigLIP tower's layers too, and the few
    linear layers outside any block stack (the tower's pooling head). The count takes them all: exactly PEFT's."""
    import peft
    import torch
    import transformers

    config = transformers.Gemma3Config(
        text_config={"hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2, "num_attention_heads": 4,
                     "num_key_value_heads": 2, "head_dim": 32, "vocab_size": 512},
        vision_config={"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 2,
                       "image_size": 32, "patch_size": 8},
        mm_tokens_per_image=4,
    )  # fmt: skip
    with torch.device("meta"):
        model = transformers.AutoModelForCausalLM.from_config(config)
    tensors = {name: list(p.shape) for name, p in model.named_parameters()}
    folder = tmp_path / "gemma3"
    folder.mkdir()
    (folder / "config.json").write_text(config.to_json_string())
    write_header_only(folder / "model.safetensors", tensors)
    lora = peft.get_peft_model(model, peft.LoraConfig(r=8, target_modules="all-linear"))
    expected = sum(p.numel() for p in lora.parameters() if p.requires_grad)
    request = memory_request(str(folder), lora_r=8, target_modules="all-linear")
    assert request is not None and request.adapter is not None
    text_only = sum(8 * (s[0] + s[1]) for n, s in tensors.items() if "language_model.layers." in n and len(s) == 2)
    outside_stacks = sum(
        p.numel() for n, p in lora.named_parameters() if p.requires_grad and not re.search(r"\.\d+\.", n)
    )  # the vision tower's pooling head
    assert outside_stacks > 0
    assert text_only < request.adapter.trainable == expected


def test_a_saved_adapters_own_config_counts_what_training_it_costs(tmp_path: Path) -> None:
    """The adapter_config.json PEFT writes beside a trained adapter says ``inference_mode: true``; counted as saved,
    that adapter would train nothing. The count is the training one."""
    import peft
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from advisor.memory.request import memory_request

    small = {**LLAMA2_7B, "hidden_size": 256, "intermediate_size": 688, "num_hidden_layers": 2,
             "num_attention_heads": 4, "num_key_value_heads": 4, "vocab_size": 1000}  # fmt: skip
    folder = _header_only_checkpoint(tmp_path / "llama", small, _llama_tensors(small))
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(**{k: v for k, v in small.items() if k != "architectures"}))
    lora = peft.get_peft_model(model, peft.LoraConfig(r=8, target_modules=["q_proj", "v_proj", "down_proj"]))
    training = lora.get_nb_trainable_parameters()[0]
    lora.save_pretrained(tmp_path / "adapter")
    saved = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert saved["inference_mode"] is True  # as PEFT saves it
    request = memory_request(str(folder), adapter_config=tmp_path / "adapter" / "adapter_config.json")
    assert request is not None and request.adapter is not None and request.adapter.trainable == training > 0


def test_an_adapter_config_without_a_model_counts_offline_on_the_benchmark_model(tmp_path: Path) -> None:
    """No --model: the count is on the model the stored runs trained (Llama-3.2-3B), built from the shape kept of
    it, so no Hub access is needed, for any method."""
    import peft
    import torch
    from transformers import AutoModelForCausalLM

    from advisor.memory.model import BENCHMARK_SHAPE
    from advisor.memory.request import memory_request
    from advisor.memory.user_adapter import _benchmark_config

    config = _benchmark_config()
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    assert sum(p.numel() for p in model.parameters()) == BENCHMARK_SHAPE.total_params
    oft = {"peft_type": "OFT", "r": 0, "oft_block_size": 32, "target_modules": ["q_proj", "v_proj"]}
    expected = peft.get_peft_model(model, peft.OFTConfig(**{k: v for k, v in oft.items() if k != "peft_type"}))
    (tmp_path / "adapter_config.json").write_text(json.dumps({**oft, "inference_mode": True}))
    request = memory_request(None, adapter_config=tmp_path / "adapter_config.json")
    assert request is not None and request.adapter is not None
    assert request.adapter.trainable == expected.get_nb_trainable_parameters()[0] > 0


def test_the_recommendation_uses_the_users_count_on_lora_rows(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from advisor.cli.main import app

    folder = _header_only_checkpoint(tmp_path / "llama-2-7b", LLAMA2_7B, _llama_tensors(LLAMA2_7B))
    expected = _peft_count(LLAMA2_7B, {"r": 16, "target_modules": "all-linear", "task_type": "CAUSAL_LM"})
    args = ["--vram", "80", "--task", "math", "--model", str(folder), "--all-variants", "--json"]
    run = CliRunner().invoke(app, [*args, "--lora-r", "16", "--target-modules", "all-linear"])
    assert run.exit_code == 0, run.output
    rows = json.loads(run.stdout)["rows"]
    lora_rows = [row for row in rows if row["peft_type"] == "LORA"]
    assert lora_rows and all(row["trainable_params"] == expected for row in lora_rows)
    assert any(row["peft_type"] not in ("LORA", None) and row["trainable_params"] != expected for row in rows)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--lora-r", "16", "--target-modules", "query,value"], "matches no linear layer of this model"),
        (["--lora-r", "16"], "--lora-r needs --target-modules"),
        (["--target-modules", "q_proj"], "pass --lora-r too"),
        (["--lora-r", "0", "--target-modules", "q_proj"], "--lora-r must be a positive integer"),
        (["--adapter-config", "ADAPTER", "--lora-r", "8"], "not both"),
        (["--adapter-config", "MISSING"], "no such file"),
        (["--adapter-config", "BERT_NAMES"], "does not fit"),
    ],
)
def test_bad_adapter_flags_are_one_line_and_exit_2(flags: list[str], message: str, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from advisor.cli.main import app

    folder = tmp_path / "llama"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(LLAMA2_7B))
    (tmp_path / "adapter.json").write_text(json.dumps({"peft_type": "LORA", "r": 8, "target_modules": ["q_proj"]}))
    (tmp_path / "bert.json").write_text(json.dumps({"peft_type": "LORA", "r": 8, "target_modules": ["query", "key"]}))
    names = {
        "ADAPTER": tmp_path / "adapter.json",
        "MISSING": tmp_path / "nope.json",
        "BERT_NAMES": tmp_path / "bert.json",
    }
    flags = [str(names.get(f, f)) for f in flags]
    run = CliRunner().invoke(app, ["--vram", "24", "--task", "math", "--model", str(folder), *flags])
    assert run.exit_code == 2, run.output
    assert message in run.output and len(run.output.strip().splitlines()) == 1, run.output
