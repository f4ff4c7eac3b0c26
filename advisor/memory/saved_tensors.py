"""What autograd keeps for backward, counted: the measurement behind the memory model's constants.

The constants of :mod:`advisor.memory.model`, :mod:`advisor.memory.unet` and the layer-physics table are checked
against what PyTorch itself saves: every tensor a forward pass hands to ``saved_tensors_hooks``, counted once per
storage (views share one), parameters left out (they are the weights term). The tests and
``benchmarks/layer_physics.py`` count with this one function. torch is imported inside (never on the recommend
path).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def storage_parts(tensor: Any) -> tuple[Any, ...]:
    """The tensors whose storages hold ``tensor``: itself, or a sparse tensor's (SHiRA's, FRoD's) indices and
    values, as it has no storage of its own."""
    import torch

    if tensor.layout == torch.sparse_coo:
        return (tensor._indices(), tensor._values())
    if tensor.layout == torch.sparse_csr:
        return (tensor.crow_indices(), tensor.col_indices(), tensor.values())
    return (tensor,)


def saved_storages(
    model: Any,
    *args: Any,
    keep: Callable[[Any], bool] = lambda t: True,
    held_only: bool = False,
    **kwargs: Any,
) -> dict[int, int]:
    """Each unique non-parameter storage autograd saves while ``model(*args, **kwargs)`` runs forward (those
    ``keep`` accepts), with its bytes. Run it inside ``torch.autocast`` to count an autocast forward.

    ``held_only``: only what the graph still holds when forward returns. A branch whose result is detached (DoRA's
    weight norm, built from an identity matrix through its LoRA) saves tensors while it runs, which are freed with
    the branch, and their addresses are reused by later ones. The adapter-matrix table is counted with it; the
    layer-physics and UNet constants were counted without it (the same for a decoder layer; a checkpointed UNet's
    count is ~10% lower with it, which the UNet test's tolerance covers only just)."""
    import weakref

    import torch

    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    held: dict[int, tuple[int, list[weakref.ref]]] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        if not keep(tensor):
            return tensor
        for part in storage_parts(tensor):
            storage = part.untyped_storage()
            pointer = storage.data_ptr()
            if pointer in params:
                continue
            if held_only and pointer in held and not any(ref() is not None for ref in held[pointer][1]):
                del held[pointer]  # the address of a freed storage, reused
            held.setdefault(pointer, (storage.nbytes(), []))[1].append(weakref.ref(tensor))
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        output = model(*args, **kwargs)
    counted = {
        pointer: size for pointer, (size, refs) in held.items() if not held_only or any(r() is not None for r in refs)
    }
    del output
    return counted


def saved_bytes(model: Any, *args: Any, **kwargs: Any) -> int:
    """Bytes of the unique non-parameter storages autograd saves in one forward pass."""
    return sum(saved_storages(model, *args, **kwargs).values())


def peak_new_bytes(fn: Callable[[], Any]) -> int:
    """The peak bytes of the storages ``fn`` creates and still holds, counted as the ops run (an output is freed
    when its last tensor dies): what a step allocates on top of what already exists, e.g. an optimizer step's
    temporaries. In-place results and views of existing storages are not new."""
    import weakref

    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_flatten

    class NewStorages(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.live: dict[int, int] = {}
            self.now = self.peak = 0

        def _free(self, pointer: int) -> None:
            self.now -= self.live.pop(pointer, 0)

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            inputs = tree_flatten((args, kwargs))[0]
            existing = {
                part.untyped_storage().data_ptr()
                for t in inputs
                if isinstance(t, torch.Tensor)
                for part in storage_parts(t)
            }
            out = func(*args, **(kwargs or {}))
            for tensor in tree_flatten(out)[0]:
                if not isinstance(tensor, torch.Tensor):
                    continue
                for part in storage_parts(tensor):
                    pointer = part.untyped_storage().data_ptr()
                    if pointer and pointer not in existing and pointer not in self.live:
                        self.live[pointer] = part.untyped_storage().nbytes()
                        self.now += self.live[pointer]
                        weakref.finalize(tensor, self._free, pointer)
            self.peak = max(self.peak, self.now)
            return out

    with NewStorages() as counter:
        fn()
    return counter.peak
