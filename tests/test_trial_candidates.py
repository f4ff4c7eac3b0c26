"""Benchmark configs (Llama module names) adapted to the user's model: BERT and a tiny Llama."""

from __future__ import annotations

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
