"""The recommender on the shipped snapshot and on small fixtures: fit, order, frontier, noise, filters."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import pytest

from advisor.benchmarks.importer import build_snapshot
from advisor.benchmarks.records import GIB
from advisor.benchmarks.sources import local_source
from advisor.benchmarks.store import load_snapshot
from advisor.errors import UserError
from advisor.methods.registry import load_registry
from advisor.recommend import Query, pareto_flags, pareto_layers, recommend


def run(query: Query, snapshot=None):
    return recommend(query, snapshot or load_snapshot(), load_registry())


@pytest.mark.parametrize(("task", "metric"), [("math", "test accuracy"), ("image", "test dino_similarity")])
def test_only_fitting_runs_ordered_by_headline_score(task: str, metric: str) -> None:
    rec = run(Query(24, task))
    assert rec.rows
    assert all(r.run.peak_memory_bytes <= 24 * GIB for r in rec.rows)
    scores = [r.score for r in rec.rows]
    assert scores == sorted(scores, reverse=True)
    assert [r.rank for r in rec.rows] == list(range(1, len(rec.rows) + 1))
    assert len({r.method.name for r in rec.rows}) == len(rec.rows)  # best run per method
    for row in rec.rows:
        assert row.score == row.run.metrics[metric]
        # The chosen run is its method's best fitting run.
        siblings = [
            s
            for s in load_snapshot().runs_for(rec.benchmark.key)
            if s.method == row.method.name and s.peak_memory_bytes <= 24 * GIB and s.metrics[metric] is not None
        ]
        assert row.score == max(s.metrics[metric] for s in siblings)


def test_math_at_24_gib_known_answers() -> None:
    rec = run(Query(24, "math"))
    # Full fine-tuning (36 GiB), OSF (35.9 GiB) and the IA3 all-attention run (24.35 GiB) do not fit.
    names = {r.method.name for r in rec.rows}
    assert "full" not in names and "osf" not in names
    assert rec.excluded["over_budget"] == 3
    assert rec.rows[0].method.name == "lily"
    assert rec.lora.plain.run.variant == "rank10-target-mlp" and rec.lora.plain.fits
    assert rec.lora.best_variant.run.variant_flags == ("rsLoRA",)
    assert rec.lora.best_variant.rank == 2


def test_frontier_is_exactly_the_non_dominated_rows() -> None:
    for task in ("math", "image"):
        rec = run(Query(24, task, all_variants=True))
        for row in rec.rows:
            dominated = any(
                o.score >= row.score
                and o.run.peak_memory_bytes <= row.run.peak_memory_bytes
                and (o.score > row.score or o.run.peak_memory_bytes < row.run.peak_memory_bytes)
                for o in rec.rows
                if o is not row
            )
            assert row.pareto == (not dominated), row.run.id
        assert any(r.pareto for r in rec.rows)
        # The best score and the smallest memory are always on the frontier.
        assert rec.rows[0].pareto
        assert min(rec.rows, key=lambda r: (r.run.peak_memory_bytes, -r.score)).pareto


def test_pareto_helpers_on_known_points() -> None:
    points = [(0.5, 20.0), (0.4, 18.0), (0.45, 21.0), (0.3, 18.0), (0.5, 20.0)]
    assert pareto_flags(points) == [True, True, False, False, True]
    assert pareto_layers(points) == [0, 0, 1, 1, 0]


def test_within_noise_follows_the_stated_binomial_rule() -> None:
    rec = run(Query(24, "math"))
    best = rec.rows[0]
    n = 1319
    se_best = math.sqrt(best.score * (1 - best.score) / n)
    for row in rec.rows:
        se = math.sqrt(max(row.score * (1 - row.score), 0.25 / n) / n)
        expected = (best.score - row.score) <= 1.96 * math.hypot(se_best, se)
        assert row.within_noise == expected, row.run.id
    assert "1319" in rec.noise_rule
    assert 3 <= sum(r.within_noise for r in rec.rows) < len(rec.rows)


def test_image_noise_uses_the_pooled_estimate() -> None:
    rec = run(Query(24, "image"))
    se = rec.setup.noise_se["test dino_similarity"]
    best = rec.rows[0]
    for row in rec.rows:
        assert row.within_noise == ((best.score - row.score) <= 1.96 * math.hypot(se, se) + 1e-12)
    assert f"{se:.3f}" in rec.noise_rule


def test_secondary_metric_lower_is_better() -> None:
    rec = run(Query(24, "math", metric="forgetting"))
    scores = [r.score for r in rec.rows]
    assert scores == sorted(scores)
    assert not any(r.within_noise for r in rec.rows[1:])  # no noise model: never flagged
    assert "no noise model" in rec.noise_rule
    image = run(Query(48, "image", metric="drift"))
    assert "full" not in {r.method.name for r in image.rows}  # its drift is NaN upstream
    assert image.excluded["no_metric"] == 1


@pytest.mark.parametrize(
    ("objective", "key"),
    [
        ("memory", lambda r: r.run.peak_memory_bytes),
        ("speed", lambda r: r.run.train_time_s),
        ("size", lambda r: r.run.checkpoint_bytes),
    ],
)
def test_objectives_sort_by_their_axis(objective: str, key) -> None:
    rec = run(Query(24, "math", objective=objective, all_variants=True))
    values = [key(r) for r in rec.rows]
    assert values == sorted(values)


def test_balanced_orders_by_pareto_layer_then_score() -> None:
    rec = run(Query(24, "math", objective="balanced", all_variants=True))
    points = [(r.score, float(r.run.peak_memory_bytes)) for r in rec.rows]
    layers = pareto_layers(points)
    assert layers == sorted(layers)  # frontier first, then the frontier of the rest, ...
    assert layers[0] == 0 and max(layers) >= 2
    for layer in set(layers):
        scores = [r.score for r, lay in zip(rec.rows, layers, strict=True) if lay == layer]
        assert scores == sorted(scores, reverse=True)
    assert [r.pareto for r in rec.rows] == [lay == 0 for lay in layers]


def test_best_row_is_the_best_score_whatever_the_objective_and_top() -> None:
    rec = run(Query(24, "math", objective="memory", top=2))
    assert len(rec.rows) == 2
    top_score = max(r.score for r in rec.ranked)
    assert rec.best.score == top_score and rec.best not in rec.rows
    assert rec.lora.best_variant.gain_of_best == pytest.approx(top_score - rec.lora.best_variant.score)


def test_requirements_filter_rows() -> None:
    vllm = run(Query(24, "math", require=("vllm",)))
    served = {r.method.name: r.caps.serving["vllm"] for r in vllm.rows}
    assert served["lora"] == "native" and served["oft"] == "convert"  # OFT reaches vLLM through our converter
    assert all(r.caps.vllm_servable for r in vllm.rows)
    assert "lily" not in served  # Lily cannot merge, so there is no LoRA to export
    merge = run(Query(24, "math", require=("merge", "lora-convertible")))
    assert all(r.method.can_merge and r.method.lora_convertible for r in merge.rows)
    assert "oft" in {r.method.name for r in merge.rows}  # peft cannot convert OFT; converters/ does
    assert "lily" not in {r.method.name for r in merge.rows}
    quant = run(Query(24, "math", require=("quantized",)))
    assert all(r.method.quantized_base for r in quant.rows) and "lora" in {r.method.name for r in quant.rows}
    diffusers = run(Query(24, "image", require=("diffusers",)))
    how = {r.method.name: r.caps.serving["diffusers"] for r in diffusers.rows}
    assert how["lora"] == "native" and how["oft"] == "convert" and how["lokr"] == "convert"


def test_dora_reaches_vllm_only_through_the_converter() -> None:
    rec = run(Query(24, "math", all_variants=True))
    dora = next(r for r in rec.rows if "DoRA" in r.run.variant_flags)
    assert dora.caps.serving["vllm"] == "convert" and dora.caps.lora_convertible  # normalised to plain LoRA


def test_top_truncates_but_lora_standing_remains() -> None:
    rec = run(Query(24, "math", top=3))
    assert len(rec.rows) == 3 and rec.total_rows > 3
    assert rec.lora.plain is not None and rec.lora.plain.rank is None


def test_budget_below_every_run_names_the_smallest() -> None:
    rec = run(Query(4, "math"))
    assert rec.rows == ()
    smallest = min(load_snapshot().runs_for("MetaMathQA"), key=lambda r: r.peak_memory_bytes)
    assert rec.nothing_fits.smallest == smallest
    assert rec.nothing_fits.shortfall_gib == pytest.approx(smallest.peak_memory_gib - 4)
    assert rec.lora.plain is not None and not rec.lora.plain.fits


def test_plain_lora_that_does_not_fit_is_still_located(fixture_results: Path) -> None:
    snapshot = build_snapshot(local_source(fixture_results))
    rec = run(Query(20.9, "math"), snapshot)  # rank32 LoRA (20.8) fits, rsLoRA (21.0) does not
    assert rec.lora.plain.fits and rec.lora.plain.rank == 2
    assert not rec.lora.best_variant.fits and rec.lora.best_variant.rank is None
    assert rec.lora.best_variant.gain_of_best < 0  # the non-fitting variant scores above every row


def test_task_aliases_and_notes() -> None:
    assert run(Query(24, "code")).task.note and "stands in" in run(Query(24, "code")).task.note
    assert run(Query(24, "math")).task.note is None
    for alias in ("image", "image-gen", "diffusion", "dreambooth"):
        assert run(Query(24, alias)).benchmark.key == "image-gen"
    for alias in ("reasoning", "text", "chat", "code", "llm"):
        assert run(Query(24, alias)).benchmark.key == "MetaMathQA"


@pytest.mark.parametrize(
    ("query", "message"),
    [
        (Query(24, "poetry"), "unknown task 'poetry'; valid tasks: math"),
        (Query(0, "math"), "--vram must be a positive"),
        (Query(float("nan"), "math"), "--vram must be a positive"),
        (Query(24, "math", objective="cheap"), "unknown objective 'cheap'"),
        (Query(24, "math", require=("fast",)), "unknown requirement 'fast'"),
        (Query(24, "image", require=("vllm",)), "vLLM does not serve image-generation models"),
        (Query(24, "math", metric="bleu"), "unknown metric 'bleu'"),
        (Query(24, "math", top=0), "--top must be at least 1"),
    ],
)
def test_bad_queries_are_user_errors(query: Query, message: str) -> None:
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        run(query)


def test_all_variants_lists_every_fitting_run() -> None:
    rec = run(Query(24, "math", all_variants=True))
    fitting = [r for r in load_snapshot().runs_for("MetaMathQA") if r.peak_memory_bytes <= 24 * GIB]
    assert len(rec.rows) == len(fitting)
    assert len(list(itertools.groupby(sorted(r.method.name for r in rec.rows)))) < len(rec.rows)
