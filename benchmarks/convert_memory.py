"""Conversion memory at real model sizes: peak RSS of `peft-advise convert` against the checkpoint size.

Builds a random Llama of a real model's shape, written shard by shard (never whole in memory), with an
OFT adapter on q_proj/v_proj carrying a non-trivial update, then runs

    peft-advise convert ADAPTER OUT --for vllm --rank 64 --base-model BASE --device cpu

for this checkout and, in the same run, for a baseline revision (a git worktree of ``--baseline-ref``),
sampling the resident memory of the whole process tree every 0.1 s. Prints peak RSS, the ratio to the
checkpoint's bytes, wall time and the fidelity each reached, and the ours/baseline ratios.

Shapes: ``1b`` (Llama-3.2-1B: hidden 2048, 16 layers, vocab 128256, tied embeddings: 1.24B parameters,
2.47 GB of bf16), ``8b`` (Llama-3.1-8B: 8.03B, 16.1 GB; needs that much disk), ``small`` (hidden 512,
4 layers: a quick check of the script itself). Issue 17's targets: ≤ 0.75x the checkpoint on 1b,
≤ 0.3x on 8b.

Run: ``python benchmarks/convert_memory.py --shape 1b --baseline-ref HEAD~3``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from measure import run_measured

REPO = Path(__file__).resolve().parent.parent

SHAPES = {
    "small": {"hidden_size": 512, "intermediate_size": 1536, "num_hidden_layers": 4, "num_attention_heads": 8,
              "num_key_value_heads": 4, "vocab_size": 32000, "tie_word_embeddings": True},
    "1b": {"hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 16, "num_attention_heads": 32,
           "num_key_value_heads": 8, "vocab_size": 128256, "tie_word_embeddings": True},
    "8b": {"hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32, "num_attention_heads": 32,
           "num_key_value_heads": 8, "vocab_size": 128256, "tie_word_embeddings": False},
}  # fmt: skip
SHARD_BYTES = 1 << 30


def write_random_llama(folder: Path, shape: dict) -> int:
    """A Llama folder (config + safetensors shards + index) of random bf16 weights; returns its bytes."""
    import torch
    from safetensors.torch import save_file
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(**shape, max_position_embeddings=4096, torch_dtype="bfloat16")
    config.architectures = ["LlamaForCausalLM"]
    with torch.device("meta"):
        skeleton = LlamaForCausalLM(config)
    folder.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(folder)
    generator = torch.Generator().manual_seed(0)
    index: dict[str, str] = {}
    shard: dict[str, torch.Tensor] = {}
    shard_bytes, written, number = 0, 0, 0

    def flush() -> None:
        nonlocal shard, shard_bytes, number, written
        if not shard:
            return
        number += 1
        name = f"model-{number:05d}.safetensors"
        save_file(shard, str(folder / name), metadata={"format": "pt"})
        index.update({key: name for key in shard})
        written += shard_bytes
        shard, shard_bytes = {}, 0

    for name, param in skeleton.state_dict().items():
        if config.tie_word_embeddings and name == "lm_head.weight":
            continue
        if name.endswith("norm.weight"):
            tensor = torch.ones(param.shape, dtype=torch.bfloat16)
        else:
            tensor = (torch.randn(param.shape, generator=generator) * 0.02).to(torch.bfloat16)
        shard[name] = tensor
        shard_bytes += tensor.numel() * 2
        if shard_bytes >= SHARD_BYTES:
            flush()
    flush()
    (folder / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": written}, "weight_map": index})
    )
    return written


def write_oft_adapter(folder: Path, base: Path, shape: dict) -> Path:
    """An OFT (q/v) adapter for ``base`` with a seeded non-trivial rotation, built on the meta device."""
    import peft
    import torch
    from safetensors.torch import save_file
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(**shape)
    with torch.device("meta"):
        model = peft.get_peft_model(
            LlamaForCausalLM(config),
            peft.OFTConfig(r=0, oft_block_size=32, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"),
        )
    generator = torch.Generator().manual_seed(1)
    state = {
        key: torch.randn(value.shape, generator=generator) * 0.05
        for key, value in peft.get_peft_model_state_dict(model).items()
    }
    folder.mkdir(parents=True, exist_ok=True)
    save_file(state, str(folder / "adapter_model.safetensors"))
    adapter_config = model.peft_config["default"].to_dict()
    adapter_config["base_model_name_or_path"] = str(base)
    for key, value in list(adapter_config.items()):
        if isinstance(value, set):
            adapter_config[key] = sorted(value)
    (folder / "adapter_config.json").write_text(json.dumps(adapter_config, default=str))
    return folder


def measure(cmd: list[str], env: dict[str, str], cwd: Path) -> dict:
    """Peak RSS of the process tree (sampled every 0.1 s), wall time, and the fidelity the command reports."""
    wall, peak, out = run_measured(cmd, env=env, cwd=cwd, interval=0.1)
    result = json.loads(out)
    return {"peak_rss": peak, "wall_s": wall, "fidelity": (result.get("fidelity") or {}).get("fidelity")}


# Import the CLI from the checkout in the working directory, and say which one ran (stderr).
_RUN_FROM_CWD = (
    "import sys, os; sys.path.insert(0, os.getcwd()); import advisor; "
    "print('running', advisor.__file__, file=sys.stderr); from advisor.cli.main import main; "
    "sys.argv[0] = 'peft-advise'; main()"
)


def convert_cmd(python: str, adapter: Path, out: Path, base: Path, rank: int) -> list[str]:
    return [python, "-m", "advisor.cli", "convert", str(adapter), str(out), "--for", "vllm", "--rank", str(rank),
            "--base-model", str(base), "--device", "cpu", "--overwrite", "--json"]  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=sorted(SHAPES), default="1b")
    parser.add_argument("--rank", type=int, default=64)
    parser.add_argument("--baseline-ref", help="git revision to compare with (a worktree of it is used)")
    parser.add_argument("--work", type=Path, help="folder for the model and adapter (default: a temp folder)")
    args = parser.parse_args()

    work = args.work or Path(tempfile.mkdtemp(prefix="convert-memory-"))
    base, adapter = work / f"llama-{args.shape}", work / f"oft-{args.shape}"
    shape = SHAPES[args.shape]
    if not (base / "model.safetensors.index.json").exists():
        print(f"writing a random {args.shape} Llama to {base} ...", flush=True)
        write_random_llama(base, shape)
    checkpoint = sum(p.stat().st_size for p in base.glob("*.safetensors"))
    if not (adapter / "adapter_model.safetensors").exists():
        write_oft_adapter(adapter, base, shape)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PEFT_ADVISOR_PLAIN": "1"}
    runs = {}
    checkouts = [("ours", REPO)]
    worktree = None
    if args.baseline_ref:
        worktree = Path(tempfile.mkdtemp(prefix="convert-baseline-"))
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(worktree), args.baseline_ref],
                       check=True, capture_output=True)  # fmt: skip
        checkouts.insert(0, (f"baseline {args.baseline_ref}", worktree))
    try:
        for label, checkout in checkouts:
            cmd = convert_cmd(sys.executable, adapter, work / f"out-{label.split()[0]}", base, args.rank)
            runs[label] = measure([*cmd[:1], "-c", _RUN_FROM_CWD, *cmd[3:]], env, checkout)
            r = runs[label]
            print(
                f"{label:<24} peak RSS {r['peak_rss'] / 2**30:6.2f} GiB = {r['peak_rss'] / checkpoint:5.2f}x the "
                f"checkpoint ({checkpoint / 1e9:.2f} GB)   wall {r['wall_s']:6.1f} s   fidelity {r['fidelity']}",
                flush=True,
            )
    finally:
        if worktree is not None:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(worktree)], check=False)
            shutil.rmtree(worktree, ignore_errors=True)
    if len(runs) == 2:
        baseline, ours = runs.values()
        rss, wall = ours["peak_rss"] / baseline["peak_rss"], ours["wall_s"] / baseline["wall_s"]
        print(f"ratio ours/baseline: peak RSS {rss:.2f}, wall {wall:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
