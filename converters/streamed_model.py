"""A transformers model with a PEFT adapter whose base weights stay in the checkpoint until a block needs them.

The model is built on the ``meta`` device from its config (buffers such as rotary frequencies are
computed for real), the adapter is attached with PEFT as usual (its own tensors are small and real),
and the decoder blocks' base weights are read from the safetensors shards one block at a time, the
way sequential quantisers (GPTQ pipelines) walk a model. What the model does *between* blocks
(embeddings, masks, rotary embeddings, final norm and head) is the model's own forward: blocks are
swapped for stand-ins that record the arguments each block is called with (:func:`capture_block_calls`)
or replay hidden states computed block by block (:func:`outer_outputs`).

:func:`open_streamed` returns ``None`` with a reason when a model cannot be streamed this way; the
converter then loads the model whole, as before.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from advisor.errors import UserError
from advisor.peft_files import PEFT_PREFIX
from advisor.torch_runtime import quiet_hf
from converters.shards import Checkpoint, NoSafetensors

if TYPE_CHECKING:
    import torch


# Architectures whose streamed conversion is checked against the whole-model path in the test suite.
# Others are loaded whole: a model that passes per-block state between blocks (T5's position bias)
# would stream silently wrong, so streaming is opt-in per verified model type.
STREAMED_MODEL_TYPES = frozenset(
    {"llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "phi3", "gpt2", "bert", "olmo2", "granite"}
)

# PEFT methods whose streamed conversion writes the same LoRA as the whole-model path (peft 0.21.2,
# tests/test_convert_streamed.py). Left out: FRoD keeps a copy of the base weight it derives its update
# from in a plain attribute (so a placeholder would leak into it unseen); methods whose layers factorise
# the base weight when built (OSF, TinyLoRA, PSOFT, AdaMSS, UniLoRA) fail to attach on a meta model anyway.
STREAMED_METHODS = frozenset(
    {
        "LORA", "ADALORA", "BOFT", "IA3", "BEFT", "LOHA", "LOKR", "OFT", "VERA", "PVERA", "FOURIERFT", "GLORA",
        "HRA", "VBLORA", "MISS", "RANDLORA", "ROAD", "HIRA", "SHIRA", "C3A", "WAVEFT", "DELORA", "GRALORA",
        "PEANUT", "SUPERTUNING", "DEFT",
    }
)  # fmt: skip


class _Stop(Exception):
    """Raised by the last stand-in: everything after the blocks is not needed yet."""


@dataclass
class BlockCall:
    """How the model called one block for one batch: everything but the hidden states."""

    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    hidden_by_keyword: bool = False

    def run(self, block: Any, hidden: torch.Tensor) -> Any:
        if self.hidden_by_keyword:
            return block(*self.args, hidden_states=hidden, **self.kwargs)
        return block(hidden, *self.args, **self.kwargs)


@dataclass
class StreamedModel:
    """The adapted model on ``meta`` plus where each base weight lives in the checkpoint."""

    peft_model: Any
    checkpoint: Checkpoint
    blocks_path: str
    keys: dict[str, str]  # peft-model parameter name → checkpoint key
    block_names: list[list[str]]  # per block: the parameter names it materialises
    outer_names: list[str]
    input_embedding: set[str] = field(default_factory=set)  # names only the embedding lookup reads
    output_embedding: set[str] = field(default_factory=set)  # names only the head reads
    device: str = "cpu"
    block_returns_tuple: bool | None = None  # learnt from the first real block call

    @property
    def base(self) -> Any:
        return self.peft_model.base_model.model

    @property
    def blocks(self) -> Any:
        return self.base.get_submodule(self.blocks_path)

    def block_prefix(self, index: int) -> str:
        return f"{self.blocks_path}.{index}."

    @contextlib.contextmanager
    def materialised(self, names: list[str]) -> Iterator[None]:
        """Read ``names`` from the checkpoint (float32, on the device) for the duration of the block.

        A large embedding or head matrix outside the blocks stays in its stored dtype and is upcast as it
        is used (:func:`_upcast_on_use`): the values are the same, at half the memory for bf16.
        """
        import torch

        loaded: dict[str, Any] = {}
        undo: list[Callable[[], None]] = []
        try:
            for name in names:
                key = self.keys[name]
                module = self.peft_model.get_submodule(name.rpartition(".")[0])
                compact = name in self.outer_names and _upcastable(module, name)
                if (key, compact) not in loaded:
                    loaded[key, compact] = self.checkpoint.read(key, None if compact else torch.float32).to(self.device)
                tensor = loaded[key, compact]
                _assign(self.peft_model, name, tensor)
                if compact and tensor.dtype != torch.float32:
                    undo.append(_upcast_on_use(module))
            loaded.clear()
            yield
        finally:
            loaded.clear()
            for restore in undo:
                restore()
            for name in names:
                _assign(self.peft_model, name, None)
            release_freed_memory()

    def outer_for_capture(self) -> list[str]:
        """Outer weights the forward reads up to the first block (not the head, unless it is tied)."""
        return [n for n in self.outer_names if n not in self.output_embedding]

    def outer_for_tail(self, uses_embeds: bool) -> list[str]:
        """Outer weights the forward reads after the last block (not the embedding when inputs_embeds is fed)."""
        return [n for n in self.outer_names if not (uses_embeds and n in self.input_embedding)]


UPCAST_MIN_ELEMENTS = 1 << 24  # embedding / head matrices this large stay in their stored dtype
UPCAST_SLICE_BYTES = 64 * 1024 * 1024


def _upcastable(module: Any, name: str) -> bool:
    import torch

    weight = getattr(module, "weight", None)
    return (
        name.endswith(".weight")
        and type(module) in (torch.nn.Embedding, torch.nn.Linear)
        and weight is not None
        and weight.numel() >= UPCAST_MIN_ELEMENTS
    )


def _upcast_on_use(module: Any) -> Callable[[], None]:
    """Make a half-precision Embedding / Linear compute as its float32 copy would; returns the undo.

    An embedding lookup is upcast after the lookup (the same values). A linear layer multiplies by its
    weight upcast a slice of output rows at a time, so the float32 copy never exists whole.
    """
    import torch
    import torch.nn.functional as F

    if isinstance(module, torch.nn.Embedding):
        handle = module.register_forward_hook(lambda _m, _i, output: output.float())
        return handle.remove

    def forward(x: torch.Tensor) -> torch.Tensor:
        weight, bias = module.weight, module.bias
        rows = max(1, UPCAST_SLICE_BYTES // (4 * weight.shape[1]))
        parts = [
            F.linear(x, weight[i : i + rows].float(), None if bias is None else bias[i : i + rows].float())
            for i in range(0, weight.shape[0], rows)
        ]
        return torch.cat(parts, dim=-1)

    module.forward = forward
    return lambda: module.__dict__.pop("forward", None)


def release_freed_memory() -> None:
    """Hand freed heap memory back to the OS (glibc keeps it otherwise: after a block's weights are freed the
    next block's land elsewhere, and the resident set creeps up by the fragments)."""
    import ctypes
    import ctypes.util

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)


def _assign(root: Any, name: str, tensor: Any) -> None:
    """Put ``tensor`` (``None``: an empty meta tensor of the same shape) where parameter ``name`` is."""
    import torch

    module_name, _, leaf = name.rpartition(".")
    module = root.get_submodule(module_name)
    current = module._parameters.get(leaf)
    if tensor is None:
        tensor = torch.empty(current.shape, dtype=current.dtype, device="meta")
    module._parameters[leaf] = torch.nn.Parameter(tensor, requires_grad=False)


def find_blocks(model: Any) -> tuple[str, Any] | None:
    """The model's stack of repeated blocks: the ModuleList of one block class holding the most parameters."""
    import torch

    best, best_size = None, 0
    for name, module in model.named_modules():
        if not isinstance(module, torch.nn.ModuleList) or len(module) < 2:
            continue
        if len({type(child) for child in module}) != 1:
            continue
        size = sum(p.numel() for p in module.parameters())
        if size > best_size:
            best, best_size = (name, module), size
    return best


def _placeholders(model: Any, adapter_paths: set[str]) -> list[Any]:
    """Give the modules the adapter hangs on NaN-filled weights, one shared tensor per shape.

    PEFT builds each adapter layer on its base layer's device and moves it there; a ``meta`` base layer
    would take the adapter's weights with it. With a real (shared, so cheap) placeholder the attach is
    PEFT's ordinary one; NaN makes any adapter tensor computed from the base weights at build time
    visible afterwards (such a method is not streamed). Returns the placeholders (to release them).
    """
    import torch

    names = {n for n, _ in model.named_modules()}
    shared: dict[tuple[Any, ...], Any] = {}
    for path in adapter_paths:
        parts = path.split(".")
        owner = next((".".join(parts[:i]) for i in range(len(parts), 0, -1) if ".".join(parts[:i]) in names), None)
        if owner is None:
            continue
        module = model.get_submodule(owner)
        for leaf, param in list(module._parameters.items()):
            if param is None or param.device.type != "meta":
                continue
            key = (tuple(param.shape), param.dtype)
            if key not in shared:
                shared[key] = torch.full(param.shape, float("nan"), dtype=param.dtype)
            module._parameters[leaf] = torch.nn.Parameter(shared[key], requires_grad=False)
    return list(shared.values())


def _checkpoint_key(name: str, checkpoint: Checkpoint, prefix: str, tied: dict[str, str]) -> str | None:
    """The checkpoint key holding parameter ``name`` (base-model naming), trying the base-model prefix both ways."""
    candidates = [name]
    if prefix and name.startswith(prefix + "."):
        candidates.append(name.removeprefix(prefix + "."))
    elif prefix:
        candidates.append(f"{prefix}.{name}")
    for partner in (tied.get(name), *(t for t, s in tied.items() if s == name)):
        if partner:
            candidates.append(partner)
            candidates.append(partner.removeprefix(prefix + ".") if prefix else partner)
    return next((c for c in candidates if c in checkpoint), None)


def _base_name(peft_name: str) -> str:
    """``base_model.model.a.q_proj.base_layer.weight`` → ``a.q_proj.weight`` (the name in the base model)."""
    parts = peft_name.removeprefix(PEFT_PREFIX).split(".")
    return ".".join(p for p in parts if p not in ("base_layer", "original_module"))


def build_skeleton(name_or_path: str, model_class: str, num_labels: int | None) -> Any:
    """The model from its config on ``meta`` (parameters only; buffers are computed for real), float32."""
    import torch
    from accelerate import init_empty_weights
    from transformers import AutoConfig

    from converters.models import _class_by_name

    with quiet_hf():
        config = AutoConfig.from_pretrained(name_or_path)
    if num_labels and model_class == "AutoModelForSequenceClassification":
        config.num_labels = num_labels
    cls = _class_by_name(model_class)
    build = cls.from_config if hasattr(cls, "from_config") else cls._from_config
    with init_empty_weights(include_buffers=False), quiet_hf():
        model = build(config, dtype=torch.float32)
    return model.eval()


def open_streamed(
    folder: Path,
    model_class: str,
    adapter_folder: Path,
    num_labels: int | None,
    adapter_paths: set[str],
    device: str,
    peft_type: str,
    modules_to_save: tuple[str, ...] = (),
) -> tuple[StreamedModel | None, str]:
    """The streamed model, or ``None`` and why it cannot be streamed (the caller loads it whole)."""
    from peft import PeftModel

    from advisor.paths import read_json

    if peft_type not in STREAMED_METHODS:
        return None, f"layer streaming is not verified for {peft_type} adapters"
    model_type = str(read_json(folder / "config.json").get("model_type", ""))
    if model_type not in STREAMED_MODEL_TYPES:
        return None, f"layer streaming is verified for {', '.join(sorted(STREAMED_MODEL_TYPES))}, not {model_type!r}"
    try:
        checkpoint = Checkpoint(folder)  # a corrupt or truncated file is the user's error either way
    except NoSafetensors as exc:
        return None, str(exc)
    skeleton = build_skeleton(str(folder), model_class, num_labels)
    found = find_blocks(skeleton)
    if found is None:
        return None, "the model has no stack of repeated blocks"
    blocks_path = found[0]
    trained_whole = set(modules_to_save)  # a fully trained head is copied as it is, not converted
    outside = sorted(
        p for p in adapter_paths if not p.startswith(blocks_path + ".") and not trained_whole & set(p.split("."))
    )
    if outside:
        return None, f"the adapter changes {outside[0]}, outside the model's blocks ({blocks_path})"
    shared = {t.data_ptr() for t in _placeholders(skeleton, adapter_paths)}
    try:
        with quiet_hf():
            peft_model = PeftModel.from_pretrained(skeleton, str(adapter_folder), is_trainable=False)
    except Exception as exc:  # a method whose layers need the real base weights when built
        return None, f"peft cannot attach the adapter without the weights ({type(exc).__name__})"
    peft_model.eval()
    for name, param in list(peft_model.named_parameters(remove_duplicate=False)):
        if param.data_ptr() in shared:
            _assign(peft_model, name, None)
    _move_real_tensors(peft_model, device)
    meta = [n for n, p in peft_model.named_parameters(remove_duplicate=False) if p.device.type == "meta"]
    if not _adapter_tensors_usable(peft_model, set(meta)):
        return None, "the adapter builds some of its tensors from the base weights"
    tied = skeleton.get_expanded_tied_weights_keys(all_submodels=True)
    prefix = getattr(skeleton, "base_model_prefix", "") or ""
    keys: dict[str, str] = {}
    for name in meta:
        base_name = _base_name(name)
        key = _checkpoint_key(base_name, checkpoint, prefix, tied)
        if key is None:
            if _is_adapter_tensor(name):
                return None, f"the adapter's {name} is not in its file"
            return None, f"the checkpoint has no tensor for {base_name}"
        keys[name] = key
    inside = PEFT_PREFIX + blocks_path + "."
    blocks = [[n for n in meta if n.startswith(f"{inside}{i}.")] for i in range(len(found[1]))]
    outer = [n for n in meta if not n.startswith(inside)]
    model = StreamedModel(peft_model, checkpoint, blocks_path, keys, blocks, outer, device=device)
    model.input_embedding, model.output_embedding = _embedding_names(model)
    return model, ""


def _move_real_tensors(model: Any, device: str) -> None:
    """Move everything that is not on ``meta`` (the adapter, computed buffers) to the device the blocks run on;
    ``model.to()`` would fail on the meta weights."""
    import torch

    if torch.device(device).type == "cpu":
        return
    for module in model.modules():
        for name, param in list(module._parameters.items()):
            if param is not None and param.device.type != "meta":
                module._parameters[name] = torch.nn.Parameter(param.to(device), requires_grad=False)
        for name, buffer in list(module._buffers.items()):
            if buffer is not None and buffer.device.type != "meta":
                module._buffers[name] = buffer.to(device)


def _is_adapter_tensor(name: str) -> bool:
    return "base_layer" not in name and ".default" in name


def _adapter_tensors_usable(peft_model: Any, base_names: set[str]) -> bool:
    """Every adapter parameter and buffer is real and finite (not derived from a placeholder or left on meta)."""
    import torch

    tensors = [(n, p) for n, p in peft_model.named_parameters(remove_duplicate=False) if n not in base_names]
    tensors += list(peft_model.named_buffers())
    for name, tensor in tensors:
        if tensor.device.type == "meta" and _is_adapter_tensor(name):
            return False
        if tensor.device.type != "meta" and tensor.is_floating_point() and not torch.isfinite(tensor).all():
            return False
    return True


def _embedding_names(model: StreamedModel) -> tuple[set[str], set[str]]:
    """Parameter names read only by the input embedding / only by the output head (a tied pair is neither)."""
    base = model.base
    names = {id(m): n for n, m in base.named_modules()}
    found = []
    for getter in ("get_input_embeddings", "get_output_embeddings"):
        module = None
        with contextlib.suppress(Exception):
            module = getattr(base, getter)()
        path = names.get(id(module)) if module is not None else None
        found.append({n for n in model.outer_names if path and _base_name(n).startswith(path + ".")})
    inputs, outputs = found
    shared_keys = {model.keys[n] for n in inputs} & {model.keys[n] for n in outputs}
    return (
        {n for n in inputs if model.keys[n] not in shared_keys},
        {n for n in outputs if model.keys[n] not in shared_keys},
    )


class _StandIn:
    """Takes a block's place in its ModuleList during an outer pass; the real block is kept aside."""

    @staticmethod
    def make(real: Any, index: int, on_call: Callable[[int, tuple, dict], Any]) -> Any:
        import torch

        class StandIn(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                object.__setattr__(self, "_real", real)  # not registered: its meta weights stay out of sight

            def __getattr__(self, name: str) -> Any:  # per-layer attributes the model reads (attention_type)
                try:
                    return super().__getattr__(name)
                except AttributeError:
                    return getattr(object.__getattribute__(self, "_real"), name)

            def forward(self, *args: Any, **kwargs: Any) -> Any:
                return on_call(index, args, kwargs)

        return StandIn()


@contextlib.contextmanager
def _stand_ins(model: StreamedModel, on_call: Callable[[int, tuple, dict], Any]) -> Iterator[None]:
    blocks = model.blocks
    real = list(blocks)
    for i, block in enumerate(real):
        blocks[i] = _StandIn.make(block, i, on_call)
    try:
        yield
    finally:
        for i, block in enumerate(real):
            blocks[i] = block


def _forward_kwargs(model: Any, batch: dict[str, Any]) -> dict[str, Any]:
    params = inspect.signature(model.forward).parameters
    extra = {"use_cache": False} if "use_cache" in params else {}
    return {**batch, **extra}


def capture_block_calls(model: StreamedModel, batch: dict[str, Any]) -> tuple[Any, list[BlockCall]]:
    """Run the model's forward up to the blocks: the first block's input and every block's other arguments."""
    import torch

    calls: list[BlockCall] = []
    first: list[Any] = []
    last = len(model.blocks) - 1

    def on_call(index: int, args: tuple, kwargs: dict) -> Any:
        kwargs = dict(kwargs)
        by_keyword = not args
        hidden = kwargs.pop("hidden_states") if by_keyword else args[0]
        calls.append(BlockCall(tuple(args[1:]), kwargs, by_keyword))
        if index == 0:
            first.append(hidden)
        if index == last:
            raise _Stop
        return (hidden,) if model.block_returns_tuple else hidden

    with _stand_ins(model, on_call), torch.no_grad(), contextlib.suppress(_Stop):
        model.base(**_forward_kwargs(model.base, batch))
    if len(calls) != len(model.blocks):
        raise UserError("the model's forward skipped some of its blocks; pass --no-stream to load it whole.")
    return first[0], calls


def block_output(model: StreamedModel, out: Any) -> Any:
    """The hidden states a block returns (a tensor, or the first item of a tuple), learning which it is."""
    import torch

    if model.block_returns_tuple is None:
        model.block_returns_tuple = not isinstance(out, torch.Tensor)
    return out[0] if model.block_returns_tuple else out


def uses_inputs_embeds(model: StreamedModel) -> bool:
    return "inputs_embeds" in inspect.signature(model.base.forward).parameters


def outer_outputs(model: StreamedModel, batch: dict[str, Any], final: torch.Tensor, embeds: bool) -> torch.Tensor:
    """The model's output (logits, ...) for ``batch`` when its last block returned ``final``.

    Every block is a stand-in: the first ones pass their input through, the last one returns ``final``.
    With ``embeds`` the input ids are replaced by zero embeddings, so the embedding matrix is not needed.
    """
    import torch

    from converters.models import output_tensor

    last = len(model.blocks) - 1

    def on_call(index: int, args: tuple, kwargs: dict) -> Any:
        hidden = final if index == last else (args[0] if args else kwargs["hidden_states"])
        return (hidden,) if model.block_returns_tuple else hidden

    inputs = dict(batch)
    if embeds:
        ids = inputs.pop("input_ids")
        inputs["inputs_embeds"] = torch.zeros(*ids.shape, final.shape[-1], dtype=final.dtype, device=final.device)
    with _stand_ins(model, on_call), torch.no_grad():
        out = model.base(**_forward_kwargs(model.base, inputs))
    return output_tensor(out)
