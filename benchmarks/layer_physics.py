"""What one decoder layer keeps for backward, per architecture: the table behind the memory model's layer widths.

The stored runs calibrate ``a_run`` on Llama-3.2-3B, in units of (hidden + MLP width) per token and layer. Other
architectures keep different amounts per unit: Gemma 2 and 3 add norms around attention and the MLP and compute
them in fp32, Qwen3 and OLMo 2 normalise q and k, GPT-NeoX, Falcon and StarCoder2 have an ungated MLP and one
LayerNorm pass, GPT-2's tanh GELU keeps several MLP-wide tensors. So the memory model carries ``a_run`` through what
autograd saves in a layer of the user's architecture against a layer of the benchmark's.

This script counts those bytes on tiny models of each type (random weights, bf16, LoRA r=4 on the attention input
projections, batch 2 × 128 and × 256 tokens, saved-tensor hooks, unique non-parameter storages; the difference
between 2 and 1 layers is one layer), at six shapes that vary hidden, MLP, query and key/value widths
independently, and fits

    bytes per token per layer = h·hidden + m·MLP + q·(heads × head_dim) + k·(kv heads × head_dim)
                                (+ n·heads, + r·hidden × experts per token for a mixture of experts)

by least squares (MLP: the active width, an expert's × experts per token; one more shape at 4 experts per
token). What grows with the sequence per token (eager attention's scores, which the model's attention term
counts; the CPU's math SDPA where a model passes a mask, which GPU kernels do not keep) is taken out by
counting at two lengths. Eager-only types (Gemma 2) are counted with eager attention. Writes
``advisor/data/layer_physics.json``; ``tests/test_layer_physics.py`` checks the table against fresh counts at
shapes it was not fitted on.

    python benchmarks/layer_physics.py [--check]
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "advisor" / "data" / "layer_physics.json"
BATCH, TOKENS, VOCAB = 2, 128, 512
MAX_FIT_ERROR = 0.03  # a type whose counts the four widths do not explain to 3% is left out (Llama's layer is used)
# (hidden, MLP, heads, kv heads, head dim): each of hidden, MLP, q and kv width moved on its own from the first
SHAPES = (
    (256, 1024, 4, 2, 64),
    (256, 2048, 4, 2, 64),
    (512, 1024, 4, 2, 64),
    (256, 1024, 8, 2, 64),
    (256, 1024, 4, 4, 64),
    (512, 2048, 8, 4, 64),
)
# Model types and the config values a tiny one needs beyond the shape; LoRA targets where not q_proj/v_proj.
TYPES: dict[str, dict] = {
    "llama": {},
    "mistral": {},
    "qwen2": {},
    "qwen3": {},
    "gemma": {},
    "gemma2": {"sliding_window": 4096, "final_logit_softcapping": None, "attn_logit_softcapping": None},
    "gemma3_text": {"sliding_window": 4096},
    "phi3": {"pad_token_id": 0},
    "olmo": {"pad_token_id": 0},
    "olmo2": {"pad_token_id": 0},
    "granite": {},
    "cohere": {"pad_token_id": 0},
    "stablelm": {},
    "helium": {},
    "smollm3": {"pad_token_id": 0},
    "glm": {"pad_token_id": 0},
    "glm4": {"pad_token_id": 0},
    "mixtral": {"num_local_experts": 4, "num_experts_per_tok": 2},
    "qwen2_moe": {"num_experts": 4, "num_experts_per_tok": 2, "shared_expert_intermediate_size": 0},
    "qwen3_moe": {"num_experts": 4, "num_experts_per_tok": 2},
    "olmoe": {"num_experts": 4, "num_experts_per_tok": 2, "pad_token_id": 0},
    "gpt_oss": {"num_local_experts": 4, "num_experts_per_tok": 2, "sliding_window": 4096},
    "starcoder2": {},
    "gpt_neox": {},
    "falcon": {"new_decoder_architecture": True},
    "phi": {},
    "gpt2": {},
    "exaone": {},
    "ernie4_5": {},
    "hunyuan_v1_dense": {},
    "seed_oss": {},
    "arcee": {},
    "apertus": {},
    "nemotron": {},
}
TARGETS = {"gpt_neox": ["query_key_value"], "falcon": ["query_key_value"], "gpt2": ["c_attn"], "phi3": ["qkv_proj"]}
EAGER_ONLY = {"gemma2", "gpt_oss"}
MOE_TYPES = {"mixtral", "qwen2_moe", "qwen3_moe", "olmoe", "gpt_oss"}


def _config(model_type: str, hidden: int, mlp: int, heads: int, kv: int, head_dim: int, layers: int, k: int = 2):
    from transformers import AutoConfig

    extra = dict(TYPES[model_type])
    if model_type in MOE_TYPES:  # k experts per token out of 2k
        extra["num_experts_per_tok"] = k
        extra["num_local_experts" if model_type in ("mixtral", "gpt_oss") else "num_experts"] = 2 * k
    if model_type == "gpt2":
        values = dict(n_embd=hidden, n_inner=mlp, n_layer=layers, n_head=heads)
    elif model_type == "falcon":
        values = dict(hidden_size=hidden, ffn_hidden_size=mlp, num_hidden_layers=layers, num_attention_heads=heads)
        values["num_kv_heads"] = kv
    else:
        values = dict(hidden_size=hidden, intermediate_size=mlp, num_hidden_layers=layers, num_attention_heads=heads)
        values |= dict(num_key_value_heads=kv, head_dim=head_dim)
        if model_type in MOE_TYPES:  # every layer an MoE layer with experts of width ``mlp``
            values |= dict(moe_intermediate_size=mlp, decoder_sparse_step=1, mlp_only_layers=[])
    return AutoConfig.for_model(model_type, vocab_size=VOCAB, **values, **extra)


def layer_bytes(
    model_type: str, hidden: int, mlp: int, heads: int, kv: int, head_dim: int, k: int = 2
) -> tuple[float, dict]:
    """Saved bytes per token of one layer, and the widths the model actually has (some types ignore head_dim)."""
    import peft
    import torch
    from transformers import AutoModelForCausalLM

    from advisor.memory.saved_tensors import saved_bytes

    counts: dict[tuple[int, int], int] = {}
    widths: dict = {}
    for layers in (1, 2):
        config = _config(model_type, hidden, mlp, heads, kv, head_dim, layers, k)
        attention = "eager" if model_type in EAGER_ONLY else "sdpa"
        torch.manual_seed(0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = AutoModelForCausalLM.from_config(config, attn_implementation=attention).to(torch.bfloat16)
            model = peft.get_peft_model(
                model, peft.LoraConfig(r=4, target_modules=TARGETS.get(model_type, ["q_proj", "v_proj"]))
            )
        model.train()
        for tokens in (TOKENS, 2 * TOKENS):
            ids = torch.randint(0, VOCAB, (BATCH, tokens), generator=torch.Generator().manual_seed(0))
            counts[(layers, tokens)] = saved_bytes(model, input_ids=ids)
        widths = _widths(config, hidden, mlp, heads, kv, head_dim)
    per_token = {t: (counts[(2, t)] - counts[(1, t)]) / (BATCH * t) for t in (TOKENS, 2 * TOKENS)}
    # What grows with the sequence per token (scores: eager attention, or the CPU's math SDPA where a model passes
    # a mask; GPU kernels keep none) is taken out: the per-token part at zero length, from two lengths.
    return 2 * per_token[TOKENS] - per_token[2 * TOKENS], widths


def _widths(config, hidden: int, mlp: int, heads: int, kv: int, head_dim: int) -> dict:
    """The widths the built model has: types without head_dim use hidden / heads, types without GQA use heads."""
    real_head_dim = getattr(config, "head_dim", None) or hidden // heads
    real_kv = getattr(config, "num_key_value_heads", None) or getattr(config, "num_kv_heads", None) or heads
    if getattr(config, "model_type", "") in ("gpt2", "gpt_neox", "phi", "starcoder2", "stablelm"):
        real_head_dim = hidden // heads
    if getattr(config, "model_type", "") in ("gpt2", "gpt_neox"):
        real_kv = heads
    active = getattr(config, "num_experts_per_tok", 1) if config.model_type in MOE_TYPES else 1
    return {
        "hidden": hidden,
        "mlp": mlp * active,  # a token's activations span its experts: the memory model's active MLP width
        "heads": heads,
        "q": heads * real_head_dim,
        "kv": real_kv * real_head_dim,
        "routed": hidden * active if config.model_type in MOE_TYPES else 0,  # a copy of the input per expert
    }


def fit(model_type: str) -> dict:
    import numpy as np

    runs = [layer_bytes(model_type, *shape) for shape in SHAPES]
    if model_type in MOE_TYPES:  # the routed copies grow with the experts per token
        runs.append(layer_bytes(model_type, *SHAPES[0], k=4))
    columns = ("hidden", "mlp", "q", "kv", "heads", "routed")
    rows = np.array([[widths[c] for c in columns] for _, widths in runs], float)
    targets = np.array([per_layer for per_layer, _ in runs], float)
    coef, *_ = np.linalg.lstsq(rows, targets, rcond=None)
    worst = float(np.max(np.abs(rows @ coef / targets - 1)))
    fitted = {c: round(float(v), 3) for c, v in zip(columns, coef, strict=True)}
    for column in ("heads", "routed"):  # terms most types do not have
        if abs(fitted[column]) < 0.5:
            del fitted[column]
    return {**fitted, "fit_error": round(worst, 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="compare with the stored table instead of writing it")
    args = parser.parse_args()
    import peft
    import torch
    import transformers

    table = {}
    for model_type in TYPES:
        try:
            table[model_type] = fit(model_type)
        except Exception as exc:  # a type this transformers cannot build tiny: left out, said
            print(f"{model_type:12s} skipped: {type(exc).__name__}: {str(exc)[:100]}", file=sys.stderr)
            continue
        c = table[model_type]
        if c["fit_error"] > MAX_FIT_ERROR:  # the four widths do not explain it (seq² or width-coupled terms)
            print(f"{model_type:12s} left out: the linear fit misses a shape by {c['fit_error']:.1%}", file=sys.stderr)
            del table[model_type]
            continue
        terms = f"{c['hidden']:7.2f}·h {c['mlp']:6.2f}·mlp {c['q']:6.2f}·q {c['kv']:6.2f}·kv"
        print(f"{model_type:12s} {terms}  (fit {c['fit_error']:.1%})")
    data = {
        "what": "bytes autograd keeps per token in one decoder layer (bf16, LoRA r=4 on the attention inputs, SDPA): "
        "hidden·h + mlp·MLP width + q·(heads × head_dim) + kv·(kv heads × head_dim); benchmarks/layer_physics.py",
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__},
        "types": table,
    }
    if args.check:
        stored = json.loads(OUT.read_text())["types"]
        for name, c in table.items():
            old = stored.get(name)
            print(f"{name:12s} stored {old}" if old != c else f"{name:12s} unchanged")
        return
    OUT.write_text(json.dumps(data, indent=1) + "\n")
    print(f"wrote {OUT.relative_to(REPO)}")


if __name__ == "__main__":
    main()
