"""What each stored run's adapter keeps for backward that does not grow with the tokens: the weight-shaped term.

Many PEFT methods build matrices the size of the layer they adapt, or of its input width squared, and autograd keeps
them for backward: HRA's chain of Householder reflections ((r + 2) fp32 d_in × d_in products per layer), BOFT's
butterfly factors, LoHa's and LoKr's full delta weight, FourierFT's and WaveFT's inverse transform, DoRA's weight
norm, RandLoRA's and PEANuT's products. That memory grows with the layer's shape (and with how many layers are
held at once), not with the batch or the sequence, so folding it into the per-token activation factor carries it
wrongly to another model, batch, length or resolution (FLUX.2's HRA run: 44 GiB against LoRA's 10).

This script counts it per stored run, on one linear layer wrapped by PEFT with the run's own config (its target
names replaced by that layer; bf16 base, the adapter in PEFT's default dtype, train mode, an input that needs a
gradient), at 8 and 16 tokens, so ``2·C(8) − C(16)`` is what does not grow with the tokens, two ways:

- held: the unique non-parameter, non-buffer storages autograd still holds when forward returns
  (``advisor.memory.saved_tensors``, held only: a detached branch frees what it saved);
- transient: the peak of new storages over the layer's forward and backward (``peak_new_bytes``) beyond the held
  part and the adapter's gradients: what it builds and frees again (DoRA's full W + ΔW for its norm, FourierFT's
  complex spectrum), one layer at a time.

Sixteen (d_in, d_out) shapes in {512, 768, 1024, 1536}² fit each as

    bytes per adapted layer = a·d_in² + b·d_in·d_out + c·d_out² + m·min(d_in, d_out)² + p·min·d_in
                              + e·d_in + f·d_out + g

by least squares (the min terms: OSF's and RandLoRA's factors of the smaller width); two held-out layers
(2048 × 1024, 1024 × 3072) check the fit. Writes ``advisor/data/adapter_matrices.json``; the memory model sums
the held polynomial over the layers each run holds at once and adds the largest layer's transient
(:func:`advisor.memory.adapter_matrices.adapter_matrix_bytes`).

    python benchmarks/adapter_matrices.py [--check]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
OUT = REPO / "advisor" / "data" / "adapter_matrices.json"

WIDTHS = (512, 768, 1024, 1536)
HELD_OUT = ((2048, 1024), (1024, 3072))  # (d_in, d_out)
TOKENS = (8, 16)
# Prompt-style methods adapt no linear layer; LayerNorm tuning trains norms; trainable tokens an embedding.
NOT_LINEAR = {"PROMPT_TUNING", "PREFIX_TUNING", "P_TUNING", "ADAPTION_PROMPT", "TRAINABLE_TOKENS", "LN_TUNING"}
# Config fields that name modules of the run's model, or patterns over its layers: replaced for the one layer.
MODEL_SPECIFIC = {
    "target_modules", "layers_to_transform", "layers_pattern", "modules_to_save", "exclude_modules",
    "rank_pattern", "alpha_pattern", "target_parameters", "base_model_name_or_path", "revision", "task_type",
    "peft_version", "auto_mapping", "inference_mode", "peft_type", "trainable_token_indices",
}  # fmt: skip
FEATURES = ("in2", "in_out", "out2", "min2", "min_in", "in", "out", "one")


def features(d_in: int, d_out: int) -> list[float]:
    """The terms a layer's fixed bytes are a sum of: its weight's shape, squared widths (HRA's d_in × d_in
    products), and the smaller width's (OSF's and RandLoRA's min(d_in, d_out)-sized factors). min·d_out is left
    out: it is d_in·d_out + min² − min·d_in, so the fit would not be unique."""
    low = min(d_in, d_out)
    return [d_in * d_in, d_in * d_out, d_out * d_out, low * low, low * d_in, d_in, d_out, 1]


def one_layer_config(run):
    """The run's PEFT config for a model whose only linear layer is named ``proj``."""
    from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING

    cls = PEFT_TYPE_TO_CONFIG_MAPPING[run.peft_type]
    names = {f.name for f in dataclasses.fields(cls)}
    fields = {k: v for k, v in run.peft_config.items() if k in names and k not in MODEL_SPECIFIC}
    if fields.get("feedforward_modules"):  # IA³: the layer is one of its feed-forward modules
        fields["feedforward_modules"] = ["proj"]
    if isinstance(fields.get("use_bdlora"), dict):  # block-diagonal LoRA: the layer is a B-side (output) target
        fields["use_bdlora"] = {**fields["use_bdlora"], "target_modules_bd_a": [], "target_modules_bd_b": ["proj"]}
    fields.pop("progressbar", None)
    return cls(target_modules=["proj"], **fields)


def fixed_bytes(run, d_in: int, d_out: int) -> tuple[int, int]:
    """What one adapted ``d_in → d_out`` layer holds for backward, and what its forward and backward allocate on
    top of that and of its adapter's gradients at their peak, counting only what does not grow with the tokens."""
    import torch
    from peft import get_peft_model

    from advisor.memory.saved_tensors import peak_new_bytes, saved_bytes

    class OneLayer(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.proj = torch.nn.Linear(d_in, d_out, bias=False)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.proj(x)

    torch.manual_seed(0)
    model = get_peft_model(OneLayer().to(torch.bfloat16), one_layer_config(run))
    model.train()
    buffers = {b.untyped_storage().data_ptr() for b in model.buffers()}
    gradients = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)

    def kept(tensor: torch.Tensor) -> bool:  # a buffer (VeRA's shared projections) is resident, not saved
        return tensor.layout != torch.strided or tensor.untyped_storage().data_ptr() not in buffers

    held, peaks = [], []
    for tokens in TOKENS:
        x = torch.randn(1, tokens, d_in, dtype=torch.bfloat16, requires_grad=True)
        held.append(saved_bytes(model, x, keep=kept, held_only=True))

        def step(x: torch.Tensor = x) -> None:
            model(x).float().sum().backward()

        model.zero_grad(set_to_none=True)
        peaks.append(peak_new_bytes(step))

    def intercept(counts: list[int]) -> int:
        return round(counts[0] - TOKENS[0] * (counts[1] - counts[0]) / (TOKENS[1] - TOKENS[0]))

    fixed_held = intercept(held)
    return fixed_held, max(0, intercept(peaks) - fixed_held - gradients)


def _fit(shapes: list[tuple[int, int]], counts: list[int]) -> tuple[list[float], float]:
    import numpy as np

    if not any(counts):
        return [0.0] * len(FEATURES), 0.0
    scale = np.array(features(1024, 1024), dtype=float)  # conditioning: features near 1 at the fitted widths
    design = np.array([features(i, o) for i, o in shapes], dtype=float) / scale
    solution, *_ = np.linalg.lstsq(design, np.array(counts, dtype=float), rcond=None)
    coefficients = solution / scale
    fitted = np.array([features(i, o) for i, o in shapes], dtype=float) @ coefficients
    return list(coefficients), float(np.max(np.abs(fitted - counts)) / max(counts))


def _polynomial(coefficients: list[float], d_in: int, d_out: int) -> float:
    return sum(c * f for c, f in zip(coefficients, features(d_in, d_out), strict=True))


def fit(run) -> dict:
    shapes = [(i, o) for i in WIDTHS for o in WIDTHS]
    measured = [fixed_bytes(run, i, o) for i, o in shapes]
    row: dict = {"fit_error": 0.0, "held_out_error": 0.0}
    checks = {shape: fixed_bytes(run, *shape) for shape in HELD_OUT}
    for index, part in enumerate(("held", "transient")):
        coefficients, error = _fit(shapes, [m[index] for m in measured])
        row[part] = {name: float(f"{value:.6g}") for name, value in zip(FEATURES, coefficients, strict=True)}
        row["fit_error"] = round(max(row["fit_error"], error), 4)
        for shape, truth in checks.items():
            miss = abs(_polynomial(coefficients, *shape) - truth[index]) / max(truth[index], 2**20)  # 1 MiB floor
            row["held_out_error"] = round(max(row["held_out_error"], miss), 4)
    return row


def measure(progress: bool = True) -> dict:
    import peft
    import torch
    from rich.progress import track

    from advisor.benchmarks.store import load_snapshot

    runs = [r for r in load_snapshot().runs if r.peft_type and r.peft_type not in NOT_LINEAR]
    table, skipped = {}, {}
    for run in track(runs, description="counting adapter matrices", disable=not progress):
        try:
            table[run.id] = fit(run)
        except Exception as exc:
            skipped[run.id] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}"
    return {
        "what": "per adapted linear layer, the bytes that do not grow with the tokens: held (autograd keeps them "
        "from forward to backward) and transient (allocated on top of those and of the adapter's gradients at the "
        "layer's own forward/backward peak), each a·d_in² + b·d_in·d_out + c·d_out² + m·min² + p·min·d_in + e·d_in + "
        "f·d_out + g (min: the smaller of d_in, d_out) per stored run; benchmarks/adapter_matrices.py",
        "versions": {"torch": torch.__version__, "peft": peft.__version__},
        "runs": table,
        "not_counted": skipped,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="measure and compare with the stored table")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    result = measure()
    for run_id, row in result["runs"].items():
        if any(row["held"].values()) or any(row["transient"].values()):
            print(f"{run_id:62s} fit {row['fit_error']:.1%}  held-out {row['held_out_error']:.1%}")
    for run_id, why in result["not_counted"].items():
        print(f"{run_id:62s} not counted: {why}")
    if args.check:
        stored = json.loads(OUT.read_text())["runs"]
        changed = [k for k, row in result["runs"].items() if row != stored.get(k)]
        print(f"{len(changed)} runs differ from the stored table" + (f": {', '.join(changed)}" if changed else ""))
        sys.exit(1 if changed else 0)
    tmp = OUT.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    tmp.replace(OUT)
    print(f"wrote {OUT.relative_to(REPO)}")


if __name__ == "__main__":
    main()
