"""Counting what a PEFT method builds per adapted layer, with autograd on one layer: the adapter-matrix term's source.

``benchmarks/adapter_matrices.py`` counts every stored run's config with it (``advisor/data/adapter_matrices.json``)
and ``--adapter-config`` counts the user's own (an HRA of rank 8 holds a quarter of the stored rank-32 run's
products). One linear layer named ``proj`` is wrapped by PEFT with the config (its target names replaced; bf16
base, the adapter in PEFT's default dtype, train mode, an input that needs a gradient), at 8 and 16 tokens, so
``2·C(8) − C(16)`` is what does not grow with the tokens, two ways:

- held: the unique non-parameter, non-buffer storages autograd still holds when forward returns
  (:func:`advisor.memory.saved_tensors.saved_storages`, held only: a detached branch frees what it saved);
- transient: the peak of new storages over the layer's forward and backward beyond the held part and the adapter's
  gradients: what it builds and frees again (DoRA's full W + ΔW for its norm, FourierFT's complex spectrum).

Each is fitted over a grid of (d_in, d_out) shapes to :data:`advisor.memory.adapter_matrices.FEATURES`. Imports
torch and peft: never on the recommend path.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from advisor.memory.adapter_matrices import FEATURES, features

TOKENS = (8, 16)
# Config fields that name modules of a model, or patterns over its layers: replaced for the one layer.
MODEL_SPECIFIC = {
    "target_modules", "layers_to_transform", "layers_pattern", "modules_to_save", "exclude_modules",
    "rank_pattern", "alpha_pattern", "target_parameters", "base_model_name_or_path", "revision", "task_type",
    "peft_version", "auto_mapping", "inference_mode", "peft_type", "trainable_token_indices", "progressbar",
}  # fmt: skip


def one_layer_config(peft_type: str, fields: dict[str, Any]) -> Any:
    """The PEFT config of ``peft_type`` with ``fields`` for a model whose only linear layer is named ``proj``."""
    from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING

    cls = PEFT_TYPE_TO_CONFIG_MAPPING[peft_type]
    names = {f.name for f in dataclasses.fields(cls)}
    kept = {k: v for k, v in fields.items() if k in names and k not in MODEL_SPECIFIC}
    if kept.get("feedforward_modules"):  # IA³: the layer is one of its feed-forward modules
        kept["feedforward_modules"] = ["proj"]
    if isinstance(kept.get("use_bdlora"), dict):  # block-diagonal LoRA: the layer is a B-side (output) target
        kept["use_bdlora"] = {**kept["use_bdlora"], "target_modules_bd_a": [], "target_modules_bd_b": ["proj"]}
    return cls(target_modules=["proj"], **kept)


def layer_counts(config: Any, d_in: int, d_out: int) -> tuple[int, int]:
    """(held, transient) bytes of one adapted ``d_in → d_out`` layer under ``config`` that do not grow with the
    tokens."""
    import torch
    from peft import get_peft_model

    from advisor.memory.saved_tensors import peak_new_bytes, saved_bytes

    class OneLayer(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.proj = torch.nn.Linear(d_in, d_out, bias=False)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.proj(x)

    torch.manual_seed(0)
    model = get_peft_model(OneLayer().to(torch.bfloat16), config)
    model.train()
    buffers = {b.untyped_storage().data_ptr() for b in model.buffers()}
    gradients = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)

    def kept(tensor: torch.Tensor) -> bool:  # a buffer (VeRA's shared projections) is resident, not saved
        return tensor.layout != torch.strided or tensor.untyped_storage().data_ptr() not in buffers

    held, peaks = [], []
    for tokens in TOKENS:
        x = torch.randn(1, tokens, d_in, dtype=torch.bfloat16, requires_grad=True)
        held.append(saved_bytes(model, x, keep=kept, held_only=True))

        def step(x: torch.Tensor = x) -> None:
            model(x).float().sum().backward()

        model.zero_grad(set_to_none=True)
        peaks.append(peak_new_bytes(step))

    def intercept(counts: list[int]) -> int:
        return round(counts[0] - TOKENS[0] * (counts[1] - counts[0]) / (TOKENS[1] - TOKENS[0]))

    fixed_held = intercept(held)
    return fixed_held, max(0, intercept(peaks) - fixed_held - gradients)


def fit_polynomial(shapes: list[tuple[int, int]], counts: list[int]) -> tuple[dict[str, float], float]:
    """Least-squares coefficients of FEATURES through ``counts`` at ``shapes``, and the worst relative residual."""
    import numpy as np

    if not any(counts):
        return dict.fromkeys(FEATURES, 0.0), 0.0
    scale = np.array(features(1024, 1024), dtype=float)  # conditioning: features near 1 at the fitted widths
    design = np.array([features(i, o) for i, o in shapes], dtype=float) / scale
    solution, *_ = np.linalg.lstsq(design, np.array(counts, dtype=float), rcond=None)
    coefficients = solution / scale
    fitted = np.array([features(i, o) for i, o in shapes], dtype=float) @ coefficients
    error = float(np.max(np.abs(fitted - counts)) / max(counts))
    # A term worth under a byte on a 1024 × 1024 layer is the solver's rounding, not memory
    kept = [value if abs(value * weight) >= 1 else 0.0 for value, weight in zip(coefficients, scale, strict=True)]
    return {name: float(f"{value:.6g}") for name, value in zip(FEATURES, kept, strict=True)}, error


def count_matrices(config: Any, widths: tuple[int, ...]) -> dict[str, Any]:
    """Held and transient coefficients of ``config`` (a one-layer PEFT config) fitted on ``widths``², with the
    measured counts per shape (for a held-out check)."""
    shapes = [(i, o) for i in widths for o in widths]
    measured = [layer_counts(config, i, o) for i, o in shapes]
    held, held_error = fit_polynomial(shapes, [m[0] for m in measured])
    transient, transient_error = fit_polynomial(shapes, [m[1] for m in measured])
    return {"held": held, "transient": transient, "fit_error": round(max(held_error, transient_error), 4)}


def widths_for(config_fields: dict[str, Any]) -> tuple[int, int, int]:
    """Shapes wide enough for the config's rank (a rank above a layer's width puts a method in another regime)."""
    rank = config_fields.get("r")
    low = max(256, 64 * -(-2 * rank // 64)) if isinstance(rank, int) and rank > 0 else 256
    return (low, low * 3 // 2, low * 2)
