"""Benchmark configs (Llama module names) adapted to the user's model: BERT and a tiny Llama."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from advisor.benchmarks.store import load_snapshot
from advisor.errors import UserError
from advisor.trial.candidates import build_candidate, map_modules, module_names


def run_for(method: str, variant: str | None = None):
    runs = [r for r in load_snapshot().runs if r.benchmark == "MetaMathQA" and r.method == method]
    return next(r for r in runs if variant is None or r.variant == variant)


def test_bert_names_for_llama_roles(minilm: Path) -> None:
    names = module_names(str(minilm))
    seen: dict[str, str] = {}
    assert map_modules(["q_proj", "v_proj", "gate_proj", "down_proj", "o_proj"], names, seen) == [
        "query",
        "value",
        "output.dense",
        "attention.output.dense",
    ]  # no gate in BERT; down -> output.dense
    assert seen["q_proj"] == "query" and "gate_proj" not in seen


def test_ia3_default_on_bert_keeps_feedforward_inside_targets(minilm: Path) -> None:
    candidate = build_candidate(run_for("ia3", "default"), str(minilm), "classification", steps=30)
    config = candidate.config
    assert set(config.feedforward_modules) <= set(config.target_modules)
    assert {"value", "key", "output.dense"} == set(config.target_modules)
    assert config.task_type == "SEQ_CLS" and candidate.learning_rate == pytest.approx(1e-4)


@pytest.mark.parametrize("steps", [1, 2, 10, 40])
def test_adalora_schedule_scaled_to_the_trial(tiny_llama: Path, steps: int) -> None:
    candidate = build_candidate(run_for("adalora"), str(tiny_llama), "generation", steps=steps)
    assert candidate.config.total_step == steps and candidate.config.tinit < steps - candidate.config.tfinal
    assert set(candidate.config.target_modules) == {"q_proj", "v_proj"}
    assert candidate.config.rank_pattern in (None, {})  # learned during the benchmark run: not copied


def test_every_stored_llm_method_builds_on_tiny_llama(tiny_llama: Path) -> None:
    names = module_names(str(tiny_llama))
    methods = {r.method for r in load_snapshot().runs if r.benchmark == "MetaMathQA" and r.peft_type}
    failures = {}
    for method in sorted(methods):
        try:
            build_candidate(run_for(method), str(tiny_llama), "generation", steps=30, names=names)
        except UserError as exc:
            failures[method] = str(exc)
    assert not failures, failures


def test_no_counterpart_is_a_clear_error(minilm: Path) -> None:
    run = run_for("lora", "rank10-target-mlp")  # gate/up/down only: BERT has up and down, so it maps
    assert build_candidate(run, str(minilm), "classification", steps=10).config.target_modules
    with pytest.raises(UserError, match="has a counterpart in"):
        build_candidate(run, str(minilm), "classification", steps=10, names=["encoder.foo"])


@pytest.mark.slow
def test_built_candidates_train_on_minilm(minilm: Path) -> None:
    from advisor.trial.data import SAMPLE_DATASET, load_trial_data
    from advisor.trial.train import TrainBudget, train_candidate

    data = load_trial_data(str(SAMPLE_DATASET))
    for method in ("lora", "oft", "ia3"):
        candidate = build_candidate(run_for(method), str(minilm), "classification", steps=3)
        result = train_candidate(
            str(minilm), data, method, candidate.config, candidate.learning_rate, TrainBudget(steps=3, batch_size=4)
        )
        assert result.status == "ok", (method, result.message)


def test_norm_layers_map_for_ln_tuning(minilm: Path, tiny_llama: Path) -> None:
    llama_norms = ["input_layernorm", "post_attention_layernorm", "norm"]
    assert map_modules(llama_norms, module_names(str(minilm)), {}) == ["LayerNorm"]
    assert map_modules(llama_norms, module_names(str(tiny_llama)), {}) == llama_norms  # its own names, kept


def _fused_model(tmp_path: Path, model_type: str, **widths) -> Path:
    """A tiny model of a layout that fuses its projections, saved as transformers saves it (random weights)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(0)
    folder = tmp_path / model_type
    AutoModelForCausalLM.from_config(AutoConfig.for_model(model_type, vocab_size=256, **widths)).save_pretrained(folder)
    return folder


@pytest.mark.parametrize(
    ("model_type", "widths", "mapped"),
    [
        ("gpt2", {"n_embd": 64, "n_layer": 2, "n_head": 2}, {"q_proj": "c_attn", "v_proj": "c_attn",
                                                            "o_proj": "attn.c_proj", "down_proj": "mlp.c_proj"}),
        ("phi3", {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 2,
                  "pad_token_id": 0}, {"q_proj": "qkv_proj", "v_proj": "qkv_proj", "gate_proj": "gate_up_proj"}),
        ("gpt_neox", {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 2},
         {"q_proj": "query_key_value", "down_proj": "dense_4h_to_h"}),
    ],
)  # fmt: skip
def test_fused_projections_stand_for_their_parts(model_type: str, widths: dict, mapped: dict, tmp_path: Path) -> None:
    """GPT-2's c_attn, Phi-3's qkv_proj/gate_up_proj, GPT-NeoX's query_key_value: the fused layer is adapted
    where the benchmark named its parts, once, and GPT-2's two c_proj are told apart by their parent."""
    folder = _fused_model(tmp_path, model_type, **widths)
    names = module_names(str(folder))
    seen: dict[str, str] = {}
    targets = map_modules(["q_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"], names, seen)
    assert {k: seen[k] for k in mapped} == mapped
    assert len(targets) == len(set(targets))  # q and v onto one fused layer: adapted once
    candidate = build_candidate(run_for("lora"), str(folder), "generation", steps=3)
    assert set(candidate.config.target_modules) <= set(targets) and candidate.config.target_modules


@pytest.mark.slow
def test_a_gpt2_lm_head_model_trains_in_a_trial(tmp_path: Path) -> None:
    """GPT2LMHeadModel is a causal LM although its name does not say ForCausalLM (and transformers 5's config has
    no is_decoder): LoRA trains on its fused c_attn."""
    from advisor.trial.data import load_trial_data
    from advisor.trial.train import TrainBudget, train_candidate

    folder = _fused_model(tmp_path, "gpt2", n_embd=64, n_layer=2, n_head=2)
    rows = tmp_path / "sums.jsonl"
    pairs = [{"prompt": f"What is {i} plus {i}?", "response": f"It is {2 * i}."} for i in range(24)]
    rows.write_text("".join(json.dumps(pair) + "\n" for pair in pairs))
    data = load_trial_data(str(rows))
    candidate = build_candidate(run_for("lora"), str(folder), data.kind, steps=2)
    result = train_candidate(
        str(folder), data, "lora", candidate.config, candidate.learning_rate, TrainBudget(steps=2, batch_size=4)
    )
    assert result.status == "ok", result.message


@pytest.mark.parametrize(
    ("model_type", "extra", "expected"),
    [
        ("deberta-v2", {}, ["query_proj", "key_proj", "value_proj", "attention.output.dense", "intermediate.dense",
                            "output.dense"]),
        ("modernbert", {"global_attn_every_n_layers": 1, "pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2,
                        "cls_token_id": 1, "sep_token_id": 2}, ["Wqkv", "attn.Wo", "Wi", "mlp.Wo"]),
        ("albert", {"embedding_size": 64}, ["query", "key", "value", "attention.dense", "ffn", "ffn_output"]),
    ],
)  # fmt: skip
def test_classifier_encoders_map_every_role(model_type: str, extra: dict, expected: list[str]) -> None:
    """DeBERTa-v3, ModernBERT and ALBERT (common classification bases) name their projections their own way."""
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification

    widths = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 2}
    config = AutoConfig.for_model(model_type, vocab_size=256, **widths, **extra)
    with torch.device("meta"):
        names = [n for n, _ in AutoModelForSequenceClassification.from_config(config).named_modules() if n]
    roles = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    assert map_modules(roles, names, {}) == expected


def test_a_container_named_like_a_projection_is_not_a_target() -> None:
    """DBRX's ``ffn`` holds its router and stacked experts (ALBERT's ``ffn`` is a Linear): roles resolve to leaf
    modules only, so a trial on DBRX adapts its attention rather than failing inside PEFT on a container."""
    import torch
    from transformers import DbrxConfig, DbrxModel

    config = DbrxConfig(
        d_model=64,
        n_heads=4,
        n_layers=2,
        max_seq_len=64,
        vocab_size=128,
        attn_config={"kv_n_heads": 2, "rope_theta": 10000.0},
        ffn_config={"ffn_hidden_size": 64, "moe_num_experts": 4, "moe_top_k": 1},
    )
    with torch.device("meta"):
        names = [n for n, _ in DbrxModel(config).named_modules() if n]
    roles = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    assert map_modules(roles, names, {}) == ["Wqkv", "out_proj"]
