"""Diffusers models as conversion bases: the component an adapter belongs to, loading it, its inputs.

An adapter trained on an image model hangs on one *component* of a Diffusers pipeline (the FLUX or SD3
``transformer``, an SDXL ``unet``). ``--base-model`` may name the pipeline (a folder with
``model_index.json``, or its Hub id) or the component's own folder; the component is the one whose
modules the adapter's tensors fit. Calibration inputs are seeded random latents, timesteps and text
embeddings of the component's own sizes (the outputs compared are its ``sample``); ΔW, factorisation
and fidelity are the same as for language models. Needs ``pip install "peft-advisor[diffusers]"``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from advisor.errors import UserError

if TYPE_CHECKING:
    from converters.adapter_files import AdapterFiles

IMAGE_TOKENS = 16  # latent patches per sample: small, since fidelity is a ratio of output differences
TEXT_TOKENS = 8


@dataclass(frozen=True)
class Component:
    """One model of a Diffusers pipeline: where it is, its class, and its key prefix in Diffusers files."""

    root: str  # the pipeline (or component) folder or Hub id
    subfolder: str | None  # "transformer", "unet"; None when ``root`` is the component itself
    class_name: str

    @property
    def prefix(self) -> str:
        """What Diffusers' ``load_lora_weights`` expects before module paths (``transformer.``, ``unet.``)."""
        return self.subfolder or ("unet" if "UNet" in self.class_name else "transformer")


def _read(root: str, filename: str) -> dict[str, Any] | None:
    """A JSON file of a local folder or a Hub repo; None when it is not there (not a Diffusers model)."""
    path = Path(root).expanduser()
    if path.is_dir():
        file = path / filename
        return json.loads(file.read_text(encoding="utf-8")) if file.is_file() else None
    if path.exists() or root.count("/") != 1:
        return None
    try:
        from huggingface_hub import hf_hub_download

        return json.loads(Path(hf_hub_download(root, filename)).read_text(encoding="utf-8"))
    except Exception:  # absent, offline without a cached copy, or not a repo: not a Diffusers pipeline here
        return None


def find_component(name: str, adapter: AdapterFiles) -> Component | None:
    """The Diffusers component ``adapter`` belongs to, or None when ``name`` is no Diffusers model."""
    index = _read(name, "model_index.json")
    if index is None:
        config = _read(name, "config.json")
        if config is None or "_diffusers_version" not in config:
            return None
        return Component(name, None, str(config.get("_class_name")))
    candidates = [
        (key, value[1])
        for key, value in index.items()
        if isinstance(value, list) and len(value) == 2 and value[0] == "diffusers" and "Model" in str(value[1])
    ]
    if not candidates:
        raise UserError(f"the pipeline {name} lists no Diffusers model component (model_index.json); nothing to adapt")
    return _component_for_adapter(name, candidates, adapter)


def _component_for_adapter(name: str, candidates: list[tuple[str, str]], adapter: AdapterFiles) -> Component:
    """The candidate whose modules (built from its config on the meta device) cover the adapter's tensors."""
    from converters.models import _matches, adapter_module_paths

    paths = adapter_module_paths(adapter)
    best: tuple[int, Component | None] = (0, None)
    absent = []
    for subfolder, class_name in candidates:
        config = _read(name, f"{subfolder}/config.json")
        if config is None:
            absent.append(subfolder)
            continue
        hits = _matches(_module_names(class_name, config), paths)
        if hits > best[0]:
            best = (hits, Component(name, subfolder, class_name))
    if best[1] is None or best[0] < len(paths):
        listed = ", ".join(f"{sub} ({cls})" for sub, cls in candidates)
        missing = f"; {', '.join(absent)} listed in model_index.json but not there" if absent else ""
        raise UserError(
            f"the adapter's modules match no component of the pipeline {name} (components: {listed}{missing}); "
            "pass the pipeline (or component folder) the adapter was trained on with --base-model"
        )
    return best[1]


def _diffusers() -> Any:
    try:
        import diffusers
    except ImportError:
        raise UserError(
            'this base model is a Diffusers pipeline; install Diffusers: pip install "peft-advisor[diffusers]"'
        ) from None
    return diffusers


def _model_class(class_name: str) -> Any:
    cls = getattr(_diffusers(), class_name, None)
    if cls is None:
        raise UserError(f"Diffusers {_diffusers().__version__} has no model class {class_name}; upgrade diffusers")
    return cls


def _module_names(class_name: str, config: dict[str, Any]) -> set[str]:
    import torch

    cls = _model_class(class_name)
    init = {k: v for k, v in config.items() if not k.startswith("_")}
    try:
        with torch.device("meta"):
            skeleton = cls.from_config(init)
    except Exception:
        return set()
    return {n for n, _ in skeleton.named_modules()}


def load_component(component: Component, *, device: str = "cpu") -> Any:
    """The component in float32 and eval mode (exact arithmetic for the fidelity figures)."""
    import torch

    cls = _model_class(component.class_name)
    kwargs: dict[str, Any] = {"torch_dtype": torch.float32}
    if component.subfolder:
        kwargs["subfolder"] = component.subfolder
    try:
        model = cls.from_pretrained(component.root, **kwargs)
    except Exception as exc:
        where = f"{component.root}/{component.subfolder}" if component.subfolder else component.root
        raise UserError(f"cannot load {component.class_name} from {where}: {str(exc).splitlines()[0]}") from None
    return model.to(device).eval()


def component_inputs(model: Any, count: int, *, seed: int, batch_size: int, device: str) -> list[dict[str, Any]]:
    """Seeded calibration inputs for ``count`` samples: latents, timesteps and text conditioning of the
    component's own sizes (FLUX and SD3 transformers, SD1.5/SDXL-style UNets)."""
    import torch

    name = type(model).__name__
    make = _INPUTS.get(name)
    if make is None:
        raise UserError(
            f"no calibration inputs for {name} yet (supported: {', '.join(sorted(_INPUTS))}); "
            "please open an issue with the pipeline you use"
        )
    batches = []
    for start in range(0, count, batch_size):
        n = min(batch_size, count - start)
        generator = torch.Generator().manual_seed(seed + start)
        batch = make(model.config, n, generator)
        batches.append({k: _to(v, device) for k, v in batch.items()})
    return batches


def _to(value: Any, device: str) -> Any:
    if isinstance(value, dict):
        return {k: v.to(device) for k, v in value.items()}
    return value.to(device)


def _flux(config: Any, n: int, g: Any) -> dict[str, Any]:
    import torch

    batch = {
        "hidden_states": torch.randn(n, IMAGE_TOKENS, config.in_channels, generator=g),
        "encoder_hidden_states": torch.randn(n, TEXT_TOKENS, config.joint_attention_dim, generator=g),
        "pooled_projections": torch.randn(n, config.pooled_projection_dim, generator=g),
        "timestep": torch.rand(n, generator=g),
        "img_ids": torch.zeros(IMAGE_TOKENS, 3),
        "txt_ids": torch.zeros(TEXT_TOKENS, 3),
    }
    if getattr(config, "guidance_embeds", False):
        batch["guidance"] = torch.full((n,), 3.5)
    return batch


def _latent_side(config: Any) -> int:
    """A small latent (4x4 patches at most): enough to exercise every layer, cheap at any model size."""
    patch = int(getattr(config, "patch_size", None) or 1)
    return min(int(getattr(config, "sample_size", 8) or 8), 4 * patch)


def _sd3(config: Any, n: int, g: Any) -> dict[str, Any]:
    import torch

    side = _latent_side(config)
    return {
        "hidden_states": torch.randn(n, config.in_channels, side, side, generator=g),
        "encoder_hidden_states": torch.randn(n, TEXT_TOKENS, config.joint_attention_dim, generator=g),
        "pooled_projections": torch.randn(n, config.pooled_projection_dim, generator=g),
        "timestep": torch.rand(n, generator=g) * 1000,
    }


def _unet(config: Any, n: int, g: Any) -> dict[str, Any]:
    import torch

    side = max(8, 2 ** (len(config.block_out_channels) - 1))  # every down block halves the latent
    cross = config.cross_attention_dim
    cross = cross[0] if isinstance(cross, (list, tuple)) else cross
    batch: dict[str, Any] = {
        "sample": torch.randn(n, config.in_channels, side, side, generator=g),
        "timestep": torch.rand(n, generator=g) * 1000,
        "encoder_hidden_states": torch.randn(n, TEXT_TOKENS, cross, generator=g),
    }
    if config.addition_embed_type == "text_time":  # SDXL: pooled text embeddings and the size/crop ids
        text = config.projection_class_embeddings_input_dim - 6 * config.addition_time_embed_dim
        batch["added_cond_kwargs"] = {
            "text_embeds": torch.randn(n, text, generator=g),
            "time_ids": torch.tensor([[side * 8, side * 8, 0, 0, side * 8, side * 8]] * n, dtype=torch.float32),
        }
    return batch


_INPUTS = {"FluxTransformer2DModel": _flux, "SD3Transformer2DModel": _sd3, "UNet2DConditionModel": _unet}
