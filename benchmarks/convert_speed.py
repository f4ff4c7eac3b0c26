"""Conversion speed and quality: peft's own ``save_as_lora`` vs ours, and calibrated vs plain SVD.

Part 1 (targets: time ratio ≤ 0.5, error ratio ≤ 1.05). One LoHa adapter (a method peft converts
itself) on a random Llama-shaped model; both converters start from the same loaded PeftModel and
write a LoRA of the same rank. Ours reads the same ``get_delta_weight`` and factorises it with a
randomised SVD instead of a full one. The error is the weight-space error ``‖ΔW − BA‖ / ‖ΔW‖``
pooled over all layers, computed from the saved files of both.

Part 2 (target ≤ 0.5). OFT on the real MiniLM (every linear layer, as in PEFT's OFT runs): held-out
layer output error ``‖(ΔW − BA)X‖ / ‖ΔW X‖`` of the calibrated factorisation divided by plain
SVD's, at equal rank, plus model-level fidelity of both. Run: ``python benchmarks/convert_speed.py``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))  # the same adapter factory the tests use


def part1(hidden: int, layers: int, rank: int, repeats: int) -> dict[str, float]:
    import peft
    import torch
    from safetensors.torch import load_file, save_file
    from transformers import LlamaConfig, LlamaForCausalLM

    from converters.convert import factorise_layers

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=1000,
        hidden_size=hidden,
        intermediate_size=int(hidden * 2.75),
        num_hidden_layers=layers,
        num_attention_heads=hidden // 64,
        num_key_value_heads=hidden // 64,
    )
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    model = peft.get_peft_model(LlamaForCausalLM(config), peft.LoHaConfig(r=8, alpha=8, target_modules=targets))
    with torch.no_grad():
        for _, p in model.named_parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.1)
    model.eval()
    deltas = {
        name.removeprefix("base_model.model."): module.get_delta_weight("default").float()
        for name, module in model.named_modules()
        if hasattr(module, "hada_w1_a")
    }
    tmp = Path(tempfile.mkdtemp())

    def ours(path: Path) -> None:
        built = factorise_layers(model, rank, ["plain"])
        state = {}
        for layer in built:
            a, b = layer.factors("plain", rank)
            state.update(layer.delta.lora_tensors(a, b))
        save_file(state, str(path / "adapter_model.safetensors"))

    def theirs(path: Path) -> None:
        peft.save_as_lora(str(path), model, rank=rank)

    timings: dict[str, list[float]] = {"peft": [], "ours": []}
    for i in range(repeats):
        for name, fn in (("peft", theirs), ("ours", ours)):
            out = tmp / f"{name}-{i}"
            out.mkdir()
            start = time.perf_counter()
            with torch.no_grad():
                fn(out)
            timings[name].append(time.perf_counter() - start)

    def error(folder: Path) -> float:
        state = load_file(str(folder / "adapter_model.safetensors"))
        num = den = 0.0
        for name, delta in deltas.items():
            a = state[f"base_model.model.{name}.lora_A.weight"].float()
            b = state[f"base_model.model.{name}.lora_B.weight"].float()
            num += float(((delta - b @ a) ** 2).sum())
            den += float((delta**2).sum())
        return (num / den) ** 0.5

    peft_time, our_time = min(timings["peft"]), min(timings["ours"])
    peft_err, our_err = error(tmp / "peft-0"), error(tmp / "ours-0")
    return {
        "layers": len(deltas),
        "rank": rank,
        "peft_s": peft_time,
        "ours_s": our_time,
        "time_ratio": our_time / peft_time,
        "peft_weight_error": peft_err,
        "ours_weight_error": our_err,
        "error_ratio": our_err / peft_err,
    }


def part2(ranks: tuple[int, ...], calibration: Path | None = None) -> list[dict[str, float]]:
    from adapter_factory import make_adapter, minilm_path

    from converters.convert import ConvertOptions, convert_adapter

    tmp = Path(tempfile.mkdtemp())
    source = make_adapter(
        "OFT", "bert", minilm_path(), tmp / "oft", oft_block_size=32, target_modules=["query", "key", "value", "dense"]
    )
    result = convert_adapter(str(source), None, ConvertOptions(sweep=ranks, dry_run=True, calibration=calibration))
    rows = {(row.rank, row.factorization): row for row in result.sweep}
    out = []
    for rank in ranks:
        cal, plain = rows[rank, "calibrated"], rows[rank, "plain"]
        out.append(
            {
                "rank": rank,
                "calibrated_layer_output_error": cal.layer_output_error,
                "plain_layer_output_error": plain.layer_output_error,
                "output_error_ratio": cal.layer_output_error / plain.layer_output_error,
                "calibrated_fidelity": cal.fidelity.fidelity,
                "plain_fidelity": plain.fidelity.fidelity,
                "model_effect_error_ratio": cal.fidelity.effect_error / plain.fidelity.effect_error,
            }
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--ranks", default="16,32,64,128")
    parser.add_argument("--calibration", type=Path, help="calibration texts for part 2 (default: built-in prompts)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")

    speed = part1(args.hidden, args.layers, args.rank, args.repeats)
    quality = part2(tuple(int(r) for r in args.ranks.split(",")), args.calibration)
    if args.json:
        print(json.dumps({"speed": speed, "calibration": quality}, indent=1))
        return
    print(f"Part 1: LoHa → LoRA rank {speed['rank']}, {speed['layers']} layers (hidden {args.hidden})")
    print(f"  peft.save_as_lora  {speed['peft_s']:.3f} s   weight error {speed['peft_weight_error']:.4f}")
    print(f"  peft-advisor       {speed['ours_s']:.3f} s   weight error {speed['ours_weight_error']:.4f}")
    print(f"  time ratio  {speed['time_ratio']:.3f}  (target ≤ 0.5)")
    print(f"  error ratio {speed['error_ratio']:.4f} (target ≤ 1.05)")
    print("Part 2: OFT on MiniLM, held-out layer output error, calibrated / plain at equal rank (target ≤ 0.5)")
    for row in quality:
        print(
            f"  rank {row['rank']:>4}: {row['calibrated_layer_output_error']:.4f} / "
            f"{row['plain_layer_output_error']:.4f} = {row['output_error_ratio']:.3f}   "
            f"fidelity {row['calibrated_fidelity']:.3f} vs {row['plain_fidelity']:.3f} "
            f"(model-level effect error ratio {row['model_effect_error_ratio']:.3f})"
        )


if __name__ == "__main__":
    main()
