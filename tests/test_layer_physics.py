"""The layer-physics table holds at shapes it was not fitted on, and moves only non-Llama layers.

``benchmarks/layer_physics.py`` fits bytes per token per layer = h·hidden + m·MLP + q·(heads × head_dim) +
k·(kv heads × head_dim) on five tiny shapes per model type. Here the same count on a sixth shape must agree with
the table, and the memory model must leave a Llama-layout model's activations exactly where they were.
"""

from __future__ import annotations

import importlib.util
from dataclasses import replace
from pathlib import Path

import pytest

from advisor.memory.layer_physics import coefficients, counted, layer_bytes, layer_width
from advisor.memory.model import BENCHMARK_SETUP, BENCHMARK_SHAPE, activation_unit

REPO = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location("layer_physics_script", REPO / "benchmarks" / "layer_physics.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
@pytest.mark.parametrize(
    "model_type",
    ["llama", "qwen3", "gemma2", "gemma3_text", "phi3", "gpt_neox", "falcon", "gpt2", "starcoder2", "mixtral"],
)
def test_table_predicts_a_shape_it_was_not_fitted_on(model_type: str) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    script = _script()
    measured, widths = script.layer_bytes(model_type, 384, 1536, 6, 3, 64, k=3)  # (3 experts per token for MoE)
    c = {"heads": 0.0, "routed": 0.0, **coefficients()[model_type]}
    predicted = sum(c[w] * widths[w] for w in ("hidden", "mlp", "q", "kv", "heads", "routed"))
    assert predicted == pytest.approx(measured, rel=0.03), (model_type, measured, predicted)


def test_llama_layouts_are_unchanged_and_other_layers_scale() -> None:
    assert layer_width(BENCHMARK_SHAPE) == pytest.approx(BENCHMARK_SHAPE.hidden + BENCHMARK_SHAPE.intermediate)
    for model_type in ("mistral", "qwen2", "granite", "smollm3", "not-in-the-table"):
        shape = replace(BENCHMARK_SHAPE, model_type=model_type)
        assert activation_unit(shape, BENCHMARK_SETUP) == pytest.approx(
            activation_unit(BENCHMARK_SHAPE, BENCHMARK_SETUP)
        )
    gemma2 = replace(BENCHMARK_SHAPE, model_type="gemma2")  # two more fp32 norms per layer: more kept per width
    neox = replace(BENCHMARK_SHAPE, model_type="gpt_neox")  # an ungated MLP, one LayerNorm pass: less
    base = activation_unit(BENCHMARK_SHAPE, BENCHMARK_SETUP)
    assert activation_unit(gemma2, BENCHMARK_SETUP) > 1.1 * base
    assert activation_unit(neox, BENCHMARK_SETUP) < 0.6 * base
    assert layer_bytes(gemma2) / layer_bytes(BENCHMARK_SHAPE) == pytest.approx(
        activation_unit(gemma2, BENCHMARK_SETUP) / base
    )
    assert counted("gemma2") and not counted("not-in-the-table")
    # a mixture of experts: the routed copies of the input grow with the experts per token
    moe = replace(BENCHMARK_SHAPE, model_type="mixtral", experts=8, active_experts=2)
    assert layer_bytes(replace(moe, active_experts=4)) > layer_bytes(moe)


@pytest.mark.slow
def test_a_vision_language_text_decoder_keeps_what_its_base_decoder_keeps() -> None:
    """Qwen2-VL's text layers save, per token, exactly what Qwen2's do (counted with autograd, text-only input), so
    the table's qwen2 row prices them (``SAME_LAYER_AS``)."""
    pytest.importorskip("peft")
    import peft
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForImageTextToText

    from advisor.memory.layer_physics import physics_type
    from advisor.memory.saved_tensors import saved_bytes

    widths = dict(hidden_size=512, intermediate_size=768, num_attention_heads=4, num_key_value_heads=2, vocab_size=1000)

    def vision_language(layers: int):
        config = AutoConfig.for_model("qwen2_vl")
        for key, value in {**widths, "num_hidden_layers": layers}.items():
            setattr(config.text_config, key, value)
        config.text_config.layer_types = ["full_attention"] * layers
        config.vision_config.depth = 1
        return AutoModelForImageTextToText.from_config(config, attn_implementation="sdpa")

    def text_only(layers: int):
        config = AutoConfig.for_model("qwen2", **widths, num_hidden_layers=layers)
        return AutoModelForCausalLM.from_config(config, attn_implementation="sdpa")

    def per_layer_token(build) -> float:
        counts = []
        for layers in (1, 2):
            torch.manual_seed(0)
            lora = peft.LoraConfig(r=4, target_modules=["q_proj", "v_proj"])
            model = peft.get_peft_model(build(layers).to(torch.bfloat16), lora)
            model.train()
            ids = torch.randint(0, 1000, (2, 64), generator=torch.Generator().manual_seed(0))
            counts.append(saved_bytes(model, input_ids=ids))
        return (counts[1] - counts[0]) / (2 * 64)

    assert per_layer_token(vision_language) == per_layer_token(text_only) > 0
    assert physics_type("qwen2_vl_text") == "qwen2" and counted("qwen2_vl_text")
