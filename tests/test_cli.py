"""The CLI through typer's CliRunner, plus a real subprocess for the import-weight check."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from advisor.benchmarks.store import load_snapshot, user_snapshot_path
from advisor.cli import app
from advisor.methods.registry import load_registry
from advisor.recommend import Query, recommend

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args))


def test_json_shape_math() -> None:
    result = invoke("--vram", "24", "--task", "math", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert {"task", "benchmark", "unit", "budget", "rows", "lora"} <= set(data)
    assert (data["task"], data["benchmark"], data["unit"], data["budget"]) == ("math", "MetaMathQA", "GiB", 24.0)
    row_keys = {"rank", "method", "variant", "score", "peak_memory_gib", "pareto", "within_noise"}
    assert all(row_keys <= set(r) for r in data["rows"])
    assert all(r["peak_memory_gib"] <= 24 for r in data["rows"])
    scores = [r["score"] for r in data["rows"]]
    assert scores == sorted(scores, reverse=True)
    assert data["lora"]["plain"]["method"] == "lora"
    expected = recommend(Query(24, "math"), load_snapshot(), load_registry())
    assert [r["method"] for r in data["rows"]] == [r.method.name for r in expected.rows]


def test_json_shape_image_and_frontier() -> None:
    data = json.loads(invoke("--vram", "24", "--task", "image", "--json").stdout)
    assert data["benchmark"] == "image-gen" and data["setup"]["resolution"] == 512
    rows = data["rows"]
    for row in rows:
        dominated = any(
            o["score"] >= row["score"]
            and o["peak_memory_gib"] <= row["peak_memory_gib"]
            and (o["score"] > row["score"] or o["peak_memory_gib"] < row["peak_memory_gib"])
            for o in rows
            if o is not row
        )
        assert row["pareto"] == (not dominated)
    oft = next(r for r in rows if r["method"] == "oft")
    assert oft["pareto"]  # OFT beats LoRA on memory at a close score: on the frontier


def test_plain_table_in_a_pipe() -> None:
    result = invoke("--vram", "24", "--task", "math", "--top", "5")
    assert result.exit_code == 0
    out = result.stdout
    assert "Budget: 24 GiB" in out and "Measured on: meta-llama/Llama-3.2-3B, bfloat16, batch 4, seq 768" in out
    assert "Plain LoRA (rank10-target-mlp)" in out and "Best LoRA variant" in out
    assert "Noise rule:" in out and "Showing the top 5" in out
    assert "│" not in out and "\x1b[" not in out  # plain text: no box drawing, no colour


def test_rich_table_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PEFT_ADVISOR_PLAIN")
    monkeypatch.setenv("PEFT_ADVISOR_RICH", "1")
    monkeypatch.setenv("COLUMNS", "200")
    result = invoke("--vram", "24", "--task", "math", "--top", "3")
    assert result.exit_code == 0 and "────" in result.stdout and "9,485,280" in result.stdout
    assert "hidden at" not in result.stdout  # wide enough: every column shown


def _table_block(text: str) -> list[str]:
    """The lines of the first rich table: its header lines, the rule, the rows up to the "(hidden" line."""
    lines = text.splitlines()
    rule = next(i for i, line in enumerate(lines) if set(line.strip()) == {"─"})
    header = ("Task:", "Budget:", "Measured on:", "Memory predicted", "Ranked", "Note:")
    start = max(i for i in range(rule) if lines[i].startswith(header)) + 1
    end = next(i for i in range(rule + 1, len(lines)) if lines[i].startswith("(hidden"))
    return lines[start:end]


@pytest.mark.parametrize(
    "args",
    [
        ["--vram", "24", "--task", "math"],
        ["--vram", "24", "--task", "math", "--all-variants", "--objective", "memory"],
        ["--vram", "12", "--task", "image"],
        ["methods"],
    ],
)
def test_tables_stay_readable_in_80_columns(monkeypatch: pytest.MonkeyPatch, args: list[str]) -> None:
    """No number is ever cut to "0.52…": low-priority columns are hidden (and named), text wraps."""
    monkeypatch.delenv("PEFT_ADVISOR_PLAIN")
    monkeypatch.setenv("PEFT_ADVISOR_RICH", "1")
    monkeypatch.setenv("COLUMNS", "80")
    result = invoke(*args, "--json") if args[0] != "methods" else None
    out = invoke(*args).stdout
    assert "…" not in out
    if result is not None:
        table = "\n".join(_table_block(out))
        assert all(len(line) <= 80 for line in _table_block(out))
        for row in json.loads(result.stdout)["rows"]:
            assert f"{row['rank']:>2}  {row['method_display'].split()[0]}" in table and f"{row['score']:.4f}" in table
        assert "(hidden at 80 columns: " in out
    else:
        header = next(line for line in out.splitlines() if line.startswith("name"))
        assert len(header) <= 80 and "merge" in header


def test_task_stand_in_is_said() -> None:
    out = invoke("--vram", "24", "--task", "code").stdout
    assert "Note: no code benchmark is stored; MetaMathQA" in out


def test_nothing_fits_message() -> None:
    result = invoke("--vram", "4", "--task", "math")
    assert result.exit_code == 0
    assert "No MetaMathQA run fits 4 GiB." in result.stdout
    assert "needs" in result.stdout and "GiB more" in result.stdout
    data = json.loads(invoke("--vram", "4", "--task", "math", "--json").stdout)
    assert data["rows"] == [] and data["nothing_fits"]["shortfall_gib"] > 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--vram", "24", "--task", "poetry"], "unknown task 'poetry'; valid tasks:"),
        (["--task", "math"], "--vram missing"),
        (["--vram", "24"], "--task missing"),
        (["--vram", "-3", "--task", "math"], "--vram must be a positive"),
        (["--vram", "24", "--task", "math", "--require", "gpu"], "unknown requirement 'gpu'"),
        (["--vram", "24", "--task", "math", "--show-config", "nonsense"], "unknown PEFT method 'nonsense'"),
        (["--vram", "24", "--task", "math", "--plot", "out.txt"], "use a file name ending in .png, .svg, .pdf, .html"),
    ],
)
def test_user_errors_are_one_line_exit_2(args: list[str], message: str) -> None:
    result = invoke(*args)
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: ") and message in result.stderr
    assert result.stderr.count("\n") == 1
    assert result.stdout == ""


def test_lora_lines_name_the_true_best_row_under_top() -> None:
    out = invoke("--vram", "24", "--task", "math", "--objective", "memory", "--top", "2").stdout
    best = recommend(Query(24, "math", objective="memory"), load_snapshot(), load_registry()).best
    assert f"the best-scoring row ({best.method.display_name}" in out and f"row {best.rank})" in out


@pytest.mark.subprocess
@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--vram", "abc", "--task", "math"], "Error: Invalid value for '--vram'"),
        (["--bogus"], "Error: No such option: --bogus"),
        (["--vram", "24", "--task", "poetry"], "Error: unknown task 'poetry'"),
    ],
)
def test_console_entry_point_gives_one_line_errors(
    argv: list[str], message: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from advisor.cli import main

    monkeypatch.setattr(sys, "argv", ["peft-advise", *argv])
    with pytest.raises(SystemExit) as exit_info:
        main()
    captured = capsys.readouterr()
    assert exit_info.value.code == 2
    assert captured.err.startswith(message) and captured.err.count("\n") == 1
    assert captured.out == ""


def test_show_config_of_a_method_that_does_not_fit_uses_its_best_run() -> None:
    result = invoke("--vram", "24", "--task", "math", "--show-config", "osf")  # OSF needs 35.9 GiB
    assert result.exit_code == 0 and "osf/llama-3.2-3B-rank128" in result.stdout
    missing = invoke("--vram", "24", "--task", "math", "--show-config", "lora/rank999")
    assert missing.exit_code == 2 and "no lora run named 'rank999'" in missing.stderr


@pytest.mark.slow
@pytest.mark.subprocess
def test_show_config_is_runnable_peft_code() -> None:
    peft = pytest.importorskip("peft")
    result = invoke("--vram", "24", "--task", "math", "--show-config", "oft")
    assert result.exit_code == 0, result.output
    snippet = result.stdout
    assert "from peft import OFTConfig" in snippet
    namespace: dict = {}
    exec(snippet.split("model = get_peft_model")[0], namespace)  # builds the real config object
    config = namespace["config"]
    assert isinstance(config, peft.OFTConfig) and config.r == 32
    assert sorted(config.target_modules) == ["q_proj", "v_proj"]
    lora = invoke("--vram", "24", "--task", "math", "--show-config", "lora/rank64-rslora").stdout
    exec(lora.split("model = get_peft_model")[0], namespace)
    assert namespace["config"].use_rslora and namespace["config"].r == 64


def test_plot_is_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("matplotlib")
    monkeypatch.chdir(tmp_path)  # a missing folder inside the working directory is created
    target = Path("plots") / "pareto.png"
    result = invoke("--vram", "24", "--task", "image", "--plot", str(target))
    assert result.exit_code == 0, result.output
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in target.parent.iterdir() if p.name.startswith(".")]  # no temp file left behind
    html = invoke("--vram", "24", "--task", "math", "--plot", "pareto.html")  # same formats in every command
    assert html.exit_code == 0 and "plotly" in Path("pareto.html").read_text()[:100_000]


def test_output_paths_are_checked_before_any_work(tmp_path: Path) -> None:
    """A folder named like a file, a file in the way, a missing folder outside the working directory."""
    (tmp_path / "isdir.png").mkdir()
    (tmp_path / "afile").write_text("x")
    cases = [
        (["--plot", str(tmp_path / "isdir.png")], "is a folder"),
        (["--plot", str(tmp_path / "afile" / "p.png")], "is a file, not a folder"),
        (["--plot", str(tmp_path / "nonexistent" / "dir" / "p.png")], "does not exist; create it first"),
        (["--plot", str(tmp_path / "p.gif")], "ending in .png, .svg, .pdf, .html"),
    ]
    for extra, message in cases:
        result = invoke("--vram", "24", "--task", "math", *extra)
        assert result.exit_code == 2, (extra, result.output)
        assert message in result.stderr and result.stderr.count("\n") == 1, result.stderr
    for extra, message in [
        (["--csv", str(tmp_path / "isdir.png")], "is a folder"),
        (["--plot", str(tmp_path / "nonexistent" / "c.html")], "does not exist"),
    ]:
        result = invoke("scan", "dir", str(tmp_path), *extra)
        assert result.exit_code == 2 and message in result.stderr, result.output
    assert not (tmp_path / "nonexistent").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "isdir.png"]


def test_refresh_benchmarks_from_fixture_folder(fixture_results: Path) -> None:
    result = invoke("refresh-benchmarks", "--from", str(fixture_results), "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["runs"] == 5 and len(report["skipped"]) == 6
    # Compared with the shipped snapshot: four fixture runs share its ids (with other figures).
    assert report["added"] == ["MetaMathQA/full-finetuning/llama-3.2-3B-lr"]
    assert len(report["changed"]) == 4 and len(report["removed"]) == 90
    assert user_snapshot_path().exists()
    # The refreshed snapshot is now the one the recommender reads.
    data = json.loads(invoke("--vram", "24", "--task", "math", "--json").stdout)
    assert {r["method"] for r in data["rows"]} == {"lora", "oft", "ia3"}
    again = json.loads(invoke("refresh-benchmarks", "--from", str(fixture_results), "--json").stdout)
    assert again["added"] == [] and again["removed"] == [] and again["unchanged"] == 5
    text = invoke("refresh-benchmarks", "--from", str(fixture_results)).stdout
    assert "Imported 5 runs" in text and "invalid JSON" in text


def test_refresh_with_nothing_usable_writes_nothing(tmp_path: Path) -> None:
    (tmp_path / "MetaMathQA").mkdir()
    (tmp_path / "MetaMathQA" / "x.json").write_text("{")
    out = tmp_path / "snap.json"
    result = invoke("refresh-benchmarks", "--from", str(tmp_path), "--output", str(out))
    assert result.exit_code == 2 and "no usable PEFT result files" in result.stderr
    assert not out.exists() and not list(tmp_path.glob(".snap.json*"))


def test_corrupt_snapshot_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    monkeypatch.setenv("PEFT_ADVISOR_SNAPSHOT", str(bad))
    result = invoke("--vram", "24", "--task", "math")
    assert result.exit_code == 2 and "unreadable" in result.stderr and "refresh-benchmarks" in result.stderr


def test_methods_listing_and_json() -> None:
    result = invoke("methods")
    assert result.exit_code == 0 and "oft" in result.stdout and "peft→LoRA" in result.stdout
    data = json.loads(invoke("methods", "OFT", "--json").stdout)
    assert data["methods"][0]["peft_type"] == "OFT" and data["methods"][0]["can_merge"] is True
    assert invoke("methods", "nope").exit_code == 2


@pytest.mark.subprocess
def test_recommend_path_imports_no_torch_transformers_or_peft() -> None:
    code = (
        "import sys\n"
        "from advisor.cli import main\n"
        "sys.argv = ['peft-advise', '--vram', '24', '--task', 'math', '--json']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "heavy = sorted(m for m in ('torch', 'transformers', 'peft', 'matplotlib', 'gradio') if m in sys.modules)\n"
        "print('HEAVY', heavy, file=sys.stderr)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "HEAVY []" in proc.stderr
    assert json.loads(proc.stdout)["rows"]


def test_predicted_rows_carry_no_benchmark_model_figures(minilm: Path) -> None:
    """With --model, trainable parameters and checkpoint size are the user's model's, train time is marked."""
    from advisor.memory.shapes import read_shape

    result = invoke("--vram", "24", "--task", "math", "--model", str(minilm), "--all-variants", "--json")
    data = json.loads(result.stdout)
    total = read_shape(str(minilm)).total_params
    full = next(row for row in data["rows"] if row["method"] == "full")
    assert full["trainable_params"] == total  # 22.7M, not Llama-3B's 3.2B
    assert full["checkpoint_bytes"] < 4 * total  # tens of MB, not 6.4 GB
    lora = next(row for row in data["rows"] if row["method"] == "lora")
    assert lora["trainable_params"] < 2_000_000
    assert set(data["memory_model"]["predicted_fields"]) == {"peak_memory_gib", "trainable_params", "checkpoint_bytes"}
    assert "train_time_s" in data["memory_model"]["measured_on_benchmark"]
    text = invoke("--vram", "24", "--task", "math", "--model", str(minilm)).stdout
    assert "bench. min" in text and "train minutes stay the benchmark's own" in text


def test_rows_far_below_the_best_are_said() -> None:
    data = json.loads(invoke("--vram", "24", "--task", "math", "--objective", "memory", "--json").stdout)
    first = data["rows"][0]
    assert first["method"] in ("tinylora", "unilora", "ln_tuning") and first["far_below_best"]
    assert any("far below" in note for note in data["notes"])
    assert "far below" in invoke("--vram", "24", "--task", "math", "--objective", "memory", "--top", "3").stdout
    by_score = json.loads(invoke("--vram", "24", "--task", "math", "--json").stdout)["rows"]
    assert not by_score[0]["far_below_best"] and by_score[-1]["far_below_best"]


def test_secondary_metrics_flag_no_row_as_within_noise() -> None:
    data = json.loads(invoke("--vram", "24", "--task", "math", "--metric", "forgetting", "--json").stdout)
    assert "within_noise is false for every row" in data["noise_rule"]
    assert not any(row["within_noise"] for row in data["rows"])


def test_best_lora_variant_below_plain_lora_is_said() -> None:
    data = json.loads(invoke("--vram", "24", "--task", "image", "--json").stdout)
    plain, variant = data["lora"]["plain"], data["lora"]["best_variant"]
    assert variant["score"] < plain["score"]
    assert "no LoRA variant beats plain LoRA here" in invoke("--vram", "24", "--task", "image").stdout
    math_text = invoke("--vram", "24", "--task", "math").stdout  # rsLoRA beats plain LoRA on math: no such line
    assert "no LoRA variant beats plain LoRA" not in math_text


def test_show_config_takes_method_colon_variant_like_trial() -> None:
    for spec in ("lora:rank32-dora", "lora/rank32-dora"):
        result = invoke("--vram", "24", "--task", "math", "--show-config", spec)
        assert result.exit_code == 0, result.output
        assert "lora/llama-3.2-3B-rank32-dora" in result.stdout and "use_dora=True" in result.stdout
    wrong = invoke("--vram", "24", "--task", "math", "--show-config", "lora:nope")
    assert wrong.exit_code == 2 and "its runs: rank10-target-mlp" in wrong.stderr
