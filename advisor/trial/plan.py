"""Which benchmark runs a trial trains: the recommender's top K, or the methods the user names.

A trial is a second opinion on the recommender, so ``auto`` asks it for the top K methods that
fit the budget and always adds plain LoRA, the habit the user would otherwise fall back on.
A named method (``oft``, or ``lora:rank64-rslora`` for one variant) takes its best-scoring run
that fits the budget, so its rank, learning rate and modules are the ones PEFT's own benchmark
tuned. Nothing here imports torch: the plan is made (and printed) before any model loads.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from advisor.benchmarks.records import GIB, BenchmarkRun, Snapshot
from advisor.errors import UserError
from advisor.memory.model import MemoryRequest
from advisor.methods.registry import Registry
from advisor.recommend import Query, recommend
from advisor.vocabulary import resolve_task

DEFAULT_TOP = 2  # with plain LoRA that makes the blog's "two or three methods"


@dataclass(frozen=True)
class PlannedRun:
    method: str  # registry name
    run: BenchmarkRun
    why: str  # "recommender #1", "baseline (plain LoRA)", "named"
    key: str = ""  # the name in the results file and of the adapter folder: the method, or method-variant

    @property
    def name(self) -> str:
        return self.key or self.method


@dataclass(frozen=True)
class TrialPlan:
    task: str
    benchmark: str
    vram_gib: float | None
    runs: tuple[PlannedRun, ...]
    notes: tuple[str, ...]
    predicted_bytes: dict[str, float] = field(default_factory=dict)  # run id -> the memory model's figure


def _budget_bytes(vram_gib: float | None) -> float:
    return math.inf if vram_gib is None else vram_gib * GIB


def _score(run: BenchmarkRun, metric_key: str, higher: bool) -> float:
    value = run.metrics.get(metric_key)
    if value is None:
        return -math.inf
    return value if higher else -value


def _named_run(
    name: str,
    snapshot: Snapshot,
    registry: Registry,
    benchmark: str,
    metric_key: str,
    higher: bool,
    vram: float | None,
    memory_of: dict[str, float],
) -> tuple[str, BenchmarkRun, str]:
    from advisor.methods.variants import split_method_spec

    method_name, variant = split_method_spec(name)
    method = registry.resolve(method_name)
    if method.kind == "full":
        raise UserError("full fine-tuning has no adapter to trial; name PEFT methods, e.g. --candidates lora,oft")
    runs = [r for r in snapshot.runs_for(benchmark) if r.method == method.name]
    if not runs:
        stored = sorted({r.method for r in snapshot.runs_for(benchmark) if r.peft_type})
        raise UserError(
            f"{method.display_name} has no stored {benchmark} run to take a config from; "
            f"methods with one: {', '.join(stored)}"
        )
    if variant:
        chosen = next((r for r in runs if r.variant == variant), None)
        if chosen is None:
            raise UserError(
                f"{method.name} has no run {variant!r} in {benchmark}; its runs: {', '.join(r.variant for r in runs)}"
            )
        return method.name, chosen, f"named ({variant})"
    if method.peft_type == "LORA":
        runs = [r for r in runs if not r.variant_flags] or runs  # "lora" means plain LoRA, not DoRA or rsLoRA
    fitting = [r for r in runs if memory_of.get(r.id, r.peak_memory_bytes) <= _budget_bytes(vram)]
    chosen = max(fitting or runs, key=lambda r: _score(r, metric_key, higher))
    why = "named" if fitting else "named; its benchmark run did not fit the budget"
    return method.name, chosen, why


def plan_trial(
    snapshot: Snapshot,
    registry: Registry,
    *,
    task: str = "text",
    vram_gib: float | None = None,
    candidates: str = "auto",
    top: int = DEFAULT_TOP,
    memory: MemoryRequest | None = None,
) -> TrialPlan:
    """The runs to train, in order: the baseline (plain LoRA) first, then the others."""
    choice = resolve_task(task)
    if choice.benchmark != "MetaMathQA":
        raise UserError(
            f"--task {task}: trials train text models (classification or causal LM); image-generation "
            "trials are not supported yet"
        )
    if top < 1:
        raise UserError(f"--top must be at least 1, got {top}")
    if vram_gib is not None and not (vram_gib > 0 and math.isfinite(vram_gib)):
        raise UserError(f"--vram must be a positive number of GiB, got {vram_gib}")
    notes = [choice.note] if choice.note else []
    names = [part.strip().lower() for part in candidates.split(",") if part.strip()]
    if not names:
        raise UserError("--candidates is empty; use auto or a comma list such as lora,oft,ia3")
    rec = recommend(Query(vram_gib=vram_gib or 1e9, task=task, memory=memory), snapshot, registry)
    memory_of = {run_id: b.total for run_id, b in rec.breakdowns.items()}
    metric_key, higher = rec.metric.key, rec.metric.higher_is_better
    planned: list[PlannedRun] = []
    if names == ["auto"]:
        if rec.lora.plain is None:
            raise UserError(f"the snapshot has no plain LoRA run in {rec.benchmark.key} to use as the baseline")
        planned.append(PlannedRun("lora", rec.lora.plain.run, "baseline (plain LoRA)"))
        picked = 0
        for row in rec.ranked:
            if picked == top:
                break
            if row.method.kind == "full" or row.method.name == "lora":
                continue  # the baseline is LoRA already; a LoRA variant would be a second LoRA
            planned.append(PlannedRun(row.method.name, row.run, f"recommender #{row.rank}"))
            picked += 1
        if vram_gib is None:
            notes.append("no --vram: candidates ranked on score alone, whatever their benchmark memory")
    else:
        if "auto" in names:
            raise UserError("--candidates: use auto on its own, or a comma list of methods")
        for name in names:
            method, run, why = _named_run(
                name, snapshot, registry, rec.benchmark.key, metric_key, higher, vram_gib, memory_of
            )
            if any(p.run.id == run.id for p in planned):
                raise UserError(f"--candidates names {name!r} twice")
            planned.append(PlannedRun(method, run, why))
    counts: dict[str, int] = {}
    for p in planned:
        counts[p.method] = counts.get(p.method, 0) + 1
    clashes = {m for m, n in counts.items() if n > 1}
    runs = tuple(
        PlannedRun(p.method, p.run, p.why, f"{p.method}-{p.run.variant}" if p.method in clashes else p.method)
        for p in planned
    )
    if memory is not None and vram_gib is not None:
        notes.append(f"candidates fitted to --vram by the memory model's prediction for {memory.describe()}")
    return TrialPlan(choice.name, rec.benchmark.key, vram_gib, runs, tuple(notes), memory_of)
