"""Every candidate at the learning rate that suits a short run: successive halving under one budget.

A PEFT benchmark's learning rate was tuned for 5,000 steps on a 3B model; a 30-step trial at that rate
can leave a method at chance while another, whose stored rate happens to be large, learns. So each
candidate gets a small log-spaced grid anchored at its stored rate (half-decades, by default 1x to 100x:
a run of tens of steps never wants a smaller rate than one tuned for 5,000, and the sample trial needed
10x to 30x to leave chance), and synchronous successive halving picks among them:

    rung 0: every rate, the first S/9 steps  →  rung 1: the best third, S/3  →  rung 2: the best, all S

(for the default 5 rates and reduction factor 3; a rung is never shorter than ``MIN_RUNG_STEPS``). A rung
is the *beginning of the full run* (the S-step schedule's warm-up and decay, stopped early), so it
predicts that run rather than a differently scheduled short one. The last rung *is* the final
comparison: the chosen rate trained for the full ``--steps`` on the same rows, order and eval set as
every other candidate. Every candidate spends the same optimizer steps. Rungs are decided on the
trial's own metric (accuracy, then eval loss, for classification; eval loss for generation), and a
failed or diverged rate ranks last.

The engine is Optuna: each training job is a trial in a study held by an Optuna storage (a journal
file in the trial's folder by default; a journal on a shared filesystem, or a PostgreSQL URL, across
machines). Jobs are *enqueued* and taken by workers with ``study.ask()``, which hands each waiting
trial to exactly one worker across processes and machines; results are *told* back, with the job's
full result as a user attribute. Rungs are synchronous on purpose: Optuna's own successive-halving
pruners are asynchronous, so their promotions depend on which job finishes first, and a resumed or
fanned-out run would not equal the sequential one. The promotion rule itself is the textbook one
(keep the best ``ceil(n / eta)``).

Resume: a job whose result is stored is never run again; a job left running by a killed process (its
worker's pid is gone on this host, or its heartbeat is older than ``STALE_S`` elsewhere) is failed and
enqueued again. The same seed, rows and steps give the same result whoever runs the job.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from advisor.errors import UserError

ETA = 3  # reduction factor: a third of the rates continue to the next rung
DEFAULT_RANGE = (1.0, 100.0)  # multiples of the stored learning rate
MIN_RUNG_STEPS = 10
STALE_S = 180.0  # a running job whose heartbeat is older than this (on another host) is taken as dead
HEARTBEAT_S = 15.0
ENGINE = "optuna"
FAILED_SCORE = 1e30  # a failed or diverged job's rung score (storages reject inf)


@dataclass(frozen=True)
class SearchPolicy:
    """The grid (multiples of each candidate's stored rate) and the reduction factor."""

    low: float = DEFAULT_RANGE[0]
    high: float = DEFAULT_RANGE[1]
    eta: int = ETA

    def validate(self) -> None:
        if not (self.low > 0 and self.high > 0 and math.isfinite(self.low) and math.isfinite(self.high)):
            raise UserError(f"--lr-range takes two positive multiples, LOW:HIGH (got {self.low:g}:{self.high:g})")
        if self.low >= self.high:
            raise UserError(
                f"--lr-range {self.low:g}:{self.high:g} is empty or inverted; give LOW:HIGH with LOW < HIGH, "
                "e.g. 0.3:100"
            )
        if len(self.factors()) < 2:
            raise UserError(f"--lr-range {self.low:g}:{self.high:g} holds fewer than two half-decade steps; widen it")

    def factors(self) -> list[float]:
        """Half-decades (…, 0.316, 1, 3.16, 10, …) from low to high: the stored rate (1x) when inside."""
        first = math.ceil(2 * math.log10(self.low) - 1e-9)
        last = math.floor(2 * math.log10(self.high) + 1e-9)
        return [10 ** (k / 2) for k in range(first, last + 1)]

    def describe(self) -> str:
        factors = self.factors()
        return (
            f"{len(factors)} learning rates per candidate ({_factor(factors[0])}x to {_factor(factors[-1])}x its "
            f"benchmark rate, half-decades), successive halving by {self.eta} on the trial's metric"
        )


def parse_range(text: str | None) -> SearchPolicy:
    if not text:
        return SearchPolicy()
    parts = text.replace(",", ":").split(":")
    try:
        low, high = (float(p) for p in parts)
    except ValueError:
        raise UserError(
            f"--lr-range takes LOW:HIGH multiples of the stored rate, e.g. 0.3:100 (got {text!r})"
        ) from None
    policy = SearchPolicy(low, high)
    policy.validate()
    return policy


def _factor(value: float) -> str:
    return f"{value:.3g}"


def rungs(n_rates: int, steps: int, eta: int = ETA) -> list[tuple[int, int]]:
    """``(rates run, steps)`` per rung, the last at the full ``steps``.

    Rung r of R runs ``steps / eta**(R-1-r)`` steps, but never fewer than ``MIN_RUNG_STEPS``: in 5 steps
    LoRA (whose B starts at zero) has barely moved at any rate, so a shorter rung would pick by noise.
    Lifted rungs that reach the next one's length merge into it. A trial too short for any early rung runs
    every rate for the full steps and keeps the best (costlier, and said in the search note).
    """
    counts = [n_rates]
    while counts[-1] > 1:
        counts.append(math.ceil(counts[-1] / eta))
    last = len(counts) - 1
    lifted = [
        (count, min(steps, max(MIN_RUNG_STEPS, round(steps / eta ** (last - i))))) for i, count in enumerate(counts)
    ]
    plan: list[tuple[int, int]] = []
    for count, rung_steps in lifted:
        if plan and plan[-1][1] >= rung_steps:
            continue  # as long as the rung before it: that rung already ran these rates this far
        plan.append((count, rung_steps))
    return plan


def total_steps(n_rates: int, steps: int, eta: int = ETA) -> int:
    return sum(count * rung_steps for count, rung_steps in rungs(n_rates, steps, eta))


# --------------------------------------------------------------------------- jobs


@dataclass(frozen=True)
class Job:
    """One training run: a candidate at one rate, the first ``stop_at`` of ``steps`` steps. Its result depends
    on nothing else, so any worker may run it and a stored result is never run again."""

    candidate: str
    method: str
    config: dict[str, Any]  # the peft config as plain JSON (advisor.trial.train.config_dict)
    learning_rate: float
    steps: int  # the full run's steps (its schedule)
    stop_at: int  # this rung's steps
    rung: int
    out_dir: str | None  # where the last rung saves the adapter

    @property
    def key(self) -> str:
        blob = [self.candidate, self.config, repr(self.learning_rate), self.steps, self.stop_at]
        return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()[:20]

    @property
    def final(self) -> bool:
        return self.stop_at >= self.steps

    def to_attrs(self) -> dict[str, Any]:
        return {
            "job": self.key,
            "candidate": self.candidate,
            "method": self.method,
            "config": self.config,
            "learning_rate": self.learning_rate,
            "steps": self.steps,
            "stop_at": self.stop_at,
            "rung": self.rung,
            "out_dir": self.out_dir,
        }

    @classmethod
    def from_attrs(cls, attrs: dict[str, Any]) -> Job:
        return cls(
            attrs["candidate"],
            attrs["method"],
            attrs["config"],
            float(attrs["learning_rate"]),
            int(attrs["steps"]),
            int(attrs["stop_at"]),
            int(attrs["rung"]),
            attrs.get("out_dir"),
        )


def rung_score(result: Any, classification: bool) -> tuple[float, float]:
    """What a rung is decided on, lower is better: (-accuracy, eval loss) for classification (the trial's own
    metric: a classifier can be right before its loss moves), (eval loss, 0) for generation. A run that
    failed or diverged ranks last."""
    loss = getattr(result, "eval_loss", None)
    if getattr(result, "status", "failed") != "ok" or loss is None or not math.isfinite(loss):
        return FAILED_SCORE, FAILED_SCORE
    if classification and result.eval_accuracy is not None:
        return -float(result.eval_accuracy), float(loss)
    return float(loss), 0.0


# --------------------------------------------------------------------------- the engine's storage


def default_storage(out: Path) -> str:
    return str(Path(out).resolve() / "lr-search.journal")


def open_study(storage_url: str, study_name: str, *, create: bool, attrs: dict[str, Any] | None = None) -> Any:
    """The Optuna study that holds this trial's jobs; one line (exit 2) when the storage cannot be opened."""
    try:
        import optuna
    except ImportError:
        raise UserError("the learning-rate search needs optuna: pip install 'peft-advisor[peft]'") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = storage_for(storage_url)
    try:
        if create:
            study = optuna.create_study(
                storage=storage, study_name=study_name, direction="minimize", load_if_exists=True
            )
            for key, value in (attrs or {}).items():
                study.set_user_attr(key, value)
            return study
        return optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:
        raise UserError(
            f"--lr-storage {shown(storage_url)} has no study {study_name!r}; start the trial first"
        ) from None


def storage_for(url: str) -> Any:
    """An Optuna storage for ``url``: a ``*.journal`` file (this machine, or a shared filesystem), or a database
    server URL (``postgresql://...``, ``mysql://...``) for workers on several machines.

    Both hand each waiting job to exactly one worker: the journal under its file lock, a server under
    ``SELECT ... FOR UPDATE``. SQLite is refused: it ignores ``FOR UPDATE``, and two workers were seen taking
    the same job.
    """
    import optuna

    if url.startswith("sqlite:"):
        raise UserError(
            f"--lr-storage {url}: SQLite cannot hand jobs to several workers safely; use a file ending in "
            ".journal (one machine, or a shared filesystem) or a PostgreSQL URL"
        )
    if "://" not in url:
        path = Path(url.removeprefix("journal:")).expanduser()
        if path.suffix != ".journal":
            raise UserError(
                f"--lr-storage {url}: give a file ending in .journal, or a database URL such as postgresql://..."
            )
        if not path.parent.is_dir():
            raise UserError(f"--lr-storage {url}: the folder {path.parent} does not exist")
        from optuna.storages.journal import JournalFileBackend

        return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
    try:
        return optuna.storages.RDBStorage(url)
    except ImportError as exc:
        raise UserError(f"--lr-storage {shown(url)} needs a database driver that is not installed ({exc})") from None
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(
            f"--lr-storage {shown(url)} cannot be opened ({first[:200]}); check the URL and the server"
        ) from None


def shown(url: str) -> str:
    """A storage URL without its password, for messages."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        credentials, host = rest.rsplit("@", 1)
        user = credentials.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}"
    return url


def study_name_for(setup: dict[str, Any], policy: SearchPolicy) -> str:
    blob = json.dumps([setup, policy.low, policy.high, policy.eta], sort_keys=True, default=str)
    return "peft-advisor-trial-" + hashlib.sha256(blob.encode()).hexdigest()[:16]


def job_trials(study: Any) -> dict[str, list[Any]]:
    """The study's job trials by job key (a job may have several: a failed attempt, then a retry)."""
    found: dict[str, list[Any]] = {}
    for trial in study.get_trials(deepcopy=False):
        key = trial.user_attrs.get("job")
        if key:
            found.setdefault(key, []).append(trial)
    return found


def finished_result(trials: list[Any]) -> Any | None:
    """The stored result of a job, if one of its trials completed."""
    from optuna.trial import TrialState

    from advisor.trial.train import CandidateResult

    for trial in trials:
        if trial.state == TrialState.COMPLETE and "result" in trial.user_attrs:
            return CandidateResult(**trial.user_attrs["result"])
    return None


def is_pending(trials: list[Any]) -> bool:
    from optuna.trial import TrialState

    return any(t.state in (TrialState.WAITING, TrialState.RUNNING) for t in trials)


def enqueue(study: Any, job: Job) -> None:
    study.enqueue_trial({}, user_attrs=job.to_attrs(), skip_if_exists=False)


def recover_stale(study: Any) -> int:
    """Fail the running jobs whose worker is gone and enqueue them again; returns how many."""
    from optuna.trial import TrialState

    host = socket.gethostname()
    recovered = 0
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        attrs = trial.user_attrs
        if "job" not in attrs:
            continue
        if attrs.get("host") == host:
            dead = not _pid_alive(int(attrs.get("pid", 0)))
        else:
            dead = time.time() - float(attrs.get("beat", 0)) > STALE_S
        if dead:
            study._storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL)
            enqueue(study, Job.from_attrs(attrs))
            recovered += 1
    return recovered


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# --------------------------------------------------------------------------- the search, per candidate


@dataclass
class Tried:
    learning_rate: float
    rung: int
    steps: int
    status: str
    eval_loss: float | None
    eval_accuracy: float | None

    @property
    def score(self) -> float | None:
        """The figure a person reads: accuracy for classification, else eval loss."""
        return self.eval_accuracy if self.eval_accuracy is not None else self.eval_loss

    def to_dict(self) -> dict[str, Any]:
        return {
            "learning_rate": self.learning_rate,
            "rung": self.rung,
            "steps": self.steps,
            "score": self.score if self.status == "ok" else None,
            "eval_loss": self.eval_loss,
            "eval_accuracy": self.eval_accuracy,
            "status": self.status,
        }


@dataclass
class CandidateSearch:
    """One candidate's way through the rungs; ``final`` is the last rung's result (the full ``--steps`` run)."""

    name: str
    method: str
    config: dict[str, Any]
    base_rate: float
    rates: list[float]
    schedule: list[tuple[int, int]]
    steps: int
    classification: bool
    out_dir: str | None = None
    rung: int = 0
    alive: list[float] = field(default_factory=list)
    tried: list[Tried] = field(default_factory=list)
    final: Any = None  # CandidateResult
    chosen: float | None = None

    def __post_init__(self) -> None:
        if not self.alive:
            self.alive = list(self.rates)

    @property
    def done(self) -> bool:
        return self.final is not None

    def jobs(self) -> list[Job]:
        _, stop_at = self.schedule[self.rung]
        last = self.rung == len(self.schedule) - 1
        return [
            Job(self.name, self.method, self.config, rate, self.steps, stop_at, self.rung, self._dir(rate, last))
            for rate in self.alive
        ]

    def _dir(self, rate: float, last: bool = True) -> str | None:
        """Each full-steps run saves to its own folder (several run at once when one rung is all there is)."""
        return f"{self.out_dir}/lr-{self.rates.index(rate)}" if self.out_dir and last else None

    @property
    def final_dir(self) -> str | None:
        return self._dir(self.chosen) if self.chosen is not None else None

    def advance(self, results: dict[float, Any]) -> None:
        """Record this rung's results and keep the best ``ceil(n / eta)`` rates (ties: the smaller rate)."""
        _, stop_at = self.schedule[self.rung]
        for rate in self.alive:
            result = results[rate]
            self.tried.append(Tried(rate, self.rung, stop_at, result.status, result.eval_loss, result.eval_accuracy))
        if self.rung == len(self.schedule) - 1:  # full steps: the best of them is the candidate's result
            self.chosen = min(self.alive, key=lambda rate: (rung_score(results[rate], self.classification), rate))
            self.final = results[self.chosen]
            return
        keep, _ = self.schedule[self.rung + 1]
        ranked = sorted(self.alive, key=lambda rate: (rung_score(results[rate], self.classification), rate))
        self.alive = ranked[:keep]
        self.rung += 1

    @property
    def at_edge(self) -> str | None:
        """Where the chosen rate sits at the grid's end: the optimum may lie beyond it."""
        if self.chosen is None or len(self.rates) < 2:
            return None
        if math.isclose(self.chosen, max(self.rates)):
            return "highest"
        if math.isclose(self.chosen, min(self.rates)):
            return "lowest"
        return None

    def report(self) -> dict[str, Any]:
        return {
            "tried": [t.to_dict() for t in self.tried],
            "chosen": self.chosen,
            "base_learning_rate": self.base_rate,
            "at_edge": self.at_edge,
        }


def candidate_search(
    name: str,
    method: str,
    config: dict[str, Any],
    base_rate: float,
    policy: SearchPolicy,
    steps: int,
    classification: bool,
    out_dir: str | None = None,
) -> CandidateSearch:
    rates = [base_rate * factor for factor in policy.factors()]
    schedule = rungs(len(rates), steps, policy.eta)
    return CandidateSearch(name, method, config, base_rate, rates, schedule, steps, classification, out_dir)


def drive(
    study: Any,
    searches: list[CandidateSearch],
    *,
    poll_s: float = 0.3,
    on_job_done: Callable[[Job, Any], None] | None = None,
    check_workers: Callable[[], None] | None = None,
) -> None:
    """Enqueue each candidate's rung, wait for its results (any worker may run them), promote, repeat."""
    enqueued: set[str] = set()
    reported: set[str] = set()
    while not all(s.done for s in searches):
        trials = job_trials(study)
        progressed = False
        for search in searches:
            if search.done:
                continue
            results: dict[float, Any] = {}
            for job in search.jobs():
                found = trials.get(job.key, [])
                result = finished_result(found)
                if result is not None:
                    results[job.learning_rate] = result
                    if on_job_done is not None and job.key not in reported:
                        reported.add(job.key)
                        on_job_done(job, result)
                elif not is_pending(found) and job.key not in enqueued:
                    enqueue(study, job)
                    enqueued.add(job.key)
            if len(results) == len(search.alive):
                search.advance(results)
                progressed = True
        if check_workers is not None:
            check_workers()
        if not progressed:
            time.sleep(poll_s)
