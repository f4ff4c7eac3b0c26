"""``peft-advise trial`` as one library call: plan, train every candidate the same way, rank.

The order of work is chosen so that the cheap, likely-to-fail parts come first: the data is read
and checked, the plan is made and every candidate's config is built on the user's model (meta
device, no weights) before the first minute of training is spent.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from advisor.errors import UserError
from advisor.memory.model import MemoryRequest
from advisor.paths import check_output_folder
from advisor.torch_runtime import resolve_device
from advisor.trial.data import TrialData, load_trial_data
from advisor.trial.leaderboard import Entry, Leaderboard, next_step, rank_entries
from advisor.trial.plan import DEFAULT_TOP, TrialPlan, plan_trial
from advisor.trial.results import TrialStore, candidate_key, setup_record
from advisor.trial.train import MAX_TOKENS, CandidateResult, TrainBudget, config_dict

DEFAULT_STEPS = 30
PROBE_STEPS = 4


@dataclass(frozen=True)
class TrialRequest:
    data: str
    model: str
    out: Path
    task: str = "text"
    vram_gib: float | None = None
    candidates: str = "auto"
    top: int = DEFAULT_TOP
    steps: int | None = None
    minutes: float | None = None
    eval_fraction: float = 0.2
    batch_size: int = 8
    seed: int = 0
    lr_scale: float = 1.0
    device: str = "auto"
    isolate: bool = True  # each candidate in its own process (honest memory figures)
    fresh: bool = False
    text_column: str | None = None
    label_column: str | None = None
    lr_search: str = "auto"  # auto: search each candidate's learning rate; off: its benchmark rate x lr_scale
    lr_range: str | None = None  # LOW:HIGH multiples of the benchmark rate (default 0.3:100)
    devices: str | None = None  # search workers: auto | cpu | cuda:0,cuda:1 (default: --device)
    workers: int | None = None  # CPU workers (0: only external `peft-advise trial-worker` processes)
    lr_storage: str | None = None  # the search's Optuna storage URL (default: SQLite in --out)

    @property
    def searching(self) -> bool:
        return self.lr_search == "auto"


@dataclass(frozen=True)
class TrialEvent:
    """Progress, for bars: ``kind`` is plan / probe / start / step / end."""

    kind: str
    name: str = ""
    step: int = 0
    total: int = 0
    loss: float | None = None
    result: CandidateResult | None = None


@dataclass
class TrialReport:
    request: TrialRequest
    data: TrialData
    plan: TrialPlan
    budget: TrainBudget
    entries: list[Entry]
    leaderboard: Leaderboard
    results_file: Path
    next_text: str
    next_command: str | None
    notes: list[str] = field(default_factory=list)


def _validate(request: TrialRequest) -> None:
    if request.steps is not None and request.minutes is not None:
        raise UserError("give --steps or --minutes, not both")
    if request.steps is not None and request.steps < 1:
        raise UserError(f"--steps must be at least 1, got {request.steps}")
    if request.minutes is not None and not (request.minutes > 0 and math.isfinite(request.minutes)):
        raise UserError(f"--minutes must be a positive number, got {request.minutes}")
    if request.batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, got {request.batch_size}")
    if not (request.lr_scale > 0 and math.isfinite(request.lr_scale)):
        raise UserError(f"--lr-scale must be a positive number, got {request.lr_scale}")
    if request.lr_search not in ("auto", "off"):
        raise UserError(f"--lr-search must be auto or off, got {request.lr_search!r}")
    if request.searching:
        from advisor.trial.lr_search import parse_range

        parse_range(request.lr_range)
    elif request.lr_range or request.devices or request.workers is not None or request.lr_storage:
        raise UserError("--lr-range, --devices, --workers and --lr-storage belong to the search; drop --lr-search off")
    check_output_folder(request.out, "--out")


def _trial_memory(request: TrialRequest, data: TrialData) -> MemoryRequest | None:
    """The memory model's view of the trial itself: this model, fp32, the trial's batch and token cap.

    Only for causal LMs (the model predicts an LM head's logits, not a classifier's); it picks the
    candidates that fit ``--vram`` and is printed beside each candidate's measured peak.
    """
    if data.kind != "generation":
        return None
    from advisor.memory.model import MemorySetup
    from advisor.memory.shapes import read_shape

    shape = read_shape(request.model)
    setup = MemorySetup(batch_size=request.batch_size, seq_len=MAX_TOKENS, dtype="fp32")
    return MemoryRequest(shape, setup, model_given=True)


def _trainer(request: TrialRequest) -> Callable[..., CandidateResult]:
    if request.isolate:
        from advisor.trial.isolate import train_in_subprocess, warm_up

        warm_up()
        return train_in_subprocess
    from advisor.trial.train import train_candidate

    return train_candidate


@dataclass
class _Prepared:
    """Stage 1: everything checked before the first minute of training (data, model, plan, device)."""

    data: TrialData
    plan: TrialPlan
    device: str
    module_names: list[str]
    notes: list[str]


@dataclass
class _Built:
    """Stage 2: the candidates that build on the user's model, and the one budget they all get."""

    runs: list[Any]  # PlannedRun
    candidates: list[Any]  # advisor.trial.candidates.Candidate
    budget: TrainBudget


def run_trial(request: TrialRequest, events: Callable[[TrialEvent], None] | None = None) -> TrialReport:
    """Train the planned candidates (resuming finished ones from ``request.out``) and rank them.

    Named stages: prepare (checks, plan) → build (configs on the user's model, the step budget) → train
    (each candidate, or its stored result) → rank.
    """
    _validate(request)
    emit = events or (lambda event: None)
    train = _trainer(request)  # early: the training processes' imports overlap with the checks below
    prepared = _prepare(request)
    built = _build(request, prepared, train, emit)
    store = TrialStore(request.out, setup_record(request.model, prepared.data, built.budget), fresh=request.fresh)
    if request.searching:
        entries = _search_all(request, prepared, built, store, train, emit)
    else:
        entries = _train_all(request, prepared, built, store, train, emit)
    data = prepared.data
    board = rank_entries(entries, data.kind == "classification", eval_rows=len(data.eval))
    text, command = next_step(board, request.model, data.kind)
    notes = prepared.notes
    if any(e.resumed for e in entries):
        notes.append(
            f"resumed from {store.path}: {', '.join(e.name for e in entries if e.resumed)} "
            "finished earlier with the same setup (pass --fresh to retrain)"
        )
    return TrialReport(request, data, prepared.plan, built.budget, entries, board, store.path, text, command, notes)


def _prepare(request: TrialRequest) -> _Prepared:
    from advisor.benchmarks.store import load_snapshot
    from advisor.memory.shapes import read_model_config
    from advisor.methods.registry import load_registry
    from advisor.trial.candidates import module_names
    from advisor.trial.data import check_fits_model

    device = resolve_device(request.device)
    data = load_trial_data(
        request.data,
        eval_fraction=request.eval_fraction,
        seed=request.seed,
        text_column=request.text_column,
        label_column=request.label_column,
    )
    check_fits_model(data, read_model_config(request.model), request.model)
    plan = plan_trial(
        load_snapshot(),
        load_registry(),
        task=request.task,
        vram_gib=request.vram_gib,
        candidates=request.candidates,
        top=request.top,
        memory=_trial_memory(request, data),
    )
    return _Prepared(data, plan, device, module_names(request.model), list(plan.notes))


def _build(
    request: TrialRequest, prepared: _Prepared, train: Callable[..., CandidateResult], emit: Callable[..., None]
) -> _Built:
    """Every candidate's config on the user's model, and the step count (``--minutes``: timed on the baseline)."""
    from advisor.trial.candidates import build_candidate

    data, plan, names = prepared.data, prepared.plan, prepared.module_names
    steps = request.steps or DEFAULT_STEPS
    started = time.perf_counter()
    if request.minutes is not None:
        first = plan.runs[0]
        baseline = build_candidate(first.run, request.model, data.kind, PROBE_STEPS, names)
        emit(TrialEvent("probe", first.name, total=PROBE_STEPS))
        probe = train(
            request.model,
            data,
            baseline.method,
            baseline.config,
            baseline.learning_rate * request.lr_scale,
            TrainBudget(PROBE_STEPS, request.batch_size, seed=request.seed, device=prepared.device),
            on_step=lambda step, loss: emit(TrialEvent("step", first.name, step, PROBE_STEPS, loss)),
        )
        spent = time.perf_counter() - started  # the probe is part of the time budget
        factor, runs = _search_cost(request)
        steps, note = steps_for_minutes(
            request.minutes, len(plan.runs), probe, probe_s=spent, step_factor=factor, runs_per_candidate=runs
        )
        prepared.notes.append(note)
    runs, candidates = [], []
    for planned in plan.runs:
        try:
            candidates.append(build_candidate(planned.run, request.model, data.kind, steps, names))
            runs.append(planned)
        except UserError as exc:
            if planned.why.startswith("recommender"):  # the user did not ask for it by name: say so, go on
                prepared.notes.append(f"skipped {planned.name} ({planned.why}): {exc}")
                continue
            raise
    budget = TrainBudget(steps=steps, batch_size=request.batch_size, seed=request.seed, device=prepared.device)
    return _Built(runs, candidates, budget)


def _train_all(
    request: TrialRequest,
    prepared: _Prepared,
    built: _Built,
    store: TrialStore,
    train: Callable[..., CandidateResult],
    emit: Callable[..., None],
) -> list[Entry]:
    """Each candidate trained (or its finished result read back), recorded as soon as it is done."""
    from advisor.methods.registry import load_registry

    registry = load_registry()
    steps = built.budget.steps
    entries: list[Entry] = []
    emit(TrialEvent("plan", total=len(built.candidates)))
    for planned, candidate in zip(built.runs, built.candidates, strict=True):
        method = registry.resolve(planned.method)
        lr = candidate.learning_rate * request.lr_scale
        key = candidate_key(planned.name, planned.run.id, lr, config_dict(candidate.config))
        result = store.finished(planned.name, key)
        resumed = result is not None
        if result is None:
            emit(TrialEvent("start", planned.name, total=steps))
            result = train(
                request.model,
                prepared.data,
                planned.method,
                candidate.config,
                lr,
                built.budget,
                store.partial_dir(planned.name),
                on_step=lambda step, loss, name=planned.name: emit(TrialEvent("step", name, step, steps, loss)),
            )
            result = store.record(planned.name, key, result)
        emit(TrialEvent("end", planned.name, result.steps_done, steps, result=result))
        entries.append(_entry(planned, method, lr, result, resumed, prepared))
    return entries


def _entry(
    planned: Any, method: Any, lr: float, result: CandidateResult, resumed: bool, prepared: _Prepared,
    lr_search: dict | None = None,
) -> Entry:  # fmt: skip
    return Entry(
        name=planned.name,
        method=planned.method,
        display_name=method.display_name,
        run_id=planned.run.id,
        why=planned.why,
        learning_rate=lr,
        result=result,
        is_baseline=planned.method == "lora" and not planned.run.variant_flags,
        lora_convertible=method.lora_convertible,
        resumed=resumed,
        predicted_memory_bytes=prepared.plan.predicted_bytes.get(planned.run.id),
        lr_search=lr_search,
    )


def _search_all(
    request: TrialRequest,
    prepared: _Prepared,
    built: _Built,
    store: TrialStore,
    train: Callable[..., CandidateResult],
    emit: Callable[..., None],
) -> list[Entry]:
    """Every candidate through successive halving over its learning-rate grid, all candidates at once.

    Jobs go through the search's Optuna storage, so local worker threads, ``peft-advise trial-worker``
    processes elsewhere, and a rerun after a kill all see the same jobs and results.
    """
    from advisor.methods.registry import load_registry
    from advisor.trial import lr_search as search
    from advisor.trial.isolate import terminate_children
    from advisor.trial.results import SEARCH_STORAGE
    from advisor.trial.workers import LocalWorkers, WorkerSetup, parse_devices

    registry = load_registry()
    policy = search.parse_range(request.lr_range)
    steps = built.budget.steps
    storage = request.lr_storage or search.default_storage(request.out)
    if storage.endswith(SEARCH_STORAGE):
        request.out.mkdir(parents=True, exist_ok=True)
    setup = setup_record(request.model, prepared.data, built.budget)
    study = search.open_study(
        storage, search.study_name_for(setup, policy), create=True, attrs=_study_attrs(request, prepared)
    )
    search.recover_stale(study)
    entries: dict[str, Entry] = {}
    searches: list[tuple[Any, Any, str, search.CandidateSearch]] = []
    for planned, candidate in zip(built.runs, built.candidates, strict=True):
        method = registry.resolve(planned.method)
        config = config_dict(candidate.config)
        key = candidate_key(planned.name, planned.run.id, f"search {policy}", config)
        done = store.finished(planned.name, key)
        if done is not None:
            extra = store.extra(planned.name)
            entries[planned.name] = _entry(planned, method, done.learning_rate, done, True, prepared, extra)
            continue
        base = candidate.learning_rate * request.lr_scale
        classification = prepared.data.kind == "classification"
        item = search.candidate_search(planned.name, planned.method, config, base, policy, steps, classification)
        item.out_dir = str(store.job_dir(key))  # where the full-steps run saves, until it is published
        searches.append((planned, method, key, item))
    jobs_total = sum(len(item.rates) + sum(n for n, _ in item.schedule[1:]) for *_, item in searches)
    emit(TrialEvent("plan", total=jobs_total))

    def label(job: search.Job) -> str:
        return f"{job.candidate} lr {job.learning_rate:.3g} ({job.stop_at} steps)"

    def on_step(job: search.Job, step: int, loss: float) -> None:
        if step == 1:
            emit(TrialEvent("start", label(job), total=job.stop_at))
        emit(TrialEvent("step", label(job), step, job.stop_at, loss))

    def on_job_done(job: search.Job, result: CandidateResult) -> None:
        emit(TrialEvent("end", label(job), result.steps_done, job.stop_at, result=result))

    devices = parse_devices(request.devices or prepared.device, request.workers)
    worker_setup = WorkerSetup(request.model, prepared.data, request.batch_size, request.seed, train)
    workers = LocalWorkers(study, worker_setup, devices, on_step) if devices else None
    try:
        search.drive(
            study,
            [item for *_, item in searches],
            on_job_done=on_job_done,
            check_workers=workers.check if workers else None,
        )
    except BaseException:
        terminate_children()  # Ctrl-C or a worker's error: no training process outlives the trial
        raise
    finally:
        if workers is not None:
            workers.stop()
    study.set_user_attr("finished", True)  # external trial-worker processes may stop now
    for planned, method, key, item in searches:
        extra = item.report()
        source = Path(item.final_dir) if item.final_dir else None
        result = store.record(planned.name, key, item.final, source=source, extra=extra)
        entries[planned.name] = _entry(planned, method, item.chosen, result, False, prepared, extra)
    if any(item.at_edge for *_, item in searches):
        for *_, item in searches:
            if item.at_edge:
                prepared.notes.append(
                    f"{item.name}: the chosen learning rate {item.chosen:.3g} is the {item.at_edge} of its grid; "
                    "the best may lie beyond it (widen --lr-range)"
                )
    prepared.notes.append(
        f"learning-rate search: {policy.describe()}; {search.total_steps(len(policy.factors()), steps, policy.eta)} "
        f"optimizer steps per candidate (the last rung is the {steps}-step run compared here); engine "
        f"{search.ENGINE}, storage {search.shown(storage)}"
    )
    return [entries[planned.name] for planned in built.runs]


def _search_cost(request: TrialRequest) -> tuple[float, int]:
    """Optimizer steps per candidate as a multiple of --steps, and training runs per candidate."""
    if not request.searching:
        return 1.0, 1
    from advisor.trial.lr_search import parse_range, rungs

    policy = parse_range(request.lr_range)
    schedule = rungs(len(policy.factors()), 900, policy.eta)  # the rung fractions, at a large step count
    return sum(n * s for n, s in schedule) / 900, sum(n for n, _ in schedule)


def _study_attrs(request: TrialRequest, prepared: _Prepared) -> dict[str, Any]:
    """What a worker on another machine needs to rebuild the same data and model (paths must exist there)."""
    return {
        "model": request.model,
        "data": request.data,
        "eval_fraction": request.eval_fraction,
        "seed": request.seed,
        "text_column": request.text_column,
        "label_column": request.label_column,
        "batch_size": request.batch_size,
        "isolate": request.isolate,
        "data_digest": setup_record(request.model, prepared.data, TrainBudget())["data_digest"],
    }


def steps_for_minutes(
    minutes: float,
    candidates: int,
    probe: CandidateResult,
    *,
    probe_s: float = 0.0,
    step_factor: float = 1.0,
    runs_per_candidate: int = 1,
) -> tuple[int, str]:
    """One step count for every candidate, from the baseline's measured step time (fairness: same steps).

    ``minutes`` is the user's whole budget; the timing probe (``probe_s``) is spent from it. With the
    learning-rate search a candidate trains ``runs_per_candidate`` times for ``step_factor × steps`` steps
    in all, and the budget covers the whole search. Methods whose steps are slower than LoRA's make the
    trial overrun; that is said, not hidden.
    """
    if probe.status != "ok" or not probe.step_s:
        raise UserError(f"could not time the baseline to size --minutes ({probe.message}); use --steps instead")
    overhead = max(0.0, probe.wall_s - probe.steps_done * probe.step_s)  # load, eval, save
    per_candidate = (minutes * 60 - probe_s) / candidates - overhead * runs_per_candidate
    steps = int(per_candidate / (probe.step_s * step_factor))
    if steps < 1:
        raise UserError(
            f"--minutes {minutes:g} leaves no training time: loading and evaluating takes ~{overhead:.0f} s per "
            f"candidate ({candidates} candidates, after a {probe_s:.0f} s timing probe); give more minutes or use "
            "--steps"
        )
    return steps, (
        f"--minutes {minutes:g}: {steps} steps per candidate (timing probe {probe_s:.0f} s, baseline step "
        f"{probe.step_s:.2f} s, ~{overhead:.0f} s load+eval each); methods with slower steps than LoRA take longer"
    )


def entry_dict(entry: Entry) -> dict[str, Any]:
    return {
        "name": entry.name,
        "method": entry.method,
        "run_id": entry.run_id,
        "why": entry.why,
        "learning_rate": entry.learning_rate,
        "baseline": entry.is_baseline,
        "lora_convertible": entry.lora_convertible,
        "resumed": entry.resumed,
        "predicted_memory_bytes": entry.predicted_memory_bytes,
    }
