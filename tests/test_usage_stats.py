"""Statistics add up exactly (workers, resumed scans), survive JSON, and reach the recommender."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from method_cards import CARDS

from hub_scan.records import CardRecord
from hub_scan.scan import ScanResult, scan_batch_stats, scan_record
from hub_scan.stats import UsageStats, base_family, compute_stats, config_label
from hub_scan.usage_file import load_usage, save_usage


def records() -> list[CardRecord]:
    out = []
    for i, (name, (text, _)) in enumerate(sorted(CARDS.items())):
        out.append(
            CardRecord(
                id=name,
                card=text,
                created_at=f"2025-{1 + i % 3:02d}-01",
                pipeline_tag="text-generation" if i % 2 else None,
                base_model="meta-llama/Llama-3.1-8B" if i % 3 else "Qwen/Qwen2.5-7B",
                config_peft_type="LORA" if "lora" in name else None,
                config_flags=("use_dora",) if name == "longlora" else (),
            )
        )
    return out


def test_merged_batches_equal_one_pass() -> None:
    recs = records()
    whole = compute_stats(scan_record(r) for r in recs)
    parts = UsageStats()
    for start in range(0, len(recs), 5):
        parts.merge(scan_batch_stats(recs[start : start + 5]))
    assert parts.to_dict() == whole.to_dict()
    assert UsageStats.from_dict(json.loads(json.dumps(whole.to_dict()))).to_dict() == whole.to_dict()


def test_blog_statistic_counts_only_single_technique_cards() -> None:
    stats = compute_stats(scan_record(r) for r in records())
    shares = {r["technique"]: r for r in stats.shares()}
    assert stats.exactly_one_total == sum(r["cards"] for r in shares.values())
    assert abs(sum(r["share"] for r in shares.values()) - 1) < 1e-9
    assert "full" not in shares and "galore" not in shares  # not PEFT techniques
    assert shares["lora"]["cards"] >= 2  # qlora and longlora count as LoRA
    assert sum(stats.by_month.values()) == stats.exactly_one_total


def test_labels_and_families() -> None:
    assert config_label("LORA", ("use_dora",)) == "dora"
    assert config_label("IA3", ()) == "ia3"
    assert config_label(None, ()) == "no config"
    assert base_family("meta-llama/Meta-Llama-3-8B") == "llama"
    assert base_family("unsloth/gemma-2-9b-bnb-4bit") == "gemma"
    assert base_family("stabilityai/stable-diffusion-xl-base-1.0") == "stable-diffusion"


@pytest.mark.subprocess
def test_usage_file_reaches_the_recommender() -> None:
    stats = compute_stats(scan_record(r) for r in records())
    path = save_usage(ScanResult("test cards", "dir", stats))
    assert load_usage(path).exactly_one == stats.exactly_one_total
    env = {**os.environ}
    out = subprocess.run(
        [sys.executable, "-m", "advisor.cli", "--vram", "24", "--task", "math"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    line = next(x for x in out.stdout.splitlines() if x.startswith("Hub usage"))
    assert f"{stats.exactly_one_total} reporting exactly one" in line and "LoRA" in line
    data = json.loads(
        subprocess.run(
            [sys.executable, "-m", "advisor.cli", "--vram", "24", "--task", "math", "--json"],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        ).stdout
    )
    assert data["hub_usage"]["exactly_one"] == stats.exactly_one_total
    assert data["hub_usage"]["recommended"]["method"] == data["rows"][0]["method"]


def test_unreadable_usage_file_is_ignored(tmp_path) -> None:
    bad = tmp_path / "u.json"
    bad.write_text("{not json")
    assert load_usage(bad) is None
