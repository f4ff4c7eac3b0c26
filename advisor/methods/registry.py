"""The one registry of PEFT methods that every tool reads.

Entries come from introspecting the installed peft (:mod:`.introspect`) plus the hand-written
facts in :mod:`.known`. Introspection imports torch, so the registry is read from a JSON file:
the user's cache for the installed peft version when present, else the copy shipped with the
package. Loading it costs a JSON parse, which keeps the recommend path fast.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

from advisor.errors import UserError
from advisor.methods import known
from advisor.paths import PACKAGE_DATA, read_json, user_data_dir, write_json_atomic
from advisor.vocabulary import CONSUMER_TARGETS

SHIPPED_REGISTRY = PACKAGE_DATA / "methods.json"


def normalise(name: str) -> str:
    """Spelling-insensitive key: 'Prefix-Tuning', 'prefix_tuning' and 'prefixtuning' agree."""
    return re.sub(r"[\s_\-]+", "", name.strip().lower())


@dataclass(frozen=True)
class MethodInfo:
    """One PEFT method (or the full fine-tuning baseline) and what it can do."""

    name: str
    peft_type: str | None
    display_name: str
    kind: str  # "weight" (changes layer weights), "prompt" (prompt learning), "other", "full"
    config_class: str | None
    layer_types: tuple[str, ...]
    can_merge: bool
    peft_to_lora: str  # "yes" / "partial" (some layer types or configs) / "no"
    ours_to_lora: bool
    quantization: tuple[str, ...]
    vllm_native: bool
    diffusers_native: bool
    aliases: tuple[str, ...] = ()
    config_defaults: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    peft_to_lora_layers: dict[str, str] = field(default_factory=dict, compare=False, repr=False)
    peft_reload: bool = True
    vllm_via_convert: bool = False
    diffusers_via_convert: bool = False
    # capability -> {"value", "how", "detail"}: what the probe on a tiny model saw (behaviour.py)
    evidence: dict[str, dict[str, Any]] = field(default_factory=dict, compare=False, repr=False)

    def why_not(self, capability: str) -> str:
        """What the probe saw when ``capability`` failed, for messages (a generic line without a probe)."""
        seen = self.evidence.get(capability, {})
        return str(seen.get("detail") or f"{self.display_name} was not shown to support it on a tiny model")

    def serving(self, consumer: str, peft_config: dict[str, Any] | None = None) -> str | None:
        """How ``consumer`` serves this method's adapter: "native" (as trained), "convert" (through our
        LoRA converter, at a fidelity measured when converting) or None (not at all).

        ``peft_config`` (a run's or a trained adapter's) narrows it: a LoRA with DoRA, a bias or another
        switch vLLM refuses is no plain LoRA to vLLM, and reaches it only through the converter.
        """
        if self.kind == "full":
            return "native" if consumer in ("vllm", "diffusers") else None  # a whole model, not an adapter
        if consumer == "peft":
            return "native" if self.peft_reload else None
        native = {"vllm": self.vllm_native, "diffusers": self.diffusers_native}.get(consumer, False)
        if native and consumer == "vllm" and peft_config is not None:
            from advisor.methods.variants import vllm_blockers

            native = not vllm_blockers(self.peft_type, peft_config)
        if native:
            return "native"
        converted = {"vllm": self.vllm_via_convert, "diffusers": self.diffusers_via_convert}.get(consumer, False)
        return "convert" if converted else None

    @property
    def adapts_linear(self) -> bool:
        """Whether it puts a layer on linear layers (its own ``HRALinear``, or ``Linear``): what the memory model's
        adapter-matrix term is counted for."""
        return any(layer.endswith("Linear") for layer in self.layer_types)

    @property
    def lora_convertible(self) -> bool:
        """Exportable to a LoRA adapter by peft or by our converter (LoRA itself trivially)."""
        return self.peft_type == "LORA" or self.peft_to_lora != "no" or self.ours_to_lora

    @property
    def quantized_base(self) -> bool:
        """Trains on a bitsandbytes 4-bit or 8-bit base model (QLoRA-style)."""
        return bool({"bnb-4bit", "bnb-8bit"} & set(self.quantization))

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "peft_type": self.peft_type,
            "display_name": self.display_name,
            "kind": self.kind,
            "config_class": self.config_class,
            "layer_types": list(self.layer_types),
            "can_merge": self.can_merge,
            "peft_to_lora": self.peft_to_lora,
            "peft_to_lora_layers": dict(self.peft_to_lora_layers),
            "ours_to_lora": self.ours_to_lora,
            "lora_convertible": self.lora_convertible,
            "quantization": list(self.quantization),
            "quantized_base": self.quantized_base,
            "vllm_native": self.vllm_native,
            "diffusers_native": self.diffusers_native,
            "peft_reload": self.peft_reload,
            "serving": {c: self.serving(c) for c in CONSUMER_TARGETS},
            "aliases": list(self.aliases),
            "evidence": {k: dict(v) for k, v in self.evidence.items()},
        }


BNB_LABELS = ("bnb-4bit", "bnb-8bit")


def _observed(record: dict[str, Any]) -> dict[str, Any]:
    """Capabilities as the tiny-model probe established them (:mod:`.behaviour`).

    A registry file without probe results (one cached by an older peft-advisor) falls back to the
    source reading, as before.
    """
    key = record["peft_type"] or "FULL"
    claims = record.get("capabilities")
    if not claims:
        exports = record["kind"] == "weight" and bool(record["can_merge"]) and key not in known.NOT_CONVERTIBLE
        return {
            "can_merge": bool(record["can_merge"]),
            "peft_to_lora": record["peft_to_lora"],
            "ours_to_lora": exports,
            "quantization": tuple(record["quantization"]),
            "vllm_native": key in known.VLLM_NATIVE,
            "diffusers_native": key in known.DIFFUSERS_NATIVE,
            "peft_reload": True,
            "vllm_via_convert": exports,
            "diffusers_via_convert": exports,
        }

    def holds(name: str) -> bool:
        return bool(claims.get(name, {}).get("value"))

    layer_support = set(record.get("peft_to_lora_layers", {}).values())
    peft_to_lora = "no"
    if holds("peft_to_lora"):  # shown on Linear layers; other layer types as peft's source states
        peft_to_lora = "yes" if layer_support <= {"yes"} else "partial"
    other_backends = [b for b in record["quantization"] if b not in BNB_LABELS]  # need GPUs to run
    return {
        "can_merge": holds("merge"),
        "peft_to_lora": peft_to_lora,
        "ours_to_lora": holds("ours_to_lora"),
        "quantization": tuple([b for b in BNB_LABELS if holds(b)] + other_backends),
        "vllm_native": holds("vllm_native"),
        "diffusers_native": holds("diffusers_native"),
        "peft_reload": holds("peft_reload"),
        "vllm_via_convert": holds("vllm_via_convert"),
        "diffusers_via_convert": holds("diffusers_via_convert"),
    }


def _method_from_record(record: dict[str, Any]) -> MethodInfo:
    peft_type = record["peft_type"]
    key = peft_type or "FULL"
    display = known.DISPLAY_NAMES.get(key, "Full fine-tuning" if key == "FULL" else key.replace("_", " ").title())
    aliases = tuple(sorted({record["name"], display.lower(), *known.EXTRA_ALIASES.get(key, ())}))
    return MethodInfo(
        name=record["name"],
        peft_type=peft_type,
        display_name=display,
        kind=record["kind"],
        config_class=record["config_class"],
        layer_types=tuple(record["layer_types"]),
        aliases=aliases,
        config_defaults=dict(record.get("config_defaults", {})),
        peft_to_lora_layers=dict(record.get("peft_to_lora_layers", {})),
        evidence={k: dict(v) for k, v in (record.get("capabilities") or {}).items()},
        **_observed(record),
    )


@dataclass(frozen=True)
class Registry:
    """All known methods, resolvable by any alias."""

    peft_version: str
    source: str  # where the capabilities were read from (a path), for the record
    methods: tuple[MethodInfo, ...]

    @cached_property
    def _index(self) -> dict[str, MethodInfo]:
        index: dict[str, MethodInfo] = {}
        for method in self.methods:
            for alias in (method.name, method.peft_type or "", *method.aliases):
                if alias:
                    index.setdefault(normalise(alias), method)
        return index

    def get(self, name: str) -> MethodInfo | None:
        return self._index.get(normalise(name))

    def resolve(self, name: str) -> MethodInfo:
        """Like :meth:`get`, but an unknown name is a :class:`UserError` listing the valid ones."""
        method = self.get(name)
        if method is None:
            valid = ", ".join(sorted(m.name for m in self.methods))
            raise UserError(f"unknown PEFT method {name!r}; known methods: {valid}")
        return method

    def for_peft_type(self, peft_type: str | None) -> MethodInfo:
        """The entry for a ``peft_type`` as found in an adapter config (``None``: full fine-tuning)."""
        return self.resolve(peft_type or "full")


def installed_peft_version() -> str | None:
    """Version of the installed peft from its metadata, without importing it (that takes seconds)."""
    try:
        return metadata.version("peft")
    except metadata.PackageNotFoundError:
        return None


def user_registry_path(peft_version: str) -> Path:
    return user_data_dir() / f"methods-peft-{peft_version}.json"


def registry_from_file(path: Path) -> Registry:
    data = read_json(path)
    records = [*data["methods"], known.FULL_FINETUNING]
    return Registry(
        peft_version=data["peft_version"],
        source=str(path),
        methods=tuple(_method_from_record(r) for r in records),
    )


@lru_cache(maxsize=1)
def load_registry() -> Registry:
    """The user's cached registry for the installed peft version, else the shipped one.

    The shipped file was generated from a specific peft version; when another version is
    installed and not yet introspected, the shipped capabilities are still used (they describe
    a real peft release) and :func:`registry_staleness` says so.
    """
    # Asking importlib.metadata for peft's version costs ~20 ms: only do it when a cache exists.
    if any(user_data_dir().glob("methods-peft-*.json")):
        version = installed_peft_version()
        cached = user_registry_path(version) if version else None
        if cached is not None and cached.exists():
            return registry_from_file(cached)
    return registry_from_file(SHIPPED_REGISTRY)


def registry_staleness(registry: Registry) -> str | None:
    """A hint when the registry describes another peft version than the installed one."""
    installed = installed_peft_version()
    if installed and installed != registry.peft_version:
        return (
            f"method capabilities describe peft {registry.peft_version}, but peft {installed} is installed; "
            "run `peft-advise methods --refresh` to re-read them"
        )
    return None


def refresh_registry(
    output: Path | None = None, *, progress: Callable[[str, int, int], None] | None = None
) -> tuple[Registry, Path]:
    """Introspect the installed peft, establish each capability on a tiny model, cache the result.

    Imports peft and runs every method a few times on a 2-layer Llama: a few minutes on a CPU.
    """
    from advisor.methods.introspect import introspect_installed_peft

    try:
        data = introspect_installed_peft(progress=progress)
    except ImportError as exc:
        raise UserError(
            f"cannot read method capabilities: {exc}; install peft first (pip install 'peft-advisor[peft]')"
        ) from exc
    path = output or user_registry_path(data["peft_version"])
    write_json_atomic(path, data)
    load_registry.cache_clear()
    return registry_from_file(path), path
