"""The trial's results file (``OUT/trial.json``): what makes a trial resumable and Ctrl-C safe.

The file is rewritten atomically after every finished candidate, and a candidate's adapter is
saved to a hidden partial folder that is renamed only once the candidate is done. Whenever the
process stops (Ctrl-C, a crash, a power cut), the file lists exactly the candidates whose
adapters exist, and nothing half-written is ever taken for a result.

Resuming is keyed by content, not by luck: the *setup* (data rows, model, steps, batch, seed,
schedule) must match the file's, or the old results would not be comparable and the trial
refuses to mix them. Each candidate has its own key (method, benchmark run, learning rate,
config), so adding a candidate to a finished trial trains only the new one.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

from advisor.errors import UserError
from advisor.paths import publish, read_json, write_json_atomic
from advisor.trial.data import TrialData
from advisor.trial.train import CandidateResult, TrainBudget

FORMAT = 1
RESULTS_FILE = "trial.json"
ADAPTERS = "adapters"
JOBS = ".jobs"  # adapters/.jobs/<job>: where a search's final run saves before it is published
SEARCH_STORAGE = "lr-search.journal"  # the learning-rate search's default Optuna storage


def _digest(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def setup_record(model: str, data: TrialData, budget: TrainBudget) -> dict[str, Any]:
    """Everything that must be equal for two candidates' figures to be comparable."""
    rows = [[e.text, e.target, e.label] for e in data.train + data.eval]
    return {
        "model": model,
        "data": data.source,
        "data_kind": data.kind,
        "data_digest": _digest([rows, len(data.train), list(data.labels)]),
        "train_rows": len(data.train),
        "eval_rows": len(data.eval),
        "labels": list(data.labels),
        "budget": asdict(budget),
    }


def candidate_key(name: str, run_id: str, learning_rate: float, config: dict[str, Any]) -> str:
    return _digest([name, run_id, learning_rate, config])


class TrialStore:
    """``OUT/trial.json`` plus ``OUT/adapters/<candidate>/``."""

    def __init__(self, out: Path, setup: dict[str, Any], *, fresh: bool = False) -> None:
        self.out = Path(out)
        self.path = self.out / RESULTS_FILE
        self.setup = setup
        self.results: dict[str, dict[str, Any]] = {}  # candidate name -> {"key": ..., "result": {...}}
        if self.out.exists() and not self.out.is_dir():
            raise UserError(f"--out {self.out} is a file; pass a folder for the trial's adapters and results")
        if fresh:
            self.path.unlink(missing_ok=True)
            shutil.rmtree(self.out / ADAPTERS, ignore_errors=True)
            (self.out / SEARCH_STORAGE).unlink(missing_ok=True)  # the learning-rate search's jobs, too
        if self.path.exists():
            self._load()
        for partial in (self.out / ADAPTERS).glob(".*.partial"):
            shutil.rmtree(partial, ignore_errors=True)  # an interrupted candidate: it starts over

    def _load(self) -> None:
        try:
            stored = read_json(self.path)
        except (OSError, ValueError) as exc:
            raise UserError(f"{self.path} is unreadable ({exc}); delete it or pass --fresh") from None
        if stored.get("format") != FORMAT or stored.get("setup") != self.setup:
            changed = [k for k in self.setup if stored.get("setup", {}).get(k) != self.setup[k]]
            raise UserError(
                f"{self.out} holds a trial with other settings (changed: {', '.join(changed) or 'format'}); "
                "its results would not be comparable. Pass --fresh to start over, or another --out"
            )
        for name, entry in stored.get("candidates", {}).items():
            if entry.get("result", {}).get("status") != "ok" or self.adapter_dir(name).is_dir():
                self.results[name] = entry

    def adapter_dir(self, name: str) -> Path:
        return self.out / ADAPTERS / name

    def partial_dir(self, name: str) -> Path:
        return self.out / ADAPTERS / f".{name}.partial"

    def job_dir(self, job_key: str) -> Path:
        return self.out / ADAPTERS / JOBS / job_key

    def finished(self, name: str, key: str) -> CandidateResult | None:
        """The stored result of this exact candidate, if an earlier run finished it."""
        entry = self.results.get(name)
        if entry is None or entry.get("key") != key or entry["result"].get("status") == "failed":
            return None  # a failure (a killed process, a missing package) may not recur: try again
        return CandidateResult(**entry["result"])

    def extra(self, name: str) -> dict[str, Any]:
        """What was stored beside a finished candidate's result (its learning-rate search)."""
        return dict(self.results.get(name, {}).get("extra") or {})

    def record(
        self, name: str, key: str, result: CandidateResult, *, source: Path | None = None, extra: dict | None = None
    ) -> CandidateResult:
        """Move the finished adapter into place, then rewrite the results file (in that order).

        ``source``: the folder the adapter was saved to (a search job's); default the candidate's partial folder.
        """
        final = self.adapter_dir(name)
        partial = source or self.partial_dir(name)
        if partial.is_dir():
            publish(partial, final)
            result.adapter_dir = str(final)
        elif source is not None:
            result.adapter_dir = str(final) if final.is_dir() else None
        if source is not None and source.parent.parent == self.out / ADAPTERS / JOBS:
            shutil.rmtree(source.parent, ignore_errors=True)  # the search's other full runs, if any
        self.results[name] = {"key": key, "result": result.to_dict(), **({"extra": extra} if extra else {})}
        self.save()
        return result

    def save(self) -> None:
        write_json_atomic(self.path, {"format": FORMAT, "setup": self.setup, "candidates": self.results})
