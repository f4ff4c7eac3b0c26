"""How closely a converted LoRA reproduces the original adapter, on the model's outputs.

Two relative errors, because they answer different questions:

- ``output_error = ‖y_lora − y_orig‖ / ‖y_orig‖``: how far the outputs move. It is small even for a
  useless conversion, because the base model dominates the outputs.
- ``effect_error = ‖y_lora − y_orig‖ / ‖y_orig − y_base‖``: how much of the *adapter's own change*
  to the outputs is lost. **fidelity = 1 − effect_error** (floored at 0) is the number
  ``--min-fidelity`` tests: 1.0 is a perfect conversion, 0.0 no better than the bare base model.

For causal LMs also the mean KL divergence KL(p_orig ‖ p_lora) over next-token distributions and
the top-1 token agreement, both over real (non-padding) positions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class Fidelity:
    output_error: float
    effect_error: float
    kl: float | None = None
    top1_agreement: float | None = None
    base_top1_agreement: float | None = None  # how often the bare base model agrees (the floor)
    effect_size: float = 0.0  # ‖y_orig − y_base‖ / ‖y_orig‖: how much the adapter changes outputs at all

    @property
    def fidelity(self) -> float:
        return max(0.0, 1.0 - self.effect_error)

    def to_dict(self) -> dict[str, Any]:
        finite = math.isfinite(self.effect_error)
        return {
            "fidelity": round(self.fidelity, 6),
            "output_error": self.output_error,
            "effect_error": self.effect_error if finite else None,  # None: the adapter had no effect to keep
            "kl": self.kl,
            "top1_agreement": self.top1_agreement,
            "base_top1_agreement": self.base_top1_agreement,
            "effect_size": self.effect_size,
        }


class FidelityAccumulator:
    """The sums :func:`compare` needs, added batch by batch (or sample by sample, when streaming: the
    logits of a large vocabulary are computed for one sample at a time and never kept)."""

    def __init__(self, *, causal_lm: bool) -> None:
        self.causal_lm = causal_lm
        self.diff2 = self.orig2 = self.effect2 = 0.0
        self.kl_sum = self.agree = self.base_agree = self.tokens = 0.0

    def add(self, new: torch.Tensor, old: torch.Tensor, bare: torch.Tensor, mask: torch.Tensor | None) -> None:
        import torch

        weight = _mask(mask, old)
        self.diff2 += float(((new - old) ** 2 * weight).sum())
        self.orig2 += float((old**2 * weight).sum())
        self.effect2 += float(((old - bare) ** 2 * weight).sum())
        if self.causal_lm:
            keep = weight[..., 0].bool()
            log_p = torch.log_softmax(old[keep].double(), dim=-1)
            log_q = torch.log_softmax(new[keep].double(), dim=-1)
            self.kl_sum += float((log_p.exp() * (log_p - log_q)).sum())
            top_old = old[keep].argmax(-1)
            self.agree += float((new[keep].argmax(-1) == top_old).sum())
            self.base_agree += float((bare[keep].argmax(-1) == top_old).sum())
            self.tokens += float(keep.sum())

    def result(self) -> Fidelity:
        diff2, orig2, effect2 = self.diff2, self.orig2, self.effect2
        output_error = (diff2 / orig2) ** 0.5 if orig2 > 0 else 0.0
        effect_error = (diff2 / effect2) ** 0.5 if effect2 > 0 else (0.0 if diff2 == 0 else float("inf"))
        effect_size = (effect2 / orig2) ** 0.5 if orig2 > 0 else 0.0
        if self.causal_lm and self.tokens:
            return Fidelity(
                output_error,
                effect_error,
                self.kl_sum / self.tokens,
                self.agree / self.tokens,
                self.base_agree / self.tokens,
                effect_size,
            )
        return Fidelity(output_error, effect_error, effect_size=effect_size)


def compare(
    converted: list[torch.Tensor],
    original: list[torch.Tensor],
    base: list[torch.Tensor],
    masks: list[torch.Tensor] | None,
    *,
    causal_lm: bool,
) -> Fidelity:
    """Fidelity of ``converted`` against ``original`` outputs, batch by batch (same inputs)."""
    sums = FidelityAccumulator(causal_lm=causal_lm)
    for i, (new, old, bare) in enumerate(zip(converted, original, base, strict=True)):
        sums.add(new, old, bare, masks[i] if masks else None)
    return sums.result()


def _mask(mask: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    """Broadcastable 0/1 mask over real tokens (everything when the output has no token axis)."""
    import torch

    if mask is None or like.dim() < 3 or mask.shape != like.shape[:2]:
        return torch.ones_like(like[..., :1])
    return mask.to(like.dtype).unsqueeze(-1)
