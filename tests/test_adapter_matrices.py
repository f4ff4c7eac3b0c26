"""Adapters that build layer-sized matrices: the memory model counts them per layer, not per token.

``benchmarks/adapter_matrices.py`` fits each stored run's token-independent saved bytes on one PEFT-wrapped linear
layer. Here that table must hold on a whole PEFT model it never saw (a tiny Llama, the run's own config and target
names, every adapted layer at once), and on FLUX.2's own block layout; and the term must behave as the physics says:
the same at any batch, length or resolution, growing with the square of the width, one block's under checkpointing.
"""

from __future__ import annotations

import importlib.util
from dataclasses import replace
from pathlib import Path

import pytest

from advisor.benchmarks.store import load_snapshot
from advisor.memory.adapter_matrices import (
    DIT_LAYOUTS,
    adapter_matrix_bytes,
    blocks,
    counted,
    decoder_linears,
    held_and_transient,
    layer_bytes,
)
from advisor.memory.denoiser import IMAGE_BENCHMARK_SHAPE, image_tokens
from advisor.memory.model import BENCHMARK_SHAPE, benchmark_of, predict
from advisor.memory.setup import MemorySetup

REPO = Path(__file__).resolve().parents[1]
GIB = 2**30


def _runs() -> dict:
    return {r.id: r for r in load_snapshot().runs}


def _script():
    spec = importlib.util.spec_from_file_location(
        "adapter_matrices_script", REPO / "benchmarks" / "adapter_matrices.py"
    )
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def test_hra_image_run_keeps_one_double_block_of_householder_products() -> None:
    """FLUX.2's HRA run measured 44.1 GiB against LoRA's 10.0: (r + 1) = 33 fp32 d_in² products per layer, in the
    double-stream block recomputed under checkpointing (its MLP outputs are 9216 wide)."""
    run = _runs()["image-gen/hra/flux2-klein-default"]
    shape, setup = benchmark_of(run)
    held, transient = held_and_transient(run, shape, setup.grad_checkpointing, 1.0)
    assert 30 * GIB < held < 36 * GIB and transient < 2 * GIB
    lora = _runs()["image-gen/lora/flux2-klein-default"]
    assert adapter_matrix_bytes(lora, shape, True, 1.0) == 0 and not counted(lora)
    predicted = predict(run, shape, setup).total  # its own calibration: reproduces the measurement
    assert predicted == pytest.approx(run.peak_memory_bytes, rel=1e-6)
    # What is left per token is an ordinary adapter's, not HRA's 20× LoRA's
    hra_factor = predict(run, shape, setup).activation_factor
    lora_factor = predict(lora, shape, setup).activation_factor
    assert hra_factor < 2 * lora_factor


def test_term_ignores_tokens_and_grows_with_width_squared() -> None:
    run = _runs()["image-gen/hra/flux2-klein-default"]
    shape, setup = benchmark_of(run)
    at = {
        (batch, res): predict(
            run,
            shape,
            replace(setup, batch_size=batch, resolution=res, seq_len=image_tokens(shape, res) + shape.text_tokens),
        ).terms["adapter matrices"]
        for batch in (1, 4)
        for res in (512, 1024)
    }
    assert len({round(v) for v in at.values()}) == 1, at
    wider = replace(shape, hidden=2 * shape.hidden, intermediate=2 * shape.intermediate)
    ratio = adapter_matrix_bytes(run, wider, True, 1.0) / adapter_matrix_bytes(run, shape, True, 1.0)
    assert 3.9 < ratio < 4.0  # d² terms dominate; the d terms make it a little under 4
    deeper = replace(shape, layers=2 * shape.layers)
    assert adapter_matrix_bytes(run, deeper, True, 1.0) == adapter_matrix_bytes(run, shape, True, 1.0)
    held, transient = held_and_transient(run, shape, False, 1.0)  # without checkpointing: every block's at once
    assert held_and_transient(run, deeper, False, 1.0) == pytest.approx((2 * held, transient))
    assert held > 5 * adapter_matrix_bytes(run, shape, True, 1.0)  # 200 GiB: why it trains with checkpointing


def test_checkpointing_keeps_one_layer_of_a_language_model() -> None:
    run = _runs()["MetaMathQA/boft/llama-3.2-3B-default"]
    every, transient = held_and_transient(run, BENCHMARK_SHAPE, False, 1.0)
    one, same = held_and_transient(run, BENCHMARK_SHAPE, True, 1.0)
    assert every == pytest.approx(BENCHMARK_SHAPE.layers * one) and same == transient > 0
    # BOFT on q_proj (3072 → 3072) and v_proj (3072 → 1024, grouped keys and values): 6 bytes per d_in² each held,
    # 4 more while one of them runs
    c = _coefficients(run.id)
    assert one == pytest.approx(layer_bytes(c["held"], 3072, 3072) + layer_bytes(c["held"], 3072, 1024))
    assert (c["held"]["in2"], c["transient"]["in2"]) == (6, 4)
    # mp: this GPU's share of the layers (the transient is one layer's on any GPU)
    assert held_and_transient(run, BENCHMARK_SHAPE, False, 0.5)[0] == pytest.approx(every / 2)
    small_step = MemorySetup(batch_size=1, seq_len=128)
    assert predict(run, BENCHMARK_SHAPE, small_step).terms["adapter matrices"] == pytest.approx(every + transient)


def test_dora_builds_its_whole_weight_one_layer_at_a_time() -> None:
    """DoRA holds almost nothing weight-shaped (its norm is detached), but builds W + ΔW in fp32 for the norm:
    on a wide model that is one layer's worth, not one per layer."""
    run = _runs()["MetaMathQA/lora/llama-3.2-3B-rank32-dora"]
    held, transient = held_and_transient(run, BENCHMARK_SHAPE, False, 1.0)
    assert held < 2**20 * BENCHMARK_SHAPE.layers
    assert transient == pytest.approx(layer_bytes(_coefficients(run.id)["transient"], 3072, 3072))
    assert transient > 16 * 3072 * 3072  # at least four fp32 copies of the q projection's weight
    wide = replace(BENCHMARK_SHAPE, hidden=8192, intermediate=28672, heads=64, kv_heads=8, layers=80)
    assert held_and_transient(run, wide, False, 1.0)[1] / transient > 6


def _coefficients(run_id: str) -> dict[str, float]:
    from advisor.memory.adapter_matrices import _table

    return _table()[run_id]


@pytest.mark.parametrize(
    ("cls", "kwargs", "mlp"),
    [
        (
            "Flux2Transformer2DModel",
            {"num_layers": 5, "num_single_layers": 20, "joint_attention_dim": 7680, "guidance_embeds": False},
            9216,
        ),
        ("FluxTransformer2DModel", {"num_layers": 19, "num_single_layers": 38}, 12288),
        ("SD3Transformer2DModel", {"num_layers": 24, "caption_projection_dim": 3072, "pos_embed_max_size": 64}, 12288),
    ],
)
def test_dit_layouts_are_diffusers_own(cls: str, kwargs: dict, mlp: int) -> None:
    """Each DiT layout, in multiples of (hidden, MLP width), is its diffusers class's linears (on the meta device;
    FLUX.2-klein's, FLUX.1's and an SD3 at 24 heads × 128), and its shares give the class's block counts."""
    torch = pytest.importorskip("torch")
    diffusers = pytest.importorskip("diffusers")
    with torch.device("meta"):
        model = getattr(diffusers, cls)(attention_head_dim=128, num_attention_heads=24, **kwargs)
    real: dict[str, tuple[int, int]] = {}
    counts: dict[str, int] = {}
    for name, module in model.named_modules():
        kind, _, rest = name.partition(".")
        index, _, path = rest.partition(".")
        if index.isdigit():
            counts[kind] = max(counts.get(kind, 0), int(index) + 1)
            if isinstance(module, torch.nn.Linear) and index == "0":
                real[f"{kind}.0.{path}"] = (module.in_features, module.out_features)
    shape = replace(IMAGE_BENCHMARK_SHAPE, architecture=cls, intermediate=mlp, layers=sum(counts.values()))
    ours: dict[str, tuple[int, int]] = {}
    for count, layers in blocks(shape):
        ours.update(layers)
        kind = next(iter(layers)).split(".")[0]
        assert count == pytest.approx(counts[kind])
    assert ours == real
    assert sum(share for share, _ in DIT_LAYOUTS[cls].values()) == pytest.approx(1.0)


def test_flux1_is_counted_on_its_own_layers() -> None:
    """FLUX.2's run targets named for FLUX.2 (linear_in, to_qkv_mlp_proj) match none of FLUX.1's MLPs, so HRA on
    FLUX.1 holds only the attention projections of a double block: far less than FLUX.2's layout would say."""
    run = _runs()["image-gen/hra/flux2-klein-default"]
    flux1 = replace(IMAGE_BENCHMARK_SHAPE, architecture="FluxTransformer2DModel", intermediate=12288, layers=57)
    as_flux2 = replace(flux1, architecture="Flux2Transformer2DModel")
    held = held_and_transient(run, flux1, True, 1.0)[0]
    assert held == pytest.approx(8 * layer_bytes(_coefficients(run.id)["held"], 3072, 3072))
    assert held < held_and_transient(run, as_flux2, True, 1.0)[0] / 3


TINY_SHAPE = replace(
    BENCHMARK_SHAPE, hidden=512, intermediate=1024, layers=2, heads=8, kv_heads=4, head_dim=64, vocab=128
)


def _tiny_peft_llama(run):
    """A tiny Llama of TINY_SHAPE (GQA, an MLP wider than the hidden) under the run's own config and targets, in
    train mode, every layer's input needing a gradient, as in all but the first layer of a real stack (and in all
    of them under gradient checkpointing): the table was counted so."""
    import torch
    import transformers
    from peft import get_peft_model

    config = transformers.LlamaConfig(
        hidden_size=512, intermediate_size=1024, num_hidden_layers=2, num_attention_heads=8, num_key_value_heads=4,
        vocab_size=128, max_position_embeddings=64,
    )  # fmt: skip
    torch.manual_seed(0)
    base = transformers.LlamaForCausalLM(config).to(torch.bfloat16)
    peft_config = _script().one_layer_config(run)
    peft_config.target_modules = set(run.peft_config["target_modules"])
    if run.peft_type == "OSF":  # its rank pattern names the run's model's modules; the default rank is its own
        peft_config.rank_pattern = {}
    model = get_peft_model(base, peft_config)
    model.train()
    model.enable_input_require_grads()
    return model


@pytest.mark.slow
@pytest.mark.parametrize(
    "run_id",
    [
        "MetaMathQA/boft/llama-3.2-3B-default",
        "MetaMathQA/loha/llama-3.2-3B-rank32",
        "MetaMathQA/lora/llama-3.2-3B-rank32-dora",
        "MetaMathQA/osf/llama-3.2-3B-rank128",
        "MetaMathQA/fourierft/llama-3.2-3B-default",
        "MetaMathQA/randlora/llama-3.2-3B-default",
    ],
)
def test_table_holds_on_a_whole_peft_model(run_id: str) -> None:
    """A whole tiny PEFT model, every adapted layer at once: what autograd keeps that does not grow with the tokens
    equals the table's held part summed over the layers the run's targets match."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    pytest.importorskip("peft")
    from advisor.memory.saved_tensors import saved_bytes

    run = _runs()[run_id]
    model = _tiny_peft_llama(run)
    buffers = {b.untyped_storage().data_ptr() for b in model.buffers()}
    counts = []
    for tokens in (8, 16):
        ids = torch.randint(0, 128, (1, tokens))
        counts.append(
            saved_bytes(
                model, input_ids=ids, keep=lambda t: t.untyped_storage().data_ptr() not in buffers, held_only=True
            )
        )
    fixed = 2 * counts[0] - counts[1]
    predicted = held_and_transient(run, TINY_SHAPE, grad_checkpointing=False, layer_share=1.0)[0]
    # Attention's T×T parts make the intercept a little negative; they are a few kB against the matrices' MBs
    assert predicted == pytest.approx(fixed, rel=0.03), (fixed, predicted)


def test_an_moe_layer_offers_its_attention_and_shared_expert_by_its_own_names() -> None:
    """Routed experts are stacked parameters, not linear layers: a dense layer keeps its MLP, an MoE layer only the
    shared expert's, at the shared width, under the name its family gives it."""
    dense = decoder_linears(BENCHMARK_SHAPE)
    assert "mlp.gate_proj" in dense and dense["mlp.down_proj"] == (BENCHMARK_SHAPE.hidden, BENCHMARK_SHAPE.intermediate)
    mixtral = replace(BENCHMARK_SHAPE, experts=8, active_experts=2, model_type="mixtral")
    assert set(decoder_linears(mixtral)) == {f"self_attn.{n}_proj" for n in "qkvo"}
    qwen = replace(mixtral, shared_intermediate=5632, model_type="qwen2_moe")
    assert decoder_linears(qwen)["mlp.shared_expert.up_proj"] == (5632, BENCHMARK_SHAPE.hidden)
    deepseek = replace(qwen, model_type="deepseek_v3")
    assert "mlp.shared_experts.down_proj" in decoder_linears(deepseek)


@pytest.mark.slow
@pytest.mark.parametrize("model_type", ["qwen2_moe", "mixtral"])
def test_a_mixture_of_experts_adapts_attention_and_the_shared_expert(model_type: str) -> None:
    """OSF on every Llama-named linear of a tiny MoE built by transformers: its routed experts are stacked
    parameters PEFT cannot put OSF on, so the held matrices are the attention's and (Qwen2-MoE) the shared
    expert's at its own width, not an MLP at one expert's width (which was 40% off either way)."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("peft")
    from peft import get_peft_model

    from advisor.memory.saved_tensors import saved_bytes
    from advisor.memory.shapes import shape_from_config

    run = _runs()["MetaMathQA/osf/llama-3.2-3B-rank128"]
    shared = {"shared_expert_intermediate_size": 768} if model_type == "qwen2_moe" else {}
    config = transformers.AutoConfig.for_model(
        model_type, hidden_size=512, intermediate_size=1024, moe_intermediate_size=256, num_hidden_layers=2,
        num_attention_heads=8, num_key_value_heads=4, vocab_size=128, max_position_embeddings=64, num_experts=4,
        num_local_experts=4, num_experts_per_tok=2, decoder_sparse_step=1, mlp_only_layers=[], **shared,
    )  # fmt: skip
    torch.manual_seed(0)
    base = transformers.AutoModelForCausalLM.from_config(config).to(torch.bfloat16)
    peft_config = _script().one_layer_config(run)
    peft_config.target_modules = set(run.peft_config["target_modules"])
    peft_config.rank_pattern = {}
    model = get_peft_model(base, peft_config)
    model.train()
    model.enable_input_require_grads()
    buffers = {b.untyped_storage().data_ptr() for b in model.buffers()}
    counts = [
        saved_bytes(
            model,
            input_ids=torch.randint(0, 128, (1, tokens)),
            keep=lambda t: t.untyped_storage().data_ptr() not in buffers,
            held_only=True,
        )
        for tokens in (8, 16)
    ]
    shape = shape_from_config(config.to_dict(), model_type)
    assert shape.experts == 4
    predicted = held_and_transient(run, shape, grad_checkpointing=False, layer_share=1.0)[0]
    assert predicted == pytest.approx(2 * counts[0] - counts[1], rel=0.03)


def _tiny_llama_fixed_peak(run) -> int:
    """The peak of new storages over a tiny Llama's forward and backward under the run's adapter, the part that
    does not grow with the tokens, less the adapter's gradients (the trainable-state term)."""
    import torch

    from advisor.memory.saved_tensors import peak_new_bytes

    model = _tiny_peft_llama(run)
    gradients = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    peaks = []
    for tokens in (8, 16):
        ids = torch.randint(0, 128, (1, tokens))
        model.zero_grad(set_to_none=True)
        peaks.append(peak_new_bytes(lambda ids=ids: model(input_ids=ids).logits.float().sum().backward()))
    return 2 * peaks[0] - peaks[1] - gradients


@pytest.mark.slow
@pytest.mark.parametrize(
    "run_id",
    [
        "MetaMathQA/lora/llama-3.2-3B-rank32-dora",
        "MetaMathQA/fourierft/llama-3.2-3B-default",
        "MetaMathQA/loha/llama-3.2-3B-rank32",
        "MetaMathQA/boft/llama-3.2-3B-default",
    ],
)
def test_held_plus_one_transient_is_a_whole_models_peak(run_id: str) -> None:
    """Forward and backward of a whole tiny model: what the method adds to the step's peak, beyond plain LoRA on
    the same layers (attention's T×T parts make both intercepts a little negative), is every layer's held part
    plus one layer's transient, not one transient per layer."""
    pytest.importorskip("transformers")
    pytest.importorskip("peft")
    runs = _runs()
    measured = _tiny_llama_fixed_peak(runs[run_id]) - _tiny_llama_fixed_peak(
        runs["MetaMathQA/lora/llama-3.2-3B-rank32"]
    )
    held, transient = held_and_transient(runs[run_id], TINY_SHAPE, grad_checkpointing=False, layer_share=1.0)
    assert held + transient == pytest.approx(measured, rel=0.15), (measured, held, transient)
    assert abs(held + transient - measured) < abs(held + 4 * transient - measured)  # not one per adapted layer


def _adapter_config(tmp_path: Path, **fields: object) -> Path:
    path = tmp_path / "adapter_config.json"
    path.write_text(__import__("json").dumps(fields))
    return path


def test_your_adapter_config_is_counted_with_its_own_matrices(tmp_path: Path) -> None:
    """--adapter-config: the method's per-layer matrices are counted for the user's config (as the stored runs'
    were) and replace the run's on that method's rows, on the layers the user's config targets."""
    pytest.importorskip("peft")
    pytest.importorskip("transformers")
    from advisor.memory.user_adapter import from_adapter_config

    runs = _runs()
    boft = from_adapter_config(
        _adapter_config(tmp_path, peft_type="BOFT", boft_block_size=8, boft_n_butterfly_factor=1,
                        target_modules=["q_proj", "v_proj", "o_proj"]),
        None, BENCHMARK_SHAPE, None,
    )  # fmt: skip
    assert boft.matrices is not None and boft.targets == ["q_proj", "v_proj", "o_proj"]
    assert "autograd" in boft.matrices_from
    assert (boft.matrices["held"]["in2"], boft.matrices["transient"]["in2"]) == (6, 4)  # as the stored run's
    run = runs["MetaMathQA/boft/llama-3.2-3B-default"]
    theirs = held_and_transient(run, BENCHMARK_SHAPE, False, 1.0)[0]
    mine = held_and_transient(run, BENCHMARK_SHAPE, False, 1.0, boft)[0]
    o_proj = BENCHMARK_SHAPE.layers * layer_bytes(boft.matrices["held"], 3072, 3072)
    assert mine == pytest.approx(theirs + o_proj, rel=0.01)  # o_proj added; block size 8 holds what 4 does
    # A plain LoRA has none, and replaces the DoRA run's on the LoRA rows; a DoRA config brings its transient
    plain = from_adapter_config(
        _adapter_config(tmp_path, peft_type="LORA", r=16, target_modules="all-linear"), None, BENCHMARK_SHAPE, None
    )
    dora_run = runs["MetaMathQA/lora/llama-3.2-3B-rank32-dora"]
    assert adapter_matrix_bytes(dora_run, BENCHMARK_SHAPE, False, 1.0) > 0
    assert adapter_matrix_bytes(dora_run, BENCHMARK_SHAPE, False, 1.0, plain) == 0
    dora = from_adapter_config(
        _adapter_config(tmp_path, peft_type="LORA", r=16, use_dora=True, target_modules="all-linear"),
        None, BENCHMARK_SHAPE, None,
    )  # fmt: skip
    lora_run = runs["MetaMathQA/lora/llama-3.2-3B-rank32"]
    held, transient = held_and_transient(lora_run, BENCHMARK_SHAPE, False, 1.0, dora)
    # the layer with the widest input (down_proj, 8192 → 3072): an fp32 identity of its input (d_in²) to build ΔW,
    # and copies of W + ΔW for the norm
    assert transient == pytest.approx(layer_bytes(dora.matrices["transient"], 8192, 3072))
    assert transient > 4 * 8192 * 8192 + 4 * 8192 * 3072 and held < 2**20 * BENCHMARK_SHAPE.layers


def test_lora_shortcuts_bring_their_matrices() -> None:
    """--lora-r: a plain LoRA builds nothing layer-sized, on every LoRA row (the DoRA row's too); --use-dora brings
    DoRA's transient to every LoRA row, on the layers it targets. No torch."""
    from advisor.memory.user_adapter import shortcut_lora

    runs = _runs()
    dora_run, lora_run = runs["MetaMathQA/lora/llama-3.2-3B-rank32-dora"], runs["MetaMathQA/lora/llama-3.2-3B-rank32"]
    plain = shortcut_lora(None, BENCHMARK_SHAPE, None, 16, "all-linear")
    assert adapter_matrix_bytes(dora_run, BENCHMARK_SHAPE, False, 1.0, plain) == 0
    dora = shortcut_lora(None, BENCHMARK_SHAPE, None, 16, ["q_proj", "down_proj"], use_dora=True)
    transient = held_and_transient(lora_run, BENCHMARK_SHAPE, False, 1.0, dora)[1]
    assert transient == pytest.approx(layer_bytes(_coefficients(dora_run.id)["transient"], 8192, 3072))
    assert "DoRA" in dora.matrices_from and "none" in plain.matrices_from  # what --explain says
    q_only = shortcut_lora(None, BENCHMARK_SHAPE, None, 16, ["q_proj"], use_dora=True)
    assert held_and_transient(lora_run, BENCHMARK_SHAPE, False, 1.0, q_only)[1] < transient / 2


def test_every_stored_run_is_in_the_table() -> None:
    """A snapshot refreshed by the importer needs the table re-counted (python benchmarks/adapter_matrices.py):
    a run missing from it would silently carry its matrices on the per-token factor again."""
    import json

    from advisor.paths import PACKAGE_DATA

    table = json.loads((PACKAGE_DATA / "adapter_matrices.json").read_text())
    listed = set(table["runs"]) | set(table["not_counted"])
    linear = {r.id for r in load_snapshot().runs if _script().adapts_linear(r.peft_type)}
    assert linear - listed == set()
    assert not table["not_counted"]  # every method this PEFT builds on one layer was counted


def test_target_names_of_another_layout_keep_the_runs_positions() -> None:
    """A decoder is counted in Llama names: a user's GPT-2-style names (c_attn) match none of them, and would
    count nothing; the run's positions are kept instead, with the user's matrices."""
    from advisor.memory.user_adapter import UserAdapter

    run = _runs()["MetaMathQA/boft/llama-3.2-3B-default"]
    theirs = _coefficients(run.id)
    gpt2 = UserAdapter("BOFT", 1, "BOFT", "test", theirs, ["c_attn"], "test")
    assert held_and_transient(run, BENCHMARK_SHAPE, False, 1.0, gpt2) == held_and_transient(
        run, BENCHMARK_SHAPE, False, 1.0
    )
    mlp = UserAdapter("BOFT", 1, "BOFT", "test", theirs, ["down_proj"], "test")
    held = held_and_transient(run, BENCHMARK_SHAPE, False, 1.0, mlp)[0]
    assert held == pytest.approx(BENCHMARK_SHAPE.layers * layer_bytes(theirs["held"], 8192, 3072))
