"""``peft-advise convert`` and ``check-lora`` end to end, through the CLI, on real adapters."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from adapter_factory import make_adapter
from typer.testing import CliRunner

from advisor.cli import app

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def _leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.startswith(".")]


@pytest.fixture(scope="module")
def llama_oft(tiny_llama: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_adapter("OFT", "llama", tiny_llama, tmp_path_factory.mktemp("llama-oft") / "oft")


@pytest.fixture(scope="module")
def minilm_oft(minilm: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("minilm-oft") / "oft"
    # OFT on every linear layer, as in PEFT's own OFT benchmark runs.
    return make_adapter("OFT", "bert", minilm, folder, oft_block_size=32, target_modules=["query", "value", "dense"])


def test_list_shows_what_converts_and_why_not() -> None:
    result = invoke("convert", "--list", "--json")
    assert result.exit_code == 0
    rows = {row["peft_type"]: row for row in json.loads(result.stdout)}
    assert rows["OFT"]["convertible"] and rows["OFT"]["route"] == "merge"
    assert rows["LOHA"]["route"] == "peft+merge"
    assert not rows["PROMPT_TUNING"]["convertible"] and "prompt" in rows["PROMPT_TUNING"]["how"]
    assert "OFT" in invoke("convert", "--list").stdout


def test_acceptance_llama_oft_for_vllm_with_sweep(llama_oft: Path, tmp_path: Path) -> None:
    out = tmp_path / "lora"
    result = invoke("convert", llama_oft, out, "--for", "vllm", "--sweep", "16,32,64,128")
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert "Rank sweep" in text and "calibrated" in text and "plain" in text
    assert "ready for vllm" in text and "WARNING" not in text
    # The sweep picks the cheapest rank that keeps ≥ 0.9 of the effect (rank 32 of this 64-wide model), and says so.
    assert "rank 32 from the sweep: the smallest swept rank with fidelity ≥ 0.9" in text
    assert f"--enable-lora --max-lora-rank 32 --lora-modules lora={out.resolve()}" in text
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["r"] == config["lora_alpha"] == 32 and config["rank_pattern"] == {}
    assert sorted(config["target_modules"]) == ["q_proj", "v_proj"]
    assert not {"use_bdlora", "alora_invocation_tokens", "use_qalora"} & set(config)
    card = (out / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: peft") and "converted-from-oft" in card and "fidelity" in card
    check = invoke("check-lora", out, "--for", "vllm", "--json")
    assert check.exit_code == 0 and json.loads(check.stdout)["max_lora_rank"] == 32


@pytest.mark.slow
def test_acceptance_minilm_oft_says_vllm_cannot_serve_bert(minilm_oft: Path, tmp_path: Path) -> None:
    out = tmp_path / "lora"
    result = invoke("convert", minilm_oft, out, "--for", "vllm", "--sweep", "16,32,64,128", "--json")
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["written"] and (out / "adapter_model.safetensors").is_file()  # still a valid PEFT LoRA
    assert not report["check"]["passed"] and report["check"]["serve_command"] is None
    assert any("BertModel" in f["message"] and "vLLM" in f["message"] for f in report["check"]["findings"])
    rows = {(r["rank"], r["factorization"]): r for r in report["sweep"]}
    for rank in (16, 32, 64, 128):  # output-aware factorisation: clearly lower held-out output error
        assert rows[rank, "calibrated"]["layer_output_error"] <= 0.75 * rows[rank, "plain"]["layer_output_error"]
        assert rows[rank, "calibrated"]["fidelity"] > rows[rank, "plain"]["fidelity"]
    assert rows[128, "calibrated"]["fidelity"] > rows[16, "calibrated"]["fidelity"]


def test_min_fidelity_failure_writes_nothing(llama_oft: Path, tmp_path: Path) -> None:
    out = tmp_path / "lora"
    result = invoke("convert", llama_oft, out, "--rank", "2", "--min-fidelity", "0.99")
    assert result.exit_code == 1
    assert "below --min-fidelity 0.99; nothing written" in result.stderr
    assert "(not written)" in result.stdout and "ready for" not in result.stdout  # no verdict for a refused folder
    assert not out.exists() and _leftovers(tmp_path) == []


def _without_task_type(adapter: Path, folder: Path) -> Path:
    import shutil

    shutil.copytree(adapter, folder)
    config = json.loads((folder / "adapter_config.json").read_text())
    (folder / "adapter_config.json").write_text(json.dumps({**config, "task_type": None}))
    return folder


def test_poor_fidelity_is_a_warning_that_names_the_rank_that_reaches_the_floor(llama_oft: Path, tmp_path: Path) -> None:
    source = _without_task_type(llama_oft, tmp_path / "no-task")  # common on the Hub: KL must still be measured
    result = invoke("convert", source, tmp_path / "r8", "--rank", "8", "--sweep", "4,8,32", "--for", "vllm")
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert "WARNING: fidelity 0.3" in text and "is below 0.9" in text
    assert "rank 32 reached 0.99" in text and "use --rank 32" in text
    assert "ready for vllm: 4 modules, max rank 8 (it loads, but read the WARNING above" in text
    data = json.loads(invoke("convert", source, tmp_path / "json", "--rank", "8", "--json").stdout)
    assert data["fidelity"]["kl"] is not None and data["fidelity"]["top1_agreement"] is not None
    assert data["warnings"] and "--sweep 8,16,32" in data["warnings"][0]
    swept = json.loads(invoke("convert", source, tmp_path / "swept", "--sweep", "4,8", "--json").stdout)
    assert "no swept rank reached fidelity 0.9" in swept["rank_choice"] and swept["ranks"]
    assert set(swept["ranks"].values()) == {8} and "sweep larger ranks (--sweep 16,32)" in swept["warnings"][0]
    lowered = json.loads(
        invoke("convert", source, tmp_path / "low", "--rank", "8", "--warn-below", "0.3", "--json").stdout
    )
    assert lowered["warnings"] == []


def test_a_lora_input_keeps_its_own_rank(tiny_llama: Path, tmp_path: Path) -> None:
    source = make_adapter(
        "LORA", "llama", tiny_llama, tmp_path / "r8", r=8, lora_alpha=16, use_dora=False, use_rslora=False
    )
    data = json.loads(invoke("convert", source, tmp_path / "out", "--json").stdout)
    assert set(data["ranks"].values()) == {8} and data["fidelity"]["fidelity"] > 0.9999
    assert "the source LoRA's own rank (8)" in data["rank_choice"]
    asked = json.loads(invoke("convert", source, tmp_path / "r4", "--rank", "4", "--json").stdout)
    assert set(asked["ranks"].values()) == {4}


def test_output_folder_is_checked_before_the_model_loads(llama_oft: Path, tmp_path: Path) -> None:
    import shutil

    source = tmp_path / "adapter"
    shutil.copytree(llama_oft, source)
    config = json.loads((source / "adapter_config.json").read_text())
    (source / "adapter_config.json").write_text(
        json.dumps({**config, "base_model_name_or_path": str(tmp_path / "gone")})
    )
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    result = invoke("convert", source, out)
    assert result.exit_code == 2 and "already exists; pass --overwrite" in result.stderr, result.stderr
    file_out = tmp_path / "a-file"
    file_out.write_text("x")
    result = invoke("convert", source, file_out)
    assert result.exit_code == 2 and "is a file" in result.stderr


def test_energy_gives_per_layer_ranks(llama_oft: Path, tmp_path: Path) -> None:
    result = invoke("convert", llama_oft, tmp_path / "peft", "--energy", "0.8", "--json")
    assert result.exit_code == 0, result.output
    ranks = json.loads(result.stdout)["ranks"]
    config = json.loads((tmp_path / "peft" / "adapter_config.json").read_text())
    assert len(set(ranks.values())) > 1 and config["rank_pattern"] == config["alpha_pattern"] != {}
    as_vllm = invoke("convert", llama_oft, tmp_path / "vllm", "--energy", "0.8", "--for", "vllm", "--json")
    vllm = json.loads(as_vllm.stdout)
    assert len(set(vllm["ranks"].values())) == 1 and vllm["check"]["passed"]
    # One rank chosen on the whole model, not the largest per-layer rank padded everywhere.
    assert max(vllm["ranks"].values()) <= max(ranks.values()) and "whole update" in vllm["rank_choice"]


def _prompt_tuning_adapter(tiny_llama: Path, folder: Path) -> Path:
    import peft
    from transformers import AutoModelForCausalLM

    model = peft.get_peft_model(
        AutoModelForCausalLM.from_pretrained(tiny_llama),
        peft.PromptTuningConfig(num_virtual_tokens=4, task_type="CAUSAL_LM"),
    )
    model.save_pretrained(folder)
    return folder


def test_bad_inputs_are_one_line_errors_and_write_nothing(llama_oft: Path, tiny_llama: Path, tmp_path: Path) -> None:
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(llama_oft, broken)
    (broken / "adapter_model.safetensors").write_bytes(b"\x00garbage")
    unknown = tmp_path / "unknown"
    shutil.copytree(llama_oft, unknown)
    config = json.loads((unknown / "adapter_config.json").read_text())
    (unknown / "adapter_config.json").write_text(json.dumps({**config, "peft_type": "MAGIC"}))
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    shutil.copy(llama_oft / "adapter_config.json", pickled)
    (pickled / "adapter_model.bin").write_bytes(b"not even a pickle")
    no_config = tmp_path / "no_config"
    no_config.mkdir()
    prompt = _prompt_tuning_adapter(tiny_llama, tmp_path / "prompt")
    other_base = tmp_path / "other-base"
    from adapter_factory import TINY_LLAMA
    from transformers import LlamaConfig, LlamaForCausalLM

    LlamaForCausalLM(LlamaConfig(**{**TINY_LLAMA, "hidden_size": 32, "intermediate_size": 64})).save_pretrained(
        other_base
    )
    cases = [
        ((tmp_path / "missing",), "not found"),
        ((no_config,), "has no adapter_config.json"),
        ((broken,), "not a readable safetensors file"),
        ((unknown,), "unknown peft_type 'MAGIC'"),
        ((pickled,), "--allow-pickle"),
        ((prompt,), "Prompt tuning adapters cannot be converted to LoRA: prompt learning"),
        ((llama_oft, "--base-model", other_base), "pass the base model the adapter was trained on"),
        ((llama_oft, "--rank", "0"), "--rank must be a positive integer"),
        ((llama_oft, "--rank", "8", "--energy", "0.9"), "either --rank or --energy"),
        ((llama_oft, "--energy", "2"), "--energy is a fraction"),
        ((llama_oft, "--sweep", "8,x"), "--sweep takes comma-separated ranks"),
        ((llama_oft, "--for", "tgi"), "--for must be one of peft, vllm, diffusers"),
        (("someone/not-cached-adapter",), "cannot download someone/not-cached-adapter"),
    ]
    for args, message in cases:
        out = tmp_path / "out"
        result = invoke("convert", *args[:1], out, *args[1:])
        assert result.exit_code == 2, (args, result.output)
        assert message in result.stderr, (args, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert not out.exists()
    assert _leftovers(tmp_path) == []


def test_existing_output_needs_overwrite(llama_oft: Path, tmp_path: Path) -> None:
    out = tmp_path / "lora"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    result = invoke("convert", llama_oft, out, "--rank", "4")
    assert result.exit_code == 2 and "--overwrite" in result.stderr
    assert (out / "keep.txt").read_text() == "mine"
    assert invoke("convert", llama_oft, out, "--rank", "4", "--overwrite").exit_code == 0
    assert not (out / "keep.txt").exists() and (out / "adapter_config.json").is_file()


def _lora_adapter(tiny_llama: Path, folder: Path, **kwargs) -> Path:
    return make_adapter("LORA", "llama", tiny_llama, folder, **kwargs)


def test_check_lora_flags_dora_for_vllm(tiny_llama: Path, tmp_path: Path) -> None:
    dora = _lora_adapter(tiny_llama, tmp_path / "dora", use_dora=True)
    result = invoke("check-lora", dora, "--for", "vllm")
    assert result.exit_code == 1
    assert "NOT ready for vllm" in result.stdout and "DoRA" in result.stdout
    converted = invoke("convert", dora, tmp_path / "plain", "--rank", "32", "--for", "vllm")
    assert converted.exit_code == 0 and "ready for vllm" in converted.stdout


def _logits(tiny_llama: Path, folder: Path | None) -> Any:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_llama)
    if folder is not None:
        model = PeftModel.from_pretrained(model, folder)
    ids = torch.randint(0, 256, (2, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return model.eval()(ids).logits


def test_check_lora_never_breaks_dora_and_peft_loads_it_as_it_is(tiny_llama: Path, tmp_path: Path) -> None:
    import torch

    dora = _lora_adapter(tiny_llama, tmp_path / "dora-r8", r=8, lora_alpha=16, use_rslora=False, use_dora=True)
    refused = invoke("check-lora", dora, "--fix", tmp_path / "dora-fixed")  # --for vllm by default
    assert refused.exit_code == 2 and "peft-advise convert" in refused.stderr and "Nothing written" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1 and not (tmp_path / "dora-fixed").exists()
    for target in ("peft", "diffusers"):
        report = json.loads(invoke("check-lora", dora, "--for", target, "--json").stdout)
        messages = [f["message"] for f in report["findings"] if f["level"] == "error"]
        assert not any("DoRA" in m or "vLLM" in m for m in messages), messages
    fixed = tmp_path / "dora-peft"
    result = invoke("check-lora", dora, "--for", "peft", "--fix", fixed)
    assert result.exit_code == 0, result.output
    assert json.loads((fixed / "adapter_config.json").read_text())["use_dora"] is True
    base, before, after = _logits(tiny_llama, None), _logits(tiny_llama, dora), _logits(tiny_llama, fixed)
    assert (before - base).abs().max() > 1e-2  # the adapter does something ...
    assert torch.allclose(before, after, atol=1e-5)  # ... and the fixed copy does exactly the same
    for_diffusers = invoke("check-lora", dora, "--for", "diffusers", "--fix", tmp_path / "dora-diffusers")
    assert for_diffusers.exit_code == 0, for_diffusers.output
    assert (tmp_path / "dora-diffusers" / "pytorch_lora_weights.safetensors").is_file()


def test_check_lora_says_nothing_about_an_ordinary_scale_and_one_line_about_other_methods(
    tiny_llama: Path, llama_oft: Path, tmp_path: Path
) -> None:
    plain = _lora_adapter(tiny_llama, tmp_path / "r8", r=8, lora_alpha=16, use_rslora=False, use_dora=False)
    for target in ("peft", "vllm"):
        report = json.loads(invoke("check-lora", plain, "--for", target, "--json").stdout)
        assert report["passed"] and [f for f in report["findings"] if f["level"] != "info"] == [], report
    oft = json.loads(invoke("check-lora", llama_oft, "--for", "vllm", "--json").stdout)
    assert not oft["passed"] and len(oft["findings"]) == 1
    assert "OFT adapter" in oft["findings"][0]["message"] and "peft-advise convert" in oft["findings"][0]["message"]
    assert invoke("check-lora", llama_oft, "--fix", tmp_path / "x").exit_code == 2


def test_check_lora_fix_folds_scale_and_pads_ranks_without_changing_outputs(tiny_llama: Path, tmp_path: Path) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    source = _lora_adapter(
        tiny_llama,
        tmp_path / "src",
        use_dora=False,
        use_rslora=True,
        r=8,
        lora_alpha=16,
        rank_pattern={"v_proj": 4},
        alpha_pattern={"v_proj": 12},
    )
    report = json.loads(invoke("check-lora", source, "--for", "vllm", "--json").stdout)
    assert report["passed"]  # loads, but ...
    warnings = [f["message"] for f in report["findings"] if f["level"] == "warning"]
    assert any("per-module LoRA scales" in w for w in warnings) and any("(rank_pattern)" in w for w in warnings)

    fixed = tmp_path / "fixed"
    result = invoke("check-lora", source, "--for", "vllm", "--fix", fixed, "--json")
    assert result.exit_code == 0, result.output
    after = json.loads(result.stdout)
    assert any("folded" in c for c in after["fixed"]) and any("zero-padded" in c for c in after["fixed"])
    assert [f for f in after["findings"] if f["level"] == "warning"] == []
    config = json.loads((fixed / "adapter_config.json").read_text())
    assert config["r"] == config["lora_alpha"] == 8 and not config["use_rslora"] and config["rank_pattern"] == {}

    ids = torch.randint(0, 256, (2, 12), generator=torch.Generator().manual_seed(0))
    outputs = []
    for folder in (source, fixed):
        model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_llama), folder).eval()
        with torch.no_grad():
            outputs.append(model(ids).logits)
    assert torch.allclose(outputs[0], outputs[1], atol=1e-5)


def test_vllm_rank_limits(tiny_llama: Path, tmp_path: Path) -> None:
    from converters.consumers import vllm_max_lora_rank

    assert [vllm_max_lora_rank(r) for r in (1, 2, 24, 64, 300, 512, 513)] == [1, 8, 32, 64, 320, 512, None]
    r24 = _lora_adapter(tiny_llama, tmp_path / "r24", use_dora=False, use_rslora=False, r=24, lora_alpha=24)
    report = json.loads(invoke("check-lora", r24, "--json").stdout)
    assert report["passed"] and report["max_lora_rank"] == 32 and "--max-lora-rank 32" in report["serve_command"]


def test_identity_adapter_converts_and_json_stays_valid(tiny_llama: Path, tmp_path: Path) -> None:
    """A freshly initialised OFT adapter is the identity: nothing to keep, and no Infinity in the JSON."""
    source = make_adapter("OFT", "llama", tiny_llama, tmp_path / "identity", noise=0.0)
    result = invoke("convert", source, tmp_path / "lora", "--rank", "4", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["fidelity"]["effect_size"] == 0 and report["fidelity"]["output_error"] < 1e-6
    assert any("does not change the model's outputs" in note for note in report["notes"])


def test_classifier_adapter_checks_against_a_bare_checkpoint(minilm: Path, tmp_path: Path) -> None:
    """A SEQ_CLS adapter names bert.encoder...; MiniLM's checkpoint says encoder...; the head is modules_to_save."""
    import peft
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(str(minilm), num_labels=2)
    config = peft.LoraConfig(task_type="SEQ_CLS", r=4, target_modules=["query", "value"])
    peft.get_peft_model(model, config).save_pretrained(tmp_path / "cls")
    result = invoke("check-lora", tmp_path / "cls", "--for", "peft", "--base-model", minilm)
    assert result.exit_code == 0, result.stdout
    assert "modules_to_save (classifier, score) are carried whole" in result.stdout
    assert "is not a weight of the base model" not in result.stdout


def test_lora_bias_is_filled_with_zeros_where_a_layer_kept_its_bias() -> None:
    """lora_bias is one switch for the adapter: PEFT expects a bias on every module once it is on."""
    import torch

    from converters.lora_writer import LoraAdapter, LoraModule

    def module(name: str, bias: torch.Tensor | None) -> LoraModule:
        tensors = {
            f"base_model.model.{name}.lora_A.weight": torch.ones(2, 4),
            f"base_model.model.{name}.lora_B.weight": torch.ones(3, 2),
        }
        return LoraModule(name, "linear", tensors, 2, bias)

    adapter = LoraAdapter([module("a", torch.ones(3)), module("b", None)], base_model="m")
    state = adapter.state_dict()
    assert torch.equal(state["base_model.model.a.lora_B.bias"], torch.ones(3))
    assert torch.equal(state["base_model.model.b.lora_B.bias"], torch.zeros(3))
    adapter.drop_bias()
    assert not any(key.endswith("bias") for key in adapter.state_dict())


def test_a_sharded_base_with_a_missing_shard_is_refused_before_loading(
    tiny_llama: Path, llama_oft: Path, tmp_path: Path
) -> None:
    import shutil

    from transformers import AutoModelForCausalLM

    sharded = tmp_path / "sharded"
    AutoModelForCausalLM.from_pretrained(tiny_llama).save_pretrained(sharded, max_shard_size="40KB")
    shards = sorted(sharded.glob("model-*.safetensors"))
    assert len(shards) > 2
    shards[1].unlink()
    out = tmp_path / "lora"
    result = invoke("convert", llama_oft, out, "--base-model", sharded, "--rank", "4")
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and f"missing 1 of the {len(shards)} shards" in lines[0] and shards[1].name in lines[0]
    assert not out.exists() and _leftovers(tmp_path) == []
    shutil.rmtree(sharded)


def test_a_base_saved_quantised_is_refused_with_what_to_pass(tiny_llama: Path, llama_oft: Path, tmp_path: Path) -> None:
    """A bitsandbytes 4-bit base (saved by transformers on CPU) holds packed weights, not the ones OFT rotates."""
    pytest.importorskip("bitsandbytes")
    import torch
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    quantised = tmp_path / "tiny-llama-bnb-4bit"
    nf4 = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.float32)
    AutoModelForCausalLM.from_pretrained(tiny_llama, quantization_config=nf4, device_map="cpu").save_pretrained(
        quantised
    )
    out = tmp_path / "lora"
    result = invoke("convert", llama_oft, out, "--base-model", quantised, "--rank", "4")
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "is saved quantised (4bit)" in lines[0] and "--base-model" in lines[0]
    assert not out.exists()


def test_a_gpt2_lora_on_conv1d_layers_passes_the_shape_check(tmp_path: Path) -> None:
    """GPT-2's Conv1D stores its weight as (in, out) and PEFT saves the LoRA with fan_in_fan_out: true; the
    factors' (out, in) must be read against the transposed base shape, not reported as mismatched."""
    import peft
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(0)
    base = tmp_path / "gpt2"
    config = AutoConfig.for_model("gpt2", vocab_size=256, n_embd=64, n_layer=2, n_head=2)
    model = AutoModelForCausalLM.from_config(config)
    model.save_pretrained(base)
    lora = peft.get_peft_model(model, peft.LoraConfig(r=4, target_modules=["c_attn", "mlp.c_proj"]))
    lora.save_pretrained(tmp_path / "lora")
    result = invoke("check-lora", tmp_path / "lora", "--for", "peft", "--base-model", base)
    assert result.exit_code == 0, result.output
    assert "does not match the base weight" not in result.output and "ready for peft" in result.stdout
