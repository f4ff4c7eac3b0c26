"""Is this LoRA folder ready for vLLM / PEFT / Diffusers? The checklist of lora-consumers.md, as code.

Reads only the folder (safetensors headers and tensors, adapter_config.json) and, when known, the
base model's config and weight shapes: no torch model is built. Each finding says what is wrong,
which consumer cares, and whether :func:`fix_lora` can repair it.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from advisor.errors import UserError
from advisor.paths import read_json
from advisor.peft_files import CONFIG_NAME, DIFFUSERS_WEIGHTS_NAME, PEFT_PREFIX, WEIGHTS_NAME
from advisor.vocabulary import CONSUMER_TARGETS as TARGETS
from converters import consumer_facts as facts

_LORA_KEY = re.compile(r"^(base_model\.model\.)?(?P<path>.+)\.(?P<part>lora_A|lora_B)\.weight$")
_EMB_KEY = re.compile(r"^(base_model\.model\.)?(?P<path>.+)\.(?P<part>lora_embedding_A|lora_embedding_B)$")


@dataclass(frozen=True)
class Finding:
    level: str  # "error" (the consumer refuses or silently misapplies it), "warning", "info"
    message: str
    fixable: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class BaseInfo:
    """What the checks know about the base model (any part may be missing)."""

    name: str | None = None
    architecture: str | None = None
    vocab_size: int | None = None
    tie_word_embeddings: bool | None = None
    weight_shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)


@dataclass
class CheckReport:
    folder: str
    target: str
    findings: list[Finding]
    max_rank: int | None
    modules: int
    serve_command: str | None = None
    max_lora_rank: int | None = None

    @property
    def passed(self) -> bool:
        return not any(f.level == "error" for f in self.findings)

    @property
    def fixable(self) -> bool:
        return any(f.fixable for f in self.findings)

    def to_dict(self) -> dict[str, Any]:
        return {
            "folder": self.folder,
            "target": self.target,
            "passed": self.passed,
            "max_rank": self.max_rank,
            "modules": self.modules,
            "max_lora_rank": self.max_lora_rank,
            "serve_command": self.serve_command,
            "findings": [f.to_dict() for f in self.findings],
        }


def vllm_max_lora_rank(rank: int) -> int | None:
    """The smallest value vLLM's ``--max-lora-rank`` accepts that holds ``rank`` (None if none does)."""
    return next((value for value in facts.VLLM_MAX_LORA_RANKS if value >= rank), None)


def base_info(name_or_path: str | None) -> BaseInfo:
    """Config and weight shapes of a local (or already cached) base model; empty when unavailable."""
    info = BaseInfo(name=name_or_path)
    if not name_or_path:
        return info
    folder = _local_model_folder(name_or_path)
    if folder is None:
        return info
    config_path = folder / "config.json"
    if config_path.is_file():
        config = read_json(config_path)
        info.architecture = (config.get("architectures") or [None])[0]
        info.vocab_size = config.get("vocab_size")
        info.tie_word_embeddings = config.get("tie_word_embeddings")
    from safetensors import safe_open

    for weights in sorted(folder.glob("*.safetensors")):
        with safe_open(str(weights), framework="pt") as handle:
            for key in handle.keys():
                info.weight_shapes[key] = tuple(handle.get_slice(key).get_shape())
    return info


def _local_model_folder(name_or_path: str) -> Path | None:
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(name_or_path, local_files_only=True, allow_patterns=["*.json", "*.safetensors"]))
    except Exception:
        return None


def _load_folder(folder: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    from safetensors import safe_open

    config_path = folder / CONFIG_NAME
    weights = folder / WEIGHTS_NAME
    if not config_path.is_file() or not weights.is_file():
        raise UserError(f"{folder} must hold adapter_config.json and adapter_model.safetensors.")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise UserError(f"{config_path} is not valid JSON: {exc}.") from None
    try:
        with safe_open(str(weights), framework="pt") as handle:
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    except Exception as exc:
        raise UserError(f"{weights} is not a readable safetensors file ({exc}).") from None
    return config, tensors


def check_lora(
    folder: Path, target: str = "vllm", base: BaseInfo | None = None, *, shown_as: Path | None = None
) -> CheckReport:
    """Validate a LoRA folder for ``target`` against the consumer rules; never modifies it.

    ``shown_as`` is where the folder will live (the converter checks its staging copy before the
    rename), used for the report and the ``vllm serve`` line.
    """
    if target not in TARGETS:
        raise UserError(f"unknown target {target!r}; choose one of {', '.join(TARGETS)}.")
    folder = Path(folder)
    config, tensors = _load_folder(folder)
    shown = Path(shown_as or folder)
    peft_type = str(config.get("peft_type") or "").upper()
    if peft_type != "LORA":
        # Every tensor and half the config keys would fail one by one; the one thing to say is what to run.
        finding = Finding("error", _not_lora_message(peft_type, shown, target))
        return CheckReport(str(shown), target, [finding], None, 0)
    base = base or base_info(config.get("base_model_name_or_path"))
    findings: list[Finding] = []
    modules, ranks = _check_tensors(
        tensors, base, findings, target, config.get("modules_to_save") or [], bool(config.get("fan_in_fan_out"))
    )
    _check_dora(config, tensors, findings, target, shown)
    _check_config(config, ranks, findings, target)
    max_rank = max(ranks.values()) if ranks else None
    report = CheckReport(str(shown), target, findings, max_rank, len(modules))
    if target == "vllm":
        _check_vllm(config, modules, ranks, base, findings, report)
    elif target == "diffusers":
        findings.append(
            Finding(
                "info",
                "Diffusers does not read adapter_config.json or PEFT key names; use the "
                f"{DIFFUSERS_WEIGHTS_NAME} that `convert --for diffusers` writes (transformer.* keys)",
            )
        )
        _check_diffusers_file(folder, findings)
    return report


def _not_lora_message(peft_type: str, folder: Path, target: str) -> str:
    import shlex

    from advisor.methods.registry import load_registry

    method = load_registry().get(peft_type) if peft_type else None
    name = method.display_name if method is not None else (peft_type or "unknown")
    where = shlex.quote(str(folder))
    return (
        f"this is a{'n' if name[:1].upper() in 'AEIOU' else ''} {name} adapter (peft_type {peft_type or 'missing'}), "
        f"not a LoRA: export it with `peft-advise convert {where} OUT --for {target}`"
        + (" (see `peft-advise convert --list`)" if method is None else "")
    )


def is_dora(config: dict[str, Any], tensors: Any) -> bool:
    """DoRA by its config switch or by its magnitude tensors (either alone makes PEFT or vLLM treat it as DoRA)."""
    return bool(config.get("use_dora")) or any("lora_magnitude_vector" in key for key in tensors)


def _check_dora(
    config: dict[str, Any], tensors: dict[str, Any], findings: list[Finding], target: str, folder: Path
) -> None:
    """One finding for DoRA, by consumer: PEFT and Diffusers load it; vLLM and llama.cpp refuse it."""
    if not is_dora(config, tensors):
        return
    import shlex

    if target == "vllm":
        findings.append(
            Finding(
                "error",
                "DoRA adapter: vLLM and llama.cpp cannot serve DoRA, and no --fix can remove it without changing what "
                f"it computes; convert it instead: `peft-advise convert {shlex.quote(str(folder))} OUT --for vllm` "
                "(folds DoRA into a plain LoRA, fidelity measured)",
            )
        )
    else:
        loader = "PEFT" if target == "peft" else "Diffusers (through PEFT)"
        findings.append(Finding("info", f"DoRA adapter: {loader} loads it as it is; vLLM and llama.cpp do not"))


def _check_tensors(
    tensors: dict[str, Any],
    base: BaseInfo,
    findings: list[Finding],
    target: str,
    modules_to_save: list[str],
    fan_in_fan_out: bool = False,
) -> tuple[dict[str, dict[str, Any]], dict[str, int]]:
    import torch

    modules: dict[str, dict[str, Any]] = {}
    biases: list[str] = []
    saved_pattern = re.compile(rf"(^|\.)({'|'.join(map(re.escape, modules_to_save))})\.") if modules_to_save else None
    saved: list[str] = []
    foreign: list[str] = []
    for key, tensor in tensors.items():
        if saved_pattern is not None and saved_pattern.search(key) and "lora_" not in key:
            saved.append(key)  # a whole trained module (a classifier head): PEFT restores it as it is
            continue
        if "lora_magnitude_vector" in key:
            continue  # DoRA: one finding for the whole adapter, see _check_dora
        if key.endswith("lora_B.bias"):
            biases.append(key)
            continue
        match = _LORA_KEY.match(key) or _EMB_KEY.match(key)
        if not match:
            foreign.append(key)
            continue
        modules.setdefault(match["path"], {})[match["part"]] = tensor
    if foreign:
        findings.append(
            Finding(
                "error",
                f"{len(foreign)} tensor(s) are not LoRA A/B factors (another PEFT method's weights, or modules_to_save "
                f"not declared in the config), e.g. {foreign[0]}",
            )
        )
    ranks: dict[str, int] = {}
    dtypes = set()
    for path, parts in sorted(modules.items()):
        a = parts.get("lora_A", parts.get("lora_embedding_A"))
        b = parts.get("lora_B", parts.get("lora_embedding_B"))
        if a is None or b is None:
            findings.append(Finding("error", f"{path} has only one of its A/B factors"))
            continue
        if a.dim() != b.dim() or a.dim() not in (2, 4):
            findings.append(Finding("error", f"{path}: A and B must both be 2-D (got {a.dim()}-D and {b.dim()}-D)"))
            continue
        rank = int(a.shape[0])
        if int(b.shape[1]) != rank:
            findings.append(Finding("error", f"{path}: A has rank {rank} but B has {b.shape[1]}"))
            continue
        ranks[path] = rank
        for t in (a, b):
            dtypes.add(t.dtype)
            if not t.is_floating_point():
                findings.append(Finding("error", f"{path}: factors must be float (got {t.dtype})"))
            elif not torch.isfinite(t).all():
                findings.append(Finding("error", f"{path}: factors contain NaN or Inf"))
        _check_shape(path, a, b, "lora_embedding_A" in parts, base, findings, fan_in_fan_out)
    if biases:
        level = "error" if target == "vllm" else "info"
        findings.append(
            Finding(
                level,
                f"{len(biases)} modules carry a lora_B bias (the adapter changed biases): fine for PEFT and "
                "Diffusers, rejected by vLLM and llama.cpp",
                fixable=target == "vllm",
            )
        )
    if saved:
        findings.append(
            Finding(
                "info",
                f"{len(saved)} tensor(s) of modules_to_save ({', '.join(modules_to_save)}) are carried whole: "
                "PEFT restores them; llama.cpp rejects them",
            )
        )
    if len(dtypes) > 1:
        findings.append(Finding("warning", f"factors mix dtypes {sorted(map(str, dtypes))}; consumers upcast"))
    if not ranks:
        findings.append(Finding("error", "no LoRA A/B pairs found"))
    return modules, ranks


def _check_shape(
    path: str, a: Any, b: Any, embedding: bool, base: BaseInfo, findings: list[Finding], fan_in_fan_out: bool = False
) -> None:
    """The factors' (out, in) against the base weight's shape; with ``fan_in_fan_out`` (GPT-2's Conv1D stores its
    weight as (in, out)) the base shape is read the other way round."""
    if not base.weight_shapes or a.dim() != 2:
        return
    shape = _base_shape(path, base)
    if shape is None:
        findings.append(Finding("error", f"{path} is not a weight of the base model {base.name}"))
        return
    got = (int(a.shape[1]), int(b.shape[0])) if embedding else (int(b.shape[0]), int(a.shape[1]))
    want = (int(shape[0]), int(shape[1])) if len(shape) >= 2 else tuple(shape)
    if fan_in_fan_out and not embedding and len(want) == 2:
        want = (want[1], want[0])
    if got != want:
        findings.append(Finding("error", f"{path}: LoRA shape {got} does not match the base weight {want}"))


def _base_shape(path: str, base: BaseInfo) -> tuple[int, ...] | None:
    """The base weight's shape for a LoRA module path.

    A task model wraps the checkpoint's model under its ``base_model_prefix`` (``bert.encoder...``
    in a BertForSequenceClassification adapter, ``encoder...`` in a BertModel checkpoint), so the
    path without its first component is tried as well.
    """
    candidates = [path]
    if "." in path:
        candidates.append(path.split(".", 1)[1])
    for name in candidates:
        for key, shape in base.weight_shapes.items():
            if key == f"{name}.weight" or key.endswith(f".{name}.weight"):
                return shape
    return None


def _module_scale(config: dict[str, Any], path: str, rank: int) -> float:
    alpha = _pattern_value(config.get("alpha_pattern") or {}, path, config.get("lora_alpha", rank))
    return alpha / math.sqrt(rank) if config.get("use_rslora") else alpha / rank


def _pattern_value(pattern: dict[str, Any], path: str, default: Any) -> Any:
    """PEFT's rule: the first key ``k`` with ``re.match(rf"(.*\\.)?({k})$", path)`` wins."""
    for key, value in pattern.items():
        if re.match(rf"(.*\.)?({key})$", path):
            return value
    return default


def _check_config(config: dict[str, Any], ranks: dict[str, int], findings: list[Finding], target: str) -> None:
    missing = [k for k in ("r", "lora_alpha", "target_modules") if config.get(k) in (None, [], "")]
    if missing:
        findings.append(Finding("error", f"adapter_config.json lacks {', '.join(missing)} (required by vLLM)"))
    r = config.get("r")
    if not isinstance(r, int) or r <= 0:
        findings.append(Finding("error", f"r must be a positive integer (got {r!r})"))
        return
    pattern = config.get("rank_pattern") or {}
    for path, rank in ranks.items():
        declared = _pattern_value(pattern, path, r)
        if declared != rank:
            findings.append(
                Finding("error", f"{path}: tensor rank {rank} but the config says {declared} (wrong scale)", True)
            )
    if config.get("bias", "none") != "none":
        findings.append(Finding("error", f"bias={config.get('bias')!r}: vLLM requires 'none'"))
    _check_scale(config, ranks, findings, target)
    if pattern and target == "vllm" and len(set(ranks.values())) > 1:
        findings.append(
            Finding("warning", "per-module ranks (rank_pattern) are ignored by vLLM ≤0.31; pad to one rank", True)
        )
    if not config.get("base_model_name_or_path"):
        findings.append(Finding("warning", "no base_model_name_or_path: llama.cpp cannot convert it, vLLM users guess"))


def _check_scale(config: dict[str, Any], ranks: dict[str, int], findings: list[Finding], target: str) -> None:
    """An unfolded scale is only a finding where some consumer would apply a different one.

    PEFT, vLLM and llama.cpp all apply ``lora_alpha / r`` themselves, so an ordinary LoRA (alpha = 2r, say)
    loads the same everywhere. What differs: vLLM ≤0.31 applies the *global* ``lora_alpha / r`` to every
    module (alpha_pattern and rank_pattern ignored), and llama.cpp applies ``lora_alpha / rank`` per tensor
    (use_rslora and alpha_pattern ignored). Diffusers reads no config at all (its own file is checked apart).
    """
    if not ranks or target == "diffusers":
        return
    r, alpha = config.get("r") or 1, config.get("lora_alpha", config.get("r") or 1)
    global_scale = alpha / math.sqrt(r) if config.get("use_rslora") else alpha / r
    true = {path: _module_scale(config, path, rank) for path, rank in ranks.items()}
    if target == "vllm" and any(not math.isclose(s, global_scale, rel_tol=1e-6) for s in true.values()):
        findings.append(
            Finding(
                "warning",
                "per-module LoRA scales (alpha_pattern/rank_pattern): vLLM ≤0.31 applies one scale, lora_alpha/r, "
                "to every module; fold the scales into lora_B",
                fixable=True,
            )
        )
    if any(not math.isclose(true[p], alpha / k, rel_tol=1e-6) for p, k in ranks.items()):
        why = "use_rslora" if config.get("use_rslora") else "alpha_pattern"
        findings.append(
            Finding(
                "info",
                f"llama.cpp ignores {why} (it applies lora_alpha/rank): fold the scale into lora_B before "
                "convert_lora_to_gguf",
                fixable=True,
            )
        )


def _check_vllm(
    config: dict[str, Any],
    modules: dict[str, dict[str, Any]],
    ranks: dict[str, int],
    base: BaseInfo,
    findings: list[Finding],
    report: CheckReport,
) -> None:
    for key in facts.VLLM_REJECTED_WHEN_SET:
        if config.get(key):
            findings.append(Finding("error", f"{key} is set: vLLM 0.32+ rejects it (≤0.31 silently ignores it)"))
    init = config.get("init_lora_weights", True)
    if isinstance(init, str) and init.lower() not in facts.VLLM_OK_INITS:
        findings.append(Finding("error", f"init_lora_weights={init!r} is rejected by vLLM 0.32+", fixable=True))
    to_save = config.get("modules_to_save")
    if to_save and list(to_save) not in (["classifier"], ["score"]):
        findings.append(Finding("error", f"modules_to_save={to_save}: vLLM only takes a classifier/score head"))
    max_rank = max(ranks.values()) if ranks else 0
    allowed = vllm_max_lora_rank(max_rank) if max_rank else None
    if max_rank and allowed is None:
        findings.append(Finding("error", f"rank {max_rank} exceeds vLLM's largest --max-lora-rank (512)"))
    report.max_lora_rank = allowed
    arch = base.architecture
    if arch is None:
        findings.append(Finding("warning", "base model config not available: architecture and module names unchecked"))
    elif arch in facts.VLLM_NO_LORA:
        findings.append(Finding("error", f"{arch}: {facts.VLLM_NO_LORA[arch]}; this adapter cannot be served by vLLM"))
    elif arch not in facts.VLLM_LORA_ARCHITECTURES:
        findings.append(
            Finding("warning", f"{arch} is not in our table of vLLM LoRA architectures; check vLLM's supported models")
        )
    else:
        spec = facts.VLLM_LORA_ARCHITECTURES[arch]
        for path, parts in modules.items():
            leaf = path.rsplit(".", 1)[-1]
            if leaf[-1:].isdigit():
                findings.append(Finding("error", f"{path}: vLLM rejects module names ending in an index"))
            elif leaf not in spec.modules:
                findings.append(
                    Finding("error", f"{path}: vLLM's {arch} takes LoRA on {', '.join(sorted(spec.modules))} only")
                )
            elif (
                "lora_embedding_A" in parts
                and base.vocab_size
                and parts["lora_embedding_A"].shape[1] != base.vocab_size
            ):
                findings.append(
                    Finding("error", f"{path}: embedding LoRA width must equal vocab size {base.vocab_size}")
                )
    if report.passed and allowed:
        report.serve_command = serve_command(config, Path(report.folder), allowed)


def serve_command(config: dict[str, Any], folder: Path, max_lora_rank: int) -> str:
    """The ``vllm serve`` line that loads this adapter."""
    import shlex

    base = config.get("base_model_name_or_path") or "<base-model>"
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", folder.resolve().name) or "adapter"
    return (
        f"vllm serve {shlex.quote(str(base))} --enable-lora --max-lora-rank {max_lora_rank} "
        f"--lora-modules {shlex.quote(f'{name}={folder.resolve()}')}"
    )


def _check_diffusers_file(folder: Path, findings: list[Finding]) -> None:
    from safetensors import safe_open

    path = folder / DIFFUSERS_WEIGHTS_NAME
    if not path.is_file():
        findings.append(Finding("error", f"no {DIFFUSERS_WEIGHTS_NAME} (Diffusers format) in the folder", True))
        return
    with safe_open(str(path), framework="pt") as handle:
        keys = list(handle.keys())
    if not keys or not all("lora" in k for k in keys):
        findings.append(Finding("error", "every Diffusers LoRA key must contain 'lora'"))
    if any("base_model" in k for k in keys):
        findings.append(Finding("error", "a 'base_model' key prefix makes Diffusers misread the file"))
    if any("alpha" in k for k in keys):
        findings.append(Finding("error", "'alpha' keys are read as kohya network alphas"))
    if not all(k.startswith(("transformer.", "text_encoder.", "unet.")) for k in keys):
        findings.append(Finding("error", "keys need a transformer./unet./text_encoder. prefix or Diffusers drops them"))


# adapter_config.json fields a fix may rewrite without changing what the adapter computes: the scale is
# folded into lora_B (r, lora_alpha, use_rslora, the patterns), modules are named exactly, and training-only
# settings go. Any other field that the rebuilt config would lose or change makes --fix refuse.
_FIX_MAY_CHANGE = frozenset(
    {
        "r",
        "lora_alpha",
        "use_rslora",
        "rank_pattern",
        "alpha_pattern",
        "target_modules",
        "exclude_modules",
        "layers_to_transform",
        "layers_pattern",
        "lora_dropout",
        "inference_mode",
        "peft_version",
        "revision",
        "auto_mapping",
        "init_lora_weights",  # initialisation only; a string is reported when reset
        "lora_bias",  # reported when biases are dropped
        "base_model_name_or_path",
        "megatron_core",
        "qalora_group_size",
        "loftq_config",
    }
)


def fix_lora(folder: Path, out: Path, *, target: str = "vllm", overwrite: bool = False) -> list[str]:
    """Rewrite ``folder`` into ``out`` with the automatic fixes; returns what was changed.

    Folds each module's scale into ``lora_B`` (``lora_alpha = r``, no rsLoRA / alpha_pattern),
    pads per-module ranks to one uniform rank and drops LoRA biases for vLLM, writes Diffusers'
    own file for Diffusers, and resets a PiSSA-style ``init_lora_weights`` (meaningless once trained)
    to ``true``. A fix never changes what the adapter computes without saying so: what it cannot
    repair that way (DoRA for vLLM, another PEFT method, a switch the rebuilt config would lose) is a
    :class:`UserError` that names the command that can (``peft-advise convert``), and nothing is written.
    """
    from advisor.paths import check_destination, publish, staging_folder
    from converters.lora_writer import LoraAdapter, LoraModule, write_adapter_files, write_diffusers_file

    if target not in TARGETS:
        raise UserError(f"unknown target {target!r}; choose one of {', '.join(TARGETS)}.")
    in_place = Path(out).resolve() == Path(folder).resolve()
    check_destination(out, overwrite=overwrite or in_place, option="--fix")
    config, tensors = _load_folder(Path(folder))
    peft_type = str(config.get("peft_type") or "").upper()
    if peft_type != "LORA":
        raise UserError(f"--fix cannot help: {_not_lora_message(peft_type, Path(folder), target)}.")
    dora = is_dora(config, tensors)
    if dora and target == "vllm":
        import shlex

        raise UserError(
            f"--fix cannot make a DoRA adapter servable by vLLM without changing what it computes; convert it: "
            f"peft-advise convert {shlex.quote(str(folder))} OUT --for vllm (folds DoRA into a plain LoRA and "
            "measures fidelity). Nothing written."
        )
    changes: list[str] = []
    grouped: dict[str, dict[str, Any]] = {}
    extra = {}
    for key, tensor in tensors.items():
        match = _LORA_KEY.match(key) or _EMB_KEY.match(key)
        if match:
            grouped.setdefault(match["path"], {})[match["part"]] = tensor
        elif key.endswith("lora_B.bias"):
            grouped.setdefault(key.removeprefix(PEFT_PREFIX).removesuffix(".lora_B.bias"), {})["bias"] = tensor
        elif key.endswith(".lora_magnitude_vector"):
            path = key.removeprefix(PEFT_PREFIX).removesuffix(".lora_magnitude_vector")
            grouped.setdefault(path, {})["magnitude"] = tensor
        else:
            extra[key] = tensor
    modules = []
    for path, parts in sorted(grouped.items()):
        emb = "lora_embedding_A" in parts
        a = parts.get("lora_embedding_A" if emb else "lora_A")
        b = parts.get("lora_embedding_B" if emb else "lora_B")
        if a is None or b is None:
            raise UserError(f"{folder}: {path} has only one of its A/B factors; --fix cannot rebuild it.")
        rank = int(a.shape[0])
        scale = _module_scale(config, path, rank)
        if abs(scale - 1.0) > 1e-6:
            b = (b.float() * scale).to(b.dtype)
        names = ("lora_embedding_A", "lora_embedding_B") if emb else ("lora_A.weight", "lora_B.weight")
        key = f"{PEFT_PREFIX}{path}"
        factors = {f"{key}.{names[0]}": a, f"{key}.{names[1]}": b}
        modules.append(
            LoraModule(path, "embedding" if emb else "linear", factors, rank, parts.get("bias"), parts.get("magnitude"))
        )
    if any(abs(_module_scale(config, m.name, m.rank) - 1.0) > 1e-6 for m in modules):
        changes.append("folded the LoRA scale into lora_B (lora_alpha = r; outputs unchanged)")
    adapter = LoraAdapter(
        modules=modules,
        base_model=config.get("base_model_name_or_path") or "",
        task_type=config.get("task_type"),
        fan_in_fan_out=bool(config.get("fan_in_fan_out")),
        modules_to_save=config.get("modules_to_save"),
        extra_tensors=extra,
    )
    if target == "vllm" and not adapter.uniform:
        adapter.pad_to_uniform_rank()
        changes.append(f"zero-padded every module to rank {adapter.max_rank} (vLLM ≤0.31 ignores rank_pattern)")
    if target == "vllm" and adapter.has_bias:
        adapter.drop_bias()
        changes.append("dropped lora_B biases (vLLM rejects them): outputs change by the bias terms")
    if isinstance(config.get("init_lora_weights"), str):
        changes.append(f"reset init_lora_weights={config['init_lora_weights']!r} to true")
    leaf = all(m.name.rsplit(".", 1)[-1] in set(config.get("target_modules") or []) for m in modules)
    rebuilt = adapter.config(leaf_names_suffice=leaf)
    lost = _fields_a_fix_would_change(config, rebuilt)
    if lost:
        raise UserError(
            f"--fix would change {', '.join(lost)}, which changes what the adapter computes; nothing written "
            "(re-save the adapter with PEFT, or export it with `peft-advise convert`)."
        )
    if target == "diffusers":
        changes.append(f"wrote {DIFFUSERS_WEIGHTS_NAME} (transformer.* keys, scale folded) for Diffusers")
    if not changes:
        changes.append("nothing to fix")
    with staging_folder(Path(out), overwrite=overwrite or in_place) as staging:
        card = Path(folder, "README.md").read_text(encoding="utf-8") if Path(folder, "README.md").is_file() else None
        write_adapter_files(staging, adapter, rebuilt, card)
        if target == "diffusers":
            write_diffusers_file(staging, adapter)
        publish(staging, Path(out))
    return changes


def _fields_a_fix_would_change(original: dict[str, Any], rebuilt: dict[str, Any]) -> list[str]:
    """Config fields outside :data:`_FIX_MAY_CHANGE` whose value the rebuilt config does not keep."""

    def unset(value: Any) -> bool:
        return value in (None, False, "", [], {}, "none")

    changed = []
    for key, value in original.items():
        if key in _FIX_MAY_CHANGE or key == "peft_type":
            continue
        new = rebuilt.get(key)
        if unset(value) and unset(new):
            continue
        if isinstance(value, list) and isinstance(new, list) and sorted(map(str, value)) == sorted(map(str, new)):
            continue
        if value != new:
            changed.append(f"{key}={value!r}")
    return changed
