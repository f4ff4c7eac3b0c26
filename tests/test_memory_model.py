"""The memory model: its terms for known shapes, calibration, monotonicity, GPU checks, shapes from files."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from header_only import write_header_only
from typer.testing import CliRunner

from advisor.benchmarks.records import GIB
from advisor.benchmarks.store import load_snapshot
from advisor.cli import app
from advisor.errors import UserError
from advisor.memory.model import (
    BENCHMARK_SETUP,
    BENCHMARK_SHAPE,
    MemorySetup,
    activation_factor,
    base_weight_bytes,
    logit_bytes,
    predict,
)
from advisor.memory.setup import validate_setup
from advisor.memory.shapes import estimate_params, read_shape

REPO = Path(__file__).resolve().parent.parent
LLAMA_8B = {
    "architectures": ["LlamaForCausalLM"],
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "vocab_size": 128256,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
}


def llm_runs():
    return [r for r in load_snapshot().runs if r.benchmark == "MetaMathQA"]


def run(method: str, variant: str):
    return next(r for r in llm_runs() if r.method == method and r.variant == variant)


def test_terms_for_the_benchmark_shape() -> None:
    shape, setup = BENCHMARK_SHAPE, BENCHMARK_SETUP
    assert estimate_params(3072, 8192, 28, 24, 8, 128, 128256, True) == shape.total_params == 3_212_749_824
    assert base_weight_bytes(shape, setup) == shape.total_params * 2
    assert logit_bytes(shape, setup) == 4 * 768 * 128256 * 14
    four_bit = base_weight_bytes(shape, replace(setup, quant="4bit"))
    linear = shape.total_params - 128256 * 3072
    # PEFT's prepare_model_for_kbit_training upcasts the (tied) embeddings of a bitsandbytes model to fp32 ...
    assert four_bit == pytest.approx(linear * 4.127 / 8 + 128256 * 3072 * 4)
    # ... and leaves a GPTQ model's at bf16
    gptq = base_weight_bytes(shape, replace(setup, quant="gptq-4bit"))
    assert gptq == pytest.approx(linear * 4.156 / 8 + 128256 * 3072 * 2)
    assert logit_bytes(shape, replace(setup, quant="4bit")) == 4 * 768 * 128256 * 16  # fp32 head
    assert logit_bytes(shape, replace(setup, quant="gptq-4bit")) == 4 * 768 * 128256 * 14
    lora = predict(run("lora", "rank32"), shape, setup)
    assert lora.terms["trainable + grads + optimizer"] == 9_175_040 * 16  # fp32 weight + grad + two moments


def test_calibration_reproduces_every_benchmark_run() -> None:
    for r in llm_runs():
        assert predict(r, BENCHMARK_SHAPE, BENCHMARK_SETUP).total == pytest.approx(r.peak_memory_bytes, rel=1e-9)
        if r.p99_memory_bytes:
            train = predict(r, BENCHMARK_SHAPE, replace(BENCHMARK_SETUP, mode="train"))
            assert train.total == pytest.approx(r.p99_memory_bytes, rel=1e-9)
        factor = activation_factor(r, "peak")
        assert factor is not None and 0 < factor < 20, r.id  # a physical count of saved vectors


@pytest.mark.parametrize(
    ("change", "larger"),
    [
        ({"batch_size": 8}, True),
        ({"seq_len": 2048}, True),
        ({"quant": "4bit"}, False),
        ({"quant": "8bit"}, False),
        ({"grad_checkpointing": True}, False),
        ({"optimizer": "adamw-8bit"}, False),
        ({"dtype": "fp32"}, True),
        ({"attention": "eager"}, True),
        ({"dtype": "fp32", "amp": "bf16"}, True),
        ({"optimizer": "sgd"}, False),
        ({"quant": "gptq-4bit"}, False),
        ({"quant": "awq-4bit"}, False),
        ({"gpus": 4, "sharding": "zero3"}, False),
        ({"gpus": 2, "sharding": "ddp"}, True),
    ],
)
def test_monotone_in_every_setting(change: dict, larger: bool) -> None:
    shape = read_shape_from(LLAMA_8B)
    # A quantised base saves weights but its layers keep their inputs: compare them checkpointed, where it only saves
    base = replace(BENCHMARK_SETUP, grad_checkpointing="quant" in change)
    for r in (run("lora", "rank32"), run("ia3", "default"), run("prompt_tuning", "default")):
        before = predict(r, shape, base).total
        after = predict(r, shape, replace(base, **change)).total
        assert (after > before) if larger else (after < before), (r.id, change)
    four = predict(run("lora", "rank32"), shape, replace(BENCHMARK_SETUP, quant="4bit")).total
    eight = predict(run("lora", "rank32"), shape, replace(BENCHMARK_SETUP, quant="8bit")).total
    gptq8 = predict(run("lora", "rank32"), shape, replace(BENCHMARK_SETUP, quant="gptq-8bit")).total
    assert four < eight and gptq8 < eight  # GPTQ keeps the embeddings at bf16, bitsandbytes upcasts them


def test_gpu_measurements_off_the_benchmark_setup_within_five_percent() -> None:
    """H100 peaks at other batch/seq/checkpointing (benchmarks/data/gpu_train_memory_h100.json)."""
    rows = json.loads((REPO / "benchmarks/data/gpu_train_memory_h100.json").read_text())["rows"]
    runs = {r.id: r for r in llm_runs()}
    checked = 0
    for row in rows:
        if row["run"] not in runs or row["setup"] == "bench":
            continue
        setup = MemorySetup(batch_size=row["batch"], seq_len=row["seq"], grad_checkpointing=row["grad_checkpointing"])
        predicted = predict(runs[row["run"]], BENCHMARK_SHAPE, setup).total
        assert predicted == pytest.approx(row["max_reserved_bytes"], rel=0.05), row
        checked += 1
    assert checked >= 9


@pytest.mark.slow
@pytest.mark.subprocess
def test_the_gpu_script_runs_its_gap_setups_on_cpu(tmp_path: Path) -> None:
    """The setups a GPU session runs for what the model leaves out (varying lengths with the cache kept, a
    half-precision loss) work end to end; on CPU there is no peak to read, only the loop and the prediction."""
    import subprocess
    import sys

    out = tmp_path / "rows.json"
    script = REPO / "benchmarks/gpu_train_memory.py"
    args = ["--device", "cpu", "--shape", "tiny", "--runs", "lora", "--steps", "2", "--out", str(out)]
    done = subprocess.run(
        [sys.executable, str(script), *args, "--setups", "b1-s2048-gc-varlen,b2-s2048-gc-halfloss"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    rows = json.loads(out.read_text())
    assert [r["setup"] for r in rows] == ["b1-s2048-gc-varlen", "b2-s2048-gc-halfloss"]
    assert all("error" not in r and r["trainable_params"] > 0 and r["predicted_bytes"] > 0 for r in rows)
    assert rows[0]["lengths"] == "varlen" and rows[1]["loss"] == "half"


def read_shape_from(config: dict, folder: Path | None = None):
    import tempfile

    folder = folder or Path(tempfile.mkdtemp())
    (folder / "config.json").write_text(json.dumps(config))
    return read_shape(str(folder))


def test_shape_from_a_local_folder_counts_safetensors_headers(tmp_path: Path) -> None:
    write_header_only(tmp_path / "model-00001.safetensors", {"a": [10, 20], "b": [5]})
    write_header_only(tmp_path / "model-00002.safetensors", {"c": [3, 3, 3]})
    shape = read_shape_from(LLAMA_8B, tmp_path)
    assert shape.total_params == 200 + 5 + 27 and shape.params_source == "safetensors headers"
    assert (shape.hidden, shape.layers, shape.kv_heads, shape.head_dim) == (4096, 32, 8, 128)
    estimated = read_shape_from(LLAMA_8B)
    assert estimated.params_source == "estimated from config.json"
    assert estimated.total_params == pytest.approx(8.03e9, rel=0.01)  # Llama-3.1-8B


def test_bad_models_and_setups_are_clear_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(UserError, match="no such folder"):
        read_shape(str(tmp_path / "absent"))
    with pytest.raises(UserError, match=r"has no config\.json"):
        read_shape(str(tmp_path))
    with pytest.raises(UserError, match="lacks hidden_size"):
        read_shape_from({"vocab_size": 10, "num_hidden_layers": 2, "num_attention_heads": 2}, tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-cache"))
    with pytest.raises(UserError, match="not in the local cache"):
        read_shape("someone/some-model")
    with pytest.raises(UserError, match="not in the local cache"):  # a dotted id is a Hub id, not a file name
        read_shape("meta-llama/Llama-3.1-8B")
    (tmp_path / "weights.safetensors").write_bytes(b"")
    with pytest.raises(UserError, match="is a file; pass the model's folder"):
        read_shape(str(tmp_path / "weights.safetensors"))
    with pytest.raises(UserError, match="--quant"):
        validate_setup(replace(BENCHMARK_SETUP, quant="3bit"))
    with pytest.raises(UserError, match="--seq-len"):
        validate_setup(replace(BENCHMARK_SETUP, seq_len=0))


runner = CliRunner()


def test_cli_explain_for_a_local_llama_in_4bit(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps(LLAMA_8B))
    args = ["--vram", "24", "--task", "math", "--model", str(tmp_path), "--quant", "4bit", "--batch-size", "1"]
    result = runner.invoke(app, [*args, "--explain"])
    assert result.exit_code == 0, result.output
    assert "Predicted memory by term" in result.output and "base weights" in result.output
    assert "PREDICTIONS" in result.output and "cannot train on a 4-bit NF4 bitsandbytes base" in result.output
    assert "Assumed: PEFT's prepare_model_for_kbit_training casts" in result.output  # every assumption, in words
    data = json.loads(runner.invoke(app, [*args, "--json"]).output)
    assert data["memory_model"]["predicted"] and data["memory_model"]["setup"]["quant"] == "4bit"
    assert all(row["peak_memory_gib"] < 24 for row in data["rows"])
    plain = json.loads(runner.invoke(app, ["--vram", "24", "--task", "math", "--json"]).output)
    assert plain["memory_model"] is None  # no setup flag: the measured figures, as stored
    bad = runner.invoke(app, ["--vram", "24", "--task", "math", "--quant", "2bit"])
    assert bad.exit_code == 2


@pytest.mark.subprocess
def test_the_recommend_path_stays_free_of_torch(tmp_path: Path) -> None:
    import subprocess
    import sys

    (tmp_path / "config.json").write_text(json.dumps(LLAMA_8B))
    code = (
        "import sys; from advisor.cli import main; sys.argv=['peft-advise','--vram','24','--task','math','--model',"
        f"{str(tmp_path)!r},'--explain'];\n"
        "try:\n main()\nexcept SystemExit: pass\n"
        "assert not {'torch','transformers','peft'} & set(sys.modules), sorted(sys.modules)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_memory_in_gib_is_what_the_table_shows() -> None:
    lora = predict(run("lora", "rank32"), BENCHMARK_SHAPE, BENCHMARK_SETUP)
    assert lora.total / GIB == pytest.approx(run("lora", "rank32").peak_memory_gib)


@pytest.mark.subprocess
def test_shape_from_the_hub_reads_only_the_config_then_works_offline(tmp_path: Path) -> None:
    """A loopback Hub serves config.json (no weights): read once through the HF cache, then offline from it."""
    import os
    import subprocess
    import sys

    from fake_hub import FakeHub, FakeRepo, HubState

    state = HubState(models=[FakeRepo(id="org/llama-8b", files={"config.json": json.dumps(LLAMA_8B).encode()})])
    code = "from advisor.memory.shapes import read_shape as r; s = r('org/llama-8b'); print(s.layers, s.params_source)"
    with FakeHub(state) as hub:
        env = {**os.environ, "HF_ENDPOINT": hub.url, "HF_HUB_OFFLINE": "0", "HF_HOME": str(tmp_path / "hf")}
        online = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert online.returncode == 0, online.stderr[-2000:]
    assert online.stdout.strip() == "32 estimated from config.json"
    assert [p.name for p in (tmp_path / "hf").rglob("*") if p.is_file() and "snapshots" in p.parts] == ["config.json"]
    offline = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={**env, "HF_HUB_OFFLINE": "1"}, timeout=120
    )
    assert offline.returncode == 0 and offline.stdout.startswith("32 "), offline.stderr[-2000:]
