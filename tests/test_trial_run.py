"""The whole quick trial: plan, fair training on a real MiniLM / tiny Llama, leaderboard, resume, CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from advisor.benchmarks.store import load_snapshot
from advisor.errors import UserError
from advisor.methods.registry import load_registry
from advisor.trial.data import SAMPLE_DATASET
from advisor.trial.leaderboard import Entry, next_step, paired_se, rank_entries
from advisor.trial.plan import plan_trial
from advisor.trial.run import TrialEvent, TrialRequest, run_trial, steps_for_minutes
from advisor.trial.train import CandidateResult

# ----------------------------------------------------------------------------- plan (no torch)


def test_auto_plan_is_the_recommenders_top_k_plus_plain_lora() -> None:
    plan = plan_trial(load_snapshot(), load_registry(), task="math", vram_gib=24, top=2)
    assert plan.runs[0].method == "lora" and plan.runs[0].why.startswith("baseline")
    assert not plan.runs[0].run.variant_flags  # plain LoRA, not rsLoRA or DoRA
    others = plan.runs[1:]
    assert len(others) == 2 and all(p.why.startswith("recommender #") for p in others)
    assert all(p.run.peak_memory_gib <= 24 for p in others)
    assert len({p.name for p in plan.runs}) == 3


def test_named_candidates_take_their_best_fitting_run() -> None:
    plan = plan_trial(load_snapshot(), load_registry(), candidates="lora,oft,ia3")
    assert [p.method for p in plan.runs] == ["lora", "oft", "ia3"]
    two = plan_trial(load_snapshot(), load_registry(), candidates="lora,lora:rank64-rslora")
    assert [p.name for p in two.runs] == ["lora-rank10-target-mlp", "lora-rank64-rslora"]  # folders do not clash


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"candidates": "lora,nosuchmethod"}, "nosuchmethod"),
        ({"candidates": "lora:rank999"}, "no run 'rank999'"),
        ({"candidates": "lora,lora"}, "twice"),
        ({"candidates": "auto,oft"}, "auto on its own"),
        ({"candidates": "full"}, "no adapter to trial"),
        ({"task": "image"}, "image-generation trials"),
        ({"top": 0}, "--top"),
        ({"vram_gib": -3}, "--vram"),
    ],
)
def test_bad_plans_say_what_is_wrong(kwargs: dict, message: str) -> None:
    with pytest.raises(UserError, match=message):
        plan_trial(load_snapshot(), load_registry(), **kwargs)


# ----------------------------------------------------------------------------- leaderboard (no torch)


def _entry(name: str, accuracy: float | None, rows: list[float], memory: int, status: str = "ok") -> Entry:
    result = CandidateResult(name, {}, 1e-4, status=status, eval_accuracy=accuracy, eval_loss=0.5)
    result.eval_per_row, result.peak_memory_bytes = rows, memory
    result.adapter_dir = f"/out/adapters/{name}"
    return Entry(name, name, name.upper(), f"b/{name}", "named", 1e-4, result, name == "lora", name != "vera")


def test_paired_noise_decides_within_noise() -> None:
    winner = [1.0] * 40
    close = [1.0] * 38 + [0.0] * 2  # 2 of 40 rows differ: gap 0.05, SE ≈ 0.035 -> within noise
    far = [1.0] * 20 + [0.0] * 20  # gap 0.5, SE ≈ 0.08 -> a real difference
    board = rank_entries(
        [
            _entry("lora", 0.5, far, 300),
            _entry("oft", 0.95, close, 100),
            _entry("ia3", 1.0, winner, 200),
            _entry("bad", None, [], 50, "diverged"),
        ],
        classification=True,
    )
    assert [s.entry.name for s in board.standings] == ["ia3", "oft", "lora", "bad"]
    ia3, oft, lora, bad = board.standings
    assert board.winner is ia3 and ia3.within_noise and oft.within_noise and not lora.within_noise
    assert oft.gap_se == pytest.approx(paired_se(winner, close))
    assert bad.rank is None and not bad.pareto
    assert ia3.pareto and oft.pareto and not lora.pareto  # lora: worse and bigger than both
    assert board.baseline is lora


def test_next_command_follows_the_winner() -> None:
    ia3_wins = rank_entries([_entry("lora", 0.5, [0.0] * 4, 1), _entry("ia3", 1.0, [1.0] * 4, 1)], True)
    text, command = next_step(ia3_wins, "/models/bert", "classification")
    assert command == "peft-advise convert /out/adapters/ia3 /out/ia3-as-lora --base-model /models/bert --for peft"
    lora_wins = rank_entries([_entry("lora", 1.0, [1.0] * 4, 1), _entry("ia3", 0.5, [0.0] * 4, 1)], True)
    assert next_step(lora_wins, "m", "generation")[1].startswith("peft-advise check-lora /out/adapters/lora --for vllm")
    vera_wins = rank_entries([_entry("vera", 1.0, [1.0] * 4, 1)], True)
    text, command = next_step(vera_wins, "m", "classification")
    assert command is None and "no LoRA form" in text


def test_minutes_become_one_step_count_sized_on_the_baseline() -> None:
    probe = CandidateResult("lora", {}, 1e-4, steps_done=4, step_s=0.5, wall_s=12.0)  # 10 s load+eval
    steps, note = steps_for_minutes(2, 3, probe)  # 40 s each, 30 s of it training
    assert steps == 60 and "60 steps" in note
    with pytest.raises(UserError, match="no training time"):
        steps_for_minutes(0.1, 3, probe)


# ----------------------------------------------------------------------------- real training


def _request(minilm: Path, out: Path, **overrides) -> TrialRequest:
    settings = dict(
        data=str(SAMPLE_DATASET),
        model=str(minilm),
        out=out,
        candidates="lora,oft,ia3",
        steps=6,
        batch_size=8,
        isolate=False,
        device="cpu",
        lr_search="off",  # these tests are about the rest of the trial; the search has its own
    )
    settings.update(overrides)
    return TrialRequest(**settings)


def _board(report) -> list[tuple]:
    return [
        (s.entry.name, s.rank, s.score, s.entry.result.eval_loss, tuple(s.entry.result.train_losses))
        for s in report.leaderboard.standings
    ]


@pytest.mark.slow
def test_same_seed_same_leaderboard_and_files(minilm: Path, tmp_path: Path) -> None:
    first = run_trial(_request(minilm, tmp_path / "a"))
    second = run_trial(_request(minilm, tmp_path / "b"))
    assert _board(first) == _board(second)
    assert {s.entry.name for s in first.leaderboard.standings} == {"lora", "oft", "ia3"}
    for standing in first.leaderboard.standings:
        result = standing.entry.result
        assert result.status == "ok" and result.steps_done == 6
        assert (Path(result.adapter_dir) / "adapter_model.safetensors").is_file()
        assert result.trainable_params > 0 and result.checkpoint_bytes > 0 and result.step_s > 0
    stored = json.loads((tmp_path / "a" / "trial.json").read_text())
    assert set(stored["candidates"]) == {"lora", "oft", "ia3"}
    winner = first.leaderboard.winner.entry
    assert ("convert" if winner.method != "lora" else "check-lora") in first.next_command
    lrs = {e.name: e.learning_rate for e in first.entries}
    assert lrs["ia3"] == pytest.approx(5e-3) and lrs["lora"] == pytest.approx(1e-4)  # printed, per method


@pytest.mark.slow
def test_resume_adds_candidates_and_refuses_other_settings(minilm: Path, tmp_path: Path) -> None:
    out = tmp_path / "trial"
    run_trial(_request(minilm, out, candidates="lora,ia3", steps=4))
    lora_weights = out / "adapters" / "lora" / "adapter_model.safetensors"
    stamp = lora_weights.stat().st_mtime_ns
    report = run_trial(_request(minilm, out, candidates="lora,ia3,oft", steps=4))
    assert {e.name: e.resumed for e in report.entries} == {"lora": True, "ia3": True, "oft": False}
    assert lora_weights.stat().st_mtime_ns == stamp  # not retrained
    assert any("resumed" in note for note in report.notes)
    with pytest.raises(UserError, match=r"other settings \(changed: budget\)"):
        run_trial(_request(minilm, out, candidates="lora", steps=5))
    fresh = run_trial(_request(minilm, out, candidates="lora", steps=5, fresh=True))
    assert not fresh.entries[0].resumed


@pytest.mark.slow
def test_interrupted_trial_keeps_finished_candidates(minilm: Path, tmp_path: Path) -> None:
    out = tmp_path / "trial"

    def interrupt_second(event: TrialEvent) -> None:
        if event.kind == "step" and event.name == "ia3" and event.step == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_trial(_request(minilm, out, candidates="lora,ia3", steps=4), interrupt_second)
    stored = json.loads((out / "trial.json").read_text())
    assert list(stored["candidates"]) == ["lora"]  # consistent: only what finished
    assert not (out / "adapters" / "ia3").exists()
    report = run_trial(_request(minilm, out, candidates="lora,ia3", steps=4))
    assert [e.resumed for e in report.entries] == [True, False]
    assert not list((out / "adapters").glob(".*.partial"))


@pytest.mark.slow
@pytest.mark.subprocess
def test_isolated_process_gives_the_same_figures(minilm: Path, tmp_path: Path) -> None:
    """Each candidate in a forkserver child: same losses as in-process, and a memory figure of its own."""
    inline = run_trial(_request(minilm, tmp_path / "inline", candidates="lora,oft", steps=4))
    isolated = run_trial(_request(minilm, tmp_path / "isolated", candidates="lora,oft", steps=4, isolate=True))
    assert _board(inline) == _board(isolated)
    assert all(e.result.peak_memory_bytes > 0 for e in isolated.entries)


def _sums(folder: Path, n: int) -> Path:
    """A small question/answer set: generation data for the tiny Llama."""
    rows = [{"question": f"What is {i} plus {i}?", "answer": f"It is {2 * i}."} for i in range(n)]
    data = folder / "sums.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return data


@pytest.mark.slow
def test_tiny_llama_generation_trial(tiny_llama: Path, tmp_path: Path) -> None:
    data = _sums(tmp_path, 40)
    report = run_trial(
        TrialRequest(
            data=str(data),
            model=str(tiny_llama),
            out=tmp_path / "out",
            candidates="lora,ia3",
            steps=3,
            batch_size=4,
            isolate=False,
            device="cpu",
            lr_search="off",
        )
    )
    board = report.leaderboard
    assert board.metric == "eval loss" and not board.higher_is_better
    assert all(s.entry.result.eval_accuracy is None for s in board.standings)
    scores = [s.score for s in board.standings if s.rank]
    assert scores == sorted(scores)  # lowest loss first
    assert "--for vllm" in report.next_command
    assert all(e.predicted_memory_bytes and e.predicted_memory_bytes > 0 for e in report.entries)  # memory model


# ----------------------------------------------------------------------------- the command line


def _cli(*args: str, cwd: Path, search: bool = False) -> subprocess.CompletedProcess:
    """``peft-advise trial ARGS`` in its own process (the learning-rate search off unless asked for)."""
    env = dict(os.environ, PEFT_ADVISOR_PLAIN="1", HF_HUB_OFFLINE="1")
    extra = [] if search else ["--lr-search", "off"]
    return subprocess.run(
        [sys.executable, "-m", "advisor.cli", "trial", *args, *extra],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=600,
    )


@pytest.mark.slow
@pytest.mark.subprocess
def test_cli_trial_json_plot_adapters_and_hand_off(minilm: Path, tmp_path: Path) -> None:
    """The acceptance path (shortened): isolated candidates, JSON, plot, adapters, and a convert command that works."""
    out = tmp_path / "out"
    proc = _cli(
        "--data",
        str(SAMPLE_DATASET),
        "--model",
        str(minilm),
        "--candidates",
        "lora,ia3",
        "--steps",
        "6",
        "--out",
        str(out),
        "--json",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads(proc.stdout)
    assert data["metric"] == "eval accuracy" and data["budget"]["steps"] == 6
    assert [row["rank"] for row in data["leaderboard"]] == [1, 2]
    assert {row["name"] for row in data["leaderboard"]} == {"lora", "ia3"}
    assert data["leaderboard"][0]["memory_kind"] == "cpu peak RSS growth"
    assert Path(data["plot"]).read_bytes()[:4] == b"\x89PNG"
    assert (out / "adapters" / "ia3" / "adapter_config.json").is_file()
    # Whatever won, the IA3 adapter hands off to the converter with the command next_step prints for it.
    ia3 = next(row for row in data["leaderboard"] if row["name"] == "ia3")
    if data["winner"] == "ia3":
        assert data["next"]["command"].startswith(f"peft-advise convert {ia3['adapter_dir']} ")
    env = dict(os.environ, PEFT_ADVISOR_PLAIN="1", HF_HUB_OFFLINE="1")
    convert = ["convert", ia3["adapter_dir"], str(out / "ia3-as-lora"), "--base-model", str(minilm), "--for", "peft"]
    converted = subprocess.run(
        [sys.executable, "-m", "advisor.cli", *convert], capture_output=True, text=True, env=env, timeout=600
    )
    assert converted.returncode == 0, converted.stdout[-2000:] + converted.stderr[-2000:]
    assert "ready for peft" in converted.stdout
    assert (out / "ia3-as-lora" / "adapter_model.safetensors").is_file()


@pytest.mark.slow
@pytest.mark.subprocess
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--steps", "5", "--minutes", "1"], "--steps or --minutes"),
        (["--steps", "0"], "--steps must be at least 1"),
        (["--eval-fraction", "1.5"], "--eval-fraction"),
        (["--device", "tpu"], "--device"),
    ],
)
def test_cli_bad_options_are_one_line_errors(minilm: Path, tmp_path: Path, args: list[str], message: str) -> None:
    proc = _cli("--data", str(SAMPLE_DATASET), "--model", str(minilm), "--in-process", *args, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("Error:") and message in proc.stderr and len(proc.stderr.splitlines()) == 1


@pytest.mark.slow
@pytest.mark.subprocess
def test_cli_bad_data_is_a_one_line_error(minilm: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("prompt_text,score\nhello,1\n")
    proc = _cli("--data", str(bad), "--model", str(minilm), "--in-process", cwd=tmp_path)
    assert proc.returncode == 2 and "no columns to train on" in proc.stderr
    assert not (tmp_path / "peft-trial").exists()  # nothing written for a trial that never started


@pytest.mark.slow
@pytest.mark.subprocess
def test_data_that_does_not_fit_the_model_is_refused_before_training(minilm: Path, tmp_path: Path) -> None:
    """Text plus an unrecognised label column reads as generation; BERT is no causal LM: say so, train nothing."""
    wrong = tmp_path / "wrongcols.csv"
    rows = [f"this product was {'great' if i % 2 else 'bad'} number {i},{'pos' if i % 2 else 'neg'}" for i in range(30)]
    wrong.write_text("text,sentiment\n" + "\n".join(rows) + "\n")
    proc = _cli("--data", str(wrong), "--model", str(minilm), "--steps", "2", "--in-process", cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout[-1000:] + proc.stderr[-1000:]
    message = proc.stderr.strip()
    assert len(message.splitlines()) == 1 and message.startswith("Error:")
    assert "columns found: text, sentiment" in message and "needs a causal LM" in message
    assert "--label-column sentiment" in message
    assert not (tmp_path / "peft-trial").exists()
    fixed = _cli(
        "--data", str(wrong), "--model", str(minilm), "--label-column", "sentiment", "--candidates", "lora",
        "--steps", "1", "--in-process", "--json", cwd=tmp_path,
    )  # fmt: skip
    assert fixed.returncode == 0, fixed.stderr[-2000:]
    assert json.loads(fixed.stdout)["data"]["kind"] == "classification"


@pytest.mark.slow
@pytest.mark.subprocess
def test_missing_model_folder_and_bad_plot_are_said_before_anything_runs(minilm: Path, tmp_path: Path) -> None:
    missing = _cli("--data", str(SAMPLE_DATASET), "--model", str(tmp_path / "no" / "such" / "model"), cwd=tmp_path)
    assert missing.returncode == 2 and "no such folder" in missing.stderr and "Repo id" not in missing.stderr
    plot = _cli("--data", str(SAMPLE_DATASET), "--model", str(minilm), "--plot", "x.txt", cwd=tmp_path)
    assert plot.returncode == 2 and "ending in .png, .svg, .pdf, .html" in plot.stderr
    assert not (tmp_path / "peft-trial").exists()


@pytest.mark.slow
@pytest.mark.subprocess
def test_all_candidates_failing_exits_1(tiny_llama: Path, tmp_path: Path) -> None:
    data = _sums(tmp_path, 20)
    # vblora's vector_length 256 does not divide the tiny Llama's width 64: its only candidate fails.
    proc = _cli("--data", str(data), "--model", str(tiny_llama), "--candidates", "vblora", "--steps", "1",
                "--in-process", cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "No candidate finished" in proc.stdout


@pytest.mark.slow
def test_trial_text_is_consistent_with_itself(tiny_llama: Path, tmp_path: Path) -> None:
    """No "--vram" contradictions, the real eval-row count, the user's --minutes, a leaderboard place for LoRA."""
    from advisor.output import trial_view

    data = _sums(tmp_path, 30)
    request = TrialRequest(
        data=str(data), model=str(tiny_llama), out=tmp_path / "out", candidates="lora,ia3", steps=2,
        batch_size=4, isolate=False, device="cpu", lr_search="off",
    )  # fmt: skip
    report = run_trial(request)
    assert not any("fitted to --vram" in note for note in report.notes)  # no --vram was given
    assert f"over the same {len(report.data.eval)} eval rows" in report.leaderboard.noise_rule
    text = "\n".join(trial_view.footer_lines(report, None))
    baseline = report.leaderboard.baseline
    if baseline is not report.leaderboard.winner:
        assert f"LoRA baseline: #{baseline.rank} of 2 on the leaderboard" in text
        assert trial_view.gap_with_se(baseline.gap, baseline.gap_se) in text
    probe = CandidateResult("lora", {}, 1e-4, steps_done=4, step_s=0.5, wall_s=12.0)
    assert steps_for_minutes(0.5, 1, probe, probe_s=2.1)[1].startswith("--minutes 0.5: ")


def test_gap_and_its_se_are_shown_at_one_precision() -> None:
    from advisor.output.trial_view import gap_with_se

    assert gap_with_se(1.999, 0.035) == "1.999 ± 0.035"
    assert gap_with_se(0.1042, 0.05) == "0.104 ± 0.050"
    assert gap_with_se(12.3, 4.2) == "12.3 ± 4.2"
    assert gap_with_se(0.25, None) == "0.25"
