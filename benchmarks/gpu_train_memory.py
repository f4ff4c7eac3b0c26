"""Measure real peak training memory per PEFT method on a GPU, next to the stored benchmark figures.

For the memory model (issue 6): PEFT's MetaMathQA runs were measured on Llama-3.2-3B, bf16,
batch 4, seq 768, on an L40S. This script rebuilds that model's *shape* from its config (random
weights: memory does not depend on their values), applies each chosen run's own PEFT config, and
trains a few AdamW steps on random tokens at fixed length; one process per trial, so every
peak is clean. Per trial it records ``torch.cuda.max_memory_reserved`` / ``max_memory_allocated``
over the whole trial (model load included, like the benchmark's ``accelerator_memory_max``) and
the reserved memory after the last step (the benchmark's train-time ``..._reserved_99th`` is
sampled there), plus the stored figures of the same run for comparison.

    python benchmarks/gpu_train_memory.py --runs lora,oft,ia3 --setups bench,b1-s2048,bench-gc --out memory.json

Runs on a CUDA machine; ``--device cpu --shape tiny`` smoke-tests the loop anywhere.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SHAPES = {
    # meta-llama/Llama-3.2-3B and -1B config.json values (what the benchmark trained).
    "llama-3.2-3b": dict(
        hidden_size=3072,
        intermediate_size=8192,
        num_hidden_layers=28,
        num_attention_heads=24,
        num_key_value_heads=8,
        vocab_size=128256,
        tie_word_embeddings=True,
    ),
    "llama-3.2-1b": dict(
        hidden_size=2048,
        intermediate_size=8192,
        num_hidden_layers=16,
        num_attention_heads=32,
        num_key_value_heads=8,
        vocab_size=128256,
        tie_word_embeddings=True,
    ),
    "tiny": dict(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=512,
        tie_word_embeddings=True,
    ),
}
SETUPS = {
    "bench": dict(batch=4, seq=768, grad_checkpointing=False),
    "bench-gc": dict(batch=4, seq=768, grad_checkpointing=True),
    "b1-s2048": dict(batch=1, seq=2048, grad_checkpointing=False),
    "b8-s512": dict(batch=8, seq=512, grad_checkpointing=False),
}


def pick_run(method: str):
    """The stored MetaMathQA run for ``method`` (its default experiment when there are several)."""
    from advisor.benchmarks.store import load_snapshot

    runs = [r for r in load_snapshot().runs if r.benchmark == "MetaMathQA" and r.method == method]
    if not runs:
        raise SystemExit(f"no MetaMathQA run for {method!r}")
    runs.sort(key=lambda r: (r.variant != "default", "rank32" not in r.variant, r.experiment))
    return runs[0]


def trial(args: argparse.Namespace) -> dict:
    """One measurement, in this (fresh) process."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    setup = SETUPS[args.setup]
    device = torch.device(args.device)
    config = LlamaConfig(**SHAPES[args.shape], max_position_embeddings=8192)
    torch.manual_seed(0)
    torch.set_default_dtype(torch.bfloat16)
    with device:
        model = LlamaForCausalLM(config)
    if setup["grad_checkpointing"]:
        model.gradient_checkpointing_enable()
        model.config.use_cache = False
    run = None
    if args.run != "full":
        import peft

        from advisor.trial.candidates import build_candidate

        run = pick_run(args.run)
        names = [name for name, _ in model.named_modules() if name]
        candidate = build_candidate(run, args.shape, "generation", args.steps, names=names)
        model = peft.get_peft_model(model, candidate.config)
        if setup["grad_checkpointing"]:
            model.enable_input_require_grads()
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-4)
    model.train()
    vocab = config.vocab_size
    step_times = []
    for step in range(args.steps):
        tokens = torch.randint(0, vocab, (setup["batch"], setup["seq"]), device=device)
        start = time.perf_counter()
        loss = model(input_ids=tokens, labels=tokens).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        step_times.append(time.perf_counter() - start)
        if not torch.isfinite(loss):
            raise SystemExit(f"loss is {loss.item()} at step {step}")
    row = {
        "run": args.run if run is None else run.id,
        "method": args.run,
        "shape": args.shape,
        "setup": args.setup,
        **setup,
        "dtype": "bfloat16",
        "optimizer": "AdamW",
        "steps": args.steps,
        "trainable_params": sum(p.numel() for p in trainable),
        "total_params": sum(p.numel() for p in model.parameters()),
        "median_step_s": sorted(step_times)[len(step_times) // 2],
        "torch": torch.__version__,
    }
    if device.type == "cuda":
        row.update(
            gpu=torch.cuda.get_device_name(),
            max_reserved_bytes=torch.cuda.max_memory_reserved(),
            max_allocated_bytes=torch.cuda.max_memory_allocated(),
            reserved_after_steps_bytes=torch.cuda.memory_reserved(),
        )
    try:
        import peft

        row["peft"] = peft.__version__
    except ImportError:
        pass
    if run is not None and args.shape == "llama-3.2-3b":
        row.update(
            stored_peak_bytes=run.peak_memory_bytes,
            stored_p99_bytes=run.p99_memory_bytes,
            stored_setup=f"{run.model_id}, {run.dtype}, batch {run.batch_size}, seq {run.seq_len}, {run.gpu}",
        )
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", default="lora,oft,ia3,full")
    parser.add_argument("--setups", default="bench")
    parser.add_argument("--shape", default="llama-3.2-3b", choices=sorted(SHAPES))
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--run", help=argparse.SUPPRESS)  # one trial (child process)
    parser.add_argument("--setup", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        print(json.dumps(trial(args)))
        return
    rows = []
    for setup in args.setups.split(","):
        for run in args.runs.split(","):
            cmd = [
                sys.executable,
                __file__,
                "--run",
                run,
                "--setup",
                setup,
                "--shape",
                args.shape,
                "--steps",
                str(args.steps),
                "--device",
                args.device,
            ]
            done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
            if done.returncode != 0:
                tail = (done.stderr.strip().splitlines() or ["?"])[-1]
                rows.append({"method": run, "setup": setup, "error": tail})
                print(f"{setup:9} {run:14} FAILED: {tail}", flush=True)
                continue
            row = json.loads(done.stdout.strip().splitlines()[-1])
            rows.append(row)
            gib = 1024**3
            measured = row.get("max_reserved_bytes")
            text = f"{setup:9} {run:14} trainable {row['trainable_params']:>12,}"
            if measured is not None:
                text += (
                    f"  max reserved {measured / gib:6.2f} GiB  allocated {row['max_allocated_bytes'] / gib:6.2f}"
                    f"  after steps {row['reserved_after_steps_bytes'] / gib:6.2f}"
                )
            if row.get("stored_p99_bytes"):
                text += (
                    f"  | stored peak {row['stored_peak_bytes'] / gib:6.2f}  p99 {row['stored_p99_bytes'] / gib:6.2f}"
                )
            print(text, flush=True)
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
