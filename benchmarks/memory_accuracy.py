"""How accurate is the memory model? (a) leave-one-out on PEFT's runs, (b) figures measured elsewhere.

(a) Target: median absolute error ≤ 3%. Each MetaMathQA run is predicted with an activation factor
    fitted *without it*: the median of its method's other runs, or of every other PEFT run when its
    method has no other run. Both calibrations: ``peak`` (accelerator_memory_max) and ``train`` (the
    99th percentile).
(b) Target: median ≤ 10%, p90 ≤ 25%, on figures the model was not fitted to. Rows of
    benchmarks/data/published_memory.json (LitGPT's resource tables, Unsloth's context table, Qwen's
    own fine-tuning profile, ms-swift's benchmark tables) and this project's H100 runs at other
    batch/seq/checkpointing, each predicted from the model's config, the setup the source states
    (quantisation, attention, dtype, checkpointing) and the LoRA it trained, counted on the model's
    shapes, over PEFT's LoRA rank-32 run's activation factor (full fine-tuning rows: over PEFT's full
    fine-tuning run). ms-swift's benchmark is in twice: as first published (Dec 2023: most steps at the
    length cap) and as re-run (Jan 2024: lengths spread under the cap over a longer run, so its reserved
    high-water mark carries cached blocks of earlier lengths, which the model does not predict). Besides the
    target over every row, the errors are printed per basis: rows marked ``"lengths": "varied"`` (ms-swift's
    January rows, and its December rows above 2048 tokens, where most samples are shorter than the cap) measure a
    long run's reserved high-water, which ``benchmarks/allocator_growth.py`` shows depends on the order of the
    data; the others measure what a step needs. Units are
    converted (GB = 1e9, GiB = 2^30, MiB = 2^20); "allocated" figures are compared as they are (the model
    predicts reserved memory, a few % above), and so are figures that include the CUDA context or allocator
    fragmentation (not modelled).

``--baseline REF`` also predicts every outside figure with the memory model as it was at commit REF (for example
``a7185ba^``, the model issue 18 was filed against), run from a temporary git worktree on the same rows, for
the rows its CLI could express (a bitsandbytes or unquantised base, one GPU, no attention or precision knobs,
the row's stored run as the adapter), and prints both models' errors on those rows, per source.

Run: ``python benchmarks/memory_accuracy.py [--json] [--baseline REF]``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from measure import worktree  # noqa: E402

from advisor.benchmarks.records import GIB  # noqa: E402
from advisor.benchmarks.store import load_snapshot  # noqa: E402
from advisor.memory.denoiser import denoiser_shape, image_tokens  # noqa: E402
from advisor.memory.layer_layouts import layout_targets  # noqa: E402
from advisor.memory.model import (  # noqa: E402
    BENCHMARK_SHAPE,
    MemorySetup,
    activation_factor,
    benchmark_of,
    measured,
    predict,
)
from advisor.memory.shapes import shape_from_config  # noqa: E402
from advisor.memory.user_adapter import UserAdapter, linear_layers, lora_count  # noqa: E402

UNITS = {"GB": 1e9, "GiB": GIB, "MiB": 2**20}
# What an outside figure measures (a row's "lengths"): what the worst step needs, which the model predicts, or a long
# run's reserved high-water on lengths spread under the cap, which depends on the order of the data
# (benchmarks/allocator_growth.py: +6.8 to +31 GiB beyond the need for one setup in five orders)
BASES = {"a step's need": False, "a long run's reserved on varied lengths": True}


def leave_one_out(mode: str, benchmark: str = "MetaMathQA") -> list[dict]:
    runs = [r for r in load_snapshot().runs if r.benchmark == benchmark and measured(r, mode)]
    factors = {r.id: activation_factor(r, mode) for r in runs}
    rows = []
    for run in runs:
        same = [factors[r.id] for r in runs if r.method == run.method and r.id != run.id]
        pool = same or [factors[r.id] for r in runs if r.id != run.id and r.peft_type is not None]
        factor = statistics.median(pool)
        shape, setup = benchmark_of(run)
        predicted = predict(run, shape, replace(setup, mode=mode), factor=factor).total
        truth = measured(run, mode)
        rows.append(
            {
                "run": run.id,
                "from": "its method's other runs" if same else "all other runs",
                "measured_gib": round(truth / GIB, 3),
                "predicted_gib": round(predicted / GIB, 3),
                "error": round(predicted / truth - 1, 4),
            }
        )
    return rows


def published() -> list[dict]:
    data = json.loads((REPO / "benchmarks/data/published_memory.json").read_text())
    runs = {r.id: r for r in load_snapshot().runs}
    rows = []
    for row in data["rows"]:
        config = data["models"][row["model"]]
        if row.get("kind") == "dit":  # a diffusion transformer: image tokens at the resolution + prompt tokens
            shape = denoiser_shape(config, row["model"], row["params"], "published")
            seq = image_tokens(shape, row["resolution"]) + shape.text_tokens
        else:
            shape = shape_from_config(config, row["model"], row.get("params"), "published")
            seq = row["seq"]
        setup = MemorySetup(
            batch_size=row["batch"],
            seq_len=seq,
            quant=row["quant"],
            grad_checkpointing=row["gc"],
            attention=row.get("attention", "sdpa"),
            dtype=row.get("dtype", "bf16"),
            optimizer=row.get("optimizer", "adamw"),
            resolution=row.get("resolution"),
            gpus=row.get("gpus", 1),
            sharding=row.get("sharding", "none"),
            offload=row.get("offload", "none"),
        )
        adapter = None
        if "lora" in row:  # the row's own LoRA, on the model's own linear layers
            targets = layout_targets(shape, row["lora"]["targets"])  # q/k/v onto a fused qkv (Qwen's c_attn)
            adapter = lora_count(linear_layers(shape, None), row["lora"]["r"], targets)
        elif "trainable" in row:  # the source's own count
            adapter = UserAdapter("LORA", row["trainable"], "as published", "the source's count")
        predicted = predict(runs[row["run"]], shape, setup, adapter=adapter).total
        truth = row["value"] * UNITS[row["unit"]]
        rows.append({**row, "predicted_gib": round(predicted / GIB, 3), "measured_gib": round(truth / GIB, 3),
                     "error": round(predicted / truth - 1, 4)})  # fmt: skip
    h100 = json.loads((REPO / "benchmarks/data/gpu_train_memory_h100.json").read_text())
    for row in h100["rows"]:
        if row["setup"] == "bench" or row["run"] not in runs:
            continue
        setup = MemorySetup(batch_size=row["batch"], seq_len=row["seq"], grad_checkpointing=row["grad_checkpointing"])
        predicted = predict(runs[row["run"]], BENCHMARK_SHAPE, setup).total
        truth = row["max_reserved_bytes"]
        rows.append(
            {
                "source": "h100",
                "model": "Llama-3.2-3B shape",
                "run": row["run"],
                "quant": "none",
                "batch": row["batch"],
                "seq": row["seq"],
                "gc": row["grad_checkpointing"],
                "figure": "reserved",
                "predicted_gib": round(predicted / GIB, 3),
                "measured_gib": round(truth / GIB, 3),
                "error": round(predicted / truth - 1, 4),
            }
        )
    return rows


# Run inside a worktree of an older commit: its own memory model predicts the rows on stdin (null: it cannot).
BASELINE_DRIVER = r"""
import json, sys
from advisor.benchmarks.store import load_snapshot
from advisor.memory import model as m
from advisor.memory.shapes import shape_from_config
from advisor.vocabulary import QUANTIZATION
runs = {r.id: r for r in load_snapshot().runs}
out = []
for row in json.load(sys.stdin):
    try:
        if row["quant"] not in QUANTIZATION or row["run"] not in runs:
            raise ValueError("not expressible")
        shape = shape_from_config(row["config"], row["model"]) if row["config"] else m.BENCHMARK_SHAPE
        setup = m.MemorySetup(batch_size=row["batch"], seq_len=row["seq"], quant=row["quant"],
                              grad_checkpointing=row["gc"])
        out.append(m.predict(runs[row["run"]], shape, setup).total / 2**30)
    except Exception:
        out.append(None)
print(json.dumps(out))
"""


def baseline_predictions(tree: Path, rows: list[dict]) -> list[float | None]:
    """The older commit's predictions (GiB) for the outside rows its CLI could express, else None."""
    data = json.loads((REPO / "benchmarks/data/published_memory.json").read_text())
    expressible = [
        r.get("kind") != "dit" and r.get("gpus", 1) == 1 and r.get("attention", "sdpa") in ("sdpa", "flash")
        and r.get("dtype", "bf16") == "bf16" and r.get("optimizer", "adamw") == "adamw" and "amp" not in r
        for r in rows
    ]  # fmt: skip
    payload = [
        {
            "model": r["model"],
            "config": data["models"].get(r["model"]) if r["source"] != "h100" else None,
            "run": r["run"] if ok else "",
            "quant": r["quant"],
            "batch": r["batch"],
            "seq": r["seq"],
            "gc": r["gc"],
        }
        for r, ok in zip(rows, expressible, strict=True)
    ]
    result = subprocess.run(
        [sys.executable, "-c", BASELINE_DRIVER], input=json.dumps(payload), capture_output=True, text=True,
        cwd=tree, env={**os.environ, "PYTHONPATH": str(tree)}, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        sys.exit(f"--baseline: the memory model at that commit could not be run ({last})")
    return json.loads(result.stdout)


def compare_with_baseline(rows: list[dict]) -> dict:
    """Both models' errors on the rows the baseline could predict, overall and per source."""
    both = [r for r in rows if "baseline_error" in r]

    def pair(chosen: list[dict]) -> dict:
        old = summary([{"error": r["baseline_error"]} for r in chosen])
        return {"n": len(chosen), "baseline": old, "ours": summary(chosen)}

    sources = sorted({r["source"] for r in both})
    return {"all": pair(both), "by_source": {s: pair([r for r in both if r["source"] == s]) for s in sources}}


def summary(rows: list[dict]) -> dict:
    errors = sorted(abs(r["error"]) for r in rows)
    return {
        "n": len(errors),
        "median_abs_error": round(statistics.median(errors), 4),
        "p90_abs_error": round(errors[min(len(errors), math.ceil(0.9 * len(errors))) - 1], 4),  # nearest rank
        "max_abs_error": round(errors[-1], 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--baseline", metavar="REF", help="also the memory model as it was at this commit")
    args = parser.parse_args()
    loo = {mode: leave_one_out(mode) for mode in ("peak", "train")}
    loo_image = leave_one_out("peak", "image-gen")
    outside = published()
    if args.baseline:
        with worktree(args.baseline) as tree:
            assert tree is not None
            for row, old in zip(outside, baseline_predictions(tree, outside), strict=True):
                if old is not None:
                    row["baseline_predicted_gib"] = round(old, 3)
                    row["baseline_error"] = round(old / row["measured_gib"] - 1, 4)
    report = {
        "leave_one_out": {mode: {**summary(rows), "target": "median ≤ 3%"} for mode, rows in loo.items()},
        "leave_one_out_image": {**summary(loo_image), "target": "median ≤ 3%"},
        "published": {**summary(outside), "target": "median ≤ 10%, p90 ≤ 25%"},
        "published_by_source": {
            source: summary([r for r in outside if r["source"] == source])
            for source in sorted({r["source"] for r in outside})
        },
        "published_by_basis": {
            basis: summary([r for r in outside if (r.get("lengths") == "varied") == varied])
            for basis, varied in BASES.items()
        },
        **({"baseline": {"ref": args.baseline, **compare_with_baseline(outside)}} if args.baseline else {}),
        "rows": {
            "leave_one_out_peak": loo["peak"],
            "leave_one_out_train": loo["train"],
            "leave_one_out_image": loo_image,
            "published": outside,
        },
    }
    if args.json:
        print(json.dumps(report, indent=1, ensure_ascii=False))
        return
    for mode, s in report["leave_one_out"].items():
        print(
            f"(a) leave-one-out, {mode:5s}: n={s['n']}, median |error| {s['median_abs_error']:.1%}, "
            f"p90 {s['p90_abs_error']:.1%}, max {s['max_abs_error']:.1%}  (target median ≤ 3%)"
        )
    s = report["leave_one_out_image"]
    print(
        f"(a) leave-one-out, image-gen peak: n={s['n']}, median |error| {s['median_abs_error']:.1%}, "
        f"p90 {s['p90_abs_error']:.1%}, max {s['max_abs_error']:.1%}  (target median ≤ 3%)"
    )
    worst = sorted(loo["peak"] + loo_image, key=lambda r: -abs(r["error"]))[:6]
    for r in worst:
        print(
            f"      worst: {r['run']:60s} {r['measured_gib']:6.2f} GiB measured, "
            f"{r['predicted_gib']:6.2f} predicted ({r['error']:+.1%}, from {r['from']})"
        )
    s = report["published"]
    print(
        f"(b) outside figures: n={s['n']}, median |error| {s['median_abs_error']:.1%}, "
        f"p90 {s['p90_abs_error']:.1%}, max {s['max_abs_error']:.1%}  (target median ≤ 10%, p90 ≤ 25%)"
    )
    for basis, t in report["published_by_basis"].items():
        print(
            f"      {basis}: n={t['n']}, median |error| {t['median_abs_error']:.1%}, "
            f"p90 {t['p90_abs_error']:.1%}, max {t['max_abs_error']:.1%}"
        )
    for source, t in report["published_by_source"].items():
        print(
            f"      {source:8s} n={t['n']}, median |error| {t['median_abs_error']:.1%}, p90 {t['p90_abs_error']:.1%}, "
            f"max {t['max_abs_error']:.1%}"
        )
    if args.baseline:
        base = report["baseline"]
        print(f"(b) against the model at {args.baseline}, on the {base['all']['n']} rows its CLI could express:")
        for name, pair in [("all", base["all"]), *base["by_source"].items()]:
            old, ours = pair["baseline"], pair["ours"]
            print(
                f"      {name:14s} n={pair['n']:3d}  at {args.baseline}: median {old['median_abs_error']:.1%}, "
                f"p90 {old['p90_abs_error']:.1%}   ours: median {ours['median_abs_error']:.1%}, "
                f"p90 {ours['p90_abs_error']:.1%}"
            )
    for r in outside:
        attention = f" {r['attention']}" if r.get("attention", "sdpa") != "sdpa" else ""
        length = f"{r['resolution']}px" if r.get("resolution") else f"s{r['seq']}"
        method = "full" if "full-finetuning" in r["run"] else (f"lora r{r['lora']['r']}" if "lora" in r else "lora")
        offload = " offload" if r.get("offload", "none") != "none" else ""
        gpus = f" {r['gpus']}x{r['sharding']}{offload}" if r.get("gpus", 1) > 1 else ""
        what = f"{r['model']} {method} {r['quant']} b{r['batch']} {length}{' gc' if r['gc'] else ''}{attention}{gpus}"
        print(
            f"      {r['source']:8s} {what:48s} {r['measured_gib']:6.2f} GiB ({r['figure']}), "
            f"predicted {r['predicted_gib']:6.2f} ({r['error']:+.1%})"
        )


if __name__ == "__main__":
    main()
