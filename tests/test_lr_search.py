"""The trial's learning-rate search: the grid and rungs, the Optuna engine (resume, workers), and real trials."""

from __future__ import annotations

import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from advisor.errors import UserError
from advisor.trial import lr_search as search
from advisor.trial.data import SAMPLE_DATASET
from advisor.trial.train import CandidateResult

# ----------------------------------------------------------------------------- the grid and the rungs


def test_grid_is_half_decades_anchored_at_the_benchmark_rate() -> None:
    factors = search.SearchPolicy().factors()
    assert [round(f, 3) for f in factors] == [1.0, 3.162, 10.0, 31.623, 100.0]
    assert [round(f, 3) for f in search.parse_range("0.3:10").factors()] == [0.316, 1.0, 3.162, 10.0]


@pytest.mark.parametrize(
    ("text", "message"),
    [("100:1", "empty or inverted"), ("1:1", "empty or inverted"), ("0:10", "positive"), ("a:b", "LOW:HIGH"),
     ("1:2", "fewer than two")],
)  # fmt: skip
def test_bad_ranges_are_one_line_errors(text: str, message: str) -> None:
    with pytest.raises(UserError, match=message):
        search.parse_range(text)


def test_rungs_end_at_the_full_steps_and_every_candidate_spends_the_same() -> None:
    assert search.rungs(5, 30) == [(5, 10), (1, 30)]
    assert search.rungs(5, 300) == [(5, 33), (2, 100), (1, 300)]
    assert search.rungs(5, 8) == [(5, 8)]  # too short for an early rung: every rate runs the full steps
    for steps in (8, 30, 60, 300):
        plan = search.rungs(5, steps)
        assert plan[-1][1] == steps and plan[0][0] == 5
        assert all(a[1] < b[1] and a[0] >= b[0] for a, b in itertools.pairwise(plan))


def _result(accuracy: float | None, loss: float = 0.5, status: str = "ok") -> CandidateResult:
    return CandidateResult("lora", {}, 1e-3, status=status, eval_accuracy=accuracy, eval_loss=loss)


def test_promotion_keeps_the_best_third_on_the_trials_metric() -> None:
    item = search.candidate_search("lora", "lora", {"r": 8}, 1e-4, search.SearchPolicy(), 300, True)
    rates = item.rates
    scores = dict(zip(rates, [0.5, 0.9, 0.9, 0.6, 0.2], strict=True))
    losses = dict(zip(rates, [0.7, 0.30, 0.25, 0.6, 0.9], strict=True))
    item.advance({r: _result(scores[r], losses[r]) for r in rates})
    assert item.alive == [rates[2], rates[1]]  # equal accuracy: the lower eval loss first
    item.advance({r: _result(0.8 if r == rates[1] else 0.7) for r in item.alive})
    assert item.alive == [rates[1]]
    item.advance({rates[1]: _result(0.95)})
    assert item.chosen == rates[1] and item.final.eval_accuracy == 0.95 and item.at_edge is None
    assert [t.rung for t in item.tried] == [0] * 5 + [1, 1, 2]


def test_failed_rates_rank_last_and_the_edge_is_said() -> None:
    item = search.candidate_search("ia3", "ia3", {}, 1e-3, search.SearchPolicy(), 8, False)  # one rung
    results = {r: _result(None, loss=1.0 / (i + 1)) for i, r in enumerate(item.rates)}
    results[item.rates[-1]] = _result(None, status="diverged")
    item.advance(results)
    assert item.chosen == item.rates[-2] and item.at_edge is None
    high = search.candidate_search("ia3", "ia3", {}, 1e-3, search.SearchPolicy(), 8, False)
    high.advance({r: _result(None, loss=1.0 / (i + 1)) for i, r in enumerate(high.rates)})
    assert high.at_edge == "highest"


# ----------------------------------------------------------------------------- the engine (no training)


class FakeTraining:
    """Stands in for train_candidate: accuracy peaks at lr 1e-2 and grows with steps; counts its calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, float, int]] = []
        self.lock = threading.Lock()

    def __call__(self, model, data, method, config, lr, budget, out_dir=None, on_step=None) -> CandidateResult:
        import math

        with self.lock:
            self.calls.append((method, lr, budget.steps_to_run))
        quality = 1 - abs(math.log10(lr) + 2) / 4 + budget.steps_to_run / 1000
        result = CandidateResult(method, {}, lr, steps_done=budget.steps_to_run, eval_loss=2 - quality)
        result.eval_accuracy = round(quality, 6)
        if out_dir:
            Path(out_dir).mkdir(parents=True, exist_ok=True)
        return result


def _study(tmp_path: Path, name: str = "s") -> object:
    tmp_path.mkdir(parents=True, exist_ok=True)
    return search.open_study(str(tmp_path / "jobs.journal"), name, create=True, attrs={})


def _searches() -> list[search.CandidateSearch]:
    policy = search.SearchPolicy()
    configs = {"lora": {"peft_type": "LORA", "r": 8}, "ia3": {"peft_type": "IA3"}}
    return [search.candidate_search(n, n, c, 1e-4, policy, 60, True) for n, c in configs.items()]


def _run(study: object, training: FakeTraining, devices: list[str]) -> list[search.CandidateSearch]:
    from advisor.trial.workers import LocalWorkers, WorkerSetup

    class Data:
        kind = "classification"

    searches = _searches()
    workers = LocalWorkers(study, WorkerSetup("m", Data(), 8, 0, training), devices, None)
    try:
        search.drive(study, searches, poll_s=0.05, check_workers=workers.check)
    finally:
        workers.stop()
    return searches


def _outcome(searches: list[search.CandidateSearch]) -> list[tuple]:
    return [(s.name, s.chosen, [t.to_dict() for t in s.tried]) for s in searches]


def test_engine_runs_each_job_once_and_workers_do_not_change_the_outcome(tmp_path: Path) -> None:
    pytest.importorskip("optuna")
    one = FakeTraining()
    alone = _run(_study(tmp_path / "a"), one, ["cpu"])
    assert all(s.chosen == pytest.approx(1e-2) for s in alone)  # the fake's optimum, found by the rungs
    assert len(one.calls) == len(set(one.calls)) == 2 * (5 + 2 + 1)  # 60 steps: rungs (5, 10), (2, 20), (1, 60)
    four = FakeTraining()
    together = _run(_study(tmp_path / "b"), four, ["cpu"] * 4)
    assert _outcome(together) == _outcome(alone) and sorted(four.calls) == sorted(one.calls)


def test_a_stored_job_is_never_run_again_and_a_dead_workers_job_is_recovered(tmp_path: Path) -> None:
    optuna = pytest.importorskip("optuna")
    study = _study(tmp_path)
    first = FakeTraining()
    _run(study, first, ["cpu"])
    again = FakeTraining()
    _run(study, again, ["cpu"])
    assert again.calls == []  # everything was stored: resuming a finished search trains nothing
    # A job left RUNNING by a killed process (its pid is gone) is failed and enqueued again.
    job = search.Job("x", "lora", {"peft_type": "LORA"}, 1e-3, 60, 10, 0, None)
    search.enqueue(study, job)
    trial = study.ask()
    trial.set_user_attr("host", socket.gethostname())
    trial.set_user_attr("pid", 2**22 + 12345)  # no such process
    assert search.recover_stale(study) == 1
    states = [t.state for t in search.job_trials(study)[job.key]]
    assert sorted(s.name for s in states) == ["FAIL", "WAITING"] and optuna.trial.TrialState.WAITING in states


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("/nonexistent/dir/jobs.journal", "does not exist"),
        ("sqlite:////tmp/jobs.sqlite3", "SQLite cannot hand jobs to several workers"),
        ("jobs.db", "ending in .journal"),
        ("postgresql://someone:secret@127.0.0.1:1/nothing", "--lr-storage postgresql://someone:***@"),
        ("nosuchdb://x", "cannot be opened"),
    ],
)
def test_unusable_storage_is_a_one_line_error(url: str, message: str) -> None:
    pytest.importorskip("optuna")
    with pytest.raises(UserError, match=message.replace("*", r"\*")) as raised:
        search.open_study(url, "s", create=True)
    assert "secret" not in str(raised.value) and "\n" not in str(raised.value)


def test_devices_that_do_not_exist_are_refused() -> None:
    from advisor.trial.workers import parse_devices

    with pytest.raises(UserError, match="cuda:7"):
        parse_devices("cuda:7", None)
    with pytest.raises(UserError, match="not a device"):
        parse_devices("tpu:0", None)
    assert parse_devices("cpu", 3) == ["cpu"] * 3 and parse_devices("cpu", 0) == []


# ----------------------------------------------------------------------------- real trials


def _cli(*args: str, cwd: Path, **popen: object) -> subprocess.CompletedProcess:
    env = dict(os.environ, PEFT_ADVISOR_PLAIN="1", HF_HUB_OFFLINE="1")
    return subprocess.run(
        [sys.executable, "-m", "advisor.cli", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=900
    )


@pytest.mark.slow
@pytest.mark.subprocess
def test_acceptance_every_candidate_finds_a_rate_that_learns(minilm: Path, tmp_path: Path) -> None:
    """The issue's run: LoRA and OFT no longer sit at chance next to IA3's large stored rate."""
    proc = _cli(
        "trial", "--data", str(SAMPLE_DATASET), "--model", str(minilm), "--candidates", "lora,oft,ia3",
        "--steps", "30", "--out", str(tmp_path / "out"), "--json", cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads(proc.stdout)
    labels = [json.loads(line)["label"] for line in SAMPLE_DATASET.read_text().splitlines() if line.strip()]
    chance = max(labels.count(v) for v in set(labels)) / len(labels)
    assert data["lr_search"]["engine"] == "optuna" and data["lr_search"]["total_steps"] > 30
    assert data["min_detectable_difference"] > 0 and data["verdict"] in ("winner", "no detectable difference")
    for row in data["leaderboard"]:
        tried = row["lr_search"]["tried"]
        assert len({t["learning_rate"] for t in tried}) >= 3
        assert row["lr_search"]["chosen"] == row["learning_rate"]
        assert row["status"] == "ok" and row["eval_accuracy"] > chance + 0.1, (row["name"], row["eval_accuracy"])
    assert Path(data["lr_plot"]).read_bytes()[:4] == b"\x89PNG"


def _sums(folder: Path, n: int = 40) -> Path:
    rows = [{"question": f"What is {i} plus {i}?", "answer": f"It is {2 * i}."} for i in range(n)]
    path = folder / "sums.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _board(stdout: str) -> list[tuple]:
    data = json.loads(stdout)
    return [(r["name"], r["learning_rate"], r["eval_loss"], r["eval_token_accuracy"]) for r in data["leaderboard"]]


def _llama_trial(tiny_llama: Path, data: Path, out: Path, *extra: str) -> list[str]:
    return [
        "trial", "--data", str(data), "--model", str(tiny_llama), "--candidates", "lora,ia3", "--steps", "12",
        "--batch-size", "4", "--out", str(out), "--json", *extra,
    ]  # fmt: skip


def _load(journal: Path) -> object:
    import optuna

    storage = search.storage_for(str(journal))
    (summary,) = optuna.get_all_study_summaries(storage=storage)
    return optuna.load_study(study_name=summary.study_name, storage=storage)


@pytest.mark.slow
@pytest.mark.subprocess
def test_killed_search_resumes_without_retraining_and_ends_the_same(tiny_llama: Path, tmp_path: Path) -> None:
    optuna = pytest.importorskip("optuna")
    data = _sums(tmp_path)
    whole = _cli(*_llama_trial(tiny_llama, data, tmp_path / "whole"), cwd=tmp_path)
    assert whole.returncode == 0, whole.stderr[-2000:]
    out = tmp_path / "killed"
    env = dict(os.environ, PEFT_ADVISOR_PLAIN="1", HF_HUB_OFFLINE="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "advisor.cli", *_llama_trial(tiny_llama, data, out)],
        cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    storage = out / "lr-search.journal"
    deadline = time.monotonic() + 300
    done_before = 0
    while time.monotonic() < deadline and proc.poll() is None:
        if storage.exists():
            try:
                study = _load(storage)
                done_before = len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)))
            except (ValueError, Exception):
                done_before = 0
            if done_before >= 3:
                break
        time.sleep(0.2)
    assert proc.poll() is None, "the trial finished before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    resumed = _cli(*_llama_trial(tiny_llama, data, out), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert _board(resumed.stdout) == _board(whole.stdout)
    study = _load(storage)
    completed = [t.user_attrs["job"] for t in study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))]
    assert len(completed) == len(set(completed)) >= done_before  # no finished job was trained twice


@pytest.mark.slow
@pytest.mark.subprocess
def test_two_local_workers_and_two_external_workers_give_the_sequential_leaderboard(
    tiny_llama: Path, tmp_path: Path
) -> None:
    data = _sums(tmp_path)
    one = _cli(*_llama_trial(tiny_llama, data, tmp_path / "one"), cwd=tmp_path)
    two = _cli(*_llama_trial(tiny_llama, data, tmp_path / "two", "--devices", "cpu", "--workers", "2"), cwd=tmp_path)
    assert one.returncode == 0 and two.returncode == 0, two.stderr[-2000:]
    assert _board(two.stdout) == _board(one.stdout)
    # Past one machine: the trial only enqueues (--workers 0); two trial-worker processes share its storage.
    url = str(tmp_path / "shared.journal")
    env = dict(os.environ, PEFT_ADVISOR_PLAIN="1", HF_HUB_OFFLINE="1")
    coordinator = subprocess.Popen(
        [sys.executable, "-m", "advisor.cli",
         *_llama_trial(tiny_llama, data, tmp_path / "remote", "--workers", "0", "--lr-storage", url)],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    workers = [  # they wait for the trial's study to appear in the storage
        subprocess.Popen(
            [sys.executable, "-m", "advisor.cli", "trial-worker", "--lr-storage", url, "--idle-minutes", "0.5"],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    out, err = coordinator.communicate(timeout=600)
    worker_output = [w.communicate(timeout=120) for w in workers]
    assert coordinator.returncode == 0, err[-2000:]
    assert _board(out) == _board(one.stdout)
    runs = [int(o.split("trial-worker: ")[1].split(" job")[0]) for o, _ in worker_output]
    assert sum(runs) == len(json.loads(out)["leaderboard"]) * (5 + 1) and all(runs), (runs, worker_output)
