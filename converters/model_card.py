"""The README.md model card of a converted adapter: Hub metadata plus where the LoRA came from."""

from __future__ import annotations

import json
from typing import Any


def render_card(info: dict[str, Any]) -> str:
    """Card text from the conversion summary (``ConvertResult.card_facts()``)."""
    base = info.get("base_model") or ""
    tags = ["peft", "lora", "peft-advisor", f"converted-from-{info['source_method'].lower()}"]
    front = ["---", "library_name: peft"]
    if base and not base.startswith(("/", ".", "~")):
        front.append(f"base_model: {json.dumps(base)}")
    front.append("tags:")
    front += [f"- {tag}" for tag in tags]
    front.append("---")
    fid = info.get("fidelity") or {}
    lines = [
        *front,
        "",
        f"# LoRA converted from a {info['source_method_display']} adapter",
        "",
        f"This adapter was exported to plain LoRA by peft-advisor `{info['tool_version']}` from "
        f"`{info['source']}` ({info['source_method_display']}, peft `{info['peft_version']}`), so that LoRA-only "
        "consumers (vLLM, Diffusers, llama.cpp) can serve it. The LoRA scale is folded into `lora_B` "
        "(`lora_alpha == r`).",
        "",
        "| | |",
        "|---|---|",
        f"| base model | `{base}` |",
        f"| source method | {info['source_method_display']} (`{info['source_method']}`) |",
        f"| rank | {info['rank_summary']} |",
        f"| layers | {info['layers']} |",
        f"| factorisation | {info['factorization']} (calibration: {info['calibration']}) |",
        f"| parameters | {info['parameters']:,} |",
        f"| fidelity (1 − lost share of the adapter's effect on outputs) | {fid.get('fidelity', float('nan')):.4f} |",
        f"| relative output error | {fid.get('output_error', float('nan')):.3g} |",
    ]
    if fid.get("kl") is not None:
        lines += [
            f"| KL(original ‖ LoRA) per token | {fid['kl']:.3g} |",
            f"| top-1 token agreement | {fid['top1_agreement']:.4f} "
            f"(bare base model: {fid['base_top1_agreement']:.4f}) |",
        ]
    lines += [
        "",
        f"Fidelity was measured by reloading this folder with PEFT on the base model and comparing with the original "
        f"adapter on {info['eval_samples']} held-out samples ({info['calibration']}).",
        "",
        "```python",
        "from peft import PeftModel",
        "from transformers import AutoModel",
        "",
        f"model = PeftModel.from_pretrained(AutoModel.from_pretrained({base!r}), 'path/or/repo')",
        "```",
        "",
    ]
    return "\n".join(lines)
