"""The ``auto`` flow as one library call, shared by the CLI and the Space.

Stages, each resumable from ``OUT``:

1. **recommend**: the ranking for the budget and task (milliseconds; recomputed, recorded in
   ``OUT/recommendation.json``).
2. **trial**: the fair trial in ``OUT/trial`` (learning-rate search on by default); its own store
   resumes finished rungs and candidates and refuses a changed setup.
3. **pick**: the trial's pick (the winner, or the cheapest when nothing is detectably better); when
   the consumer cannot serve it even through our converter, the best candidate it can serve, and
   what that costs in score.
4. **serve**: the adapter as the consumer loads it, in ``OUT/served/<name>/``: copied when the
   consumer loads it as trained, otherwise converted with a rank sweep that writes the smallest
   rank reaching ``--min-fidelity`` (refused, with the best fidelity reached, when none does).
   Recorded in ``OUT/auto.json`` with a key of the adapter's weights, so a rerun skips it.
5. **report**: ``OUT/report.html`` (self-contained) and the JSON contract.
"""

from __future__ import annotations

import hashlib
import math
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from advisor.errors import UserError
from advisor.paths import check_output_folder, read_json, write_json_atomic
from advisor.vocabulary import CONSUMER_TARGETS

DEFAULT_MIN_FIDELITY = 0.95
STATE_FORMAT = 1
SWEEP_RANKS = (4, 8, 16, 32, 64, 128, 256, 512)


class FidelityRefused(Exception):
    """No swept rank reached ``--min-fidelity``: nothing was served (exit 1, not a usage error)."""

    def __init__(self, message: str, conversion: dict[str, Any]) -> None:
        super().__init__(message)
        self.message = message
        self.conversion = conversion


@dataclass(frozen=True)
class AutoRequest:
    data: str
    model: str
    vram_gib: float
    out: Path
    task: str | None = None  # default: from the data (generation and classification: "text")
    candidates: str = "auto"
    top: int = 2
    steps: int | None = None
    minutes: float | None = None
    serve: str | None = None  # default: vllm for a causal LM, else peft
    min_fidelity: float = DEFAULT_MIN_FIDELITY
    device: str = "auto"
    fresh: bool = False
    isolate: bool = True
    lr_search: str = "auto"
    seed: int = 0
    batch_size: int = 8
    eval_fraction: float = 0.2
    text_column: str | None = None
    label_column: str | None = None


@dataclass(frozen=True)
class StageEvent:
    """Progress: ``stage`` is recommend / trial / pick / serve / report; ``trial`` carries the trial's event."""

    stage: str
    text: str = ""
    trial: Any = None  # advisor.trial.run.TrialEvent


@dataclass
class Served:
    consumer: str
    method: str
    name: str
    adapter_dir: str  # relative to OUT
    converted: bool
    rank: int | None
    fidelity: float | None
    check: dict[str, Any]
    serve_command: str
    conversion: dict[str, Any] | None = None  # converters.convert.ConvertResult.to_dict()

    def to_dict(self) -> dict[str, Any]:
        return {
            "consumer": self.consumer,
            "method": self.method,
            "name": self.name,
            "adapter_dir": self.adapter_dir,
            "converted": self.converted,
            "rank": self.rank,
            "fidelity": self.fidelity,
            "check": self.check,
            "serve_command": self.serve_command,
        }


@dataclass
class AutoResult:
    request: AutoRequest
    consumer: str
    recommendation: Any  # advisor.recommend.Recommendation
    trial: Any  # advisor.trial.run.TrialReport
    best: Any  # advisor.trial.leaderboard.Standing: the trial's pick
    chosen: Any  # the standing that is served (== best unless best cannot be served)
    served: Served
    serving_cost: str | None  # what serving costs in score, when chosen is not best
    report: Path | None = None
    plots: dict[str, Path] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def validate(request: AutoRequest) -> None:
    """Usage errors, before any work (exit 2)."""
    if request.serve is not None and request.serve not in CONSUMER_TARGETS:
        raise UserError(f"--serve must be one of {', '.join(CONSUMER_TARGETS)} (got {request.serve!r})")
    if not (isinstance(request.min_fidelity, (int, float)) and 0 < request.min_fidelity <= 1):
        raise UserError(
            f"--min-fidelity is the share of the adapter's effect a converted LoRA must keep, in (0, 1] "
            f"(got {request.min_fidelity}); e.g. 0.95"
        )
    if not (request.vram_gib > 0 and math.isfinite(request.vram_gib)):
        raise UserError(f"--vram must be a positive number of GiB, got {request.vram_gib}")
    check_output_folder(request.out, "--out")


def default_consumer(model: str) -> str:
    """vLLM for a causal LM (what it serves), PEFT for anything else (a classifier, an encoder)."""
    from advisor.memory.shapes import read_model_config
    from advisor.model_kinds import is_causal_lm_config

    return "vllm" if is_causal_lm_config(read_model_config(model)) else "peft"


def run_auto(request: AutoRequest, events: Callable[[StageEvent], None] | None = None) -> AutoResult:
    """Recommend, trial, pick, serve, report (see the module docstring); resumes from ``request.out``."""
    validate(request)
    emit = events or (lambda event: None)
    out = Path(request.out)
    consumer = request.serve or default_consumer(request.model)
    if request.fresh and out.is_dir():
        for stale in ("auto.json", "served", "report.html", "recommendation.json"):
            path = out / stale
            shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)

    emit(StageEvent("recommend", "ranking methods for the budget"))
    recommendation = _recommend(request)
    trial = _trial(request, emit)
    emit(StageEvent("pick", "picking the winner the consumer can serve"))
    best, chosen, cost = pick_servable(trial, consumer)
    emit(StageEvent("serve", f"preparing {chosen.entry.display_name} for {consumer}"))
    served = _serve(request, consumer, chosen, emit)
    result = AutoResult(request, consumer, recommendation, trial, best, chosen, served, cost)
    emit(StageEvent("report", "writing the report"))
    from advisor.output.auto_report import write_report

    result.report = write_report(result)
    return result


# --------------------------------------------------------------------------- stages


def _recommend(request: AutoRequest) -> Any:
    from advisor.benchmarks.store import load_snapshot
    from advisor.methods.registry import load_registry
    from advisor.output.recommend_view import recommendation_json
    from advisor.recommend import Query, recommend

    rec = recommend(Query(vram_gib=request.vram_gib, task=request.task or "text"), load_snapshot(), load_registry())
    write_json_atomic(Path(request.out) / "recommendation.json", recommendation_json(rec))
    return rec


def _trial(request: AutoRequest, emit: Callable[[StageEvent], None]) -> Any:
    from advisor.trial.run import TrialRequest, run_trial

    trial_request = TrialRequest(
        data=request.data,
        model=request.model,
        out=Path(request.out) / "trial",
        task=request.task or "text",
        vram_gib=request.vram_gib,
        candidates=request.candidates,
        top=request.top,
        steps=request.steps,
        minutes=request.minutes,
        eval_fraction=request.eval_fraction,
        batch_size=request.batch_size,
        seed=request.seed,
        device=request.device,
        isolate=request.isolate,
        fresh=request.fresh,
        text_column=request.text_column,
        label_column=request.label_column,
        lr_search=request.lr_search,
    )
    emit(StageEvent("trial", "training the candidates"))
    report = run_trial(trial_request, lambda event: emit(StageEvent("trial", trial=event)))
    if report.leaderboard.pick is None:
        raise TrialFailed("no candidate finished training (every one failed or diverged); see the trial's notes")
    return report


class TrialFailed(Exception):
    """Every candidate failed or diverged: there is nothing to serve (exit 1)."""


def serving_of(entry: Any, consumer: str) -> str | None:
    """How ``consumer`` serves this trained candidate: "native", "convert" or None.

    The method's capability (established on a tiny model, :mod:`advisor.methods.behaviour`), narrowed
    by the adapter's own config: a LoRA with DoRA or a bias is no plain LoRA to vLLM.
    """
    from advisor.methods.registry import load_registry

    config_path = Path(entry.result.adapter_dir or "") / "adapter_config.json"
    config = read_json(config_path) if entry.result.adapter_dir and config_path.is_file() else {}
    return load_registry().resolve(entry.method).serving(consumer, config)


def pick_servable(trial: Any, consumer: str) -> tuple[Any, Any, str | None]:
    """The trial's pick, the candidate actually served, and what serving costs when they differ."""
    board = trial.leaderboard
    best = board.pick
    if serving_of(best.entry, consumer) is not None and best.entry.result.adapter_dir:
        return best, best, None
    ranked = [s for s in board.standings if s.rank is not None and s.entry.result.adapter_dir]
    servable = [s for s in ranked if serving_of(s.entry, consumer) is not None]
    if not servable:
        names = ", ".join(s.entry.display_name for s in ranked)
        raise UserError(
            f"no trained candidate ({names}) can be served by {consumer}, natively or through the converter; "
            f"add a servable candidate (e.g. --candidates lora,...) or pick another --serve"
        )
    chosen = servable[0]
    metric = board.metric
    if best.score is not None and chosen.score is not None:
        gap = abs(best.score - chosen.score)
        shown = f"{gap * 100:.1f} points of {metric}" if "accuracy" in metric else f"{gap:.4f} {metric}"
        cost = (
            f"{best.entry.display_name} scored best but {consumer} cannot serve it (not even converted); "
            f"serving {chosen.entry.display_name} instead costs {shown}"
            + (" (within noise)" if chosen.within_noise else "")
        )
    else:
        cost = f"{best.entry.display_name} cannot be served by {consumer}; serving {chosen.entry.display_name}"
    return best, chosen, cost


def _weights_key(adapter_dir: Path, consumer: str, min_fidelity: float) -> str:
    digest = hashlib.sha256(f"{consumer}|{min_fidelity!r}".encode())
    for path in sorted(adapter_dir.glob("adapter_*")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:24]


def _serve(request: AutoRequest, consumer: str, chosen: Any, emit: Callable[[StageEvent], None]) -> Served:
    out = Path(request.out)
    entry = chosen.entry
    source = Path(entry.result.adapter_dir)
    name = entry.name.replace(":", "-").replace("/", "-")
    final = out / "served" / name
    final.parent.mkdir(parents=True, exist_ok=True)
    state_path = out / "auto.json"
    state = read_json(state_path) if state_path.is_file() else {}
    key = _weights_key(source, consumer, request.min_fidelity)
    stored = state.get("serve") if state.get("format") == STATE_FORMAT else None
    if stored and stored.get("key") == key and final.is_dir():
        emit(StageEvent("serve", f"reusing {final} (same adapter, consumer and minimum fidelity)"))
        return Served(**stored["served"])
    how = serving_of(entry, consumer)
    if how is None:  # pick_servable only hands over servable candidates; say so if that ever breaks
        raise UserError(f"{entry.display_name} cannot be served by {consumer}, natively or converted")
    if how == "native":
        served = _copy_native(request, consumer, entry, source, final)
        if served is None:  # loads as trained by its method, but this folder fails the checks: normalise it
            how = "convert"
    if how == "convert":
        served = _convert(request, consumer, entry, source, final, emit)
    write_json_atomic(state_path, {"format": STATE_FORMAT, "serve": {"key": key, "served": _served_dict(served)}})
    return served


def _served_dict(served: Served) -> dict[str, Any]:
    return {**served.to_dict(), "conversion": served.conversion}


def _relative(final: Path, out: Path) -> str:
    return final.relative_to(out).as_posix()


def _copy_native(request: AutoRequest, consumer: str, entry: Any, source: Path, final: Path) -> Served | None:
    """Copy the trained adapter as it is; None when the consumer's checks refuse that folder."""
    from advisor.paths import publish, staging_folder
    from converters.consumers import check_lora

    with staging_folder(final, overwrite=True) as staging:
        shutil.copytree(source, staging, dirs_exist_ok=True)
        config = read_json(staging / "adapter_config.json")
        is_lora = str(config.get("peft_type", "")).upper() == "LORA"
        if is_lora:
            report = check_lora(staging, consumer, shown_as=final)
            if not report.passed:
                return None
            check = report.to_dict()
            max_rank = report.max_lora_rank
        else:  # PEFT loads its own methods; the trial evaluated this very folder through PEFT
            message = "PEFT loads this adapter as trained (the trial evaluated it)"
            check = {"target": consumer, "passed": True, "findings": [{"level": "info", "message": message}]}
            max_rank = None
        publish(staging, final)
    rank = int(config["r"]) if is_lora and config.get("r") else None
    return _served(request, consumer, entry, final, config, check, max_rank, rank=rank)


def _served(
    request: AutoRequest,
    consumer: str,
    entry: Any,
    final: Path,
    config: dict[str, Any],
    check: dict[str, Any],
    max_rank: int | None,
    *,
    rank: int | None,
    fidelity: float | None = None,
    conversion: dict[str, Any] | None = None,
) -> Served:
    """The record of a published folder, its path and serve command as the user has them (relative to OUT)."""
    rel = _relative(final, Path(request.out))
    base = config.get("base_model_name_or_path") or request.model
    command = serve_command(consumer, base, rel, max_rank, config.get("task_type"))
    check.update(folder=rel, serve_command=command)  # not this machine's absolute path
    return Served(
        consumer=consumer,
        method=entry.method,
        name=final.name,
        adapter_dir=rel,
        converted=conversion is not None,
        rank=rank,
        fidelity=fidelity,
        check=check,
        serve_command=command,
        conversion=conversion,
    )


def sweep_ranks(model: str, consumer: str) -> tuple[int, ...]:
    """Ranks to try: powers of two up to the model's width (full rank: exact), and vLLM's 512 cap."""
    from advisor.memory.shapes import read_model_config

    config = read_model_config(model)
    width = int(config.get("hidden_size") or config.get("d_model") or 4096)
    cap = min(width, 512) if consumer == "vllm" else width
    ranks = [r for r in SWEEP_RANKS if r < cap]
    return tuple([*ranks, cap])


def _convert(
    request: AutoRequest, consumer: str, entry: Any, source: Path, final: Path, emit: Callable[[StageEvent], None]
) -> Served:
    from converters.convert import ConversionRejected, ConvertOptions, convert_adapter

    options = ConvertOptions(
        base_model=request.model,
        target=consumer,
        sweep=sweep_ranks(request.model, consumer),
        min_fidelity=request.min_fidelity,
        device=request.device,
        overwrite=True,  # OUT/served/<name> is this flow's own output
    )
    try:
        result = convert_adapter(
            str(source),
            final,
            options,
            lambda phase, done, total: emit(StageEvent("serve", f"converting: {phase} ({done}/{total})")),
        )
    except ConversionRejected as rejected:
        rows = rejected.result.sweep
        best = max(rows, key=lambda r: r.fidelity.fidelity) if rows else None
        reached = f"best {best.fidelity.fidelity:.4f} at rank {best.rank}" if best else "no rank measured"
        raise FidelityRefused(
            f"no LoRA rank reaches --min-fidelity {request.min_fidelity:g} for {entry.display_name} ({reached}); "
            f"nothing was served. Lower --min-fidelity, or serve with --serve peft",
            rejected.result.to_dict(),
        ) from None
    check = result.check.to_dict() if result.check else {"target": consumer, "passed": False, "findings": []}
    ranks = sorted(set(result.ranks.values()))
    max_rank = result.check.max_lora_rank if result.check else None
    return _served(
        request,
        consumer,
        entry,
        final,
        read_json(final / "adapter_config.json"),
        check,
        max_rank,
        rank=ranks[-1] if ranks else None,
        fidelity=result.fidelity.fidelity if result.fidelity else None,
        conversion=result.to_dict(),
    )


def serve_command(
    consumer: str, base: str, folder: str, max_lora_rank: int | None, task_type: str | None = None
) -> str:
    """The command (or line of Python) that serves ``folder`` as the user has it (relative to OUT)."""
    import shlex

    name = Path(folder).name
    if consumer == "vllm":
        from converters.consumers import vllm_max_lora_rank

        rank = max_lora_rank or 16
        rank = vllm_max_lora_rank(rank) or rank
        return (
            f"vllm serve {shlex.quote(base)} --enable-lora --max-lora-rank {rank} "
            f"--lora-modules {shlex.quote(f'{name}={folder}')}"
        )
    if consumer == "diffusers":
        return f'pipe.load_lora_weights("{folder}", weight_name="pytorch_lora_weights.safetensors")'
    from converters.models import TASK_CLASSES

    model_class = TASK_CLASSES.get(str(task_type or "").upper(), "AutoModel")
    return f'PeftModel.from_pretrained({model_class}.from_pretrained("{base}"), "{folder}")'
