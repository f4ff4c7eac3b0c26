"""The Space's callbacks are the CLI's library calls: same ranking, same errors as messages, no tracebacks."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from advisor.cli import app
from space import callbacks

LLAMA_8B = {
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "vocab_size": 128256,
    "tie_word_embeddings": False,
}


def test_recommend_tab_matches_the_cli_json() -> None:
    result = callbacks.recommend(24, "math")
    cli = json.loads(CliRunner().invoke(app, ["--vram", "24", "--task", "math", "--json"]).output)
    assert not result.message
    top = dict(zip(result.headers, result.rows[0], strict=True))
    assert result.methods[0] == cli["rows"][0]["method"] and top["#"] == "1"
    assert top["variant"].startswith(cli["rows"][0]["variant"])
    assert len(result.rows) == len(cli["rows"]) and result.data["rows"] == cli["rows"]
    assert result.figure is not None and len(result.figure.data) >= 2  # points and the frontier


def test_recommend_tab_errors_are_messages() -> None:
    assert "budget" in callbacks.recommend(None, "math").message
    assert "unknown task" in callbacks.recommend(24, "weather").message
    assert "--vram must be a positive" in callbacks.recommend(-1, "math").message
    assert "no such folder" in callbacks.recommend(24, "math", model="./not/here").message


def test_recommend_tab_predicts_for_a_model(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps(LLAMA_8B))
    result = callbacks.recommend(24, "math", model=str(tmp_path), quant="4bit")
    assert not result.message and result.data["memory_model"]["predicted"]
    assert any("PREDICTIONS" in line for line in result.lines)


def test_config_snippet_is_runnable_python() -> None:
    code = callbacks.config_snippet(24, "math", "oft")
    compile(code, "<snippet>", "exec")
    assert "OFTConfig" in code
    assert callbacks.config_snippet(24, "math", "nosuchmethod").startswith("# ")


def test_the_app_builds_with_its_tabs() -> None:
    from space.app import _recommend, build_app

    blocks = build_app()
    assert blocks is not None
    table, _figure, picker, notes = _recommend(24, "math", "", "none", "score", [])
    assert table["value"][0][1] and picker["choices"] and notes.startswith("Task:")
    assert _recommend(None, "math", "", "none", "score", [])[3].startswith("**Error:**")
