"""What converts to LoRA, and how: read from the one method registry, never a list of our own.

Two routes produce a layer's weight update ``ΔW``:

- ``peft``: the layer type supports peft's own LoRA conversion (``supports_lora_conversion``), so
  ``ΔW = get_delta_weight()``, the same quantity ``peft.convert_to_lora`` factorises.
- ``merge``: anything else that merges (OFT, BOFT, HRA, IA³, AdaLoRA, ...): ``ΔW = W_merged − W``,
  read from the adapter's own merge, then the base weight is restored.

Either way the factorisation is ours (randomised / calibrated, see :mod:`converters.factorize`).
"""

from __future__ import annotations

from dataclasses import dataclass

from advisor.errors import UserError
from advisor.methods.known import NOT_CONVERTIBLE
from advisor.methods.registry import MethodInfo, Registry, load_registry


@dataclass(frozen=True)
class Coverage:
    """How (or why not) one method converts."""

    method: MethodInfo
    route: str  # "peft+merge", "merge", "none"
    how: str  # one line for people

    @property
    def convertible(self) -> bool:
        return self.route != "none"

    def to_dict(self) -> dict[str, object]:
        return {
            "method": self.method.name,
            "peft_type": self.method.peft_type,
            "display_name": self.method.display_name,
            "convertible": self.convertible,
            "route": self.route,
            "how": self.how,
            "vllm_native": self.method.vllm_native,
        }


def coverage_for(method: MethodInfo) -> Coverage:
    """The conversion route of ``method``, with a reason when there is none."""
    key = method.peft_type or "FULL"
    if method.kind == "full":
        return Coverage(
            method, "none", "a full fine-tune is a whole model, not an adapter; extract a LoRA with mergekit"
        )
    if method.kind == "prompt":
        return Coverage(
            method,
            "none",
            "prompt learning adds virtual tokens or key/value prefixes, not a weight change LoRA can hold",
        )
    if method.kind != "weight":
        return Coverage(method, "none", "it changes the model's computation, not its weights (no merge exists)")
    if not method.ours_to_lora:
        return Coverage(method, "none", NOT_CONVERTIBLE.get(key) or method.why_not("ours_to_lora"))
    if key == "LORA":
        return Coverage(
            method,
            "peft+merge",
            "normalises any LoRA (DoRA, rsLoRA, rank/alpha patterns, PiSSA-style inits) to plain rank-r LoRA",
        )
    peft_layers = sorted(layer for layer, ok in method.peft_to_lora_layers.items() if ok != "no")
    layers = ", ".join(method.layer_types) or "its layers"
    if peft_layers:
        return Coverage(
            method,
            "peft+merge",
            f"ΔW from peft's get_delta_weight on {', '.join(peft_layers)}; from the adapter's merge elsewhere",
        )
    return Coverage(method, "merge", f"ΔW = merged − base weight on {layers}, then low-rank factorised")


def coverage_table(registry: Registry | None = None) -> list[Coverage]:
    """Every method of the installed peft, convertible ones first."""
    registry = registry or load_registry()
    rows = [coverage_for(m) for m in registry.methods if m.peft_type is not None]
    return sorted(rows, key=lambda c: (not c.convertible, c.method.display_name.lower()))


def require_convertible(peft_type: str, registry: Registry | None = None) -> Coverage:
    """The coverage of an adapter's ``peft_type``, or a :class:`UserError` that says why not."""
    registry = registry or load_registry()
    method = registry.get(peft_type)
    if method is None or method.peft_type is None:
        raise UserError(
            f"unknown peft_type {peft_type!r} in adapter_config.json (peft {registry.peft_version} "
            "does not define it); upgrade peft or check the file."
        )
    coverage = coverage_for(method)
    if not coverage.convertible:
        raise UserError(f"{method.display_name} adapters cannot be converted to LoRA: {coverage.how}.")
    return coverage
