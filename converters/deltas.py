"""Read each adapted layer's effective weight update, and the inputs that layer sees.

``ΔW`` comes from peft's ``get_delta_weight`` where the layer supports peft's LoRA conversion,
otherwise from the adapter's own merge (``W_merged − W``), after which the base weight (and bias)
is restored exactly from a copy. The merge is the adapter's definition of its effect on the
weights, so every mergeable method is covered without per-method formulas.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from advisor.errors import UserError
from advisor.peft_files import PEFT_PREFIX
from converters.factorize import InputMoments

if TYPE_CHECKING:
    import torch


@dataclass
class LayerDelta:
    """One adapted layer: where it is, what LoRA layer kind holds it, and its update."""

    name: str  # module path inside the base model (no base_model.model. prefix)
    kind: str  # "linear", "conv1d" (transformers GPT-2 style), "embedding", "conv"
    delta: torch.Tensor  # 2-D, LoRA orientation: out × in (conv kernels flattened into in)
    bias_delta: torch.Tensor | None
    route: str  # "peft" or "merge"
    weight_shape: tuple[int, ...]
    base_weight_norm: float

    @property
    def out_features(self) -> int:
        return int(self.delta.shape[0])

    @property
    def in_features(self) -> int:
        return int(self.delta.shape[1])

    def lora_tensors(self, a: torch.Tensor, b: torch.Tensor) -> dict[str, torch.Tensor]:
        """PEFT LoRA tensor names and shapes for this layer kind (see peft/tuners/lora/layer.py)."""
        key = PEFT_PREFIX + self.name
        if self.kind == "embedding":
            return {f"{key}.lora_embedding_A": a.contiguous(), f"{key}.lora_embedding_B": b.contiguous()}
        if self.kind == "conv":
            out_ch, in_ch, *kernel = self.weight_shape
            a = a.reshape(a.shape[0], in_ch, *kernel)
            b = b.reshape(out_ch, b.shape[1], *([1] * len(kernel)))
        return {f"{key}.lora_A.weight": a.contiguous(), f"{key}.lora_B.weight": b.contiguous()}

    def weight_update(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """``BA`` in the base layer's own weight layout (to apply it for a sweep measurement)."""
        product = b @ a
        if self.kind in ("embedding", "conv1d"):
            return product.T
        return product.reshape(self.weight_shape)


def tuner_layers(peft_model: Any) -> list[tuple[str, Any]]:
    from peft.tuners.tuners_utils import BaseTunerLayer

    layers = [(name, module) for name, module in peft_model.named_modules() if isinstance(module, BaseTunerLayer)]
    if not layers:
        raise UserError("the adapter injected no layers into the base model; nothing to convert.")
    return layers


@contextlib.contextmanager
def tuner_layers_disabled(peft_model: Any) -> Iterator[None]:
    """The base model's weights without the adapter's layers, but with a fully trained head kept
    (``modules_to_save``): what a converted LoRA adds ``BA`` to, since the head is copied into it as is.
    (``peft_model.disable_adapter()`` would swap the trained head for the base model's too.)"""
    layers = [module for _, module in tuner_layers(peft_model)]
    for module in layers:
        module.enable_adapters(False)
    try:
        yield
    finally:
        for module in layers:
            module.enable_adapters(True)


def has_trained_heads(peft_model: Any) -> bool:
    """Whether the adapter trains whole modules (``modules_to_save``), which disabling the adapter swaps back."""
    from peft.utils.other import AuxiliaryTrainingWrapper

    return any(isinstance(module, AuxiliaryTrainingWrapper) for module in peft_model.modules())


def _layer_kind(name: str, base_layer: Any) -> str:
    import torch
    from transformers.pytorch_utils import Conv1D

    if isinstance(base_layer, Conv1D):
        return "conv1d"
    if isinstance(base_layer, torch.nn.Linear):
        return "linear"
    if isinstance(base_layer, torch.nn.Embedding):
        return "embedding"
    if isinstance(base_layer, torch.nn.Conv1d | torch.nn.Conv2d | torch.nn.Conv3d):
        if base_layer.groups != 1:
            raise UserError(f"layer {name} is a grouped convolution; LoRA cannot hold its update.")
        return "conv"
    raise UserError(
        f"layer {name} is a {type(base_layer).__name__}; a LoRA adapter can only hold updates of Linear, "
        "Conv1D, Embedding and Conv layers."
    )


def layer_deltas(
    peft_model: Any, adapter_name: str = "default", layers: list[tuple[str, Any]] | None = None
) -> Iterator[LayerDelta]:
    """Yield every adapted layer's update (of ``layers`` when given: one block's, when streaming);
    the model is left exactly as it was."""
    import torch

    for name, module in layers if layers is not None else tuner_layers(peft_model):
        base_layer = module.get_base_layer()
        kind = _layer_kind(name, base_layer)
        weight = base_layer.weight
        delta, bias_delta, route = None, None, "merge"
        with torch.no_grad():
            if _supports_peft_conversion(module, adapter_name):
                try:
                    delta = module.get_delta_weight(adapter_name).detach().float().clone()
                    route = "peft"
                except (TypeError, NotImplementedError):
                    delta = None
            if delta is None:
                delta, bias_delta = _merged_delta(name, module, base_layer, adapter_name)
        matrix = delta.reshape(delta.shape[0], -1)
        if kind in ("embedding", "conv1d"):
            matrix = matrix.T  # LoRA orientation: out × in
        if not torch.isfinite(matrix).all():
            raise UserError(f"the adapter's update of {name} contains NaN/Inf; the adapter is broken.")
        yield LayerDelta(
            name=name.removeprefix(PEFT_PREFIX),
            kind=kind,
            delta=matrix.contiguous(),
            bias_delta=bias_delta,
            route=route,
            weight_shape=tuple(weight.shape),
            base_weight_norm=float(weight.detach().float().norm()),
        )


def _supports_peft_conversion(module: Any, adapter_name: str) -> bool:
    """peft's own claim, except DoRA: peft 0.21.2 says DoRA layers convert, but their
    ``get_delta_weight`` leaves out the magnitude rescaling, so the merge is the only true ΔW."""
    check = getattr(module, "supports_lora_conversion", None)
    if check is None or getattr(module, "use_dora", {}).get(adapter_name, False):
        return False
    try:
        return bool(check(adapter_name))
    except TypeError:
        return bool(check())


def _merged_delta(name: str, module: Any, base_layer: Any, adapter_name: str) -> tuple[Any, Any]:
    import torch

    weight0 = base_layer.weight.detach().clone()
    bias = getattr(base_layer, "bias", None)
    bias0 = bias.detach().clone() if isinstance(bias, torch.Tensor) else None
    try:
        module.merge(adapter_names=[adapter_name])
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}"
        raise UserError(f"peft could not merge layer {name} ({reason}); it cannot be converted.") from None
    try:
        delta = (base_layer.weight.detach().float() - weight0.float()).clone()
        bias_delta = None
        if bias0 is not None:
            change = base_layer.bias.detach().float() - bias0.float()
            if float(change.abs().max()) > 0:
                bias_delta = change.clone()
    finally:
        base_layer.weight.data.copy_(weight0)
        if bias0 is not None:
            base_layer.bias.data.copy_(bias0)
        module.merged_adapters.clear()
    return delta, bias_delta


class InputRecorder:
    """What :func:`record_inputs` collects; set ``token_mask`` to the running batch's attention mask
    so padding positions (not real data) stay out of the moments."""

    def __init__(self) -> None:
        self.moments: dict[str, InputMoments] = {}
        self.token_mask: Any = None


@contextlib.contextmanager
def record_inputs(peft_model: Any, layers: list[tuple[str, Any]] | None = None) -> Iterator[InputRecorder]:
    """Collect each adapted layer's input second moment while the model runs.

    Layers that read the very same tensor (q/k/v projections, gate/up) share one accumulator, so
    memory grows with the number of distinct inputs, not with the number of adapted layers.
    """
    import torch
    from peft.tuners.tuners_utils import BaseTunerLayer

    recorder = InputRecorder()
    stats = recorder.moments
    last: list[Any] = [None, None]  # (the tensor the previous layer read, its accumulator)
    handles = []

    def hook_for(name: str, module: Any) -> Callable[..., None]:
        features = _input_features(module.get_base_layer())

        def hook(_module: Any, args: tuple[Any, ...]) -> None:
            if features is None or not args or not isinstance(args[0], torch.Tensor):
                return
            x = args[0]
            if x is last[0]:  # q/k/v (gate/up) read one tensor back to back: share, count once
                stats.setdefault(name, last[1])
                return
            moments = stats.setdefault(name, InputMoments(features))
            mask = recorder.token_mask
            moments.add(x[mask.bool()] if mask is not None and x.dim() >= 3 and x.shape[:2] == mask.shape else x)
            last[0], last[1] = x, moments

        return hook

    hooked = layers if layers is not None else peft_model.named_modules()
    for name, module in hooked:
        if isinstance(module, BaseTunerLayer):
            handles.append(module.register_forward_pre_hook(hook_for(name.removeprefix(PEFT_PREFIX), module)))
    try:
        with torch.no_grad():
            yield recorder
    finally:
        last[0] = last[1] = None
        for handle in handles:
            handle.remove()


def _input_features(base_layer: Any) -> int | None:
    """Input width of a layer we calibrate (Linear / Conv1D); ``None`` for the others."""
    import torch
    from transformers.pytorch_utils import Conv1D

    if isinstance(base_layer, Conv1D):
        return int(base_layer.weight.shape[0])
    if isinstance(base_layer, torch.nn.Linear):
        return int(base_layer.in_features)
    return None
