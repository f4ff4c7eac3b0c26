"""Convert one PEFT adapter to a plain LoRA adapter, measure it, and only then publish it.

The pipeline (one function, :func:`convert_adapter`):

1. open the adapter (folder or Hub, safetensors only) and look its method up in the registry;
2. load the base model, attach the adapter, run calibration samples through it, recording each
   adapted layer's input moments (fit set) and the outputs on held-out samples (original adapter
   and bare base model);
3. per adapted layer: read ``ΔW`` (peft's delta or the adapter's merge), factorise it once at the
   largest rank needed (plain SVD and/or calibrated), choose the layer's rank;
4. ``--sweep``: for every swept rank and factorisation, apply ``BA`` to the base weights and measure
   the model outputs;
5. write the LoRA folder into a staging directory, reload it with PEFT on a fresh base model, measure
   fidelity, run the consumer checks; publish (rename into place) only if everything passed.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from advisor.errors import UserError
from advisor.peft_files import CARD_NAME, PEFT_PREFIX
from converters.factorize import DEFAULT_RIDGE, LayerBasis, layer_basis

if TYPE_CHECKING:
    from advisor.methods.registry import Registry

ProgressFn = Callable[[str, int, int], None]
DEFAULT_RANK = 64
# Below this fidelity the summary warns (the LoRA keeps under 90% of the adapter's effect); --warn-below lowers it.
DEFAULT_WARN_BELOW = 0.9
FACTORIZATIONS = ("auto", "calibrated", "plain")


class ConversionRejected(Exception):
    """The conversion ran but failed a check the user asked for; nothing was written."""

    def __init__(self, result: ConvertResult, reason: str) -> None:
        super().__init__(reason)
        self.result = result
        self.reason = reason


@dataclass
class ConvertOptions:
    rank: int | None = None
    energy: float | None = None
    max_rank: int | None = None
    base_model: str | None = None
    calibration: Path | None = None
    target: str = "peft"
    sweep: tuple[int, ...] = ()
    min_fidelity: float | None = None
    warn_below: float = DEFAULT_WARN_BELOW
    factorization: str = "auto"
    device: str = "auto"
    overwrite: bool = False
    allow_pickle: bool = False
    revision: str | None = None
    ridge: float = DEFAULT_RIDGE
    dry_run: bool = False
    # Read the base model one block at a time where the architecture allows it: True forces it, False never,
    # None (auto) for checkpoints of STREAM_MIN_BYTES or more (a small model loads whole faster, in little memory).
    stream: bool | None = None

    def validate(self) -> None:
        from advisor.vocabulary import CONSUMER_TARGETS as TARGETS

        if self.rank is not None and self.energy is not None:
            raise UserError("pass either --rank or --energy, not both.")
        if self.rank is not None and self.rank < 1:
            raise UserError(f"--rank must be a positive integer (got {self.rank}).")
        if self.energy is not None and not 0 < self.energy <= 1:
            raise UserError(f"--energy is a fraction of the update's energy in (0, 1] (got {self.energy}).")
        if self.max_rank is not None and self.max_rank < 1:
            raise UserError(f"--max-rank must be a positive integer (got {self.max_rank}).")
        if any(r < 1 for r in self.sweep):
            raise UserError("--sweep takes positive ranks, e.g. --sweep 8,16,32,64.")
        if self.min_fidelity is not None and not 0 <= self.min_fidelity <= 1:
            raise UserError(f"--min-fidelity is between 0 and 1 (got {self.min_fidelity}).")
        if not 0 <= self.warn_below <= 1:
            raise UserError(f"--warn-below is between 0 and 1 (got {self.warn_below}); 0 turns the warning off.")
        if self.target not in TARGETS:
            raise UserError(f"--for must be one of {', '.join(TARGETS)} (got {self.target!r}).")
        if self.factorization not in FACTORIZATIONS:
            raise UserError(f"--factorization must be one of {', '.join(FACTORIZATIONS)}.")


@dataclass
class SweepRow:
    rank: int
    factorization: str
    parameters: int
    retained_energy: float
    weight_error: float
    layer_output_error: float | None
    fidelity: Any  # converters.fidelity.Fidelity

    def to_dict(self) -> dict[str, Any]:
        return {
            "rank": self.rank,
            "factorization": self.factorization,
            "parameters": self.parameters,
            "retained_energy": self.retained_energy,
            "weight_error": self.weight_error,
            "layer_output_error": self.layer_output_error,
            **self.fidelity.to_dict(),
        }


@dataclass
class ConvertResult:
    source: str
    out: str
    peft_type: str
    source_method: str
    target: str
    base_model: str
    factorization: str
    calibration: str
    layers: int
    routes: dict[str, int]
    ranks: dict[str, int] = field(default_factory=dict)
    parameters: int = 0
    fidelity: Any = None
    sweep: list[SweepRow] = field(default_factory=list)
    check: Any = None  # converters.consumers.CheckReport
    written: bool = False
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    eval_samples: int = 0
    rank_choice: str = ""  # how the written rank was chosen, in words
    warnings: list[str] = field(default_factory=list)  # what a user must read before serving the result
    rejected: str | None = None  # why nothing was written (--min-fidelity)

    @property
    def rank_summary(self) -> str:
        if not self.ranks:
            return "-"
        values = sorted(set(self.ranks.values()))
        if len(values) == 1:
            return str(values[0])
        return f"{values[0]}–{values[-1]} per layer (median {sorted(self.ranks.values())[len(self.ranks) // 2]})"

    def card_facts(self, tool_version: str, peft_version: str, display: str) -> dict[str, Any]:
        return {
            "base_model": self.base_model,
            "source": self.source,
            "source_method": self.peft_type,
            "source_method_display": display,
            "tool_version": tool_version,
            "peft_version": peft_version,
            "rank_summary": self.rank_summary,
            "layers": self.layers,
            "factorization": self.factorization,
            "calibration": self.calibration,
            "parameters": self.parameters,
            "fidelity": self.fidelity.to_dict() if self.fidelity else {},
            "eval_samples": self.eval_samples,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "out": self.out,
            "written": self.written,
            "peft_type": self.peft_type,
            "source_method": self.source_method,
            "target": self.target,
            "base_model": self.base_model,
            "factorization": self.factorization,
            "calibration": self.calibration,
            "layers": self.layers,
            "routes": self.routes,
            "rank": self.rank_summary,
            "ranks": self.ranks,
            "parameters": self.parameters,
            "fidelity": self.fidelity.to_dict() if self.fidelity else None,
            "sweep": [row.to_dict() for row in self.sweep],
            "check": self.check.to_dict() if self.check else None,
            "rank_choice": self.rank_choice,
            "warnings": self.warnings,
            "rejected": self.rejected,
            "notes": self.notes,
            "timings_s": {k: round(v, 3) for k, v in self.timings.items()},
        }


@dataclass
class _Layer:
    """Per-layer working state: the delta's metadata and one basis per factorisation."""

    delta: Any  # converters.deltas.LayerDelta (its matrix is dropped once factorised)
    bases: dict[str, LayerBasis]
    a_max: dict[str, Any]  # factorisation → A at the basis' full rank (rank × in)
    bias_delta: Any
    rank: int = 0

    def factors(self, method: str, rank: int) -> tuple[Any, Any]:
        basis = self.bases[method]
        k = min(rank, basis.max_rank)
        return self.a_max[method][:k].contiguous(), basis.basis[:, :k].float().contiguous()


def _noop(_phase: str, _done: int, _total: int) -> None:
    return None


class _Stopwatch:
    """Seconds per stage, for ``--json``'s ``timings_s``."""

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}
        self._clock = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.timings[name] = self.timings.get(name, 0.0) + now - self._clock
        self._clock = now


@dataclass
class _Loaded:
    """Stage 1: the adapter, what converts it, and the base model with the adapter attached."""

    adapter: Any  # converters.adapter_files.AdapterFiles
    coverage: Any  # converters.coverage.Coverage
    base: Any  # converters.models.BaseModel
    peft_model: Any
    device: str
    peft_version: str
    streamed: Any = None  # converters.streamed_model.StreamedModel: weights read block by block


@dataclass
class _Samples:
    """Stage 2: calibration inputs, the adapted layers' input moments, and the reference outputs."""

    source: str
    held_out: int
    eval_batches: list[Any]
    masks: list[Any]
    original: list[Any]  # outputs with the original adapter
    bare: list[Any]  # outputs of the bare base model
    fit_moments: dict[str, Any]
    eval_moments: dict[str, Any]
    streamed: Any = None  # converters.streamed.PassOne (then original/bare/moments are empty)


@dataclass(frozen=True)
class _RankPlan:
    """Stage 3's question: which rank each layer gets, before any layer is factorised."""

    fixed: int | None  # one rank for every layer (--rank, or the default)
    own: dict[str, int]  # a LoRA input's own per-module ranks
    cap: int  # --max-rank and the consumer's limit
    need: int | None  # the largest rank any stage will ask for (None: --energy, full rank)


def convert_adapter(
    source: str,
    out: Path | None,
    options: ConvertOptions,
    progress: ProgressFn | None = None,
    *,
    registry: Registry | None = None,
) -> ConvertResult:
    """Convert ``source`` into a LoRA folder at ``out``; raise :class:`ConversionRejected` on a failed check.

    ``registry`` replaces the installed one: the capability probe (:mod:`advisor.methods.behaviour`)
    passes one that lets every weight method through, to find out which ones really convert.

    Named stages: load → calibrate → plan ranks → factorise → (sweep) → build → write, measure, publish.
    """
    options.validate()
    progress = progress or _noop
    if out is None and not options.dry_run:
        raise UserError("pass an output folder (or --dry-run to only measure).")
    if out is not None and not options.dry_run:
        from advisor.paths import check_destination

        check_destination(out, overwrite=options.overwrite)  # before minutes of loading, not after
    watch = _Stopwatch()
    loaded = _load(source, options, progress, registry)
    watch.lap("load")
    plan = _plan_ranks(loaded.adapter, options)
    if loaded.streamed is not None:
        samples, layers = _stream_pass_one(loaded, options, plan, progress)
        watch.lap("calibrate, factorise (streamed)")
    else:
        samples = _calibrate(loaded, options, progress)
        watch.lap("calibration")
        layers = factorise_layers(
            loaded.peft_model,
            plan.need,
            _factorizations(options),
            samples.fit_moments,
            samples.eval_moments,
            ridge=options.ridge,
            device=loaded.device,
            progress=progress,
        )
        watch.lap("factorise")
    primary = _primary(_factorizations(options), layers)
    _assign_ranks(layers, primary, plan, options)
    result = _new_result(loaded, samples, layers, primary, out, options, plan)
    if options.sweep:
        if samples.streamed is not None:
            result.sweep = [
                _sweep_row(layers, rank, method, options, fidelity)
                for (rank, method), fidelity in samples.streamed.sweep.items()
            ]
        else:
            result.sweep = _run_sweep(
                loaded.peft_model, layers, options, samples.eval_batches, samples.original, samples.bare,
                samples.masks, loaded.base, progress,
            )  # fmt: skip
        watch.lap("sweep")
        if not plan.fixed and not options.energy:
            chosen, result.rank_choice = _rank_from_sweep(result.sweep, primary, _floor(options))
            for layer in layers:
                layer.rank = max(1, min(chosen, layer.bases[_layer_method(layer, primary)].max_rank, plan.cap))
    lora = _build_adapter(layers, primary, loaded.adapter, loaded.base, options)
    result.ranks = lora.ranks
    result.parameters = lora.parameter_count()
    if options.dry_run:
        result.notes.append("dry run: nothing written")
        return result
    assert out is not None
    _write_measure_publish(lora, loaded, samples, result, Path(out), options, primary, watch, progress)
    result.timings = watch.timings
    return result


def _load(source: str, options: ConvertOptions, progress: ProgressFn, registry: Registry | None = None) -> _Loaded:
    import torch

    from advisor.methods.registry import load_registry
    from advisor.torch_runtime import resolve_device
    from converters.adapter_files import open_adapter
    from converters.coverage import require_convertible
    from converters.models import attach_adapter, load_base_model

    registry = registry or load_registry()
    adapter = open_adapter(source, allow_pickle=options.allow_pickle, revision=options.revision)
    coverage = require_convertible(adapter.peft_type, registry)
    progress("loading base model", 0, 1)
    device = resolve_device(options.device)
    torch.manual_seed(0)
    streamed, base = _open_streamed(adapter, options, device) if options.stream is not False else (None, None)
    if streamed is not None:
        return _Loaded(adapter, coverage, base, streamed.peft_model, device, registry.peft_version, streamed)
    base_model = load_base_model(adapter, options.base_model, device=device)
    base_model.notes[:0] = base or []
    base = base_model
    return _Loaded(adapter, coverage, base, attach_adapter(base, adapter), device, registry.peft_version)


STREAM_MIN_BYTES = 1 << 30  # --stream's auto threshold: checkpoints this large are read block by block


def _checkpoint_bytes(folder: Path) -> int:
    from advisor.safetensors_headers import checkpoint_files

    return sum(path.stat().st_size for path in checkpoint_files(folder))


def _open_streamed(adapter: Any, options: ConvertOptions, device: str) -> tuple[Any, Any]:
    """The base model as a streamed model (and its BaseModel facts), or ``(None, notes)`` saying why not."""
    from converters.diffusion import find_component
    from converters.models import (
        BaseModel,
        adapter_module_paths,
        choose_class,
        load_tokenizer,
        local_model_folder,
        num_labels,
        read_base_config,
    )
    from converters.streamed_model import open_streamed

    name = options.base_model or adapter.base_model
    if not name or find_component(str(name), adapter) is not None:
        return None, []  # the whole-model loader says what is missing / handles Diffusers components
    config = read_base_config(name)
    folder = local_model_folder(name)
    if options.stream is None and _checkpoint_bytes(folder) < STREAM_MIN_BYTES:
        return None, []
    model_class = choose_class(adapter, name, config)
    streamed, why = open_streamed(
        folder, model_class, adapter.folder, num_labels(adapter), adapter_module_paths(adapter), device,
        adapter.peft_type, tuple(adapter.config.get("modules_to_save") or ()),
    )  # fmt: skip
    if streamed is None:
        return None, [f"loaded whole: {why}"]
    tokenizer, notes = load_tokenizer(name)
    blocks = len(streamed.blocks)
    notes.append(
        f"streamed one block at a time ({blocks} blocks of {streamed.blocks_path}); --no-stream loads it whole"
    )
    return streamed, BaseModel(None, tokenizer, str(name), model_class, config, device, notes)


def _calibrate(loaded: _Loaded, options: ConvertOptions, progress: ProgressFn) -> _Samples:
    """Run the fit and held-out samples through the adapted model, recording each adapted layer's inputs."""
    from converters import calibration as calib
    from converters.deltas import record_inputs
    from converters.models import encode, model_outputs

    base, peft_model = loaded.base, loaded.peft_model
    calibration = calib.read_calibration(options.calibration) if options.calibration else calib.builtin_set()
    fit_batches = encode(base, calibration.fit)
    eval_batches = encode(base, calibration.held_out, seed=10_000)
    progress("running calibration samples", 0, 1)
    with record_inputs(peft_model) as recorder:
        model_outputs(peft_model, fit_batches, recorder)
    fit_moments = recorder.moments
    with record_inputs(peft_model) as recorder:
        original = model_outputs(peft_model, eval_batches, recorder)
    with peft_model.disable_adapter():
        bare = model_outputs(peft_model, eval_batches)
    return _Samples(
        source="seeded random latents" if base.component is not None else calibration.source,
        held_out=len(calibration.held_out),
        eval_batches=eval_batches,
        masks=[batch["attention_mask"].cpu() for batch in eval_batches]
        if "attention_mask" in eval_batches[0]
        else None,
        original=original,
        bare=bare,
        fit_moments=fit_moments,
        eval_moments=recorder.moments,
    )


def _stream_pass_one(
    loaded: _Loaded, options: ConvertOptions, plan: _RankPlan, progress: ProgressFn
) -> tuple[_Samples, list[_Layer]]:
    """Calibration, factorisation and sweep, one block at a time (:mod:`converters.streamed`)."""
    from converters import calibration as calib
    from converters.models import encode
    from converters.streamed import capture, pass_one

    base = loaded.base
    calibration = calib.read_calibration(options.calibration) if options.calibration else calib.builtin_set()
    fit_batches = encode(base, calibration.fit)
    eval_batches = encode(base, calibration.held_out, seed=10_000)
    progress("running calibration samples", 0, 1)
    fit, held_out = capture(loaded.streamed, fit_batches), capture(loaded.streamed, eval_batches)
    first = pass_one(
        loaded.streamed, fit, held_out, plan.need, _factorizations(options), options,
        causal_lm=base.is_causal_lm, progress=progress,
    )  # fmt: skip
    samples = _Samples(
        source=calibration.source,
        held_out=len(calibration.held_out),
        eval_batches=eval_batches,
        masks=[],
        original=[],
        bare=[],
        fit_moments={},
        eval_moments={},
        streamed=first,
    )
    return samples, first.layers


# Consumers that give every module one LoRA rank (smaller ones are zero-padded up to it).
UNIFORM_RANK_TARGETS = frozenset({"vllm"})


def _plan_ranks(adapter: Any, options: ConvertOptions) -> _RankPlan:
    own = _source_lora_ranks(adapter) if not (options.rank or options.energy or options.sweep) else {}
    fixed = options.rank or (None if options.energy or options.sweep else DEFAULT_RANK)
    sweep_max = max(options.sweep) if options.sweep else 0
    cap = _rank_cap(options)
    # --energy keeps factors up to the largest rank it may pick: full rank, or the cap (--max-rank, vLLM's
    # 512) when there is one, so an all-linear adapter on a large model does not keep full-rank factors.
    energy_need = None if cap >= 1 << 30 else cap
    need = energy_need if options.energy else max(fixed or 0, sweep_max, *own.values(), 1)
    return _RankPlan(fixed=fixed, own=own, cap=cap, need=need)


def _assign_ranks(layers: list[_Layer], primary: str, plan: _RankPlan, options: ConvertOptions) -> None:
    """Each layer's rank from --energy, the LoRA input's own rank, or the fixed rank (0: the sweep decides).

    With --energy for a consumer that serves one rank for every module (vLLM), the rank is one for the
    whole model, chosen on the whole update's energy (:func:`uniform_rank_for_energy`).
    """
    from converters.factorize import uniform_rank_for_energy

    uniform = None
    if options.energy and options.target in UNIFORM_RANK_TARGETS:
        uniform = uniform_rank_for_energy(
            [layer.bases[_layer_method(layer, primary)] for layer in layers], options.energy
        )
    for layer in layers:
        basis = layer.bases[_layer_method(layer, primary)]
        if uniform is not None:
            rank = uniform
        elif options.energy:
            rank = basis.rank_for_energy(options.energy)
        elif plan.own:
            rank = plan.own.get(layer.delta.name, plan.fixed or DEFAULT_RANK)
        else:
            rank = plan.fixed or 0
        layer.rank = max(1, min(rank, basis.max_rank, plan.cap)) if rank else 0


def _new_result(
    loaded: _Loaded,
    samples: _Samples,
    layers: list[_Layer],
    primary: str,
    out: Path | None,
    options: ConvertOptions,
    plan: _RankPlan,
) -> ConvertResult:
    result = ConvertResult(
        source=loaded.adapter.origin,
        out=str(out) if out else "",
        peft_type=loaded.adapter.peft_type,
        source_method=loaded.coverage.method.display_name,
        target=options.target,
        base_model=loaded.base.name_or_path,
        factorization=primary,
        calibration=samples.source,
        layers=len(layers),
        routes=dict(Counter(layer.delta.route for layer in layers)),
        eval_samples=samples.held_out,
        notes=list(loaded.base.notes),
        rank_choice=_rank_choice_text(options, plan.own),
    )
    if any(layer.bias_delta is not None for layer in layers):
        dropped = "; dropped for vLLM (it rejects LoRA bias), which the fidelity figures include"
        result.notes.append(
            "the adapter also changes biases: carried as lora_B bias for PEFT/Diffusers"
            + (dropped if options.target == "vllm" else "")
        )
    return result


def _write_measure_publish(
    lora: Any,
    loaded: _Loaded,
    samples: _Samples,
    result: ConvertResult,
    out: Path,
    options: ConvertOptions,
    primary: str,
    watch: _Stopwatch,
    progress: ProgressFn,
) -> None:
    """Write into a staging folder, reload it with PEFT to measure fidelity, check it, then rename it into place."""
    from advisor.paths import publish, staging_folder
    from converters.consumers import base_info, check_lora
    from converters.lora_writer import write_adapter_files, write_diffusers_file
    from converters.model_card import render_card

    leaf = _leaf_names_suffice(loaded.peft_model, lora.ranks)
    loaded.peft_model = None  # free the adapted model before a fresh base model is loaded for the reload
    loaded.base.model = None
    with staging_folder(out, overwrite=options.overwrite) as staging:
        write_adapter_files(staging, lora, lora.config(leaf_names_suffice=leaf), card=None)
        if options.target == "diffusers":
            component = loaded.base.component
            write_diffusers_file(staging, lora, prefix=component.prefix if component else "transformer")
        watch.lap("write")
        progress("measuring fidelity (reloading with PEFT)", 0, 1)
        if samples.streamed is not None:
            result.fidelity = _streamed_reloaded_fidelity(loaded, staging, samples, progress)
        else:
            result.fidelity = _reloaded_fidelity(loaded.adapter, loaded.base, staging, samples, loaded.device)
        if result.fidelity.effect_size == 0:
            result.notes.append("the adapter does not change the model's outputs on these samples (untrained?)")
        watch.lap("fidelity")
        result.check = check_lora(staging, options.target, base_info(loaded.base.name_or_path), shown_as=out)
        display = loaded.coverage.method.display_name
        (staging / CARD_NAME).write_text(
            render_card(result.card_facts(_tool_version(), loaded.peft_version, display)), encoding="utf-8"
        )
        result.warnings += _fidelity_warnings(result, options, primary)
        reason = _rejection(result, options)
        if reason:
            result.rejected = reason
            raise ConversionRejected(result, reason)
        publish(staging, out)
        result.written = True
    watch.lap("publish")


def factorise_layers(
    peft_model: Any,
    rank: int | None,
    methods: list[str],
    fit_moments: dict[str, Any] | None = None,
    eval_moments: dict[str, Any] | None = None,
    *,
    ridge: float = DEFAULT_RIDGE,
    device: str = "cpu",
    progress: ProgressFn | None = None,
) -> list[_Layer]:
    """Read every adapted layer's ΔW and factorise it up to ``rank`` (``None``: full rank, exact SVD)."""
    from converters.deltas import layer_deltas, tuner_layers

    progress = progress or _noop
    total = len(tuner_layers(peft_model))
    layers: list[_Layer] = []
    for index, delta in enumerate(layer_deltas(peft_model)):
        progress("factorising layers", index, total)
        layers.append(factorise_delta(delta, rank, methods, fit_moments, eval_moments, ridge=ridge, device=device))
    progress("factorising layers", total, total)
    return layers


def factorise_delta(
    delta: Any,
    rank: int | None,
    methods: list[str],
    fit_moments: dict[str, Any] | None,
    eval_moments: dict[str, Any] | None,
    *,
    ridge: float = DEFAULT_RIDGE,
    device: str = "cpu",
) -> _Layer:
    """Factorise one layer's ΔW up to ``rank``; only the basis and ``A`` at that rank are kept, never
    the full ``ΔW``, so memory stays at the size of the LoRA being built.

    Layers without recorded inputs (embeddings, convolutions) fall back to plain SVD.
    """
    fit_moments, eval_moments = fit_moments or {}, eval_moments or {}
    full = min(delta.delta.shape)
    usable = [m for m in methods if m == "plain" or delta.name in fit_moments] or ["plain"]
    need = full if rank is None else min(rank, full)
    matrix = delta.delta.to(device)
    bases, a_max = {}, {}
    for method in usable:
        basis = layer_basis(
            matrix,
            need,
            method=method,
            fit=fit_moments.get(delta.name),
            held_out=eval_moments.get(delta.name),
            ridge=ridge,
            exact=True if rank is None else None,
        )
        bases[method] = basis
        a_max[method] = (basis.basis.T @ matrix.to(basis.basis.dtype)).float().cpu()
        basis.basis = basis.basis.cpu()
    delta.delta = None  # free the full update; A_max and the basis hold what we need
    return _Layer(delta=delta, bases=bases, a_max=a_max, bias_delta=delta.bias_delta)


def _factorizations(options: ConvertOptions) -> list[str]:
    if options.factorization == "plain":
        return ["plain"]
    if options.factorization == "calibrated" and not options.sweep:
        return ["calibrated"]
    return ["calibrated", "plain"] if options.sweep else ["calibrated"]


def _primary(wanted: list[str], layers: list[_Layer]) -> str:
    """The factorisation that is written: calibrated whenever any layer could be calibrated."""
    if "calibrated" in wanted and any("calibrated" in layer.bases for layer in layers):
        return "calibrated"
    return "plain"


def _layer_method(layer: _Layer, primary: str) -> str:
    return primary if primary in layer.bases else "plain"


def _rank_cap(options: ConvertOptions) -> int:
    from converters.consumer_facts import VLLM_MAX_LORA_RANKS

    cap = options.max_rank or 1 << 30
    if options.target == "vllm":
        cap = min(cap, max(VLLM_MAX_LORA_RANKS))
    return cap


def _floor(options: ConvertOptions) -> float:
    """The fidelity a chosen rank should reach: --min-fidelity when given, else the warning floor."""
    return options.min_fidelity if options.min_fidelity is not None else options.warn_below


def _rank_from_sweep(rows: list[SweepRow], method: str, floor: float) -> tuple[int, str]:
    """The smallest swept rank reaching ``floor`` (cheapest to serve); the largest, said so, when none does."""
    mine = sorted((row for row in rows if row.factorization == method), key=lambda row: row.rank)
    for row in mine:
        if row.fidelity.fidelity >= floor:
            return row.rank, (
                f"rank {row.rank} from the sweep: the smallest swept rank with fidelity ≥ {floor:g} "
                f"({row.fidelity.fidelity:.4f})"
            )
    best = max(mine, key=lambda row: row.fidelity.fidelity)
    return mine[-1].rank, (
        f"rank {mine[-1].rank} from the sweep: no swept rank reached fidelity {floor:g} "
        f"(best {best.fidelity.fidelity:.4f} at rank {best.rank}), so the largest was taken"
    )


def _rank_choice_text(options: ConvertOptions, own_ranks: dict[str, int]) -> str:
    if options.energy and options.target in UNIFORM_RANK_TARGETS:
        return (
            f"one rank for every module ({options.target} serves one rank): the smallest keeping "
            f"{options.energy:g} of the whole update's energy (--energy)"
        )
    if options.energy:
        return f"per layer: the smallest rank keeping {options.energy:g} of each update's energy (--energy)"
    if own_ranks:
        values = sorted(set(own_ranks.values()))
        shown = str(values[0]) if len(values) == 1 else f"{values[0]}–{values[-1]}"
        return f"the source LoRA's own rank ({shown}): its update has no more; --rank or --sweep to change it"
    if options.rank:
        return f"rank {options.rank} (--rank)"
    return "" if options.sweep else f"rank {DEFAULT_RANK} (the default; --sweep 16,32,64,128 measures others)"


def _source_lora_ranks(adapter: Any) -> dict[str, int]:
    """A plain LoRA's per-module ranks from its tensor shapes: converting it at its own rank is exact.

    DoRA is left out: its magnitude rescales every column of ``W + BA``, so the merged update is not of
    rank r, and the default rank (measured, like every other method) applies.
    """
    if adapter.peft_type != "LORA" or adapter.config.get("use_dora"):
        return {}
    from safetensors import safe_open

    ranks: dict[str, int] = {}
    with safe_open(str(adapter.weights), framework="pt") as handle:
        for key in handle.keys():
            if "lora_magnitude_vector" in key:
                return {}
            for suffix in (".lora_A.weight", ".lora_embedding_A"):
                if key.endswith(suffix):
                    path = key.removeprefix(PEFT_PREFIX).removesuffix(suffix)
                    ranks[path] = int(handle.get_slice(key).get_shape()[0])
    return ranks


def _fidelity_warnings(result: ConvertResult, options: ConvertOptions, method: str) -> list[str]:
    """A written LoRA that keeps too little of the adapter's effect, and what rank would do better."""
    fid = result.fidelity
    floor = options.warn_below
    if fid is None or fid.effect_size == 0 or fid.fidelity >= floor:
        return []
    text = (
        f"fidelity {fid.fidelity:.2f} is below {floor:g}: this LoRA keeps only about {max(fid.fidelity, 0):.0%} of "
        "the adapter's effect on the held-out samples"
    )
    current = max(result.ranks.values()) if result.ranks else 0
    better = sorted(
        (row for row in result.sweep if row.factorization == method and row.fidelity.fidelity >= floor),
        key=lambda row: row.rank,
    )
    if better and better[0].rank != current:
        row = better[0]
        return [f"{text}; rank {row.rank} reached {row.fidelity.fidelity:.4f} in the sweep: use --rank {row.rank}"]
    if result.sweep:
        largest = max(row.rank for row in result.sweep)
        return [f"{text}; no swept rank reaches {floor:g}: sweep larger ranks (--sweep {largest * 2},{largest * 4})"]
    return [
        f"{text}; measure larger ranks with --sweep {current},{current * 2},{current * 4}, or pass --calibration "
        "data like your real inputs"
    ]


def sweep_plan(layers: list[_Layer], options: ConvertOptions) -> list[tuple[int, str]]:
    """Every (rank, factorisation) the sweep measures, calibrated first."""
    methods = sorted({m for layer in layers for m in layer.bases}, key=lambda m: m != "calibrated")
    return [(r, m) for r in sorted(options.sweep) for m in methods]


def sweep_update(layer: _Layer, rank: int, method: str, options: ConvertOptions) -> tuple[Any, Any]:
    """The weight (and bias, unless the target drops biases) change a swept LoRA makes to ``layer``."""
    m = method if method in layer.bases else "plain"
    k = max(1, min(rank, layer.bases[m].max_rank, _rank_cap(options)))
    a, b = layer.factors(m, k)
    bias = layer.bias_delta if options.target not in UNIFORM_RANK_TARGETS else None
    return layer.delta.weight_update(a, b), bias


def _sweep_row(layers: list[_Layer], rank: int, method: str, options: ConvertOptions, fidelity: Any) -> SweepRow:
    """One sweep row: the measured fidelity and the weight-space figures, from the factors alone."""
    params = 0
    energy_num = energy_den = weight_num = out_num = out_den = 0.0
    for layer in layers:
        m = method if method in layer.bases else "plain"
        basis = layer.bases[m]
        k = max(1, min(rank, basis.max_rank, _rank_cap(options)))
        params += k * (basis.basis.shape[0] + layer.a_max[m].shape[1])  # B (out × k) and A (k × in)
        energy_num += basis.retained_energy(k) * basis.weight_norm2
        weight_num += basis.weight_error(k) ** 2 * basis.weight_norm2
        energy_den += basis.weight_norm2
        err = basis.output_error(k)
        if err is not None and basis.eval_norm2:
            out_num += err**2 * basis.eval_norm2
            out_den += basis.eval_norm2
    return SweepRow(
        rank=rank,
        factorization=method,
        parameters=params,
        retained_energy=energy_num / energy_den if energy_den else 1.0,
        weight_error=math.sqrt(weight_num / energy_den) if energy_den else 0.0,
        layer_output_error=math.sqrt(out_num / out_den) if out_den else None,
        fidelity=fidelity,
    )


@contextlib.contextmanager
def applied(modules: dict[str, Any], layers: list[_Layer], rank: int, method: str, options: ConvertOptions) -> Any:
    """Add a swept LoRA's ``BA`` (and bias) to the base weights in place; restore them exactly afterwards."""
    import torch

    saved = {}
    try:
        with torch.no_grad():
            for layer in layers:
                module = modules[layer.delta.name]
                saved[layer.delta.name] = (module.weight.detach().clone(), _bias_copy(module))
                update, bias = sweep_update(layer, rank, method, options)
                module.weight.add_(update.to(module.weight.device, module.weight.dtype))
                if bias is not None:
                    module.bias.add_(bias.to(module.bias.device, module.bias.dtype))
        yield
    finally:
        with torch.no_grad():
            for name, (weight, bias) in saved.items():
                modules[name].weight.copy_(weight)
                if bias is not None:
                    modules[name].bias.copy_(bias)


def _run_sweep(
    peft_model: Any,
    layers: list[_Layer],
    options: ConvertOptions,
    eval_batches: list[Any],
    original: list[Any],
    bare: list[Any],
    masks: list[Any],
    base: Any,
    progress: ProgressFn,
) -> list[SweepRow]:
    """Measure every (rank, factorisation) by applying ``BA`` to the base weights in place."""
    from converters.deltas import tuner_layers, tuner_layers_disabled
    from converters.fidelity import compare
    from converters.models import model_outputs

    modules = {name.removeprefix(PEFT_PREFIX): m.get_base_layer() for name, m in tuner_layers(peft_model)}
    rows = []
    plan = sweep_plan(layers, options)
    for step, (rank, method) in enumerate(plan):
        progress("rank sweep", step, len(plan))
        with applied(modules, layers, rank, method, options), tuner_layers_disabled(peft_model):
            approx = model_outputs(peft_model, eval_batches)
        fidelity = compare(approx, original, bare, masks, causal_lm=base.is_causal_lm)
        rows.append(_sweep_row(layers, rank, method, options, fidelity))
    progress("rank sweep", len(plan), len(plan))
    return rows


def _bias_copy(module: Any) -> Any:
    import torch

    bias = getattr(module, "bias", None)
    return bias.detach().clone() if isinstance(bias, torch.Tensor) else None


def _build_adapter(layers: list[_Layer], primary: str, adapter: Any, base: Any, options: ConvertOptions) -> Any:
    from converters.lora_writer import LoraAdapter, LoraModule

    modules = []
    for layer in layers:
        a, b = layer.factors(_layer_method(layer, primary), layer.rank)
        tensors = layer.delta.lora_tensors(a, b)
        bias = layer.bias_delta.float() if layer.bias_delta is not None else None
        modules.append(LoraModule(layer.delta.name, layer.delta.kind, tensors, int(a.shape[0]), bias))
    extra = _modules_to_save_tensors(adapter, {layer.delta.name for layer in layers})
    lora = LoraAdapter(
        modules=modules,
        base_model=base.name_or_path,
        task_type=adapter.config.get("task_type"),
        fan_in_fan_out=any(layer.delta.kind == "conv1d" for layer in layers),
        modules_to_save=adapter.config.get("modules_to_save") or None,
        extra_tensors=extra,
    )
    if options.target in UNIFORM_RANK_TARGETS:
        lora.pad_to_uniform_rank()
        lora.drop_bias()
    return lora


def _modules_to_save_tensors(adapter: Any, layer_names: set[str]) -> dict[str, Any]:
    """Tensors of fully trained modules (``modules_to_save``, e.g. a classifier head): copied verbatim."""
    from safetensors import safe_open

    wanted = set(adapter.config.get("modules_to_save") or [])
    if not wanted:
        return {}
    extra = {}
    with safe_open(str(adapter.weights), framework="pt") as handle:
        for key in handle.keys():
            parts = key.removeprefix(PEFT_PREFIX).split(".")
            if key.startswith(PEFT_PREFIX) and wanted & set(parts):
                extra[key] = handle.get_tensor(key)
    return extra


def _leaf_names_suffice(peft_model: Any, ranks: dict[str, int]) -> bool:
    """True when the leaf names (q_proj, ...) select exactly the converted modules in the base model."""
    from converters.deltas import tuner_layers

    layers = [name.removeprefix(PEFT_PREFIX) for name, _ in tuner_layers(peft_model)]
    leaves = {name.rsplit(".", 1)[-1] for name in ranks}
    names = set()
    for name, _ in peft_model.named_modules():
        stripped = name.removeprefix(PEFT_PREFIX)
        inside_adapter_layer = any(stripped.startswith(layer + ".") for layer in layers)
        if stripped.rsplit(".", 1)[-1] in leaves and not inside_adapter_layer:
            names.add(stripped)
    return names == set(ranks)


def _reloaded_fidelity(adapter: Any, base: Any, folder: Path, samples: _Samples, device: str) -> Any:
    """Load the written folder with PEFT on a freshly loaded base model and compare outputs."""
    from peft import PeftModel

    from advisor.torch_runtime import quiet_hf
    from converters.fidelity import compare
    from converters.models import model_outputs, reload_base

    fresh = reload_base(base, adapter, device=device)
    with quiet_hf():  # a wrong or missing tensor shows up below as lost fidelity, not as a warning
        lora = PeftModel.from_pretrained(fresh, str(folder), is_trainable=False).eval()
    converted = model_outputs(lora, samples.eval_batches)
    return compare(converted, samples.original, samples.bare, samples.masks, causal_lm=base.is_causal_lm)


def _streamed_reloaded_fidelity(loaded: _Loaded, folder: Path, samples: _Samples, progress: ProgressFn) -> Any:
    """Pass 2 of the streamed path: PEFT loads the written folder on a fresh meta model, block by block."""
    from converters.adapter_files import open_adapter
    from converters.models import adapter_module_paths, num_labels
    from converters.streamed import reloaded_fidelity
    from converters.streamed_model import open_streamed

    first = loaded.streamed
    labels = num_labels(loaded.adapter)

    def reopen(written: Path) -> Any:
        lora = open_adapter(str(written))
        model, why = open_streamed(
            first.checkpoint.folder, loaded.base.model_class, written, labels, adapter_module_paths(lora),
            loaded.device, "LORA", tuple(lora.config.get("modules_to_save") or ()),
        )  # fmt: skip
        if model is None:
            raise RuntimeError(f"the written LoRA cannot be streamed back ({why})")
        return model

    return reloaded_fidelity(
        folder, first, samples.streamed, reopen, causal_lm=loaded.base.is_causal_lm, progress=progress
    )


def _rejection(result: ConvertResult, options: ConvertOptions) -> str | None:
    fid = result.fidelity
    if options.min_fidelity is not None and fid is not None and fid.fidelity < options.min_fidelity:
        return (
            f"fidelity {fid.fidelity:.4f} is below --min-fidelity {options.min_fidelity}; nothing written "
            "(raise --rank, use --energy, or pass --calibration data like your real inputs)"
        )
    return None


def _tool_version() -> str:
    try:
        from importlib.metadata import version

        return version("peft-advisor")
    except Exception:
        return "dev"
