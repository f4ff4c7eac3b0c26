"""Writing a standard PEFT LoRA folder that every consumer reads the same way.

The scale is folded into ``lora_B`` (``lora_alpha == r`` for every module, no rsLoRA), so vLLM,
Diffusers and llama.cpp all apply exactly ``BA`` whatever they do with ``alpha_pattern`` or
``use_rslora`` (docs/lora-consumers.md, "What a portable LoRA folder looks like"). Per-module ranks go into
``rank_pattern`` *and* ``alpha_pattern`` with the same values, unless the target wants one uniform
rank, in which case smaller factors are zero-padded (padding changes nothing numerically).
The folder is built in a temporary sibling and renamed into place only when it is complete.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from advisor.peft_files import CONFIG_NAME, DIFFUSERS_WEIGHTS_NAME, PEFT_PREFIX, WEIGHTS_NAME

if TYPE_CHECKING:
    import torch

# LoraConfig fields that are off by default and that some consumer rejects or mis-reads when the
# key is present at all (vLLM 0.32+: alora/qalora/bdlora; llama.cpp: alora): left out unless set.
_DROP_WHEN_UNSET = (
    "alora_invocation_tokens",
    "use_qalora",
    "qalora_group_size",
    "use_bdlora",
    "trainable_token_indices",
    "megatron_config",
    "megatron_core",
    "loftq_config",
    "eva_config",
    "corda_config",
    "lora_ga_config",
    "velora_config",
    "monteclora_config",
    "arrow_config",
    "kasa_config",
    "layer_replication",
    "target_parameters",
    "ensure_weight_tying",
    "exclude_modules",
    "auto_mapping",
    "revision",
)


@dataclass
class LoraModule:
    """One module's factors, scale already folded in: the module computes ``x ↦ B(Ax)``."""

    name: str  # path inside the base model
    kind: str
    tensors: dict[str, torch.Tensor]  # PEFT tensor name → tensor
    rank: int
    bias: torch.Tensor | None = None
    # DoRA's learned column norms (``lora_magnitude_vector``), kept only when the folder stays DoRA:
    # consumers that load DoRA (PEFT, Diffusers) need them, and dropping them changes the outputs.
    magnitude: torch.Tensor | None = None


@dataclass
class LoraAdapter:
    """Everything that goes into adapter_config.json + adapter_model.safetensors."""

    modules: list[LoraModule]
    base_model: str
    task_type: str | None = None
    fan_in_fan_out: bool = False
    modules_to_save: list[str] | None = None
    extra_tensors: dict[str, torch.Tensor] = field(default_factory=dict)  # e.g. a classifier head

    @property
    def ranks(self) -> dict[str, int]:
        return {m.name: m.rank for m in self.modules}

    @property
    def max_rank(self) -> int:
        return max(self.ranks.values())

    @property
    def uniform(self) -> bool:
        return len(set(self.ranks.values())) == 1

    @property
    def has_bias(self) -> bool:
        return any(m.bias is not None for m in self.modules)

    @property
    def dora(self) -> bool:
        return any(m.magnitude is not None for m in self.modules)

    def parameter_count(self) -> int:
        return sum(int(t.numel()) for m in self.modules for t in m.tensors.values())

    def pad_to_uniform_rank(self, rank: int | None = None) -> None:
        """Zero-pad every module to one rank (the largest unless given); numerically a no-op."""
        import torch

        target = rank or self.max_rank
        for module in self.modules:
            if module.rank == target:
                continue
            padded = {}
            for key, tensor in module.tensors.items():
                extra = target - module.rank
                is_a = key.endswith(("lora_A.weight", "lora_embedding_A"))
                dim = 0 if is_a else 1
                shape = list(tensor.shape)
                shape[dim] = extra
                padded[key] = torch.cat([tensor, tensor.new_zeros(shape)], dim=dim).contiguous()
            module.tensors, module.rank = padded, target

    def drop_bias(self) -> None:
        for module in self.modules:
            module.bias = None

    def state_dict(self) -> dict[str, torch.Tensor]:
        state: dict[str, torch.Tensor] = {}
        with_bias = self.has_bias
        for module in self.modules:
            state.update(module.tensors)
            bias = module.bias
            if bias is None and with_bias and module.kind != "embedding":
                # lora_bias is one switch for the whole adapter: PEFT then expects a bias on every
                # module and warns about each missing one. A zero bias is the exact "no change".
                b = next(t for k, t in module.tensors.items() if k.endswith("lora_B.weight"))
                bias = b.new_zeros(b.shape[0])
            if bias is not None:
                state[f"{PEFT_PREFIX}{module.name}.lora_B.bias"] = bias.contiguous()
            if module.magnitude is not None:
                state[f"{PEFT_PREFIX}{module.name}.lora_magnitude_vector"] = module.magnitude.contiguous()
        state.update(self.extra_tensors)
        return state

    def config(self, leaf_names_suffice: bool) -> dict[str, Any]:
        """adapter_config.json contents, built by the installed peft's own LoraConfig."""
        from peft import LoraConfig

        counts = Counter(self.ranks.values())
        r = counts.most_common(1)[0][0]
        pattern = {name: rank for name, rank in sorted(self.ranks.items()) if rank != r}
        if leaf_names_suffice:
            targets: list[str] = sorted({name.rsplit(".", 1)[-1] for name in self.ranks})
        else:
            targets = sorted(self.ranks)
        config = LoraConfig(
            r=r,
            lora_alpha=r,
            target_modules=targets,
            rank_pattern=pattern,
            alpha_pattern=dict(pattern),
            base_model_name_or_path=self.base_model,
            task_type=self.task_type,
            fan_in_fan_out=self.fan_in_fan_out,
            lora_bias=self.has_bias,
            use_dora=self.dora,
            modules_to_save=self.modules_to_save,
            lora_dropout=0.0,
        ).to_dict()
        for key in _DROP_WHEN_UNSET:
            if key in config and not config[key]:
                del config[key]
        return json.loads(json.dumps(config, default=_jsonable))


def _jsonable(value: Any) -> Any:
    if isinstance(value, set | frozenset):
        return sorted(value)
    if hasattr(value, "value"):  # enums such as PeftType
        return value.value
    raise TypeError(f"cannot write {type(value).__name__} to adapter_config.json")


def write_adapter_files(folder: Path, adapter: LoraAdapter, config: dict[str, Any], card: str | None) -> None:
    """Write the three files into ``folder`` (an empty temporary folder)."""
    from safetensors.torch import save_file

    save_file(adapter.state_dict(), str(folder / WEIGHTS_NAME), metadata={"format": "pt"})
    (folder / CONFIG_NAME).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    if card is not None:
        (folder / "README.md").write_text(card, encoding="utf-8")


def write_diffusers_file(folder: Path, adapter: LoraAdapter, *, prefix: str = "transformer") -> None:
    """Diffusers reads ``<component>.<module>.lora_{A,B}.weight`` keys (scale folded, no config), and DoRA's
    ``lora_magnitude_vector`` beside them (docs/lora-consumers.md, Diffusers); ``prefix`` is the component
    (``transformer`` for FLUX/SD3, ``unet`` for SDXL/SD1.5)."""
    from safetensors.torch import save_file

    state = {}
    for key, tensor in adapter.state_dict().items():
        if key.startswith(PEFT_PREFIX) and "lora_" in key:
            state[f"{prefix}." + key.removeprefix(PEFT_PREFIX)] = tensor
    save_file(state, str(folder / DIFFUSERS_WEIGHTS_NAME), metadata={"format": "pt"})
