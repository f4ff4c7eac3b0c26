"""Train each candidate in its own fresh process, so its memory figure is its own.

In one long-lived process, the second candidate's peak RSS is hidden under the first one's (the
peak never goes down), and on a GPU PyTorch's caching allocator keeps the first candidate's
blocks reserved. A spawned child starts from nothing: its peak is the candidate's peak. It also
contains crashes: a candidate killed by the OOM killer is reported as failed, and the trial goes on.

The child reports progress and its result over a queue; the parent only relays them.

Children come from a *forkserver* that imports torch, transformers and peft once (about 10 s on a
small CPU) and never touches a GPU itself, so each candidate starts in well under a second, and
CUDA is first initialised inside the child, where it is safe. :func:`warm_up` starts that server
early, so its imports overlap with the parent reading the data and the model config.
"""

from __future__ import annotations

import multiprocessing
import queue as queue_module
from collections.abc import Callable
from pathlib import Path
from typing import Any

from advisor.trial.data import TrialData
from advisor.trial.train import CandidateResult, TrainBudget, config_dict

POLL_S = 0.2
PRELOAD = ["advisor.trial.train", "converters.models", "torch", "transformers", "peft"]
_LIVE: set[Any] = set()  # training processes now running (several at once under the search's workers)


def terminate_children() -> None:
    """Stop every training process this process started (Ctrl-C, or a failed worker)."""
    for process in list(_LIVE):
        if process.is_alive():
            process.terminate()
    for process in list(_LIVE):
        process.join(timeout=10)
        _LIVE.discard(process)


def _context() -> Any:
    if "forkserver" not in multiprocessing.get_all_start_methods():  # pragma: no cover - not on Linux
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    return context


def warm_up() -> None:
    """Start the forkserver (and its imports) now, in the background; harmless to call twice."""
    context = _context()
    if context.get_start_method() == "forkserver":
        from multiprocessing import forkserver

        forkserver.ensure_running()


def _child(
    channel: Any,
    model_path: str,
    data: TrialData,
    method: str,
    config: Any,
    learning_rate: float,
    budget: TrainBudget,
    out_dir: Path | None,
) -> None:
    from advisor.trial.train import train_candidate

    try:
        result = train_candidate(
            model_path,
            data,
            method,
            config,
            learning_rate,
            budget,
            out_dir,
            on_step=lambda step, loss: channel.put(("step", step, loss)),
        )
        channel.put(("done", result.to_dict()))
    except KeyboardInterrupt:
        pass  # the parent was interrupted too and decides what happens
    except BaseException as exc:  # anything the child hits becomes a failed candidate
        channel.put(("error", f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"))


def train_in_subprocess(
    model_path: str,
    data: TrialData,
    method: str,
    config: Any,
    learning_rate: float,
    budget: TrainBudget,
    out_dir: Path | None = None,
    on_step: Callable[[int, float], None] | None = None,
) -> CandidateResult:
    """:func:`~advisor.trial.train.train_candidate` in a fresh child process; same arguments, same result."""
    context = _context()  # never a plain fork: the parent may hold CUDA or torch's thread pools
    channel = context.Queue()
    process = context.Process(
        target=_child,
        args=(channel, model_path, data, method, config, learning_rate, budget, out_dir),
        daemon=True,
    )
    process.start()
    _LIVE.add(process)
    try:
        result = _relay(channel, process, method, config, learning_rate, on_step)
    except BaseException:  # Ctrl-C or a failing callback: stop the child now, keep nothing of it
        process.terminate()
        process.join(timeout=10)
        raise
    finally:
        channel.close()
        _LIVE.discard(process)
    process.join(timeout=30)
    if process.is_alive():
        process.terminate()
    return result


def _relay(
    channel: Any,
    process: Any,
    method: str,
    config: Any,
    learning_rate: float,
    on_step: Callable[[int, float], None] | None,
) -> CandidateResult:
    while True:
        try:
            message = channel.get(timeout=POLL_S)
        except queue_module.Empty:
            if not process.is_alive():
                return _died(method, config, learning_rate, process.exitcode)
            continue
        if message[0] == "step" and on_step is not None:
            on_step(message[1], message[2])
        elif message[0] == "done":
            return CandidateResult(**message[1])
        elif message[0] == "error":
            return CandidateResult(method, config_dict(config), learning_rate, status="failed", message=message[1])


def _died(method: str, config: Any, learning_rate: float, exitcode: int | None) -> CandidateResult:
    why = "killed (out of memory?)" if exitcode in (-9, 137) else f"exited with code {exitcode}"
    return CandidateResult(
        method, config_dict(config), learning_rate, status="failed", message=f"the training process {why}"
    )
