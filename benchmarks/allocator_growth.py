"""Why a long run on lengths that vary reserves more than any of its steps needs, and why no setup flag predicts how
much: the same setup, the same data, only the order of the samples changed, reserves a different amount.

The memory model predicts what the worst step needs. ms-swift published the same setups twice (see
``benchmarks/data/published_memory.json``): in December 2023 on 1000 samples cut to the length cap (most steps at
the cap up to 2048 tokens), predicted with a median error of 2.2%; in January 2024 with longer samples dropped
(every length under the cap; the whole dataset up to 2048 tokens, 1000 samples above), up to 2× as much for the
same setup (Qwen-7B, LoRA, 2048 tokens: 18.9 against 27.7 GiB), figures read from
``torch.cuda.max_memory_reserved`` at the end of training.

This script replays PyTorch's caching allocator (``benchmarks/caching_allocator.py``) on a real training step's
allocation timeline:

1. The timeline: one step (forward, loss, backward, AdamW step) of a Qwen2 model at Qwen-7B's widths (hidden 4096,
   MLP 11008, 32 heads, vocabulary 151,936, untied) with swift's LoRA (r 8 on q/k/v), gradient checkpointing,
   SDPA and bf16, run on CPU with uninitialised weights (values decide no allocation). Every storage an ATen op
   returns is an allocation, freed when no tensor an op returned with it (a view, a tensor autograd saved) is alive:
   the live bytes match PyTorch's profiler of the CPU allocator to the byte. Ops are the same
   on a GPU; the kernels' own workspaces (cuBLAS, FlashAttention's) are not in it. Two lengths give each
   allocation's size as a + b·length, so any length's step is exact without running it. ``--layers`` (default 4)
   keeps it fast; the vocabulary-wide tensors, whose size does not depend on the layers, are what the cache piles up.
2. The lengths: the swift benchmark's dataset (cls-fudan-news-zh: 4959 samples, 3236 ± 2548 tokens, 93 to 19,550;
   the lengths themselves are not offline, so a gamma distribution with those moments, cut to that range), as
   swift ran it: "truncate" (December: 1000 samples, each cut to the cap) and "delete" (January: longer samples
   dropped; the whole dataset up to a 2048-token cap, 1000 samples above), each in ``--shuffles`` orders.
3. The figures: the reserved high-water of a fixed-length run (what the memory model predicts, less the weights),
   and how far each scenario's goes beyond it, with the default allocator and with ``expandable_segments:True``
   (no card limit: on swift's 80 GB cards the allocator would release cached segments before passing it);
   beside them, what swift measured beyond the memory model's prediction for those setups.

    python benchmarks/allocator_growth.py [--layers 4] [--shuffles 5] [--caps 512,1024,2048] [--json]

Needs torch, transformers and peft (pip install "peft-advisor[peft]"); about 3 minutes on 2 cores at 4 layers.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import warnings
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from caching_allocator import CachingAllocator, replay  # noqa: E402

GIB = 2**30
CAPTURE_LENGTHS = (64, 128)
CAPS = (512, 1024, 2048)
DATASET = {"samples": 4959, "mean": 3236.4, "sd": 2547.5, "min": 93, "max": 19550}
TRUNCATE_SAMPLES = 1000  # swift's December runs, and its January runs above WHOLE_DATASET_UP_TO tokens
WHOLE_DATASET_UP_TO = 2048


def allocation_timeline(step: Callable[[], None]) -> list[tuple]:
    """The storages ATen ops create while ``step`` runs, in order: ("alloc", id, bytes, op) and ("free", id).

    A storage lives while any tensor an op returned with it (a view included) is alive; what autograd saves keeps
    its tensor, and so its Python object, alive (PyTorch keeps a tensor's Python object while C++ holds the tensor).
    Views of storages that existed before ``step`` (the weights) are not allocations. The live bytes peak where the
    CPU allocator's own calls do (tests/test_allocator_growth.py)."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_flatten

    events: list[tuple] = []
    live: dict[int, list[int]] = {}  # storage → [id, holders]

    def release(key: int) -> None:
        entry = live.get(key)
        if entry is not None:
            entry[1] -= 1
            if entry[1] == 0:
                del live[key]
                events.append(("free", entry[0]))

    def hold(obj: Any, key: int) -> None:
        live[key][1] += 1
        weakref.finalize(obj, release, key)

    def strided(value: Any) -> bool:
        return isinstance(value, torch.Tensor) and value.layout == torch.strided

    class Timeline(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            before = {t.untyped_storage()._cdata for t in tree_flatten((args, kwargs))[0] if strided(t)}
            out = func(*args, **(kwargs or {}))
            for tensor in tree_flatten(out)[0]:
                if not strided(tensor):
                    continue
                storage = tensor.untyped_storage()
                key = storage._cdata
                if key not in live:
                    if key in before:  # a view of memory that is not the step's
                        continue
                    live[key] = [len(events), 0]
                    events.append(("alloc", live[key][0], storage.nbytes(), str(func)))
                hold(tensor, key)
            return out

    with Timeline():
        step()
    return events


def sized_by_length(short: list[tuple], long: list[tuple], lengths: tuple[int, int]) -> list[tuple]:
    """Two timelines of the same step at two lengths → ("alloc", id, a, b) with bytes = a + b·length."""
    if [e[:2] for e in short] != [e[:2] for e in long]:
        raise ValueError("the step runs different ops at the two lengths; its timeline cannot be scaled")
    events = []
    for a, b in zip(short, long, strict=True):
        if a[0] == "alloc":
            slope = (b[2] - a[2]) / (lengths[1] - lengths[0])
            events.append(("alloc", a[1], a[2] - slope * lengths[0], slope))
        else:
            events.append(a)
    return events


def qwen7b_lora_step(layers: int) -> Callable[[int], Callable[[], None]]:
    """swift's Qwen-7B LoRA setup, ``layers`` deep: a function of the length that runs one training step."""
    import torch
    import transformers
    from peft import LoraConfig, get_peft_model

    config = transformers.Qwen2Config(
        hidden_size=4096, intermediate_size=11008, num_hidden_layers=layers, num_attention_heads=32,
        num_key_value_heads=32, vocab_size=151936, tie_word_embeddings=False, max_position_embeddings=32768,
    )  # fmt: skip
    with torch.device("meta"):
        base = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16, attn_implementation="sdpa")
    base = base.to_empty(device="cpu")
    head_dim = config.hidden_size // config.num_attention_heads
    base.model.rotary_emb.inv_freq = 1.0 / (10000 ** (torch.arange(0, head_dim, 2, dtype=torch.float) / head_dim))
    base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": True})
    base.enable_input_require_grads()
    lora = LoraConfig(r=8, lora_alpha=32, lora_dropout=0.05, target_modules=["q_proj", "k_proj", "v_proj"])
    model = get_peft_model(base, lora)
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)

    def at(length: int) -> Callable[[], None]:
        def step() -> None:
            ids = torch.randint(0, 1000, (1, length))
            loss = model(input_ids=ids, labels=ids).loss  # the outputs (and logits) are dropped before backward
            loss.backward()
            del loss
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        return step

    return at


def dataset_lengths(seed: int) -> list[int]:
    rng = random.Random(seed)
    shape = (DATASET["mean"] / DATASET["sd"]) ** 2
    scale = DATASET["sd"] ** 2 / DATASET["mean"]
    lengths: list[int] = []
    while len(lengths) < DATASET["samples"]:
        value = rng.gammavariate(shape, scale)
        if DATASET["min"] <= value <= DATASET["max"]:
            lengths.append(int(value))
    return lengths


def scenario_lengths(strategy: str, cap: int, seed: int) -> list[int]:
    data = dataset_lengths(seed)
    if strategy == "delete":
        kept = [n for n in data if n <= cap]
        return kept if cap <= WHOLE_DATASET_UP_TO else kept[:TRUNCATE_SAMPLES]
    return [min(n, cap) for n in random.Random(seed).sample(data, TRUNCATE_SAMPLES)]


def reserved_high_water(events: list[tuple], lengths: list[int], expandable: bool = False) -> int:
    allocator = CachingAllocator(expandable=expandable)
    for length in lengths:
        replay(allocator, events, lambda e, n=length: max(1, round(e[2] + e[3] * n)))
    return allocator.peak_reserved


def swift_excess() -> dict[str, dict[int, float]]:
    """What swift measured for Qwen-7B LoRA (r 8, batch 1, checkpointing, flash) beyond the memory model's
    prediction, GiB, per version and cap."""
    from memory_accuracy import published

    out: dict[str, dict[int, float]] = {"truncate": {}, "delete": {}}
    for row in published():
        if (
            row["model"] == "Qwen/Qwen-7B" and row.get("lora", {}).get("r") == 8 and row["quant"] == "none"
            and row["batch"] == 1 and row["gc"] and row.get("attention") == "flash"
        ):  # fmt: skip
            version = {"swift": "delete", "swift-2023-12": "truncate"}.get(row["source"])
            if version:
                out[version].setdefault(row["seq"], round(row["measured_gib"] - row["predicted_gib"], 2))
    return out


def positive(text: str) -> int:
    """An argparse type: a bad value is argparse's one-line usage error, exit 2."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer")
    return int(text)


def caps_list(text: str) -> list[int]:
    return [positive(part.strip()) for part in text.split(",")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=positive, default=4)
    parser.add_argument("--shuffles", type=positive, default=5)
    parser.add_argument("--caps", type=caps_list, default=list(CAPS), help="length caps, comma-separated")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    from rich.progress import track

    at = qwen7b_lora_step(args.layers)
    at(CAPTURE_LENGTHS[0])()  # the first step creates the optimizer's state, which later steps keep
    short, long = (allocation_timeline(at(n)) for n in CAPTURE_LENGTHS)
    events = sized_by_length(short, long, CAPTURE_LENGTHS)
    measured = swift_excess()
    rows = []
    jobs = [(cap, strategy) for cap in args.caps for strategy in ("truncate", "delete")]
    for cap, strategy in track(jobs, description="replaying the caching allocator"):
        fixed = reserved_high_water(events, [cap, cap])
        orders = [scenario_lengths(strategy, cap, seed) for seed in range(args.shuffles)]
        excess = sorted((reserved_high_water(events, lengths) - fixed) / GIB for lengths in orders)
        spread = {"min": excess[0], "median": statistics.median(excess), "max": excess[-1]}
        fixed_expandable = reserved_high_water(events, [cap, cap], expandable=True)
        expandable = max(reserved_high_water(events, n, expandable=True) - fixed_expandable for n in orders) / GIB
        rows.append(
            {
                "cap": cap,
                "strategy": strategy,
                "fixed_length_gib": round(fixed / GIB, 2),
                "excess_gib": {key: round(value, 2) for key, value in spread.items()},
                "expandable_segments_max_excess_gib": round(expandable, 2),
                "swift_measured_excess_gib": measured[strategy].get(cap),
            }
        )
    if args.json:
        print(json.dumps({"layers": args.layers, "shuffles": args.shuffles, "rows": rows}, indent=1))
        return
    print(f"Qwen-7B widths, {args.layers} layers, LoRA r8 q/k/v, checkpointing; {args.shuffles} orders of the data")
    print(
        "cap    strategy   fixed-length need   beyond it: min / median / max   expandable_segments: max   "
        "swift measured"
    )
    for row in rows:
        e = row["excess_gib"]
        swift = row["swift_measured_excess_gib"]
        print(
            f"{row['cap']:5d}  {row['strategy']:9s}  {row['fixed_length_gib']:8.2f} GiB        "
            f"{e['min']:6.2f} / {e['median']:6.2f} / {e['max']:6.2f} GiB      "
            f"{row['expandable_segments_max_excess_gib']:6.2f} GiB            "
            f"{'' if swift is None else f'{swift:+.2f} GiB'}"
        )


if __name__ == "__main__":
    main()
