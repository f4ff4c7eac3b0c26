"""`peft-advise auto`: budget and data in, the adapter a consumer serves out, resumable and honest.

The end-to-end runs use a tiny Llama with MiniLM's tokenizer and a prompt/response set; the served
folder is judged by the consumer checks (`check-lora --for vllm`) and by PEFT reloading it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from advisor.auto import flow
from advisor.auto.flow import AutoRequest, FidelityRefused, pick_servable, run_auto, serve_command
from advisor.errors import UserError


def _data(folder: Path, n: int = 60) -> Path:
    rows = [{"prompt": f"What is {i} plus {i}?", "response": f"It is {2 * i}."} for i in range(n)]
    path = folder / "sums.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PEFT_ADVISOR_PLAIN="1", HF_HUB_OFFLINE="1")
    return subprocess.run(
        [sys.executable, "-m", "advisor.cli", "auto", *args], capture_output=True, text=True, cwd=cwd, env=env,
        timeout=900,
    )  # fmt: skip


# ----------------------------------------------------------------------------- bad input: one line, exit 2


@pytest.mark.subprocess
@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--serve", "triton"], "--serve must be one of peft, vllm, diffusers"),
        (["--min-fidelity", "0"], "--min-fidelity is the share"),
        (["--min-fidelity", "1.5"], "--min-fidelity is the share"),
    ],
)
def test_bad_options_are_one_line_errors_and_write_nothing(tmp_path: Path, extra: list[str], message: str) -> None:
    out = tmp_path / "out"
    data = _data(tmp_path)
    proc = _cli("--data", str(data), "--model", "m", "--vram", "24", "--out", str(out), *extra, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr
    assert not out.exists()


def test_validate_is_the_same_rule_for_the_space() -> None:
    for bad in (0.0, -0.1, 1.01, float("nan")):
        with pytest.raises(UserError, match="min-fidelity"):
            flow.validate(AutoRequest("d", "m", 24, Path("out"), min_fidelity=bad))
    flow.validate(AutoRequest("d", "m", 24, Path("out"), min_fidelity=1.0, serve="vllm"))


# ----------------------------------------------------------------------------- picking what can be served


def _standing(tmp_path: Path, name: str, method: str, peft_type: str, score: float, rank: int, config: dict):
    from advisor.trial.leaderboard import Entry, Standing
    from advisor.trial.train import CandidateResult

    adapter = tmp_path / name
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"peft_type": peft_type, **config}))
    result = CandidateResult(method, config, 1e-3, adapter_dir=str(adapter), eval_loss=score)
    entry = Entry(name, method, name.upper(), f"{method}/x", "asked", 1e-3, result, False, True)
    return Standing(entry, rank, score, 0.0 if rank == 1 else score - 1.0, 0.01, rank != 1, True)


def test_a_winner_vllm_cannot_serve_gives_way_and_the_cost_is_said(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from advisor.trial.leaderboard import Leaderboard

    lily = _standing(tmp_path, "lily", "lily", "LILY", 1.00, 1, {})
    oft = _standing(tmp_path, "oft", "oft", "OFT", 1.25, 2, {})
    board = Leaderboard("eval loss", False, (lily, oft), "rule", 0.01)
    best, chosen, cost = pick_servable(SimpleNamespace(leaderboard=board), "vllm")
    assert best is lily and chosen is oft
    assert cost.startswith("LILY scored best but vllm cannot serve it") and "0.2500 eval loss" in cost
    # PEFT serves Lily as trained: no cost at all.
    assert pick_servable(SimpleNamespace(leaderboard=board), "peft")[1] is lily


def test_dora_lora_goes_through_the_converter_for_vllm(tmp_path: Path) -> None:
    dora = _standing(tmp_path, "dora", "lora", "LORA", 1.0, 1, {"use_dora": True, "r": 8})
    plain = _standing(tmp_path, "plain", "lora", "LORA", 1.0, 1, {"r": 8})
    assert flow.serving_of(dora.entry, "vllm") == "convert"
    assert flow.serving_of(plain.entry, "vllm") == "native"


def test_serve_command_names_the_folder_as_the_user_has_it() -> None:
    line = serve_command("vllm", "meta-llama/Llama-3.2-1B", "served/oft", 20)
    assert line == ("vllm serve meta-llama/Llama-3.2-1B --enable-lora --max-lora-rank 32 --lora-modules oft=served/oft")
    assert "served/oft" in serve_command("diffusers", "x", "served/oft", None)


# ----------------------------------------------------------------------------- end to end


@pytest.mark.slow
@pytest.mark.subprocess
def test_auto_on_a_small_llama_serves_a_converted_lora_that_vllm_checks_accept(
    talking_llama: Path, tmp_path: Path
) -> None:
    from converters.consumers import check_lora

    data = _data(tmp_path)
    out = tmp_path / "run"
    args = ["--data", str(data), "--model", str(talking_llama), "--vram", "24", "--out", str(out)]
    args += ["--candidates", "oft,boft", "--serve", "vllm", "--steps", "10", "--device", "cpu", "--json"]
    proc = _cli(*args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert set(result) >= {"recommendation", "trial", "winner", "served", "report"}
    served = result["served"]
    contract = {"consumer", "method", "adapter_dir", "converted", "rank", "fidelity", "check", "serve_command"}
    assert set(served) >= contract
    assert served["consumer"] == "vllm" and served["converted"] and served["method"] in {"oft", "boft"}
    assert served["fidelity"] >= 0.95 and served["check"]["passed"]
    folder = out / served["adapter_dir"]
    assert served["adapter_dir"] == f"served/{folder.name}"
    assert check_lora(folder, "vllm").passed  # the consumer rules, on the folder as written
    assert f"--lora-modules {folder.name}=served/{folder.name}" in served["serve_command"]
    assert "--max-lora-rank" in served["serve_command"]
    assert result["trial"]["lr_search"] is not None  # the fair trial, with its search
    report = (out / result["report"]).read_text()
    assert served["serve_command"] in report and "Rank sweep" in report and "data:image/png;base64" in report
    assert str(out / "served") not in served["serve_command"]  # the folder as the user has it, relative to OUT

    # Rerun: every stage is reused (the trial from its store, the conversion from auto.json).
    events: list[str] = []
    request = AutoRequest(
        data=str(data), model=str(talking_llama), vram_gib=24, out=out, candidates="oft,boft", steps=10,
        serve="vllm", device="cpu",
    )  # fmt: skip
    again = run_auto(request, lambda e: events.append(e.text))
    assert any(text.startswith("reusing") for text in events)
    assert again.served.to_dict() == {**served, "name": folder.name} | {"check": again.served.check}
    assert all(e.resumed for e in again.trial.entries)


@pytest.mark.slow
def test_no_rank_reaching_the_minimum_is_refused_and_nothing_is_served(
    talking_llama: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(flow, "sweep_ranks", lambda model, consumer: (1, 2))
    out = tmp_path / "run"
    request = AutoRequest(
        data=str(_data(tmp_path)), model=str(talking_llama), vram_gib=24, out=out, candidates="oft", steps=4,
        serve="vllm", device="cpu", isolate=False, lr_search="off", min_fidelity=0.999,
    )  # fmt: skip
    with pytest.raises(FidelityRefused, match=r"no LoRA rank reaches --min-fidelity 0.999 .*best 0\.\d+ at rank \d"):
        run_auto(request)
    served = out / "served"
    assert not served.exists() or not any(served.iterdir())  # nothing half-written
    assert not (out / "report.html").exists()


@pytest.mark.slow
def test_cli_fidelity_refusal_is_one_line_and_exit_1(
    talking_llama: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from advisor.cli.main import app

    monkeypatch.setattr(flow, "sweep_ranks", lambda model, consumer: (1,))
    out = tmp_path / "run"
    args = ["auto", "--data", str(_data(tmp_path)), "--model", str(talking_llama), "--vram", "24", "--out", str(out)]
    args += ["--candidates", "ia3", "--steps", "3", "--serve", "vllm", "--device", "cpu", "--lr-search", "off"]
    result = CliRunner().invoke(app, [*args, "--in-process", "--min-fidelity", "0.999"])
    assert result.exit_code == 1, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "no LoRA rank reaches --min-fidelity 0.999" in errors[0] and "best " in errors[0]
    assert not (out / "served" / "ia3").exists() and not (out / "report.html").exists()
