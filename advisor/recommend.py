"""Rank PEFT methods for a VRAM budget and a task, from the stored benchmark runs.

Honest by construction: only runs whose *measured* peak memory fits the budget are ranked,
the score-vs-memory Pareto frontier is marked, runs whose score is statistically
indistinguishable from the best are flagged (the rule is part of the result), and plain LoRA
and the best LoRA variant are always located, even when they are not in the table.

This module imports neither torch nor peft: it runs on every ``peft-advise`` call.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from advisor.benchmarks.definitions import BENCHMARKS, BenchmarkDef, MetricDef
from advisor.benchmarks.records import GIB, BenchmarkRun, BenchmarkSetup, Snapshot
from advisor.errors import UserError
from advisor.memory.model import Breakdown, MemoryRequest, project
from advisor.methods.registry import MethodInfo, Registry
from advisor.vocabulary import CONSUMER_TARGETS, OBJECTIVES, QUANTIZATION, REQUIREMENTS, TaskChoice, resolve_task

Z_95 = 1.96  # two-sided 95% for the difference of two independent scores
# A row scoring under this share of the best row's score did not really learn the task (TinyLoRA at 1.2%
# GSM8K next to Lily's 52.6%): said in the row, because --objective memory/speed/size can still rank it #1.
FAR_BELOW_SHARE = 0.5


@dataclass(frozen=True)
class Query:
    vram_gib: float
    task: str
    objective: str = "score"
    metric: str | None = None
    require: tuple[str, ...] = ()
    top: int | None = None
    all_variants: bool = False
    memory: MemoryRequest | None = None  # predict memory for the user's model/setup instead of the measured


@dataclass(frozen=True)
class Capabilities:
    """What a run's adapter can do as trained: merge, convert, be served."""

    can_merge: bool
    lora_convertible: bool
    vllm_servable: bool
    diffusers_loadable: bool
    quantized_base: bool
    # consumer -> "native" (as trained), "convert" (through our LoRA converter) or None
    serving: dict[str, str | None] = field(default_factory=dict, compare=False)

    def satisfies(self, requirement: str) -> bool:
        return bool(getattr(self, REQUIREMENTS[requirement]))


@dataclass(frozen=True)
class Row:
    rank: int
    run: BenchmarkRun
    method: MethodInfo
    score: float
    score_se: float | None
    pareto: bool
    within_noise: bool
    gap_to_best: float  # best score minus this score, in the metric's "better" direction (≥ 0)
    caps: Capabilities
    far_below: bool = False  # under FAR_BELOW_SHARE of the best score (higher-is-better metrics only)


@dataclass(frozen=True)
class LoraMark:
    """Where one LoRA run stands relative to the best row."""

    label: str  # "plain LoRA" / "best LoRA variant"
    run: BenchmarkRun
    score: float
    fits: bool
    rank: int | None  # its position in the table, when it is a row
    gain_of_best: float | None  # best row's score minus this score (≥ 0 means the best row is better)
    within_noise: bool | None


@dataclass(frozen=True)
class LoraStanding:
    plain: LoraMark | None
    best_variant: LoraMark | None


@dataclass(frozen=True)
class NothingFits:
    smallest: BenchmarkRun
    shortfall_gib: float


@dataclass(frozen=True)
class Recommendation:
    query: Query
    task: TaskChoice
    benchmark: BenchmarkDef
    setup: BenchmarkSetup
    metric: MetricDef
    rows: tuple[Row, ...]  # the rows to show (--top applied)
    ranked: tuple[Row, ...]  # every ranked row; ranks and LoRA positions refer to these
    best: Row | None  # the best-scoring row, whatever the objective or --top
    lora: LoraStanding
    noise_rule: str
    excluded: dict[str, int]
    nothing_fits: NothingFits | None
    snapshot_source: dict
    notes: tuple[str, ...] = field(default=())
    memory: MemoryRequest | None = None
    breakdowns: dict[str, Breakdown] = field(default_factory=dict)  # run id -> predicted terms

    @property
    def total_rows(self) -> int:
        return len(self.ranked)


# --------------------------------------------------------------------------- building blocks


def serving(run: BenchmarkRun, method: MethodInfo, bench: BenchmarkDef) -> dict[str, str | None]:
    """How each consumer serves this run's adapter: "native", "convert" (our converter) or None.

    vLLM serves LLMs and Diffusers image models only; a LoRA run whose config vLLM refuses (DoRA,
    bias, ...) is served after our converter normalises it to plain LoRA.
    """
    served = {consumer: method.serving(consumer, run.peft_config) for consumer in CONSUMER_TARGETS}
    if bench.domain != "llm":
        served["vllm"] = None
    if bench.domain != "image":
        served["diffusers"] = None
    return served


def capabilities(run: BenchmarkRun, method: MethodInfo, bench: BenchmarkDef) -> Capabilities:
    served = serving(run, method, bench)
    return Capabilities(
        can_merge=method.can_merge,
        lora_convertible=method.lora_convertible and method.kind != "full",
        vllm_servable=served["vllm"] is not None,
        diffusers_loadable=served["diffusers"] is not None,
        quantized_base=method.quantized_base,
        serving=served,
    )


def is_far_below(metric: MetricDef, score: float, best: float | None) -> bool:
    """Under half the best score, for metrics where higher is better and scores are positive (accuracy,
    similarity); lower-is-better metrics such as forgetting have no such scale and are never marked."""
    return bool(metric.higher_is_better and best is not None and best > 0 and score < FAR_BELOW_SHARE * best)


def _oriented(metric: MetricDef, value: float) -> float:
    """Higher is better after orientation, whatever the metric's direction."""
    return value if metric.higher_is_better else -value


def score_se(run: BenchmarkRun, metric: MetricDef, setup: BenchmarkSetup) -> float | None:
    noise = metric.noise
    value = run.metrics.get(metric.key)
    if noise is None or value is None:
        return None
    if noise.kind == "binomial" and noise.n:
        p = min(max(value, 0.0), 1.0)
        return math.sqrt(max(p * (1 - p), 0.25 / noise.n) / noise.n)  # floor avoids SE 0 at p∈{0,1}
    return setup.noise_se.get(metric.key)


def noise_rule(metric: MetricDef, setup: BenchmarkSetup) -> str:
    noise = metric.noise
    if noise is None:
        return f"no noise model for {metric.short}: within_noise is false for every row"
    if noise.kind == "binomial":
        return (
            f"within noise: best − score ≤ {Z_95}·√(SE_best² + SE²), SE = √(p(1−p)/n), n = {noise.n} "
            "test items (binomial, 95%)"
        )
    se = setup.noise_se.get(metric.key)
    shown = f"{se:.3f}" if se is not None else "unavailable"
    return (
        f"within noise: best − score ≤ {Z_95}·√2·SE, SE = {shown} (spread of the last "
        f"{noise.last_k} validation scores scaled to the test-set size, median over runs)"
    )


def pareto_flags(points: Sequence[tuple[float, float]]) -> list[bool]:
    """Non-dominated points for (oriented score ↑, memory ↓)."""
    flags = []
    for i, (score_i, mem_i) in enumerate(points):
        dominated = any(
            s >= score_i and m <= mem_i and (s > score_i or m < mem_i) for j, (s, m) in enumerate(points) if j != i
        )
        flags.append(not dominated)
    return flags


def pareto_layers(points: Sequence[tuple[float, float]]) -> list[int]:
    """Non-dominated sorting: layer 0 is the frontier, layer 1 the frontier of the rest, ..."""
    layers = [-1] * len(points)
    remaining = list(range(len(points)))
    layer = 0
    while remaining:
        flags = pareto_flags([points[i] for i in remaining])
        front = [idx for idx, flag in zip(remaining, flags, strict=True) if flag]
        for idx in front:
            layers[idx] = layer
        remaining = [idx for idx in remaining if layers[idx] == -1]
        layer += 1
    return layers


def _sort_key(objective: str, metric: MetricDef, layer_of: dict[str, int]) -> Callable[[BenchmarkRun], tuple]:
    def key(run: BenchmarkRun) -> tuple:
        score = -_oriented(metric, run.metrics[metric.key])  # type: ignore[arg-type]
        inf = math.inf
        if objective == "memory":
            return (run.peak_memory_bytes, score)
        if objective == "speed":
            return (run.train_time_s if run.train_time_s is not None else inf, score)
        if objective == "size":
            return (run.checkpoint_bytes if run.checkpoint_bytes is not None else inf, score)
        if objective == "balanced":
            return (layer_of[run.id], score, run.peak_memory_bytes)
        return (score, run.peak_memory_bytes)

    return key


def _validate(query: Query, bench: BenchmarkDef) -> None:
    if not (query.vram_gib > 0 and math.isfinite(query.vram_gib)):
        raise UserError(f"--vram must be a positive number of GiB, got {query.vram_gib}")
    if query.objective not in OBJECTIVES:
        raise UserError(f"unknown objective {query.objective!r}; choose one of: {', '.join(OBJECTIVES)}")
    for req in query.require:
        if req not in REQUIREMENTS:
            raise UserError(f"unknown requirement {req!r}; choose from: {', '.join(REQUIREMENTS)}")
    if "vllm" in query.require and bench.domain != "llm":
        raise UserError("vLLM does not serve image-generation models; for image tasks use --require diffusers")
    if "diffusers" in query.require and bench.domain != "image":
        raise UserError("Diffusers serves image models only; for LLM tasks use --require vllm")
    if query.top is not None and query.top < 1:
        raise UserError(f"--top must be at least 1, got {query.top}")


def _lora_standing(
    candidates: list[BenchmarkRun],
    fitting_ids: set[str],
    rows: list[Row],
    best: Row | None,
    metric: MetricDef,
    setup: BenchmarkSetup,
) -> LoraStanding:
    """Locate plain LoRA and the best LoRA variant among runs meeting the requirements.

    Budget does not exclude them here: a user should learn that LoRA needs more memory than
    they have, not just see it vanish.
    """
    row_rank = {r.run.id: r.rank for r in rows}

    def mark(label: str, pool: list[BenchmarkRun]) -> LoraMark | None:
        if not pool:
            return None
        fitting = [r for r in pool if r.id in fitting_ids]
        chosen = max(fitting or pool, key=lambda r: _oriented(metric, r.metrics[metric.key]))  # type: ignore[arg-type]
        score = chosen.metrics[metric.key]
        assert score is not None
        gain = within = None
        if best is not None:
            gain = _oriented(metric, best.score) - _oriented(metric, score)
            se = score_se(chosen, metric, setup)
            if se is not None and best.score_se is not None:
                within = gain <= Z_95 * math.hypot(best.score_se, se)
        return LoraMark(label, chosen, score, chosen.id in fitting_ids, row_rank.get(chosen.id), gain, within)

    lora_runs = [r for r in candidates if r.peft_type == "LORA"]
    return LoraStanding(
        plain=mark("plain LoRA", [r for r in lora_runs if not r.variant_flags]),
        best_variant=mark("best LoRA variant", [r for r in lora_runs if r.variant_flags]),
    )


# --------------------------------------------------------------------------- entry point


@dataclass
class _Candidates:
    """Stage 1: the benchmark's runs (memory predicted when asked), filtered by requirements and budget."""

    runs: list[BenchmarkRun]  # meeting the requirements, with a score
    fitting: list[BenchmarkRun]  # ... and within the budget
    methods: dict[str, MethodInfo]  # run id -> its registry entry
    caps: dict[str, Capabilities]
    excluded: dict[str, int]
    breakdowns: dict[str, Breakdown]


def recommend(query: Query, snapshot: Snapshot, registry: Registry) -> Recommendation:
    """Named stages: candidates (filter, predict) → rows (order, frontier, noise) → notes."""
    task = resolve_task(query.task)
    bench = BENCHMARKS[task.benchmark]
    _validate(query, bench)
    metric = bench.metric(query.metric)
    setup = snapshot.setups.get(bench.key)
    runs = snapshot.runs_for(bench.key)
    if setup is None or not runs:
        raise UserError(f"the benchmark snapshot has no {bench.key} runs; run `peft-advise refresh-benchmarks`")
    pool = _candidates(query, list(runs), registry, bench, metric)
    nothing_fits = None
    if not pool.fitting:
        smallest = min(pool.runs, key=lambda r: r.peak_memory_bytes)
        nothing_fits = NothingFits(smallest, smallest.peak_memory_gib - query.vram_gib)
    rows = _rows(query, pool, metric, setup)
    best = max(rows, key=lambda row: _oriented(metric, row.score), default=None)
    lora = _lora_standing(pool.runs, {r.id for r in pool.fitting}, rows, best, metric, setup)
    shown = rows[: query.top] if query.top else rows
    return Recommendation(
        query=query,
        task=task,
        benchmark=bench,
        setup=setup,
        metric=metric,
        rows=tuple(shown),
        ranked=tuple(rows),
        best=best,
        lora=lora,
        noise_rule=noise_rule(metric, setup),
        excluded=pool.excluded,
        nothing_fits=nothing_fits,
        snapshot_source=dict(snapshot.source, file=snapshot.origin),
        notes=tuple(_notes(query, task, metric, shown, best, pool.excluded)),
        memory=query.memory,
        breakdowns=pool.breakdowns,
    )


def _candidates(
    query: Query, runs: list[BenchmarkRun], registry: Registry, bench: BenchmarkDef, metric: MetricDef
) -> _Candidates:
    methods = {r.id: registry.resolve(r.method) for r in runs}
    breakdowns: dict[str, Breakdown] = {}
    if query.memory is not None:
        image_model = query.memory.shape.is_denoiser
        if image_model != (bench.domain == "image"):
            model = query.memory.shape.name
            raise UserError(
                f"{model} is an image model; pass --task image"
                if image_model
                else f"--task {query.task} ranks {bench.domain} runs, which the memory model predicts for "
                f"{'diffusion models' if bench.domain == 'image' else 'language models'}; {model} is not one"
            )
        runs, breakdowns = project(runs, query.memory)
    caps = {r.id: capabilities(r, methods[r.id], bench) for r in runs}
    excluded = {"requirements": 0, "no_metric": 0, "over_budget": 0, "quantization": 0}
    quant = query.memory.setup.quant if query.memory is not None else "none"
    kept = []
    for run in runs:
        if quant != "none" and not _trains_on_quantized(methods[run.id], quant):
            excluded["quantization"] += 1
        elif not all(caps[run.id].satisfies(req) for req in query.require):
            excluded["requirements"] += 1
        elif run.metrics.get(metric.key) is None:
            excluded["no_metric"] += 1
        else:
            kept.append(run)
    if not kept:
        raise UserError(
            f"no {bench.key} run meets --require {','.join(query.require)}; drop a requirement or pick another task"
        )
    fitting = [r for r in kept if r.peak_memory_bytes <= query.vram_gib * GIB]
    excluded["over_budget"] = len(kept) - len(fitting)
    return _Candidates(kept, fitting, methods, caps, excluded, breakdowns)


def _rows(query: Query, pool: _Candidates, metric: MetricDef, setup: BenchmarkSetup) -> list[Row]:
    """The fitting runs (best per method unless --all-variants) in the objective's order, each with its
    frontier flag, noise verdict against the best row and far-below mark."""

    def score_of(run: BenchmarkRun) -> float:
        return run.metrics[metric.key]  # type: ignore[return-value]  # _candidates kept scored runs only

    fitting = pool.fitting
    points = [(_oriented(metric, score_of(r)), float(r.peak_memory_bytes)) for r in fitting]
    layer_of = {r.id: layer for r, layer in zip(fitting, pareto_layers(points), strict=True)}
    key = _sort_key(query.objective, metric, layer_of)
    if query.all_variants:
        chosen = list(fitting)
    else:
        best_per_method: dict[str, BenchmarkRun] = {}
        for run in sorted(fitting, key=key):
            best_per_method.setdefault(run.method, run)
        chosen = list(best_per_method.values())
    chosen.sort(key=key)
    frontier = pareto_flags([(_oriented(metric, score_of(r)), float(r.peak_memory_bytes)) for r in chosen])
    best_run = max(chosen, key=lambda r: _oriented(metric, score_of(r)), default=None)
    best_score = score_of(best_run) if best_run else None
    best_se = score_se(best_run, metric, setup) if best_run else None
    rows: list[Row] = []
    for position, (run, on_front) in enumerate(zip(chosen, frontier, strict=True), start=1):
        score = score_of(run)
        se = score_se(run, metric, setup)
        gap = (_oriented(metric, best_score) if best_score is not None else 0.0) - _oriented(metric, score)
        if metric.noise is None:
            within = False  # no noise model: the rule says no row is flagged, the best one included
        else:
            within = run is best_run or (
                se is not None and best_se is not None and gap <= Z_95 * math.hypot(best_se, se)
            )
        far = is_far_below(metric, score, best_score)
        rows.append(Row(position, run, pool.methods[run.id], score, se, on_front, within, gap, pool.caps[run.id], far))
    return rows


def _notes(
    query: Query,
    task: TaskChoice,
    metric: MetricDef,
    shown: list[Row],
    best: Row | None,
    excluded: dict[str, int],
) -> list[str]:
    """What the table alone would let a reader get wrong: stand-in tasks, far-below rows, predictions."""
    notes = [task.note] if task.note else []
    far = [row for row in shown if row.far_below]
    if far and best is not None and query.objective != "score":  # by score they sit at the bottom anyway
        order = OBJECTIVES[query.objective].format(metric="score", direction="higher is better")
        notes.append(
            f"{len(far)} row(s) shown score under {FAR_BELOW_SHARE:.0%} of the best row's {best.score:.4f} "
            f"({best.method.display_name}) and are marked 'far below': e.g. #{far[0].rank} "
            f"{far[0].method.display_name} at {far[0].score:.4f}, placed there because rows are ranked {order}"
        )
    if query.memory is not None:
        request = query.memory
        peak = request.setup.mode == "peak"
        what = "every sequence at --seq-len (the worst step)" if peak else "a 99th-percentile step"
        notes.append(
            f"memory figures are PREDICTIONS for {request.describe()}: {what}, by the memory model "
            f"calibrated on each run's measured {'peak' if peak else '99th-percentile'} "
            "reserved memory (--explain shows the terms); the CUDA context adds ~0.3–0.5 GiB on top"
        )
        if request.model_given:
            notes.append(
                f"trainable parameters and checkpoint size are scaled to {request.shape.name} (layers × widths); "
                "train minutes stay the benchmark's own (its model on its GPU), for comparing methods only"
            )
        if request.adapter is not None:
            adapter = request.adapter
            slower = (
                " (PEFT built it on the meta device: torch, transformers and peft were imported, a few seconds)"
                if adapter.counted_by.startswith("PEFT")
                else ""
            )
            notes.append(
                f"your adapter ({adapter.description}, {adapter.trainable:,} trainable) replaces the stored runs' "
                f"count on its method's rows{slower}"
            )
        if excluded["quantization"]:
            notes.append(
                f"{excluded['quantization']} run(s) left out: their method cannot train on a "
                f"{QUANTIZATION[request.setup.quant].label.format(dtype=request.setup.compute_dtype)} "
                "(full fine-tuning, or PEFT has no layers for that quantisation backend)"
            )
    elif metric.key == "test accuracy":
        notes.append(
            "peak memory is PyTorch's peak reserved memory over the whole run, including evaluation "
            "(generation at batch 50); the CUDA context adds ~0.3–0.5 GiB on top"
        )
    return notes


def _trains_on_quantized(method: MethodInfo, quant: str) -> bool:
    """Prompt methods leave the layers alone; weight methods need PEFT layers for that quantisation backend
    (bitsandbytes 4/8-bit, GPTQ, AWQ: the registry reads them from PEFT's source); full FT cannot."""
    if method.kind == "full":
        return False
    backend = QUANTIZATION[quant].backend
    return method.kind == "prompt" or backend in method.quantization
