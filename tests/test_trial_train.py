"""One trial candidate on real models: MiniLM classification and a tiny Llama, deterministic, measured."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from advisor.trial.data import SAMPLE_DATASET, load_trial_data
from advisor.trial.train import TrainBudget, train_candidate


@pytest.fixture(scope="module")
def sentiment():
    return load_trial_data(str(SAMPLE_DATASET))


def lora_cls():
    import peft

    return peft.LoraConfig(task_type="SEQ_CLS", r=8, lora_alpha=16, target_modules=["query", "value"])


@pytest.mark.slow
def test_minilm_lora_learns_and_is_deterministic(minilm: Path, sentiment, tmp_path: Path) -> None:
    budget = TrainBudget(steps=12, batch_size=8)
    a = train_candidate(str(minilm), sentiment, "lora", lora_cls(), 5e-4, budget, tmp_path / "a")
    b = train_candidate(str(minilm), sentiment, "lora", lora_cls(), 5e-4, budget, tmp_path / "b")
    assert a.status == "ok" and a.steps_done == 12
    assert a.train_losses == b.train_losses and a.eval_loss == b.eval_loss  # same seed, same data order
    assert 0 <= a.eval_accuracy <= 1 and math.isfinite(a.eval_loss)
    assert a.trainable_params > 0 and a.checkpoint_bytes > 0 and a.tokens_per_s > 0
    assert (tmp_path / "a" / "adapter_model.safetensors").is_file()
    assert json.loads((tmp_path / "a" / "adapter_config.json").read_text())["peft_type"] == "LORA"
    assert a.memory_kind == "cpu peak RSS growth"


@pytest.mark.slow
def test_minilm_oft_and_ia3_run_under_the_same_loop(minilm: Path, sentiment) -> None:
    import peft

    budget = TrainBudget(steps=4, batch_size=4)
    oft = peft.OFTConfig(task_type="SEQ_CLS", r=0, oft_block_size=32, target_modules=["query", "value"])
    ia3 = peft.IA3Config(
        task_type="SEQ_CLS", target_modules=["value", "output.dense"], feedforward_modules=["output.dense"]
    )
    for method, config in (("oft", oft), ("ia3", ia3)):
        result = train_candidate(str(minilm), sentiment, method, config, 1e-3, budget)
        assert result.status == "ok", result.message
        assert result.eval_loss is not None and len(result.train_losses) == 4


def test_diverging_run_is_stopped_and_reported(minilm: Path, sentiment) -> None:
    result = train_candidate(str(minilm), sentiment, "lora", lora_cls(), 1e4, TrainBudget(steps=20, batch_size=8))
    assert result.status == "diverged" and "stopped" in result.message
    assert result.steps_done < 20 and result.eval_loss is None


def test_tiny_llama_generation_path(tiny_llama: Path, tmp_path: Path) -> None:
    import peft

    rows = [{"instruction": f"What is {i} plus {i}?", "output": f"It is {2 * i}."} for i in range(40)]
    path = tmp_path / "math.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    data = load_trial_data(str(path))
    config = peft.LoraConfig(task_type="CAUSAL_LM", r=4, target_modules=["q_proj", "v_proj"])
    result = train_candidate(str(tiny_llama), data, "lora", config, 1e-3, TrainBudget(steps=6, batch_size=4))
    assert result.status == "ok", result.message
    assert result.eval_accuracy is None and math.isfinite(result.eval_loss)


def test_a_run_that_breaks_mid_training_is_reported_not_raised(minilm: Path, sentiment) -> None:
    """A prompt encoder sized for another model fails in its first forward pass: a failed row, not a crash."""
    import peft

    wrong_width = peft.PromptEncoderConfig(
        task_type="SEQ_CLS",
        num_virtual_tokens=4,
        token_dim=100,  # MiniLM's hidden size is 384
        num_transformer_submodules=1,
        num_attention_heads=12,
        num_layers=6,
        encoder_hidden_size=100,
    )
    result = train_candidate(str(minilm), sentiment, "p_tuning", wrong_width, 1e-3, TrainBudget(steps=3, batch_size=4))
    assert result.status == "failed" and "at step 1" in result.message
    assert result.steps_done == 0 and result.eval_loss is None and result.peak_memory_bytes is not None
