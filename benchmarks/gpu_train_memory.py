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

Issue 18's GPU checks (a non-Llama model, 4-bit, eager vs SDPA), each row with the memory model's prediction
for the same shape, setup and trainable count, and its error:

    python benchmarks/gpu_train_memory.py --shape qwen2-1.5b,gemma-2b --runs lora,full \
        --setups b2-s2048-gc,b2-s2048-gc-eager,b1-s2048-eager,b2-s2048-gc-4bit --out issue18.json

The setups that test what the memory model leaves out (each row also records the device's own count,
``mem_get_info``, so the CUDA context and libraries outside PyTorch's allocator are measured too):

    python benchmarks/gpu_train_memory.py --shape qwen2-1.5b --runs lora \
        --setups b2-s2048-gc,b1-s2048-gc-varlen,b2-s2048-gc-halfloss --out issue18-gaps.json

Shapes are rebuilt from their config values (``SHAPES``) with random weights; a 4-bit setup saves the random
model once and loads it back through bitsandbytes (nf4, bf16 compute) and PEFT's kbit preparation, as a QLoRA
user does. Runs on a CUDA machine; ``--device cpu --shape tiny`` smoke-tests the loop anywhere.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SHAPES = {
    # meta-llama/Llama-3.2-3B and -1B config.json values (what the benchmark trained).
    "llama-3.2-3b": dict(
        model_type="llama",
        hidden_size=3072,
        intermediate_size=8192,
        num_hidden_layers=28,
        num_attention_heads=24,
        num_key_value_heads=8,
        vocab_size=128256,
        tie_word_embeddings=True,
    ),
    "llama-3.2-1b": dict(
        model_type="llama",
        hidden_size=2048,
        intermediate_size=8192,
        num_hidden_layers=16,
        num_attention_heads=32,
        num_key_value_heads=8,
        vocab_size=128256,
        tie_word_embeddings=True,
    ),
    # Qwen/Qwen2-1.5B and google/gemma-2b config.json values: a non-Llama vocabulary, GQA / MQA, Gemma's
    # 256-wide heads (8 × 256 = its hidden size) and GeGLU.
    "qwen2-1.5b": dict(
        model_type="qwen2",
        hidden_size=1536,
        intermediate_size=8960,
        num_hidden_layers=28,
        num_attention_heads=12,
        num_key_value_heads=2,
        vocab_size=151936,
        tie_word_embeddings=True,
    ),
    "gemma-2b": dict(
        model_type="gemma",
        hidden_size=2048,
        intermediate_size=16384,
        num_hidden_layers=18,
        num_attention_heads=8,
        num_key_value_heads=1,
        head_dim=256,
        vocab_size=256000,
        tie_word_embeddings=True,
    ),
    "tiny": dict(
        model_type="llama",
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
    "b2-s2048-gc": dict(batch=2, seq=2048, grad_checkpointing=True),
    "b2-s2048-gc-eager": dict(batch=2, seq=2048, grad_checkpointing=True, attention="eager"),
    "b1-s2048-eager": dict(batch=1, seq=2048, grad_checkpointing=False, attention="eager"),
    "b2-s2048-gc-4bit": dict(batch=2, seq=2048, grad_checkpointing=True, quant="4bit"),
    # Real data: every step a different length (seq/4 to seq), the cache never released, as in a training
    # loop without empty_cache: how far max_reserved grows past max_allocated (the fixed-length rows' gap).
    "b1-s2048-gc-varlen": dict(batch=1, seq=2048, grad_checkpointing=True, lengths="varlen"),
    # The loss computed on the half-precision logits (remote-code models that do not upcast, run without
    # autocast, as under DeepSpeed's fp16/bf16 engine): against b2-s2048-gc, what the upcast costs per logit.
    "b2-s2048-gc-halfloss": dict(batch=2, seq=2048, grad_checkpointing=True, loss="half"),
}
VARLEN_STEPS = 24  # enough different lengths for the cache to settle


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

    setup = SETUPS[args.setup]
    device = torch.device(args.device)
    config = model_config(args.shape)
    model = build_model(config, setup, device)
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
    varlen = setup.get("lengths") == "varlen"
    lengths = random.Random(0)
    for step in range(max(args.steps, VARLEN_STEPS) if varlen else args.steps):
        seq = lengths.randint(setup["seq"] // 4, setup["seq"]) if varlen else setup["seq"]
        tokens = torch.randint(0, vocab, (setup["batch"], seq), device=device)
        start = time.perf_counter()
        if setup.get("loss") == "half":  # the logits stay bf16: no upcast, no autocast
            logits = model(input_ids=tokens).logits
            loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, vocab), tokens[:, 1:].reshape(-1))
            del logits
        else:
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
        "attention": "sdpa",
        "quant": "none",
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
        free, total = torch.cuda.mem_get_info()  # the device's view: CUDA context and libraries included
        row.update(device_used_bytes=total - free, outside_allocator_bytes=total - free - torch.cuda.memory_reserved())
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


def model_config(shape: str):
    from transformers import AutoConfig

    values = dict(SHAPES[shape])
    return AutoConfig.for_model(values.pop("model_type"), **values, max_position_embeddings=8192)


def build_model(config, setup: dict, device):
    """The shape with random bf16 weights on ``device``; for a 4-bit setup, saved once and loaded back through
    bitsandbytes (nf4, bf16 compute) and PEFT's ``prepare_model_for_kbit_training``, as QLoRA users load it."""
    import tempfile

    import torch
    from transformers import AutoModelForCausalLM

    attention = setup.get("attention", "sdpa")
    torch.manual_seed(0)
    if setup.get("quant") != "4bit":
        torch.set_default_dtype(torch.bfloat16)
        with device:
            return AutoModelForCausalLM.from_config(config, attn_implementation=attention)
    import peft
    from transformers import BitsAndBytesConfig

    with tempfile.TemporaryDirectory() as folder:
        AutoModelForCausalLM.from_config(config, torch_dtype=torch.bfloat16).save_pretrained(folder)
        quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16)
        model = AutoModelForCausalLM.from_pretrained(
            folder, quantization_config=quant, torch_dtype=torch.bfloat16, attn_implementation=attention,
            device_map={"": device.index or 0},
        )  # fmt: skip
    torch.cuda.reset_peak_memory_stats()  # the peak of training, not of loading the bf16 copy
    return peft.prepare_model_for_kbit_training(model, use_gradient_checkpointing=bool(setup["grad_checkpointing"]))


def predicted_bytes(row: dict) -> float:
    """The memory model's figure for the row's shape, setup and trainable count (the run's a_run carried)."""
    from advisor.memory.model import predict
    from advisor.memory.setup import MemorySetup
    from advisor.memory.shapes import shape_from_config
    from advisor.memory.user_adapter import UserAdapter

    run = pick_run(row["method"])
    values = dict(SHAPES[row["shape"]])
    shape = shape_from_config(values, row["shape"], row["total_params"], "counted by torch")
    setup = MemorySetup(
        batch_size=row["batch"], seq_len=row["seq"], grad_checkpointing=row["grad_checkpointing"],
        attention=row["attention"], quant=row["quant"],
    )  # fmt: skip
    adapter = UserAdapter(run.peft_type, row["trainable_params"], "as built", "torch") if run.peft_type else None
    return predict(run, shape, setup, adapter=adapter).total


def measure(shape: str, setup: str, run: str, args: argparse.Namespace) -> dict:
    """One trial in its own process (a clean peak), printed with the prediction beside it."""
    cmd = [sys.executable, __file__, "--run", run, "--setup", setup, "--shape", shape, "--steps", str(args.steps)]
    cmd += ["--device", args.device]
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["?"])[-1]
        print(f"{shape:12} {setup:18} {run:6} FAILED: {tail}", flush=True)
        return {"method": run, "shape": shape, "setup": setup, "error": tail}
    row = json.loads(done.stdout.strip().splitlines()[-1])
    gib = 1024**3
    measured = row.get("max_reserved_bytes")
    row["predicted_bytes"] = predicted_bytes(row)
    text = f"{shape:12} {setup:18} {run:6} trainable {row['trainable_params']:>12,}"
    text += f"  predicted {row['predicted_bytes'] / gib:6.2f} GiB"
    if measured is not None:
        text += (
            f"  max reserved {measured / gib:6.2f} GiB ({row['predicted_bytes'] / measured - 1:+.1%})"
            f"  allocated {row['max_allocated_bytes'] / gib:6.2f}"
            f"  after steps {row['reserved_after_steps_bytes'] / gib:6.2f}"
            f"  outside the allocator {row['outside_allocator_bytes'] / gib:5.2f}"
        )
    if row.get("stored_p99_bytes"):
        text += f"  | stored peak {row['stored_peak_bytes'] / gib:6.2f}  p99 {row['stored_p99_bytes'] / gib:6.2f}"
    print(text, flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", default="lora,oft,ia3,full")
    parser.add_argument("--setups", default="bench")
    parser.add_argument("--shape", default="llama-3.2-3b", help=f"one or more of {', '.join(SHAPES)}, comma-separated")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--run", help=argparse.SUPPRESS)  # one trial (child process)
    parser.add_argument("--setup", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        print(json.dumps(trial(args)))
        return
    plan = [(sh, se, r) for sh in args.shape.split(",") for se in args.setups.split(",") for r in args.runs.split(",")]
    unknown = [f"{sh}/{se}" for sh, se, _ in plan if sh not in SHAPES or se not in SETUPS]
    if unknown:
        raise SystemExit(f"unknown shape/setup {unknown[0]}: shapes {list(SHAPES)}, setups {list(SETUPS)}")
    rows = [measure(shape, setup, run, args) for shape, setup, run in plan]
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
