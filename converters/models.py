"""Loading the base model an adapter belongs to, attaching the adapter, and running sample inputs.

The model class follows the adapter's ``task_type`` (``CAUSAL_LM`` → a causal LM, ``SEQ_CLS`` →
sequence classification, ...). When the config has none, the class whose module names match
the adapter's tensor names wins (a LoRA saved on ``LlamaForCausalLM`` names ``model.layers.*``, one
saved on ``LlamaModel`` names ``layers.*``). Everything runs in float32: conversion is exact
arithmetic on weights, and half precision would hide small errors in the fidelity figures.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from advisor.errors import UserError
from advisor.paths import read_json
from advisor.peft_files import PEFT_PREFIX
from advisor.torch_runtime import quiet_hf

if TYPE_CHECKING:
    import torch

    from converters.adapter_files import AdapterFiles

TASK_CLASSES = {
    "CAUSAL_LM": "AutoModelForCausalLM",
    "SEQ_CLS": "AutoModelForSequenceClassification",
    "TOKEN_CLS": "AutoModelForTokenClassification",
    "SEQ_2_SEQ_LM": "AutoModelForSeq2SeqLM",
    "QUESTION_ANS": "AutoModelForQuestionAnswering",
    "FEATURE_EXTRACTION": "AutoModel",
}
MAX_TOKENS = 96
BATCH_SIZE = 8


@dataclass
class BaseModel:
    """A loaded base model and what we need to feed it."""

    model: Any
    tokenizer: Any | None
    name_or_path: str
    model_class: str
    config: dict[str, Any]
    device: str
    notes: list[str] = field(default_factory=list)
    component: Any = None  # converters.diffusion.Component for a Diffusers model, else None

    @property
    def is_causal_lm(self) -> bool:
        """Next-token logits come out (KL and top-1 agreement apply), whichever class name loaded it."""
        from advisor.model_kinds import is_causal_lm_class

        return is_causal_lm_class(self.model_class)

    @property
    def architecture(self) -> str | None:
        archs = self.config.get("architectures") or []
        return archs[0] if archs else None


def adapter_module_paths(adapter: AdapterFiles) -> set[str]:
    """Module paths the adapter's tensors hang on: ``base_model.model.X.<param>`` → X's prefixes."""
    paths = set()
    for name in adapter.tensor_names():
        if not name.startswith(PEFT_PREFIX):
            continue  # shared tensors of VeRA-style methods live at base_model.<name>, not on a module
        stripped = name.removeprefix(PEFT_PREFIX)
        paths.add(stripped.rsplit(".", 1)[0])
    return paths


def _matches(module_names: set[str], adapter_paths: set[str]) -> int:
    """How many adapter tensor paths start with (or are) a module of the candidate model."""
    hits = 0
    for path in adapter_paths:
        parts = path.split(".")
        if any(".".join(parts[:i]) in module_names for i in range(len(parts), 0, -1)):
            hits += 1
    return hits


def _candidate_classes(adapter: AdapterFiles, config: dict[str, Any]) -> list[str]:
    task = str(adapter.config.get("task_type") or "").upper()
    if task in TASK_CLASSES:
        return [TASK_CLASSES[task]]
    names = [*(config.get("architectures") or [])[:1], "AutoModelForCausalLM", "AutoModel"]
    return list(dict.fromkeys(names))


def _class_by_name(name: str) -> Any:
    import transformers

    cls = getattr(transformers, name, None)
    if cls is None:
        raise UserError(f"transformers {transformers.__version__} has no model class {name}; upgrade transformers.")
    return cls


def check_shards(folder: Path) -> None:
    """A sharded checkpoint must have every shard its index names, checked before minutes of loading."""
    from advisor.safetensors_headers import checkpoint_files

    checkpoint_files(folder, "base model folder")


def read_base_config(name_or_path: str) -> dict[str, Any]:
    """The base model's config.json; a base saved quantised is refused (see :func:`refuse_quantised_base`)."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        config_file = path / "config.json"
        if not config_file.is_file():
            raise UserError(f"base model folder {path} has no config.json; pass the folder of a transformers model.")
        check_shards(path)
        return refuse_quantised_base(read_json(config_file), name_or_path)
    from huggingface_hub import hf_hub_download

    try:
        config = read_json(Path(hf_hub_download(name_or_path, "config.json")))
    except Exception as exc:
        raise _hub_error(f"cannot read the base model {name_or_path!r}", exc) from None
    return refuse_quantised_base(config, name_or_path)


def refuse_quantised_base(config: dict[str, Any], name: str) -> dict[str, Any]:
    """A base saved quantised (``unsloth/...-bnb-4bit``, GPTQ, AWQ) holds packed weights, not the ones an adapter
    multiplies (OFT, BOFT and HRA rotate them; the LoRA export and its fidelity check are computed on them), and
    bitsandbytes cannot run it on every CPU: the conversion needs the unquantised model it was made from. Float
    formats transformers dequantises on load (FP8, gpt-oss's MXFP4) pass."""
    from advisor.memory.prequantized import DEQUANTISED_FOR_TRAINING, checkpoint_storage

    try:
        storage = checkpoint_storage(config)  # the memory model's reading of quantization_config, one place
    except UserError:  # a format the memory model does not price (HQQ, ...): packed all the same
        storage = "an unpriced format"
    if storage is not None and storage not in DEQUANTISED_FOR_TRAINING:  # FP8 / MXFP4 load dequantised
        raise UserError(
            f"base model {name!r} is saved quantised ({storage}); the conversion needs the unquantised weights "
            "the adapter multiplies: pass the original model it was quantised from with --base-model"
        )
    return config


def _hub_error(what: str, exc: Exception) -> UserError:
    first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return UserError(f"{what} ({first}); pass --base-model with a local folder, or go online / fill the HF cache.")


def local_model_folder(name_or_path: str) -> Path:
    """A local folder with the model's config and safetensors weights: the path itself, or a Hub snapshot
    of just those files (the HF cache, HF_ENDPOINT, HF_TOKEN and offline mode apply as for any download).

    Only the shards the index names are fetched: repositories that also ship a consolidated copy of the
    weights (Mistral's ``consolidated.safetensors``) would otherwise be downloaded twice.
    """
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    from huggingface_hub import snapshot_download

    try:
        folder = Path(snapshot_download(name_or_path, allow_patterns=["*.json"]))
        index = folder / "model.safetensors.index.json"
        shards = sorted(set(read_json(index).get("weight_map", {}).values())) if index.is_file() else []
        folder = Path(snapshot_download(name_or_path, allow_patterns=shards or ["model.safetensors"]))
        if not list(folder.glob("*.safetensors")):  # neither an index nor model.safetensors: whatever there is
            folder = Path(snapshot_download(name_or_path, allow_patterns=["*.safetensors"]))
    except Exception as exc:
        raise _hub_error(f"cannot download the weights of {name_or_path!r}", exc) from None
    return folder


def load_base_model(adapter: AdapterFiles, base: str | None, *, device: str = "cpu") -> BaseModel:
    """Load the adapter's base model in float32, picking the model class that fits the adapter."""
    name = base or adapter.base_model
    if not name:
        raise UserError("the adapter config names no base_model_name_or_path; pass --base-model ID_OR_PATH.")
    from converters.diffusion import find_component, load_component

    component = find_component(str(name), adapter)
    if component is not None:
        model = load_component(component, device=device)
        note = f"Diffusers {component.class_name} ({component.prefix}): calibrated on seeded random latents"
        return BaseModel(model, None, str(name), component.class_name, dict(model.config), device, [note], component)
    config = read_base_config(name)
    chosen = choose_class(adapter, name, config)
    model = load_model(name, chosen, adapter, device=device)
    tokenizer, notes = load_tokenizer(name)
    return BaseModel(model, tokenizer, str(name), chosen, config, device, notes)


def choose_class(adapter: AdapterFiles, name: str, config: dict[str, Any]) -> str:
    """The transformers class to load ``name`` with: the adapter's task type, else the best module-name match."""
    classes = _candidate_classes(adapter, config)
    return _best_matching_class(classes, name, adapter) if len(classes) > 1 else classes[0]


def load_tokenizer(name: str) -> tuple[Any | None, list[str]]:
    """The base model's tokenizer with a pad token, or ``None`` and a note (inputs are then random ids)."""
    from advisor.torch_runtime import load_tokenizer_or_none

    tokenizer = load_tokenizer_or_none(name)
    if tokenizer is None:
        return None, ["the base model has no tokenizer: sample inputs are seeded random token ids"]
    return tokenizer, []


def reload_base(base: BaseModel, adapter: AdapterFiles, *, device: str = "cpu") -> Any:
    """A fresh copy of ``base``'s model (the written LoRA is measured on it), loaded the same way."""
    if base.component is not None:
        from converters.diffusion import load_component

        return load_component(base.component, device=device)
    return load_model(base.name_or_path, base.model_class, adapter, device=device)


def load_model(name: str, model_class: str, adapter: AdapterFiles, *, device: str = "cpu") -> Any:
    """``model_class.from_pretrained(name)`` in float32 and eval mode, quietly.

    Used for the first load and for the fresh base model the written LoRA is reloaded onto, so
    both see the same class, head size and dtype.
    """
    import torch

    kwargs: dict[str, Any] = {"dtype": torch.float32}
    labels = num_labels(adapter)
    if model_class == "AutoModelForSequenceClassification" and labels:
        kwargs["num_labels"] = labels
    try:
        with quiet_hf():
            model = _class_by_name(model_class).from_pretrained(name, **kwargs)
    except UserError:
        raise
    except Exception as exc:
        raise UserError(f"cannot load base model {name!r} as {model_class}: {str(exc).splitlines()[0]}") from None
    return model.to(device).eval()


def _best_matching_class(classes: list[str], name: str, adapter: AdapterFiles) -> str:
    """The candidate class whose module names cover the most adapter tensors (built on meta, no weights)."""
    import torch
    from transformers import AutoConfig

    paths = adapter_module_paths(adapter)
    with quiet_hf():
        hf_config = AutoConfig.from_pretrained(name)
    best, best_hits = classes[0], -1
    for cls_name in classes:
        try:
            cls = _class_by_name(cls_name)
            build = cls.from_config if hasattr(cls, "from_config") else cls._from_config
            with torch.device("meta"), quiet_hf():
                skeleton = build(hf_config)
        except Exception:
            continue
        hits = _matches({n for n, _ in skeleton.named_modules()}, paths)
        if hits > best_hits:
            best, best_hits = cls_name, hits
    return best


def num_labels(adapter: AdapterFiles) -> int | None:
    """A classification head saved with the adapter fixes the number of labels."""
    from safetensors import safe_open

    with safe_open(str(adapter.weights), framework="pt") as handle:
        for key in handle.keys():
            if re.search(r"(classifier|score)(\.modules_to_save)?(\.out_proj)?\.weight$", key):
                return int(handle.get_slice(key).get_shape()[0])
    return None


def attach_adapter(base: BaseModel, adapter: AdapterFiles) -> Any:
    """Wrap ``base.model`` with the adapter; a base that does not fit the adapter is a UserError."""
    from peft import PeftModel

    paths = adapter_module_paths(adapter)
    module_names = {n for n, _ in base.model.named_modules()}
    missing = len(paths) - _matches(module_names, paths)
    if missing:
        example = next(p for p in sorted(paths) if _matches(module_names, {p}) == 0)
        raise UserError(
            f"the base model {base.name_or_path} has no module for {missing} of the adapter's tensors "
            f"(e.g. {example}); pass the base model the adapter was trained on with --base-model."
        )
    try:
        with quiet_hf():
            model = PeftModel.from_pretrained(base.model, str(adapter.folder), is_trainable=False)
    except Exception as exc:
        text = str(exc).replace("\n", " ")
        if "size mismatch" in text or "shape" in text:
            raise UserError(
                f"the adapter's tensor shapes do not fit {base.name_or_path} ({text[:200]}); "
                "pass the base model the adapter was trained on with --base-model."
            ) from None
        raise UserError(f"peft cannot load the adapter on {base.name_or_path}: {text[:300]}") from None
    model.eval()
    return model


def encode(base: BaseModel, texts: tuple[str, ...], *, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    """Batches of model inputs for ``texts`` (random ids of similar length without a tokenizer; seeded random
    latents, one sample per text, for a Diffusers component)."""
    import torch

    if base.component is not None:
        from converters.diffusion import component_inputs

        return component_inputs(base.model, len(texts), seed=seed, batch_size=BATCH_SIZE, device=base.device)
    batches = []
    for start in range(0, len(texts), BATCH_SIZE):
        chunk = list(texts[start : start + BATCH_SIZE])
        if base.tokenizer is not None:
            enc = base.tokenizer(chunk, return_tensors="pt", padding=True, truncation=True, max_length=MAX_TOKENS)
            batch = {k: v for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
        else:
            vocab = int(base.config.get("vocab_size") or 1000)
            generator = torch.Generator().manual_seed(seed + start)
            length = min(MAX_TOKENS, max(8, max(len(t.split()) for t in chunk)))
            ids = torch.randint(0, vocab, (len(chunk), length), generator=generator)
            batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
        batches.append({k: v.to(base.device) for k, v in batch.items()})
    return batches


def model_outputs(model: Any, batches: list[dict[str, torch.Tensor]], recorder: Any = None) -> list[torch.Tensor]:
    """The tensor we compare: logits for LMs and classifiers, ``sample`` for Diffusers, else the last hidden state.

    With an :class:`~converters.deltas.InputRecorder`, each batch's attention mask is handed to it.
    """
    import torch

    outputs = []
    with torch.no_grad():
        for batch in batches:
            if recorder is not None:
                recorder.token_mask = batch.get("attention_mask")
            outputs.append(output_tensor(model(**batch)))
    return outputs


def output_tensor(out: Any) -> torch.Tensor:
    """Logits for LMs and classifiers, ``sample`` for Diffusers, else the last hidden state (float32, CPU)."""
    if getattr(out, "logits", None) is not None:
        tensor = out.logits
    elif getattr(out, "sample", None) is not None:  # a Diffusers component's prediction
        tensor = out.sample
    else:
        tensor = out.last_hidden_state
    return tensor.float().cpu()
