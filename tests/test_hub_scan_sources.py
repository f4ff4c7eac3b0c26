"""`peft-advise scan dir|dataset|hub` end to end: real parquet files, a loopback Hub, a killed and resumed scan."""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from fake_hub import FakeHub, FakeRepo, HubState
from shared_data import SHARED_CARDS, needs_shared_cards

CLI = [sys.executable, "-m", "advisor.cli"]


def run_cli(args: list[str], env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})}
    )


def shared_repos(limit: int | None = None) -> list[Path]:
    return sorted(p for p in SHARED_CARDS.iterdir() if p.is_dir())[:limit]


@pytest.fixture(scope="module")
def dir_scan() -> dict:
    result = run_cli(["scan", "dir", str(SHARED_CARDS), "--json"])
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.subprocess
@needs_shared_cards
def test_scan_dir_json_shape(dir_scan: dict) -> None:
    cards = {c["id"]: c for c in dir_scan["cards"]}
    assert len(cards) == 87 and "002" in cards
    assert cards["002"]["config_peft_type"] == "ADALORA" and cards["002"]["card_only"] == []  # the text: nothing
    assert cards["002"]["techniques"] == ["adalora"]  # the repo: its config
    assert cards["005"]["techniques"] == ["dora"] and cards["005"]["config_peft_type"] == "LORA"
    assert cards["047"]["config_peft_type"] is None
    assert cards["024"]["evidence"]["qlora"][0]["text"]
    stats = dir_scan["stats"]
    assert stats["cards"] == 87
    lora = next(s for s in stats["exactly_one"]["shares"] if s["technique"] == "lora")
    assert lora["cards"] >= 40 and 0.9 < lora["share"] <= 1.0
    assert {"agreement", "by_month", "by_pipeline_tag", "by_base_family", "config_truth"} <= set(stats)


@pytest.mark.slow
@pytest.mark.subprocess
@needs_shared_cards
def test_scan_dir_outputs(tmp_path: Path) -> None:
    csv_path, png, html = tmp_path / "s.csv", tmp_path / "s.png", tmp_path / "s.html"
    result = run_cli(
        [
            "scan",
            "dir",
            str(SHARED_CARDS),
            "--no-cards",
            "--csv",
            str(csv_path),
            "--plot",
            str(png),
            "--evaluate",
            "--save",
        ]
    )
    assert result.returncode == 0, result.stderr
    assert "Classifier vs reading labels" in result.stdout and "Agreement" in result.stdout
    assert csv_path.read_text().startswith("section,key,technique,count,share")
    assert png.read_bytes()[:4] == b"\x89PNG"
    usage = json.loads((Path(os.environ["PEFT_ADVISOR_HOME"]) / "hub-usage.json").read_text())
    assert usage["exactly_one"] >= 40 and usage["shares"]["lora"] > 0.9
    result = run_cli(["scan", "dir", str(SHARED_CARDS), "--plot", str(html), "--json"])
    assert result.returncode == 0 and b"plotly" in html.read_bytes()[:200000]


@pytest.mark.slow
@pytest.mark.subprocess
def test_scan_dir_bad_input(tmp_path: Path) -> None:
    result = run_cli(["scan", "dir", str(tmp_path / "missing")])
    assert result.returncode == 2 and result.stderr.startswith("Error:") and len(result.stderr.splitlines()) == 1
    (tmp_path / "empty").mkdir()
    result = run_cli(["scan", "dir", str(tmp_path / "empty")])
    assert result.returncode == 2 and "holds no model cards" in result.stderr
    result = run_cli(["scan", "dir", str(tmp_path / "empty"), "--plot", str(tmp_path / "x.gif")])
    assert result.returncode == 2


def write_card_parquet(path: Path, repos: list[Path], row_group_size: int = 16) -> None:
    import datetime as dt

    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table(
        {
            "modelId": [f"user/{p.name}" for p in repos],
            "author": ["user"] * len(repos),
            "card": [(p / "README.md").read_text(encoding="utf-8", errors="replace") for p in repos],
            "tags": [["transformers"] for _ in repos],
            "library_name": [None for _ in repos],
            "pipeline_tag": ["text-generation" if i % 2 else None for i in range(len(repos))],
            "createdAt": [dt.datetime(2024, 1 + i % 12, 3, tzinfo=dt.timezone.utc) for i in range(len(repos))],
            "downloads": list(range(len(repos))),
        }
    )
    pq.write_table(table, path, row_group_size=row_group_size)


@pytest.mark.slow
@pytest.mark.subprocess
@needs_shared_cards
def test_scan_dataset_parquet_matches_dir(tmp_path: Path, dir_scan: dict) -> None:
    path = tmp_path / "cards.parquet"
    write_card_parquet(path, shared_repos())
    result = run_cli(["scan", "dataset", str(path), "--json", "--no-save", "--workers", "2"])
    assert result.returncode == 0, result.stderr
    stats = json.loads(result.stdout)["stats"]
    assert stats["cards"] == 87
    # Same cards, same classifier: the dump has cards only, so its counts are the folder scan's card-only ones.
    card_only = Counter(t for c in dir_scan["cards"] for t in set(c["card_only"]))
    assert stats["techniques"] == dict(card_only)
    assert sum(r["cards"] for r in stats["by_month"]) == stats["exactly_one"]["cards"]
    limited = run_cli(["scan", "dataset", str(path), "--json", "--no-save", "--limit", "10", "--workers", "1"])
    assert json.loads(limited.stdout)["stats"]["cards"] == 10


@needs_shared_cards
def test_card_dump_streams_in_bounded_batches(tmp_path: Path) -> None:
    from hub_scan.sources.card_dump import iter_batches, resolve_shards

    path = tmp_path / "cards.parquet"
    write_card_parquet(path, shared_repos(40), row_group_size=8)
    batches = list(iter_batches(resolve_shards(str(path)), batch_rows=8))
    assert all(len(b) <= 8 for b in batches) and sum(len(b) for b in batches) == 40
    assert batches[0][0].created_at.startswith("2024-01-03")


@pytest.mark.slow
@pytest.mark.subprocess
def test_scan_dataset_bad_inputs(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    result = run_cli(["scan", "dataset", str(tmp_path / "nope.parquet")])
    assert result.returncode == 2 and "no parquet files" in result.stderr
    pq.write_table(pa.table({"modelId": ["a"], "text_x": ["b"]}), tmp_path / "wrong.parquet")
    result = run_cli(["scan", "dataset", str(tmp_path / "wrong.parquet")])
    assert result.returncode == 2 and "no card column" in result.stderr and len(result.stderr.splitlines()) == 1
    (tmp_path / "junk.parquet").write_text("not parquet")
    result = run_cli(["scan", "dataset", str(tmp_path / "junk.parquet")])
    assert result.returncode == 2 and "not a readable parquet file" in result.stderr


# --------------------------------------------------------------------------- the live-Hub path, on loopback


def hub_state(n: int = 16) -> HubState:
    models = []
    for i, folder in enumerate(shared_repos(n)):
        files = {"README.md": (folder / "README.md").read_bytes()}
        if (folder / "adapter_config.json").exists():
            files["adapter_config.json"] = (folder / "adapter_config.json").read_bytes()
        tags = ["peft", "safetensors", f"base_model:adapter:base/model-{i % 3}"]
        models.append(FakeRepo(id=f"user/card-{folder.name}", files=files, tags=tags, pipeline_tag="text-generation"))
    models.append(FakeRepo(id="user/not-peft", files={"README.md": b"# x"}, tags=["transformers"], library_name=None))
    return HubState(models=models, page_size=5)


def hub_env(hub: FakeHub, tmp_path: Path) -> dict[str, str]:
    # huggingface_hub reads these when it is imported: a subprocess gets a fresh import.
    return {"HF_ENDPOINT": hub.url, "HF_HUB_OFFLINE": "0", "HF_HOME": str(tmp_path / "hf"), "HF_TOKEN": "hf_test"}


@pytest.mark.slow
@pytest.mark.subprocess
@needs_shared_cards
def test_scan_hub_with_injected_errors_and_slow_responses(tmp_path: Path) -> None:
    state = hub_state()
    state.fail = {"/api/models": [429, 500], "card-004/resolve": [500, 429, 503], "card-010/resolve": [502]}
    state.models.append(FakeRepo(id="org/gated", files={"README.md": b"# x"}, tags=["peft"], gated=True))
    state.delay_s = 0.05
    with FakeHub(state) as hub:
        result = run_cli(
            ["scan", "hub", "--json", "--no-save", "--cards", "--state-dir", str(tmp_path / "s")],
            env=hub_env(hub, tmp_path),
        )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["stats"]["cards"] == 16  # "user/not-peft" is not listed by the peft filter
    ids = [c["id"] for c in data["cards"]]
    assert len(ids) == len(set(ids)) == 16
    assert all(not statuses for statuses in state.fail.values())  # every injected fault was hit and retried
    by_id = {c["id"]: c for c in data["cards"]}
    assert by_id["user/card-002"]["config_peft_type"] == "ADALORA"
    assert data["stats"]["by_base_family"] and data["stats"]["by_pipeline_tag"]
    assert state.authorizations == {"Bearer hf_test"}  # HF_TOKEN sent with every request
    assert any("1 gated or private repos left out" in note for note in data["notes"])


def _safetensors_bytes(names: list[str]) -> bytes:
    header = {n: {"dtype": "F16", "shape": [2], "data_offsets": [4 * i, 4 * i + 4]} for i, n in enumerate(names)}
    blob = json.dumps(header).encode()
    return struct.pack("<Q", len(blob)) + blob + b"\0" * (4 * len(names))


@pytest.mark.slow
@pytest.mark.subprocess
def test_scan_hub_union_of_filters_counts_each_repo_once(tmp_path: Path) -> None:
    lora_config = json.dumps({"peft_type": "LORA", "r": 8}).encode()
    models = [
        FakeRepo(
            id="u/peft-and-lora",
            files={"README.md": b"---\nlibrary_name: peft\n---\nAn adapter.", "adapter_config.json": lora_config},
            tags=["peft", "lora"],
        ),
        FakeRepo(
            id="u/peft-only",
            files={"README.md": b"# x", "adapter_config.json": json.dumps({"peft_type": "IA3"}).encode()},
            tags=["peft"],
        ),
        FakeRepo(
            id="u/diffusers-lora",
            files={"README.md": b"A style.", "pytorch_lora_weights.safetensors": _safetensors_bytes(["a"])},
            tags=["lora", "diffusers"],
            library_name="diffusers",
        ),
        FakeRepo(
            id="u/kohya",
            files={"README.md": b"A style.", "style.safetensors": _safetensors_bytes(["lora_unet_a.lora_down.weight"])},
            tags=["lora"],
            library_name=None,
        ),
        FakeRepo(id="u/other", files={"README.md": b"# x"}, tags=["transformers"], library_name=None),
    ]
    with FakeHub(HubState(models=models, page_size=2)) as hub:
        args = ["scan", "hub", "--filter", "peft", "--filter", "lora", "--json", "--no-save", "--cards"]
        result = run_cli([*args, "--state-dir", str(tmp_path / "s")], env=hub_env(hub, tmp_path))
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    by_id = {c["id"]: c for c in data["cards"]}
    assert sorted(by_id) == ["u/diffusers-lora", "u/kohya", "u/peft-and-lora", "u/peft-only"]  # each once
    assert data["stats"]["cards"] == 4
    assert by_id["u/diffusers-lora"]["techniques"] == ["lora"] and by_id["u/kohya"]["techniques"] == ["lora"]
    assert by_id["u/peft-only"]["techniques"] == ["ia3"] and by_id["u/peft-and-lora"]["techniques"] == ["lora"]
    population = next(n for n in data["notes"] if n.startswith("population"))
    assert "4 repos matching any of the filters ('peft' 2, 'lora' 3); 1 matched more than one" in population


@pytest.mark.slow
@pytest.mark.subprocess
@needs_shared_cards
def test_scan_hub_killed_then_resumed_counts_like_one_run(tmp_path: Path) -> None:
    state = hub_state()
    with FakeHub(state) as hub:
        env = hub_env(hub, tmp_path / "a")
        full = run_cli(["scan", "hub", "--json", "--no-save", "--state-dir", str(tmp_path / "one")], env=env)
        assert full.returncode == 0, full.stderr
        state.delay_s = 0.4  # slow enough to kill mid-way
        env = hub_env(hub, tmp_path / "b")  # a fresh HF cache: nothing to read from disk
        journal = tmp_path / "two" / "results.jsonl"
        proc = subprocess.Popen(
            [*CLI, "scan", "hub", "--json", "--no-save", "--workers", "2", "--state-dir", str(tmp_path / "two")],
            env={**os.environ, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        deadline = time.time() + 60
        while time.time() < deadline and (not journal.exists() or len(journal.read_text().splitlines()) < 4):
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        done_before = len(journal.read_text().splitlines())
        assert 4 <= done_before < 16
        with open(journal, "a") as handle:  # as if the kill had torn a line in half
            handle.write('{"id": "user/card-0')
        state.delay_s = 0.0
        before = len(state.requests)
        resumed = run_cli(["scan", "hub", "--json", "--no-save", "--state-dir", str(tmp_path / "two")], env=env)
        assert resumed.returncode == 0, resumed.stderr
        listing_calls = [r for r in state.requests[before:] if "/api/models" in r]
    assert listing_calls == []  # the saved listing is reused
    one, two = json.loads(full.stdout), json.loads(resumed.stdout)
    assert two["stats"] == one["stats"]
    assert "(resumed)" in two["notes"][0]
    lines = [
        json.loads(x)["id"]
        for x in journal.read_text().splitlines()
        if x.startswith('{"id": "user/card-') and x.endswith("}")
    ]
    assert len(lines) == len(set(lines)) == 16


@pytest.mark.slow
@pytest.mark.subprocess
@needs_shared_cards
def test_scan_dataset_from_hub_dataset(tmp_path: Path) -> None:
    path = tmp_path / "train-00000-of-00001.parquet"
    write_card_parquet(path, shared_repos(30))
    state = HubState(
        datasets={
            "librarian-bots/model_cards_with_metadata": {
                "data/train-00000-of-00001.parquet": path.read_bytes(),
                "README.md": b"# dump",
            }
        }
    )
    with FakeHub(state) as hub:
        env = hub_env(hub, tmp_path)
        result = run_cli(
            [
                "scan",
                "dataset",
                "hf://datasets/librarian-bots/model_cards_with_metadata/data/*.parquet",
                "--json",
                "--no-save",
            ],
            env=env,
        )
        missing = run_cli(["scan", "dataset", "hf://datasets/someone/absent", "--no-save"], env=env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["stats"]["cards"] == 30
    assert missing.returncode == 2 and "not found on the Hub" in missing.stderr


@pytest.mark.subprocess
def test_scan_hub_offline_is_a_clear_error(tmp_path: Path) -> None:
    result = run_cli(
        ["scan", "hub", "--no-save", "--state-dir", str(tmp_path / "s")],
        env={"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")},
    )
    assert result.returncode == 2 and result.stderr.startswith("Error:") and len(result.stderr.splitlines()) == 1
    assert "HF_HUB_OFFLINE is set" in result.stderr


@pytest.mark.subprocess
def test_scan_hub_with_an_unreachable_endpoint_fails_on_the_first_try(tmp_path: Path) -> None:
    """A refused connection is not retried for minutes (huggingface_hub's 5 retries times our 6): one line, at once."""
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = run_cli(
        ["scan", "hub", "--no-save", "--state-dir", str(tmp_path / "s")],
        env={"HF_HUB_OFFLINE": "0", "HF_ENDPOINT": f"http://127.0.0.1:{port}", "HF_HOME": str(tmp_path / "hf")},
        timeout=60,
    )
    assert result.returncode == 2 and "cannot reach the Hub at http://127.0.0.1" in result.stderr
    assert "Retrying" not in result.stderr and len(result.stderr.splitlines()) == 1


@pytest.mark.slow
@pytest.mark.subprocess
def test_ctrl_c_in_a_parallel_scan_leaves_no_worker_tracebacks(tmp_path: Path) -> None:
    """The terminal sends SIGINT to the whole process group: workers must leave it to the parent."""
    script = """
import os, signal, sys, threading, time
import hub_scan.scan as scan
from hub_scan.records import CardRecord

def slow(batch):
    time.sleep(30)

scan.scan_batch_stats = slow  # fork: the workers inherit it
signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal (a background job inherits SIG_IGN)
threading.Timer(1.5, lambda: os.killpg(os.getpgrp(), signal.SIGINT)).start()
batches = ([CardRecord(id=f"r{i}", card="LoRA")] for i in range(6))
try:
    scan.scan_batches_parallel(batches, workers=4)
except KeyboardInterrupt:
    print("interrupted", file=sys.stderr)
    sys.exit(130)
"""
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, start_new_session=True
    )
    assert proc.returncode == 130, proc.stderr
    assert proc.stderr.strip() == "interrupted", proc.stderr


@pytest.mark.slow
@pytest.mark.subprocess
def test_convert_downloads_an_adapter_from_the_hub(tiny_llama: Path, tmp_path: Path) -> None:
    """The converter's Hub path (snapshot_download of config + safetensors + card) on the loopback Hub."""
    from adapter_factory import make_adapter

    folder = make_adapter("OFT", "llama", tiny_llama, tmp_path / "oft")
    files = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    files["training_args.bin"] = b"not to be downloaded"
    state = HubState(models=[FakeRepo(id="user/llama-oft", files=files, tags=["peft"])])
    with FakeHub(state) as hub:
        env = hub_env(hub, tmp_path)
        result = run_cli(["convert", "user/llama-oft", str(tmp_path / "lora"), "--rank", "8"], env=env, timeout=300)
        gone = run_cli(["convert", "user/absent", str(tmp_path / "x")], env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "lora" / "adapter_model.safetensors").is_file()
    assert not any("training_args.bin" in r for r in state.requests)  # only config, weights and card
    assert gone.returncode == 2 and "not found on the Hub" in gone.stderr and not (tmp_path / "x").exists()


@pytest.mark.slow
@pytest.mark.subprocess
def test_trial_data_from_a_hub_dataset(tmp_path: Path) -> None:
    """A trial's --data can be a Hub dataset id: its parquet files, read through the same Hub helper."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from advisor.trial.data import SAMPLE_DATASET

    rows = [json.loads(line) for line in SAMPLE_DATASET.read_text().splitlines()]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "train.parquet")
    state = HubState(
        datasets={"user/sentiment": {"data/train-00000.parquet": (tmp_path / "train.parquet").read_bytes()}}
    )
    code = "from advisor.trial.data import load_trial_data as f; print(f('user/sentiment').describe())"
    with FakeHub(state) as hub:
        result = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, **hub_env(hub, tmp_path)},
        )
    assert result.returncode == 0, result.stderr
    assert "2-class classification from text, label; 192 train / 48 eval" in result.stdout
