"""The setup knobs of the memory model: attention, GPTQ/AWQ, autocast, optimizers, several GPUs, experts.

Each term is checked against the arithmetic of what the code it models keeps in memory, on the benchmark's
own Llama-3.2-3B shape, so a changed constant or a term applied to the wrong setup fails here.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest
from header_only import write_header_only
from test_memory_model import run
from typer.testing import CliRunner

from advisor.cli import app
from advisor.errors import UserError
from advisor.memory.model import BENCHMARK_SETUP, BENCHMARK_SHAPE, logit_bytes, predict
from advisor.memory.request import memory_request
from advisor.memory.shapes import estimate_params, read_shape

runner = CliRunner()
SHAPE = BENCHMARK_SHAPE
LINEAR = SHAPE.total_params - SHAPE.embedding_params
LORA = ("lora", "rank32")


def terms(setup, method=LORA) -> dict[str, float]:
    return predict(run(*method), SHAPE, setup).terms


def test_eager_attention_keeps_every_layers_scores_without_checkpointing() -> None:
    setup = replace(BENCHMARK_SETUP, batch_size=1, seq_len=2048)
    assert "attention scores" not in terms(setup)  # SDPA: fused, nothing seq²
    assert "attention scores" not in terms(replace(setup, attention="flash"))
    eager = terms(replace(setup, attention="eager"))
    assert eager["attention scores"] == 28 * 1 * 24 * 2048**2 * 6  # layers × batch × heads × seq² × (fp32 + bf16)
    # Checkpointed: one recomputed layer's scores (and their gradient), after the logits are freed
    checkpointed = replace(setup, attention="eager", grad_checkpointing=True, seq_len=8192)
    one_layer = 24 * 8192**2 * 10
    assert terms(checkpointed)["attention scores"] == one_layer - logit_bytes(SHAPE, checkpointed)
    short = replace(checkpointed, seq_len=512)  # a small layer's scores fit in the freed logits
    assert "attention scores" not in terms(short)


def test_gptq_and_awq_bases() -> None:
    setup = replace(BENCHMARK_SETUP, grad_checkpointing=True)
    gptq, awq, nf4 = (terms(replace(setup, quant=q)) for q in ("gptq-4bit", "awq-4bit", "4bit"))
    embed = SHAPE.embedding_params
    assert gptq["base weights"] == pytest.approx(LINEAR * 4.156 / 8 + embed * 2)  # peft skips GPTQ's upcast
    assert awq["base weights"] == pytest.approx(LINEAR * 4.156 / 8 + embed * 4)  # ... but not AWQ's
    assert nf4["base weights"] == pytest.approx(LINEAR * 4.127 / 8 + embed * 4)
    # the upcast embeddings make the residual stream fp32: every layer's checkpoint doubles
    checkpoints = setup.tokens * SHAPE.layers * SHAPE.hidden
    assert nf4["activations"] - gptq["activations"] == pytest.approx(checkpoints * 2)
    assert nf4["logits"] - gptq["logits"] == setup.tokens * SHAPE.vocab * 2  # an fp32 head
    plain = replace(setup, grad_checkpointing=False)
    assert terms(replace(plain, quant="gptq-4bit"))["quantised-layer inputs"] > 0  # kernels keep their input


def test_amp_over_fp32_weights() -> None:
    setup = replace(BENCHMARK_SETUP, dtype="fp32", amp="bf16")
    lora = terms(setup)
    assert lora["base weights"] == SHAPE.total_params * 4
    assert lora["autocast weight copies"] == LINEAR * 2  # every linear's bf16 copy, saved for backward
    assert terms(replace(setup, grad_checkpointing=True))["autocast weight copies"] == LINEAR * 2 / SHAPE.layers
    fp32 = terms(replace(BENCHMARK_SETUP, dtype="fp32"))
    assert lora["activations"] == pytest.approx(fp32["activations"] / 2)  # activations at the autocast dtype
    full = predict(run("full", "lr_0.00001"), SHAPE, setup).terms
    # full fine-tuning: fp32 gradient, two fp32 moments, and autocast's cached bf16 copy of each weight
    assert full["trainable + grads + optimizer"] == SHAPE.total_params * (4 + 8 + 2)
    assert "autocast weight copies" not in full  # counted once, with the trainable state


def test_the_optimizer_step_adds_what_exceeds_the_backward_transients() -> None:
    """torch's foreach AdamW holds a copy of the second moment during its step, after backward freed the
    activations: a full fine-tuning of a checkpointed model at a short length peaks there, an adapter never."""
    full = ("full", "lr_0.00001")
    short = replace(BENCHMARK_SETUP, batch_size=1, seq_len=256, grad_checkpointing=True)
    stepped = terms(short, full)
    transients = sum(stepped[k] for k in ("activations", "logits"))
    assert stepped["optimizer step"] == pytest.approx(SHAPE.total_params * 2 - transients)  # a bf16 moment copy
    assert "optimizer step" not in terms(replace(short, optimizer="adamw-fused"), full)  # updated in place
    assert "optimizer step" not in terms(replace(short, seq_len=4096), full)  # backward's logits are larger
    assert "optimizer step" not in terms(short)  # an adapter's moments are tiny
    assert "optimizer step" not in terms(BENCHMARK_SETUP, full)  # the stored run: calibration unaffected
    fsdp = terms(replace(short, gpus=4, sharding="fsdp"), full)
    assert fsdp.get("optimizer step", 0) < stepped["optimizer step"] / 2  # each GPU steps on its shard
    offloaded = terms(replace(short, gpus=4, sharding="zero3", offload="cpu"), full)
    assert "optimizer step" not in offloaded  # the step runs on the CPU


def test_naive_model_parallelism_splits_the_layers_and_leaves_the_head_and_logits_on_the_last_gpu() -> None:
    """--sharding mp (device_map="auto"): each GPU holds 1/N of the layers, with their adapters and activations;
    the last also holds the head and the whole batch's logits, which the figure is for."""
    setup = replace(BENCHMARK_SETUP, batch_size=1, seq_len=2048, grad_checkpointing=True)
    one, two = terms(setup), terms(replace(setup, gpus=2, sharding="mp"))
    head = SHAPE.vocab * SHAPE.hidden * 2
    assert two["base weights"] == pytest.approx((one["base weights"] - head) / 2 + head)  # tied: one V×H matrix
    assert two["trainable + grads + optimizer"] == pytest.approx(one["trainable + grads + optimizer"] / 2)
    assert two["logits"] == one["logits"]  # the whole batch's, on the last GPU
    checkpoints = setup.tokens * SHAPE.layers * SHAPE.hidden * 2
    assert one["activations"] - two["activations"] == pytest.approx(checkpoints / 2)  # its layers' inputs
    plain = replace(setup, grad_checkpointing=False)
    assert terms(replace(plain, gpus=4, sharding="mp"))["activations"] == pytest.approx(terms(plain)["activations"] / 4)
    assert "gathered layers" not in two  # nothing is all-gathered


@pytest.mark.parametrize(
    ("optimizer", "per_param"), [("adamw", 16), ("adamw-8bit", 10), ("paged-adamw-8bit", 10), ("sgd", 8)]
)
def test_optimizer_states(optimizer: str, per_param: int) -> None:
    trainable = run(*LORA).trainable_params
    assert terms(replace(BENCHMARK_SETUP, optimizer=optimizer))["trainable + grads + optimizer"] == pytest.approx(
        trainable * per_param
    )


def test_several_gpus_per_gpu_figures() -> None:
    one = terms(BENCHMARK_SETUP)
    trainable = run(*LORA).trainable_params
    ddp = terms(replace(BENCHMARK_SETUP, gpus=2, sharding="ddp"))
    assert ddp["base weights"] == one["base weights"]
    assert ddp["trainable + grads + optimizer"] == pytest.approx(trainable * (4 + 4 * 2 + 8))  # bucket copy
    zero2 = terms(replace(BENCHMARK_SETUP, gpus=4, sharding="zero2"))
    assert zero2["base weights"] == one["base weights"]
    assert zero2["trainable + grads + optimizer"] == pytest.approx(trainable * (4 + 4 / 4 + 8 / 4))
    zero3 = terms(replace(BENCHMARK_SETUP, gpus=4, sharding="zero3"))
    assert zero3["base weights"] == pytest.approx(one["base weights"] / 4)
    assert zero3["gathered layers"] == pytest.approx(2 * LINEAR * 2 / SHAPE.layers)
    assert zero3["activations"] == one["activations"]  # batch is per GPU
    root = SHAPE.embedding_params * 2  # FSDP's root unit (embeddings, head): whole from forward to backward's end
    fsdp = terms(replace(BENCHMARK_SETUP, gpus=4, sharding="fsdp"))
    assert fsdp["gathered layers"] == pytest.approx(zero3["gathered layers"] + root * 3 / 4)  # beyond its shard
    offloaded = terms(replace(BENCHMARK_SETUP, gpus=4, sharding="fsdp", offload="cpu"))
    assert offloaded["base weights"] == 0 and offloaded["trainable + grads + optimizer"] == 0
    assert offloaded["gathered layers"] == pytest.approx(zero3["gathered layers"] + root)  # its shard is on the CPU


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--gpus", "0"], "--gpus must be at least 1"),
        (["--sharding", "fsdp"], "--sharding fsdp splits work across several GPUs; pass --gpus 2 or more"),
        (["--gpus", "1", "--sharding", "zero3"], "pass --gpus 2 or more"),
        (["--offload", "cpu"], "--offload cpu needs a sharded optimizer"),
        (["--gpus", "2", "--offload", "cpu"], "--offload cpu needs a sharded optimizer"),
        (["--amp", "fp16", "--dtype", "bf16"], "--amp fp16 trains fp32 weights under autocast"),
        (["--attention", "xformers"], "--attention must be one of sdpa, flash, eager"),
        (["--optimizer", "lion"], "--optimizer must be one of"),
        (["--quant", "gptq-3bit"], "--quant must be one of"),
        # flags are checked before the model is read: no lookup of a folder (or the Hub) for a bad flag
        (["--gpus", "0", "--model", "./no/such/model"], "--gpus must be at least 1"),
        (["--task", "image", "--seq-len", "0"], "--batch-size and --seq-len must be at least 1"),
    ],
)
def test_bad_setup_flags_are_one_line_exit_2(flags: list[str], message: str) -> None:
    result = runner.invoke(app, ["--vram", "24", "--task", "math", *flags])
    assert result.exit_code == 2, result.output
    assert message in result.output and len(result.output.strip().splitlines()) == 1, result.output


def test_gpus_without_a_sharding_is_ddp_and_said_so() -> None:
    request = memory_request(gpus=2)
    assert request is not None and request.setup.sharding == "ddp"
    with pytest.raises(UserError, match="--gpus must be at least 1"):
        memory_request(gpus=0)


def test_gptq_base_keeps_methods_with_peft_gptq_layers_only() -> None:
    args = ["--vram", "80", "--task", "math", "--json", "--all-variants"]
    gptq = json.loads(runner.invoke(app, [*args, "--quant", "gptq-4bit", "--grad-checkpointing"]).output)
    methods = {row["method"] for row in gptq["rows"]}
    assert "lora" in methods and "oft" not in methods and "full" not in methods  # PEFT has no GPTQ OFT layer
    bnb = json.loads(runner.invoke(app, [*args, "--quant", "4bit", "--grad-checkpointing"]).output)
    assert "oft" in {row["method"] for row in bnb["rows"]}


def test_explain_and_json_list_every_term_and_assumption() -> None:
    args = ["--vram", "80", "--task", "math", "--attention", "eager", "--gpus", "4", "--sharding", "zero3"]
    result = runner.invoke(app, [*args, "--explain", "--top", "2"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "Term attention scores:" in text and "Term gathered layers:" in text
    assert "Assumed: 4 GPUs, figures per GPU, --batch-size per GPU; ZeRO-3" in text
    assert "Assumed: the loss holds the whole batch × seq × vocabulary logits" in text  # chunking: out of scope
    assert "expandable_segments:True" in text  # what a reserved figure on varied lengths can add, and the fix
    data = json.loads(runner.invoke(app, [*args, "--json"]).output)["memory_model"]
    assert data["setup"]["sharding"] == "zero3" and data["setup"]["gpus"] == 4 and data["setup"]["per_gpu"]
    assert "attention scores" in data["terms"] and any("eager attention" in a for a in data["assumptions"])
    assert all("gathered layers" in row for row in data["breakdown_gib"].values())


MIXTRAL_SMALL = {
    "architectures": ["MixtralForCausalLM"],
    "model_type": "mixtral",
    "hidden_size": 256,
    "intermediate_size": 512,
    "num_hidden_layers": 2,
    "num_attention_heads": 8,
    "num_key_value_heads": 2,
    "num_local_experts": 8,
    "num_experts_per_tok": 2,
    "vocab_size": 1000,
    "tie_word_embeddings": False,
}


def test_mixture_of_experts_holds_every_expert_and_activates_top_k(tmp_path: Path) -> None:
    cfg = MIXTRAL_SMALL
    hidden, inter, kv = cfg["hidden_size"], cfg["intermediate_size"], 2 * 32
    tensors: dict[str, list[int]] = {"model.embed_tokens.weight": [1000, hidden], "lm_head.weight": [1000, hidden]}
    tensors["model.norm.weight"] = [hidden]
    for layer in range(2):
        p = f"model.layers.{layer}."
        tensors |= {
            p + "self_attn.q_proj.weight": [hidden, hidden],
            p + "self_attn.k_proj.weight": [kv, hidden],
            p + "self_attn.v_proj.weight": [kv, hidden],
            p + "self_attn.o_proj.weight": [hidden, hidden],
            p + "block_sparse_moe.gate.weight": [8, hidden],
            p + "input_layernorm.weight": [hidden],
            p + "post_attention_layernorm.weight": [hidden],
        }
        for e in range(8):
            q = f"{p}block_sparse_moe.experts.{e}."
            tensors |= {q + "w1.weight": [inter, hidden], q + "w3.weight": [inter, hidden]}
            tensors[q + "w2.weight"] = [hidden, inter]
    folder = tmp_path / "moe"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(cfg))
    write_header_only(folder / "model.safetensors", tensors)
    shape = read_shape(str(folder))
    counted = sum(math.prod(s) for s in tensors.values())
    assert shape.total_params == counted and (shape.experts, shape.active_experts) == (8, 2)
    assert shape.intermediate == inter and shape.active_mlp == 2 * inter  # two experts' activations per token
    # config only: every expert and the router counted, the same total
    config_only = tmp_path / "config-only"
    config_only.mkdir()
    (config_only / "config.json").write_text(json.dumps(cfg))
    estimated = read_shape(str(config_only))
    assert estimated.total_params == counted == estimate_params(hidden, inter, 2, 8, 2, 32, 1000, False, experts=8)


# google/gemma-2-2b's config.json values that decide memory (softcapping on both the logits and the scores).
GEMMA2_2B = {
    "architectures": ["Gemma2ForCausalLM"],
    "model_type": "gemma2",
    "hidden_size": 2304,
    "intermediate_size": 9216,
    "num_hidden_layers": 26,
    "num_attention_heads": 8,
    "num_key_value_heads": 4,
    "head_dim": 256,
    "vocab_size": 256000,
    "final_logit_softcapping": 30.0,
    "attn_logit_softcapping": 50.0,
    "tie_word_embeddings": True,
}


def _gemma2_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "gemma-2-2b"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(GEMMA2_2B))
    return folder


def test_a_model_without_sdpa_trains_with_eager_attention_and_softcaps(tmp_path: Path) -> None:
    """Gemma 2: transformers has no SDPA path (eager is its default), and softcapping keeps tanh's output of the
    logits and of the scores: 2 more bytes each."""
    folder = _gemma2_folder(tmp_path)
    shape = read_shape(str(folder))
    assert (shape.sdpa, shape.logit_softcap, shape.attention_softcap) == (False, True, True)
    request = memory_request(str(folder), batch_size=1, seq_len=2048)
    assert request is not None and request.setup.attention == "eager"
    plain = replace(shape, logit_softcap=False, attention_softcap=False)
    capped = predict(run(*LORA), shape, request.setup).terms
    uncapped = predict(run(*LORA), plain, request.setup).terms
    assert capped["logits"] - uncapped["logits"] == 2048 * 256000 * 2
    scores = shape.layers * shape.heads * 2048**2
    assert capped["attention scores"] - uncapped["attention scores"] == scores * 2
    flash = memory_request(str(folder), batch_size=1, seq_len=2048, attention="flash")
    assert flash is not None and "attention scores" not in predict(run(*LORA), shape, flash.setup).terms
    result = runner.invoke(app, ["--vram", "24", "--task", "math", "--model", str(folder), "--explain"])
    assert result.exit_code == 0, result.output
    assert "has no SDPA path in transformers" in result.output and "softcapping of the final logits" in result.output


def test_sdpa_asked_for_a_model_without_it_is_one_line_exit_2(tmp_path: Path) -> None:
    folder = _gemma2_folder(tmp_path)
    result = runner.invoke(app, ["--vram", "24", "--task", "math", "--model", str(folder), "--attention", "sdpa"])
    assert result.exit_code == 2, result.output
    assert "transformers has no SDPA path for Gemma2ForCausalLM" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_no_sdpa_model_types_match_the_installed_transformers() -> None:
    """Every listed type that the installed transformers has says _supports_sdpa = False; on the version the list
    was read from (5.24.0), no other causal LM's PreTrainedModel does."""
    import re

    transformers = pytest.importorskip("transformers")
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    from advisor.memory.shapes import NO_SDPA_MODEL_TYPES

    root = Path(transformers.__file__).parent / "models"
    without: set[str] = set()
    present = {t for t in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES if (root / t / f"modeling_{t}.py").is_file()}
    for model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        source = root / model_type / f"modeling_{model_type}.py"
        if not source.is_file():
            continue
        text = source.read_text(encoding="utf-8")
        block = re.search(r"class \w+PreTrainedModel\(PreTrainedModel\):(.*?)\n(?=\S)", text, re.S)
        if block and re.search(r"_supports_sdpa = False", block.group(1)):
            without.add(model_type)
    assert {"gemma2", "gpt_oss"} <= without
    assert NO_SDPA_MODEL_TYPES & present <= without
    if transformers.__version__ == "5.24.0":
        assert without == NO_SDPA_MODEL_TYPES
