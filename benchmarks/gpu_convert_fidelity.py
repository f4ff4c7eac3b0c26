"""OFT -> LoRA conversion at a realistic size on a GPU: time, GPU memory and fidelity per rank.

Builds a Llama-3.2-1B-shaped model (random weights; no Hub access on GPU machines), puts the
stored MetaMathQA OFT run's own config on it with a seeded random (non-identity) update, and runs
the converter (`converters.convert.convert_adapter`, the library call behind `peft-advise convert`)
with a rank sweep on CUDA. Inputs are random token ids (no tokenizer), so fidelity figures describe
this random model, not a trained one; time and memory are what a real 1B conversion costs.

    python benchmarks/gpu_convert_fidelity.py --sweep 16,64,256 --work /tmp/convert
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sweep", default="16,64,256")
    parser.add_argument("--shape", default="llama-3.2-1b")
    parser.add_argument("--noise", type=float, default=0.05)
    parser.add_argument("--work", type=Path, default=Path("/tmp/convert"))
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    import peft
    import torch
    from gpu_train_memory import SHAPES, pick_run
    from transformers import LlamaConfig, LlamaForCausalLM

    from advisor.trial.candidates import build_candidate
    from converters.convert import ConvertOptions, convert_adapter

    base, oft, lora = args.work / "base", args.work / "oft", args.work / "lora"
    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(**SHAPES[args.shape], max_position_embeddings=8192)).save_pretrained(base)
    run = pick_run("oft")
    candidate = build_candidate(run, str(base), "generation", steps=1)  # the stored config, on this model's names
    kwargs = candidate.config.to_dict()
    model = peft.get_peft_model(LlamaForCausalLM.from_pretrained(base), candidate.config)
    with torch.no_grad():
        for _, param in model.named_parameters():
            if param.requires_grad:
                param.add_(torch.randn_like(param) * args.noise)
    model.save_pretrained(oft)
    data = json.loads((oft / "adapter_config.json").read_text())
    data["base_model_name_or_path"] = str(base)
    (oft / "adapter_config.json").write_text(json.dumps(data))
    del model

    cuda = args.device.startswith("cuda")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    sweep = tuple(int(r) for r in args.sweep.split(","))
    result = convert_adapter(str(oft), lora, ConvertOptions(sweep=sweep, device=args.device, target="vllm"))
    elapsed = time.perf_counter() - start
    report = {
        "shape": args.shape,
        "oft_config": {k: kwargs[k] for k in ("r", "oft_block_size", "target_modules", "coft") if k in kwargs},
        "seconds": round(elapsed, 1),
        "gpu": torch.cuda.get_device_name() if cuda else "cpu",
        "max_allocated_gib": round(torch.cuda.max_memory_allocated() / 1024**3, 2) if cuda else None,
        "result": result.to_dict(),
    }
    keys = (
        "rank",
        "factorization",
        "parameters",
        "retained_energy",
        "layer_output_error",
        "fidelity",
        "kl",
        "top1_agreement",
    )
    for row in report["result"].get("sweep", []):
        print(json.dumps({k: row.get(k) for k in keys}))
    print(f"converted in {elapsed:.1f} s, max allocated {report['max_allocated_gib']} GiB on {report['gpu']}")
    if args.out:
        args.out.write_text(json.dumps(report, indent=1, default=str) + "\n")


if __name__ == "__main__":
    main()
