"""The workers that run the learning-rate search's jobs: one per device, here or on other machines.

A worker takes a waiting job from the search's Optuna storage (``study.ask()``), trains it on its own
device, and tells the result back. Local workers are threads of the ``peft-advise trial`` process (each
job still trains in its own child process, so its memory figure is its own); workers on other machines
are ``peft-advise trial-worker --lr-storage URL`` processes on the same storage. The job says everything
that matters (candidate config, rate, steps); the data and the model are named in the study's
attributes, so every worker reads the same rows, and a job gives the same result wherever it runs.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from advisor.errors import UserError
from advisor.trial.lr_search import HEARTBEAT_S, Job, rung_score

IDLE_POLL_S = 0.5
CPU_JOB_THREADS = 1  # see TrainBudget.threads: the same numbers for any number of CPU workers


def parse_devices(devices: str | None, workers: int | None) -> list[str]:
    """``auto``: one worker per visible GPU, else ``workers`` CPU workers (default 1); or an explicit list."""
    if workers is not None and workers < 0:
        raise UserError(f"--workers must be 0 or more (0: only external trial-worker processes), got {workers}")
    wanted = (devices or "auto").strip().lower()
    if wanted == "auto":
        import torch

        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count and workers is None:
            return [f"cuda:{i}" for i in range(count)]
        return ["cuda" if count else "cpu"] * (1 if workers is None else workers)
    if wanted == "cpu":
        return ["cpu"] * (1 if workers is None else workers)
    listed = [part.strip() for part in wanted.split(",") if part.strip()]
    if not listed:
        raise UserError("--devices is empty; use auto, cpu, or a list such as cuda:0,cuda:1")
    for device in listed:
        _check_device(device)
    return listed


def _check_device(device: str) -> None:
    if device == "cpu":
        return
    if not (device == "cuda" or (device.startswith("cuda:") and device[5:].isdigit())):
        raise UserError(f"--devices: {device!r} is not a device; use cpu, cuda or cuda:N")
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    index = int(device[5:]) if ":" in device else 0
    if index >= count:
        seen = f"{count} CUDA device(s)" if count else "no CUDA device"
        raise UserError(
            f"--devices {device}: torch {torch.__version__} sees {seen}; use --devices cpu or a visible GPU"
        )


@dataclass
class WorkerSetup:
    """What every job of one trial shares: the model, the data (already split) and the batch/seed."""

    model: str
    data: Any  # advisor.trial.data.TrialData
    batch_size: int
    seed: int
    train: Callable[..., Any]  # train_in_subprocess or train_candidate


def run_one(
    study: Any, setup: WorkerSetup, device: str, on_step: Callable[[Job, int, float], None] | None = None
) -> bool:
    """Take one waiting job, run it, tell its result; False when there was none to take."""
    from optuna.trial import TrialState

    if not study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        return False
    trial = study.ask()
    if "job" not in trial.user_attrs:  # another worker took the last waiting job first: nothing to run
        trial.set_user_attr("unused", True)
        study.tell(trial, state=TrialState.FAIL)
        return False
    job = Job.from_attrs(trial.user_attrs)
    trial.set_user_attr("host", socket.gethostname())
    trial.set_user_attr("pid", os.getpid())
    trial.set_user_attr("beat", time.time())
    beating = threading.Event()
    heart = threading.Thread(target=_heartbeat, args=(trial, beating), daemon=True)
    heart.start()
    try:
        result = _train(job, setup, device, on_step)
    finally:
        beating.set()
    trial.set_user_attr("result", result.to_dict())
    study.tell(trial, rung_score(result, setup.data.kind == "classification")[0])
    return True


def _heartbeat(trial: Any, stop: threading.Event) -> None:
    while not stop.wait(HEARTBEAT_S):
        try:
            trial.set_user_attr("beat", time.time())
        except Exception:  # the storage went away: the job's own tell will say so
            return


def _train(job: Job, setup: WorkerSetup, device: str, on_step: Callable[[Job, int, float], None] | None) -> Any:
    import peft

    from advisor.trial.train import TrainBudget

    budget = TrainBudget(
        steps=job.steps,
        batch_size=setup.batch_size,
        seed=setup.seed,
        device=device,
        stop_at=job.stop_at,
        threads=CPU_JOB_THREADS if device == "cpu" else None,
    )
    return setup.train(
        setup.model,
        setup.data,
        job.method,
        peft.get_peft_config(dict(job.config)),
        job.learning_rate,
        budget,
        job.out_dir,
        on_step=(lambda step, loss: on_step(job, step, loss)) if on_step else None,
    )


class LocalWorkers:
    """Worker threads of this process, one per device, until :meth:`stop`; errors surface in :meth:`check`."""

    def __init__(
        self, study: Any, setup: WorkerSetup, devices: list[str], on_step: Callable[[Job, int, float], None] | None
    ) -> None:
        self._stop = threading.Event()
        self._errors: list[BaseException] = []
        self._threads = [
            threading.Thread(target=self._loop, args=(study, setup, device, on_step), daemon=True, name=device)
            for device in devices
        ]
        for thread in self._threads:
            thread.start()

    def _loop(self, study: Any, setup: WorkerSetup, device: str, on_step: Any) -> None:
        try:
            while not self._stop.is_set():
                if not run_one(study, setup, device, on_step):
                    self._stop.wait(IDLE_POLL_S)
        except BaseException as exc:  # reported by check() in the coordinator's thread
            self._errors.append(exc)

    def check(self) -> None:
        if self._errors:
            raise self._errors[0]

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=1)


def serve(
    study: Any, setup: WorkerSetup, device: str, *, idle_s: float, on_job: Callable[[Job], None] | None = None
) -> int:
    """``peft-advise trial-worker``: run jobs until the trial says it is finished, or nothing came for ``idle_s``."""
    done = 0
    idle_since = time.monotonic()
    while True:
        if run_one(study, setup, device):
            done += 1
            idle_since = time.monotonic()
            continue
        if study.user_attrs.get("finished") or time.monotonic() - idle_since > idle_s:
            return done
        time.sleep(IDLE_POLL_S)
