"""What each stored run's adapter builds per adapted layer that does not grow with the tokens: the weight-shaped term.

Many PEFT methods build matrices the size of the layer they adapt, or of its input width squared: HRA's chain of
Householder products, BOFT's butterfly rotations, LoHa's and LoKr's full delta weight, FourierFT's and WaveFT's
inverse transform, OSF's U and V, DoRA's W + ΔW for its norm. That memory grows with the layer's shape (and with how
many layers are held at once), not with the batch or the sequence, so folding it into the per-token activation
factor carries it wrongly to another model, batch, length or resolution (FLUX.2's HRA run: 44 GiB against LoRA's 10).

For every stored run of a method that adapts linear layers (the method registry's layer types), this script counts
the run's config on one PEFT-wrapped layer, held and transient bytes, at 16 (d_in, d_out) shapes in
{512, 768, 1024, 1536}² and fits the polynomial of :data:`advisor.memory.adapter_matrices.FEATURES`
(how: :mod:`advisor.memory.adapter_matrix_count`, which ``--adapter-config`` also uses). Two held-out layers
(2048 × 1024, 1024 × 3072) check the fit. Writes ``advisor/data/adapter_matrices.json``; the memory model sums the
held polynomial over the layers each run holds at once and adds the largest layer's transient
(:func:`advisor.memory.adapter_matrices.adapter_matrix_bytes`).

    python benchmarks/adapter_matrices.py [--check]
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
OUT = REPO / "advisor" / "data" / "adapter_matrices.json"

WIDTHS = (512, 768, 1024, 1536)
HELD_OUT = ((2048, 1024), (1024, 3072))  # (d_in, d_out)


def adapts_linear(peft_type: str | None) -> bool:
    """Whether the method puts a layer on linear layers (prompt learning, LayerNorm tuning and trainable tokens do
    not), as the method registry records its layer types."""
    from advisor.methods.registry import load_registry

    return bool(peft_type) and load_registry().for_peft_type(peft_type).adapts_linear


def one_layer_config(run):
    """The run's PEFT config for a model whose only linear layer is named ``proj``."""
    from advisor.memory.adapter_matrix_count import one_layer_config as config_for

    return config_for(run.peft_type, run.peft_config)


def fit(run) -> dict:
    from advisor.memory.adapter_matrices import layer_bytes
    from advisor.memory.adapter_matrix_count import count_matrices, layer_counts

    config = one_layer_config(run)
    row = count_matrices(config, WIDTHS)
    row["held_out_error"] = 0.0
    for shape in HELD_OUT:
        truth = layer_counts(config, *shape)
        for index, part in enumerate(("held", "transient")):
            miss = abs(layer_bytes(row[part], *shape) - truth[index]) / max(truth[index], 2**20)  # 1 MiB floor
            row["held_out_error"] = round(max(row["held_out_error"], miss), 4)
    return row


def measure(progress: bool = True) -> dict:
    import peft
    import torch
    from rich.progress import track

    from advisor.benchmarks.store import load_snapshot

    runs = [r for r in load_snapshot().runs if adapts_linear(r.peft_type)]
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
