"""The importer: real upstream files, small fixtures in the same layout, broken files, diffs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from advisor.benchmarks.definitions import BENCHMARKS, GSM8K_TEST_SIZE
from advisor.benchmarks.importer import build_snapshot, compare
from advisor.benchmarks.records import GIB, Snapshot
from advisor.benchmarks.sources import local_source, open_source
from advisor.benchmarks.store import SHIPPED_SNAPSHOT, load_snapshot
from advisor.errors import UserError
from tests.conftest import make_llm_result, write_result


def test_real_results_import_every_file(shared_results: Path) -> None:
    source = local_source(shared_results)
    assert source.upstream_commit == "5d602fdbff04c33c1c4de55cda9d4ae1d7cb7e40"  # named in the folder's README
    snapshot = build_snapshot(source)
    on_disk = sorted(shared_results.glob("*/*.json"))
    assert len(snapshot.runs) == len(on_disk) == 94
    assert not snapshot.skipped
    assert {r.benchmark for r in snapshot.runs} == {"MetaMathQA", "image-gen"}


def test_real_figures_carry_over_in_bytes_and_units(shared_results: Path) -> None:
    snapshot = build_snapshot(local_source(shared_results))
    run = next(r for r in snapshot.runs if r.id == "MetaMathQA/lora/llama-3.2-3B-rank32")
    raw = json.loads((shared_results / "MetaMathQA" / "lora--llama-3.2-3B-rank32.json").read_text())
    assert run.peak_memory_bytes == raw["train_info"]["accelerator_memory_max"] == 22292725760
    assert run.peak_memory_gib == pytest.approx(22292725760 / 2**30)  # 20.76 GiB, not 22.3 "GB"
    assert run.metrics["test accuracy"] == raw["train_info"]["metrics"][-1]["test accuracy"]
    assert run.variant == "rank32"
    assert run.method == "lora" and run.peft_type == "LORA" and run.variant_flags == ()
    assert run.key_config["r"] == 32 and run.trainable_params == 9175040
    assert run.source_file == "MetaMathQA/lora--llama-3.2-3B-rank32.json"
    assert run.upstream_commit.startswith("5d602fd")


def test_real_variants_and_full_finetuning(shared_results: Path) -> None:
    runs = {r.id: r for r in build_snapshot(local_source(shared_results)).runs}
    assert runs["MetaMathQA/lora/llama-3.2-3B-rank64-rslora"].variant_flags == ("rsLoRA",)
    assert runs["MetaMathQA/lora/llama-3.2-3B-rank32-lorafa"].variant_flags == ("LoRA-FA",)
    assert runs["image-gen/dora/flux2-klein-rank64"].variant_flags == ("DoRA",)
    full = runs["image-gen/full-finetuning/flux2-klein-default"]
    assert full.method == "full" and full.peft_type is None
    assert full.metrics["drift"] is None  # upstream wrote NaN: stored as "no value", not a number


def test_gsm8k_accuracies_are_counts_over_1319(shared_results: Path) -> None:
    """The binomial noise model assumes n = 1319; every stored accuracy must be k/1319."""
    for run in build_snapshot(local_source(shared_results)).runs_for("MetaMathQA"):
        k = run.metrics["test accuracy"] * GSM8K_TEST_SIZE
        assert abs(k - round(k)) < 1e-6, run.id


def test_shipped_snapshot_is_what_the_importer_derives(shared_results: Path) -> None:
    shipped = load_snapshot(SHIPPED_SNAPSHOT)
    fresh = build_snapshot(local_source(shared_results))
    assert [r.to_dict() for r in shipped.runs] == [r.to_dict() for r in fresh.runs]
    assert shipped.setups == fresh.setups
    assert shipped.source["upstream_commit"] == fresh.source["upstream_commit"]


def test_setup_describes_the_measurement(shared_results: Path) -> None:
    setups = build_snapshot(local_source(shared_results)).setups
    llm, image = setups["MetaMathQA"], setups["image-gen"]
    assert (llm.model_id, llm.dtype, llm.batch_size, llm.seq_len, llm.grad_checkpointing) == (
        "meta-llama/Llama-3.2-3B",
        "bfloat16",
        4,
        768,
        False,
    )
    assert (image.batch_size, image.seq_len, image.grad_checkpointing) == (2, 512, True)
    assert llm.gpu == "NVIDIA L40S"
    se = image.noise_se[BENCHMARKS["image-gen"].headline.key]
    assert 0.005 < se < 0.1  # a DINO-similarity SE on 4 prompts: a few hundredths


def test_fixture_folder_skips_broken_files_and_reports_each(fixture_results: Path) -> None:
    snapshot = build_snapshot(local_source(fixture_results))
    assert sorted(r.id for r in snapshot.runs) == [
        "MetaMathQA/full-finetuning/llama-3.2-3B-lr",
        "MetaMathQA/ia3/llama-3.2-3B-default",
        "MetaMathQA/lora/llama-3.2-3B-rank32",
        "MetaMathQA/lora/llama-3.2-3B-rank64-rslora",
        "MetaMathQA/oft/llama-3.2-3B-rank32",
    ]
    reasons = {Path(s["file"]).name: s["reason"] for s in snapshot.skipped}
    assert "invalid JSON" in reasons["broken--truncated.json"]
    assert "did not finish" in reasons["failed--run.json"] and "'failed'" in reasons["failed--run.json"]
    assert "no final evaluation" in reasons["nometrics--run.json"]
    assert "accelerator_memory_max" in reasons["nomemory--run.json"]
    assert "MAGIC_TUNING" in reasons["unknown--type.json"]
    assert "not a PEFT method-comparison result" in reasons["notaresult.json"]
    assert len(reasons) == 6  # temporary_results/ and default_training_params.json are not results
    assert snapshot.source["upstream_commit"] is None  # no README, no git: unknown, not invented


def test_explicit_commit_and_benchmark_folder_as_root(fixture_results: Path) -> None:
    source = open_source(str(fixture_results / "MetaMathQA"), commit="a" * 40)
    assert source.upstream_commit == "a" * 40
    assert len(build_snapshot(source).runs) == 5


def test_duplicate_experiment_is_reported(tmp_path: Path) -> None:
    folder = tmp_path / "MetaMathQA"
    write_result(folder, "a.json", make_llm_result("lora/llama-3.2-3B-rank32"))
    write_result(folder, "b.json", make_llm_result("lora/llama-3.2-3B-rank32"))
    snapshot = build_snapshot(local_source(tmp_path))
    assert len(snapshot.runs) == 1
    assert "duplicate" in snapshot.skipped[0]["reason"]


def test_nothing_usable_is_a_user_error(tmp_path: Path) -> None:
    write_result(tmp_path / "MetaMathQA", "bad.json", "not json")
    with pytest.raises(UserError, match=r"no usable PEFT result files.*1 file"):
        build_snapshot(local_source(tmp_path))
    with pytest.raises(UserError, match="does not exist"):
        local_source(tmp_path / "missing")
    with pytest.raises(UserError, match="unsupported URL"):
        open_source("ftp://example.org/results")


def test_compare_reports_added_changed_removed(fixture_results: Path) -> None:
    old = build_snapshot(local_source(fixture_results))
    bench = fixture_results / "MetaMathQA" / "results"
    (bench / "ia3--default.json").unlink()
    write_result(bench, "oft--rank32.json", make_llm_result("oft/llama-3.2-3B-rank32", peft_type="OFT", accuracy=0.5))
    write_result(bench, "vera--d.json", make_llm_result("vera/llama-3.2-3B-default", peft_type="VERA", accuracy=0.35))
    report = compare(old, build_snapshot(local_source(fixture_results)))
    assert report.added == ("MetaMathQA/vera/llama-3.2-3B-default",)
    assert report.removed == ("MetaMathQA/ia3/llama-3.2-3B-default",)
    assert report.changed == ("MetaMathQA/oft/llama-3.2-3B-rank32",)
    assert report.unchanged == 3


def test_snapshot_round_trips_as_strict_json(fixture_results: Path, tmp_path: Path) -> None:
    snapshot = build_snapshot(local_source(fixture_results))
    text = json.dumps(snapshot.to_dict(), allow_nan=False)
    again = Snapshot.from_dict(json.loads(text))
    assert again.runs == snapshot.runs
    assert all(math.isfinite(r.peak_memory_bytes / GIB) for r in again.runs)
