"""Layer-streamed conversion: the same LoRA and fidelity as loading the model whole, one block in memory.

The whole-model path (``--no-stream``) is the reference: streamed conversion runs the same batches
through the same weights block by block, so the written tensors must be identical and every figure
equal to float rounding. A broken stream would not show in its own fidelity (it would compare a wrong
adapter output with a LoRA fitted to it), so these tests compare against the whole-model path.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import pytest
from adapter_factory import NEEDS_BIASES, make_adapter, save_trained

from advisor.errors import UserError
from converters.convert import ConvertOptions, ConvertResult, convert_adapter
from converters.shards import Checkpoint
from converters.streamed_model import STREAMED_METHODS, STREAMED_MODEL_TYPES

# ---------------------------------------------------------------------------------------------- shard reader


def _save(path: Path, tensors: dict[str, Any]) -> Path:
    from safetensors.torch import save_file

    save_file(tensors, str(path))
    return path


def test_shard_reader_matches_safetensors_for_every_dtype(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch
    from safetensors import safe_open

    import converters.shards as shards

    generator = torch.Generator().manual_seed(0)
    tensors = {
        "bf16": torch.randn(37, 11, generator=generator).to(torch.bfloat16),
        "f16": torch.randn(5, 3, 2, generator=generator).to(torch.float16),
        "f32": torch.randn(9, generator=generator),
        "i64": torch.arange(12).reshape(3, 4),
        "flags": torch.tensor([True, False, True]),
        "scalar": torch.tensor(2.5),
        "empty": torch.zeros(0, 4),
    }
    _save(tmp_path / "model-00001.safetensors", dict(list(tensors.items())[:4]))
    _save(tmp_path / "model-00002.safetensors", dict(list(tensors.items())[4:]))
    monkeypatch.setattr(shards, "SLICE_BYTES", 40)  # a few rows per slice: the slicing is exercised
    checkpoint = Checkpoint(tmp_path)
    assert sorted(checkpoint.keys()) == sorted(tensors)
    for key, expected in tensors.items():
        file = next(p for p in tmp_path.glob("*.safetensors") if key in safe_open(str(p), "pt").keys())
        with safe_open(str(file), "pt") as handle:
            reference = handle.get_tensor(key)
        got = checkpoint.read(key)
        assert got.dtype == reference.dtype and torch.equal(got, reference), key
        if expected.is_floating_point():
            assert torch.equal(checkpoint.read(key, torch.float32), reference.float()), key


def test_shard_reader_reads_only_the_shards_the_index_names(tmp_path: Path) -> None:
    import torch

    _save(tmp_path / "model-00001-of-00001.safetensors", {"layers.0.w": torch.ones(2)})
    _save(tmp_path / "consolidated.safetensors", {"layers.0.attention.wq": torch.zeros(2)})
    index = {"weight_map": {"layers.0.w": "model-00001-of-00001.safetensors"}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    assert Checkpoint(tmp_path).keys() == ["layers.0.w"]


def test_shard_reader_refuses_corrupt_and_truncated_files(tmp_path: Path) -> None:
    import torch

    good = _save(tmp_path / "model.safetensors", {"w": torch.ones(64, 64)})
    data = good.read_bytes()
    good.write_bytes(data[: len(data) // 2])  # a download cut short
    with pytest.raises(UserError, match="download"):
        Checkpoint(tmp_path)
    good.write_bytes(struct.pack("<Q", 10**12) + b"{}")  # a header length beyond the file
    with pytest.raises(UserError, match="corrupt"):
        Checkpoint(tmp_path)


# ----------------------------------------------------------------------------- streamed vs whole-model path


def _both(source: Path, tmp_path: Path, **options: Any) -> tuple[ConvertResult, ConvertResult]:
    results = []
    for stream in (False, True):
        opts = ConvertOptions(device="cpu", stream=stream, **options)
        results.append(convert_adapter(str(source), tmp_path / f"lora-{'streamed' if stream else 'whole'}", opts))
    return results[0], results[1]


def _assert_same(whole: ConvertResult, streamed: ConvertResult) -> None:
    import torch
    from safetensors.torch import load_file

    assert any("streamed one block at a time" in n for n in streamed.notes), streamed.notes
    assert not any("streamed one block" in n for n in whole.notes)
    a = load_file(str(Path(whole.out) / "adapter_model.safetensors"))
    b = load_file(str(Path(streamed.out) / "adapter_model.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        assert torch.allclose(a[key], b[key], rtol=1e-5, atol=1e-6), key
    assert whole.ranks == streamed.ranks
    pairs = [(whole.fidelity.to_dict(), streamed.fidelity.to_dict())]
    pairs += [(x.to_dict(), y.to_dict()) for x, y in zip(whole.sweep, streamed.sweep, strict=True)]
    for mine, theirs in pairs:
        assert mine.keys() == theirs.keys()
        for key, value in mine.items():
            if isinstance(value, float):
                assert theirs[key] == pytest.approx(value, rel=1e-4, abs=1e-6), key
            else:
                assert theirs[key] == value, key


def test_streamed_oft_on_a_llama_equals_the_whole_model_path(talking_llama: Path, tmp_path: Path) -> None:
    source = make_adapter("OFT", "llama", talking_llama, tmp_path / "oft")
    whole, streamed = _both(source, tmp_path, rank=8, sweep=(2, 8))
    _assert_same(whole, streamed)
    assert streamed.fidelity.kl is not None and streamed.fidelity.top1_agreement is not None
    assert [(r.rank, r.factorization) for r in streamed.sweep] == [(2, "calibrated"), (2, "plain"), (8, "calibrated"),
                                                                  (8, "plain")]  # fmt: skip


def test_streamed_energy_for_vllm_picks_the_same_uniform_rank(tiny_llama: Path, tmp_path: Path) -> None:
    source = make_adapter("HRA", "llama", tiny_llama, tmp_path / "hra")
    whole, streamed = _both(source, tmp_path, energy=0.9, target="vllm")
    _assert_same(whole, streamed)
    assert len(set(streamed.ranks.values())) == 1


def _classifier_adapter(base: Path, out: Path) -> Path:
    """A LoHa sequence-classification adapter on ``base``; its head is trained whole (modules_to_save)."""
    import peft
    import torch
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=3)
    config = peft.LoHaConfig(r=4, target_modules=["query", "value"], task_type="SEQ_CLS")
    return save_trained(peft.get_peft_model(model, config), out, base)


def test_streamed_minilm_classifier_equals_the_whole_model_path(minilm: Path, tmp_path: Path) -> None:
    """The real MiniLM saved with a classification head (keys under ``bert.``), the head outside the blocks."""
    import torch
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(1)
    base = tmp_path / "minilm-cls"
    AutoModelForSequenceClassification.from_pretrained(minilm, num_labels=3).save_pretrained(base)
    whole, streamed = _both(_classifier_adapter(base, tmp_path / "loha"), tmp_path, rank=8)
    _assert_same(whole, streamed)


def test_a_head_missing_from_the_base_checkpoint_is_converted_whole(minilm: Path, tmp_path: Path) -> None:
    """MiniLM itself has no classifier: transformers initialises one at random, which only the whole path does."""
    source = _classifier_adapter(minilm, tmp_path / "loha")
    result = convert_adapter(str(source), tmp_path / "lora", ConvertOptions(rank=8, device="cpu", stream=True))
    assert result.written
    assert any("loaded whole: the checkpoint has no tensor for classifier.weight" in n for n in result.notes)


def test_the_streamed_path_never_loads_the_whole_model(
    talking_llama: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every block's weights are read twice (calibration pass, measuring pass), one block at a time."""
    import converters.models as models
    import converters.streamed_model as streamed_model

    def refuse(*_args: Any, **_kwargs: Any) -> None:
        raise AssertionError("the whole model was loaded")

    monkeypatch.setattr(models, "load_model", refuse)
    reads: list[str] = []
    live: set[str] = set()
    most_live = [0]
    original_read = Checkpoint.read

    def read(self: Checkpoint, key: str, dtype: Any = None) -> Any:
        reads.append(key)
        return original_read(self, key, dtype)

    original_assign = streamed_model._assign

    def assign(root: Any, name: str, tensor: Any) -> None:
        original_assign(root, name, tensor)
        (live.add if tensor is not None else live.discard)(name)
        most_live[0] = max(most_live[0], sum(".layers." in n for n in live))

    monkeypatch.setattr(Checkpoint, "read", read)
    monkeypatch.setattr(streamed_model, "_assign", assign)
    source = make_adapter("BOFT", "llama", talking_llama, tmp_path / "boft")
    result = convert_adapter(str(source), tmp_path / "lora", ConvertOptions(rank=8, device="cpu", stream=True))
    assert result.written
    per_block = [k for k in reads if k.startswith("model.layers.0.")]
    assert len(per_block) == 2 * len({k for k in reads if k.startswith("model.layers.0.")})
    block_size = len({k for k in reads if k.startswith("model.layers.1.")})
    assert 0 < most_live[0] <= block_size  # never two blocks' weights at once


@pytest.mark.parametrize(
    ("peft_type", "overrides", "why"),
    [
        ("LORA", {"target_modules": ["embed_tokens", "q_proj"], "use_dora": False}, "outside the model's blocks"),
        ("FROD", {}, "not verified for FROD"),
    ],
)
def test_adapters_that_cannot_stream_are_converted_whole_and_say_why(
    peft_type: str, overrides: dict[str, Any], why: str, tiny_llama: Path, tmp_path: Path
) -> None:
    source = make_adapter(peft_type, "llama", tiny_llama, tmp_path / "src", **overrides)
    result = convert_adapter(str(source), tmp_path / "lora", ConvertOptions(rank=64, device="cpu", stream=True))
    assert result.written and result.fidelity.fidelity > 0.99
    assert any(n.startswith("loaded whole:") and why in n for n in result.notes), result.notes


def test_an_unverified_architecture_is_converted_whole(tmp_path: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, OPTConfig

    assert "opt" not in STREAMED_MODEL_TYPES
    torch.manual_seed(0)
    config = OPTConfig(hidden_size=32, ffn_dim=64, num_hidden_layers=2, num_attention_heads=4, vocab_size=120,
                       word_embed_proj_dim=32, max_position_embeddings=128)  # fmt: skip
    base = tmp_path / "opt"
    AutoModelForCausalLM.from_config(config).save_pretrained(base)
    source = _oft(base, tmp_path / "oft", ["q_proj", "v_proj"])
    result = convert_adapter(str(source), tmp_path / "lora", ConvertOptions(rank=8, device="cpu", stream=True))
    assert any("loaded whole: layer streaming is verified for" in n and "'opt'" in n for n in result.notes)


def test_small_checkpoints_load_whole_unless_streaming_is_asked_for(tiny_llama: Path, tmp_path: Path) -> None:
    """Auto: a checkpoint under 1 GiB loads whole (faster, and small); --stream forces block by block."""
    source = make_adapter("OFT", "llama", tiny_llama, tmp_path / "oft")
    auto = convert_adapter(str(source), tmp_path / "auto", ConvertOptions(rank=8, device="cpu"))
    assert not any("stream" in n or "loaded whole" in n for n in auto.notes)
    forced = convert_adapter(str(source), tmp_path / "forced", ConvertOptions(rank=8, device="cpu", stream=True))
    assert any("streamed one block at a time" in n for n in forced.notes)


def test_no_stream_flag_loads_the_model_whole(tiny_llama: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from advisor.cli.main import app

    source = make_adapter("OFT", "llama", tiny_llama, tmp_path / "oft")
    out = tmp_path / "lora"
    run = CliRunner().invoke(app, ["convert", str(source), str(out), "--rank", "8", "--no-stream", "--json"])
    assert run.exit_code == 0, run.output
    notes = json.loads(run.stdout)["notes"]
    assert not any("stream" in n for n in notes)


def test_a_truncated_shard_is_one_line_and_nothing_written(tiny_llama: Path, tmp_path: Path) -> None:
    import shutil

    from typer.testing import CliRunner

    from advisor.cli.main import app

    base = tmp_path / "base"
    shutil.copytree(tiny_llama, base)
    weights = base / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) - 1000])
    source = make_adapter("OFT", "llama", tiny_llama, tmp_path / "oft")
    out = tmp_path / "lora"
    args = ["convert", str(source), str(out), "--rank", "8", "--base-model", str(base), "--stream"]
    run = CliRunner().invoke(app, args)
    assert run.exit_code == 2
    assert "download" in run.output and len(run.output.strip().splitlines()) == 1
    assert not out.exists() and not list(tmp_path.glob(".lora*"))


def _oft(base: Path, out: Path, targets: list[str], *, fan_in_fan_out: bool = False, task: str = "CAUSAL_LM") -> Path:
    """An OFT (LoRA for GPT-2's Conv1D layers) adapter with a seeded update on the model saved at ``base``."""
    import peft
    import torch
    from transformers import AutoModel, AutoModelForCausalLM

    loader = AutoModel if task == "FEATURE_EXTRACTION" else AutoModelForCausalLM
    model = loader.from_pretrained(base, dtype=torch.float32)
    if fan_in_fan_out:
        config: Any = peft.LoraConfig(r=4, target_modules=targets, task_type=task, fan_in_fan_out=True)
    else:
        config = peft.OFTConfig(r=0, oft_block_size=8, target_modules=targets, task_type=task)
    torch.manual_seed(3)
    return save_trained(peft.get_peft_model(model, config), out, base)


def _architectures() -> dict[str, tuple[Any, list[str], str]]:
    import transformers as t

    common = {
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "vocab_size": 200,
    }
    qv, causal = ["q_proj", "v_proj"], "CAUSAL_LM"
    phi3 = t.Phi3Config(**{**common, "num_key_value_heads": 4}, pad_token_id=0)
    gpt2 = t.GPT2Config(n_embd=64, n_layer=2, n_head=4, vocab_size=200)
    bert = t.BertConfig(**{k: v for k, v in common.items() if k != "num_key_value_heads"})
    return {
        "llama": (t.LlamaConfig(**common), qv, causal),
        "mistral": (t.MistralConfig(**common, sliding_window=4), qv, causal),
        "qwen2": (t.Qwen2Config(**common), qv, causal),
        "qwen3": (t.Qwen3Config(**common, head_dim=16), qv, causal),
        "gemma": (t.GemmaConfig(**common, head_dim=16), qv, causal),
        "gemma2": (t.Gemma2Config(**common, head_dim=16, sliding_window=4), qv, causal),
        "phi3": (phi3, ["qkv_proj", "o_proj"], causal),
        "gpt2": (gpt2, ["c_attn", "c_proj"], causal),
        "olmo2": (t.Olmo2Config(**common), qv, causal),
        "granite": (t.GraniteConfig(**common), qv, causal),
        "bert": (bert, ["query", "value"], "FEATURE_EXTRACTION"),
    }


def test_every_verified_architecture_is_in_the_matrix() -> None:
    assert set(_architectures()) == STREAMED_MODEL_TYPES


@pytest.mark.slow
@pytest.mark.parametrize("model_type", sorted(STREAMED_MODEL_TYPES))
def test_streamed_equals_whole_model_on_each_verified_architecture(model_type: str, tmp_path: Path) -> None:
    """Sliding-window and alternating attention (Mistral, Gemma 2), fused projections (Phi-3), GPT-2's Conv1D,
    an encoder (BERT): each block is called with the arguments the model's own forward gives it."""
    import torch
    import transformers

    config, targets, task = _architectures()[model_type]
    torch.manual_seed(0)
    loader = transformers.AutoModel if task == "FEATURE_EXTRACTION" else transformers.AutoModelForCausalLM
    base = tmp_path / "base"
    loader.from_config(config, dtype=torch.float32).save_pretrained(base)
    source = _oft(base, tmp_path / "adapter", targets, fan_in_fan_out=model_type == "gpt2", task=task)
    whole, streamed = _both(source, tmp_path, rank=8, sweep=(4, 8))
    _assert_same(whole, streamed)


@pytest.mark.slow
@pytest.mark.parametrize("peft_type", sorted(STREAMED_METHODS))
def test_streamed_equals_whole_model_for_each_verified_method(peft_type: str, tiny_llama: Path, tmp_path: Path) -> None:
    base = tiny_llama
    if peft_type in NEEDS_BIASES:
        from advisor.methods.behaviour import save_probe_llama

        base = save_probe_llama(tmp_path / "biased-llama")
    source = make_adapter(peft_type, "llama", base, tmp_path / "src")
    whole, streamed = _both(source, tmp_path, rank=64)
    _assert_same(whole, streamed)


@pytest.mark.slow
@pytest.mark.subprocess
def test_a_hub_base_model_streams_from_its_safetensors(tiny_llama: Path, tmp_path: Path) -> None:
    """``--base-model user/id``: config and shards come through huggingface_hub (HF_ENDPOINT, HF_TOKEN, the
    HF cache), only the files streaming reads, and the conversion equals the one from the local folder."""
    import os
    import subprocess
    import sys

    from fake_hub import FakeHub, FakeRepo, HubState

    files = {p.name: p.read_bytes() for p in tiny_llama.iterdir() if p.is_file()}
    files["pytorch_model.bin"] = b"never read"
    files["consolidated.safetensors"] = files["model.safetensors"]  # a second copy some repos ship (Mistral)
    state = HubState(models=[FakeRepo(id="user/tiny-llama", files=files)])
    source = make_adapter("OFT", "llama", tiny_llama, tmp_path / "oft")
    local = convert_adapter(str(source), tmp_path / "local", ConvertOptions(rank=8, device="cpu", stream=True))
    with FakeHub(state) as hub:
        env = {**os.environ, "HF_ENDPOINT": hub.url, "HF_HUB_OFFLINE": "0", "HF_HOME": str(tmp_path / "hf"),
               "HF_TOKEN": "hf_test"}  # fmt: skip
        args = ["convert", str(source), str(tmp_path / "hub"), "--rank", "8", "--base-model", "user/tiny-llama",
                "--json", "--stream"]  # fmt: skip
        run = subprocess.run([sys.executable, "-m", "advisor.cli", *args], env=env, capture_output=True, text=True,
                             timeout=300)  # fmt: skip
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert any("streamed one block at a time" in n for n in result["notes"])
    assert result["fidelity"]["fidelity"] == pytest.approx(local.fidelity.fidelity, abs=1e-6)
    assert not any("pytorch_model.bin" in r or "consolidated" in r for r in state.requests)
    assert state.authorizations == {"Bearer hf_test"}
