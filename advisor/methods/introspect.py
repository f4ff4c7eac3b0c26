"""Read method capabilities off the installed ``peft`` instead of keeping a hand-written list.

Everything here imports peft (and so torch), which takes seconds: it runs only when asked
(``peft-advise methods --refresh``, or to regenerate the shipped snapshot), never on the
recommend path. The result is plain JSON, cached per peft version by :mod:`.registry`.
"""

from __future__ import annotations

import ast
import dataclasses
import enum
import importlib
import inspect
import textwrap
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

# Layer wrappers peft ships per quantisation backend, as ``peft/tuners/<method>/<file>.py``.
_QUANT_BACKEND_FILES = {
    "gptq": "gptq",
    "awq": "awq",
    "aqlm": "aqlm",
    "eetq": "eetq",
    "hqq": "hqq",
    "torchao": "torchao",
    "inc": "inc",
}
_BNB_CLASSES = {"Linear8bitLt": "bnb-8bit", "Linear4bit": "bnb-4bit"}


def _json_safe(value: Any) -> Any:
    """Config defaults as JSON: enums by value, sets sorted, anything exotic as its repr."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted(_json_safe(v) for v in value)
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    return repr(value)


def config_defaults(config_cls: type) -> dict[str, Any]:
    """Default value of every init field of a PEFT config dataclass, without instantiating it.

    Instantiating is not an option: some configs (AdaLoRA) refuse to build without arguments.
    """
    defaults: dict[str, Any] = {}
    for field in dataclasses.fields(config_cls):
        if not field.init:
            continue
        if field.default is not dataclasses.MISSING:
            defaults[field.name] = _json_safe(field.default)
        elif field.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            defaults[field.name] = _json_safe(field.default_factory())  # type: ignore[misc]
    return defaults


def _static_bool_return(func: Any) -> str:
    """'yes' / 'no' when a method body is just ``return True/False``, else 'conditional'."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(func)))
    except (OSError, TypeError, SyntaxError):
        return "conditional"
    body = [n for n in tree.body[0].body if not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant))]
    if len(body) == 1 and isinstance(body[0], ast.Return) and isinstance(body[0].value, ast.Constant):
        return "yes" if body[0].value.value is True else "no"
    return "conditional"


def _layer_classes(package: str) -> list[type]:
    """Concrete tuner-layer classes defined in ``peft.tuners.<package>.layer``."""
    from peft.tuners.tuners_utils import BaseTunerLayer
    from torch import nn

    try:
        module = importlib.import_module(f"{package}.layer")
    except ImportError:
        return []
    classes = []
    for _, cls in inspect.getmembers(module, inspect.isclass):
        if cls.__module__ != module.__name__:
            continue
        if issubclass(cls, BaseTunerLayer) and issubclass(cls, nn.Module):
            classes.append(cls)
    return classes


def _quantization(package_dir: Path) -> list[str]:
    backends: list[str] = []
    bnb_file = package_dir / "bnb.py"
    if bnb_file.exists():
        tree = ast.parse(bnb_file.read_text(encoding="utf-8"))
        names = {n.name for n in ast.walk(tree) if isinstance(n, ast.ClassDef)}
        backends += [label for cls, label in _BNB_CLASSES.items() if cls in names]
    backends += [label for label, stem in _QUANT_BACKEND_FILES.items() if (package_dir / f"{stem}.py").exists()]
    return backends


def introspect_method(peft_type: str) -> dict[str, Any]:
    """Capabilities of one registered PEFT method, as stored in the registry file."""
    from peft.config import PromptLearningConfig
    from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING, PEFT_TYPE_TO_TUNER_MAPPING
    from peft.tuners.tuners_utils import BaseTuner, BaseTunerLayer
    from peft.utils.peft_types import PeftType

    key = PeftType(peft_type)
    config_cls = PEFT_TYPE_TO_CONFIG_MAPPING[key]
    tuner_cls = PEFT_TYPE_TO_TUNER_MAPPING[key]
    package = tuner_cls.__module__.rsplit(".", 1)[0]
    package_dir = Path(importlib.import_module(package).__file__).parent  # type: ignore[arg-type]

    if issubclass(config_cls, PromptLearningConfig):
        kind = "prompt"
    elif isinstance(tuner_cls, type) and issubclass(tuner_cls, BaseTuner):
        kind = "weight"
    else:  # e.g. adaption prompt: its own model wrapper, neither prompt-learning nor a layer tuner
        kind = "other"

    layers = _layer_classes(package) if kind == "weight" else []
    # A layer class "is" a layer type when something subclasses nothing more concrete of it:
    # the mixin base (LoraLayer, OFTLayer...) is a parent of the concrete wrappers.
    parents = {base for cls in layers for base in cls.__mro__[1:]}
    concrete = [cls for cls in layers if cls not in parents] or layers
    layer_types = sorted({cls.__name__ for cls in concrete})
    can_merge = any(cls.merge is not BaseTunerLayer.merge for cls in concrete)
    conversion = {
        cls.__name__: (
            _static_bool_return(cls.supports_lora_conversion)
            if cls.supports_lora_conversion is not BaseTunerLayer.supports_lora_conversion
            else "no"
        )
        for cls in concrete
    }
    values = set(conversion.values())
    peft_to_lora = "yes" if values == {"yes"} else ("partial" if values - {"no"} else "no")

    return {
        "peft_type": key.value,
        "name": key.value.lower(),
        "kind": kind,
        "config_class": config_cls.__name__,
        "tuner_module": package,
        "config_defaults": config_defaults(config_cls),
        "layer_types": layer_types,
        "can_merge": bool(can_merge),
        "peft_to_lora": peft_to_lora,
        "peft_to_lora_layers": conversion,
        "quantization": _quantization(package_dir) if kind == "weight" else [],
    }


def introspect_installed_peft(
    *, probe: bool = True, progress: Callable[[str, int, int], None] | None = None
) -> dict[str, Any]:
    """The whole registry file for the installed peft: one entry per ``PeftType``.

    With ``probe`` (the default), every capability is then established on a tiny model
    (:mod:`.behaviour`) and stored with what was seen; the source reading alone only says which
    methods *have* a merge or a bitsandbytes wrapper, not that they work.
    """
    import peft
    from peft.utils.peft_types import PeftType

    methods = [introspect_method(pt.value) for pt in PeftType]
    data: dict[str, Any] = {
        "peft_version": peft.__version__,
        "generated_at": datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
        "methods": methods,
    }
    if probe:
        data["probe"] = probe_summary()
        claims = probe_registry_methods(methods, progress=progress)
        for record in methods:
            record["capabilities"] = {k: v.to_dict() for k, v in claims[record["peft_type"]].items()}
    return data


def probe_summary() -> dict[str, Any]:
    """What the capabilities were established on, for the record in the registry file."""
    from importlib import metadata

    from advisor.methods.behaviour import PROBE_LLAMA

    def version(name: str) -> str | None:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return None

    return {
        "model": "LlamaForCausalLM " + ", ".join(f"{k}={v}" for k, v in PROBE_LLAMA.items() if k != "architectures"),
        "versions": {name: version(name) for name in ("peft", "transformers", "torch", "bitsandbytes")},
    }


def probe_registry_methods(
    methods: list[dict[str, Any]], *, progress: Callable[[str, int, int], None] | None = None
) -> dict[str, Any]:
    """Run the behaviour probe on registry records; the converter is handed a registry that lets
    every weight method through, so that conversion is tried rather than assumed."""
    from advisor.methods.behaviour import probe_methods

    todo = [(r["peft_type"], r["config_class"], r["kind"]) for r in methods]
    return probe_methods(todo, registry=trying_registry(methods), progress=progress)


def trying_registry(methods: list[dict[str, Any]]) -> Any:
    """A registry in which every weight method is *claimed* convertible, for the probe's converter:
    conversion is then tried on each method, and the outcome becomes the claim."""
    from advisor.methods.registry import Registry, _method_from_record

    candidates = []
    for record in methods:
        optimistic = {**record, "capabilities": None, "can_merge": True} if record["kind"] == "weight" else record
        method = _method_from_record(optimistic)
        candidates.append(dataclasses.replace(method, ours_to_lora=method.kind == "weight"))
    return Registry("probe", "probe", tuple(candidates))
