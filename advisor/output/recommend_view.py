"""How a :class:`~advisor.recommend.Recommendation` looks: header, table, LoRA lines, JSON.

The JSON shape is a stable interface (documented in the README): ``task``, ``benchmark``,
``unit``, ``budget``, ``rows`` (``rank``, ``method``, ``variant``, ``score``,
``peak_memory_gib``, ``pareto``, ``within_noise`` and more) and ``lora``.
"""

from __future__ import annotations

from typing import Any

from advisor.benchmarks.records import GIB, BenchmarkRun, BenchmarkSetup
from advisor.output.tables import Column, TableSpec
from advisor.recommend import Capabilities, LoraMark, Recommendation, Row
from advisor.vocabulary import OBJECTIVES


def _gib(n_bytes: int | None) -> float | None:
    return round(n_bytes / GIB, 3) if n_bytes is not None else None


def _round(value: float | None, digits: int = 4) -> float | None:
    return round(value, digits) if value is not None else None


def setup_text(setup: BenchmarkSetup, seq_label: str) -> str:
    parts = [setup.model_id, setup.dtype]
    if setup.batch_size:
        parts.append(f"batch {setup.batch_size}")
    if setup.seq_len:
        parts.append(f"{seq_label} {setup.seq_len}" if seq_label == "seq" else f"{setup.seq_len} {seq_label}")
    if setup.grad_checkpointing is not None:
        parts.append("gradient checkpointing" if setup.grad_checkpointing else "no gradient checkpointing")
    if setup.gpu:
        parts.append(setup.gpu)
    return ", ".join(p for p in parts if p)


def variant_text(run: BenchmarkRun) -> str:
    extra = [f for f in run.variant_flags if f.lower() not in run.variant.lower()]
    return " · ".join([run.variant, *extra])


def _served(caps: Capabilities, consumer: str) -> str | None:
    """'vllm' when served as trained, 'vllm(conv)' through our converter, None when not at all."""
    how = caps.serving.get(consumer)
    return None if how is None else (consumer if how == "native" else f"{consumer}(conv)")


def _flags(row: Row) -> str:
    caps = row.caps
    marks = [
        "merge" if caps.can_merge else None,
        "lora" if caps.lora_convertible else None,
        _served(caps, "vllm"),
        _served(caps, "diffusers"),
        "4/8bit" if caps.quantized_base else None,
    ]
    return " ".join(m for m in marks if m) or "-"


def serving_note(rec: Recommendation) -> str | None:
    """Said whenever a shown row is served through conversion: that route has a cost, measured later."""
    if not any("convert" in row.caps.serving.values() for row in rec.rows):
        return None
    return (
        "vllm(conv) / diffusers(conv): served after `peft-advise convert` exports the adapter to LoRA; "
        "how much of the adapter's effect the LoRA keeps (its fidelity) is measured when converting "
        "(`peft-advise auto` converts and checks it for you)"
    )


def _points(gap: float, is_accuracy: bool) -> str:
    return f"{gap * 100:.1f} points" if is_accuracy else f"{gap:.3f}"


def header_lines(rec: Recommendation) -> list[str]:
    q = rec.query
    metric = rec.metric
    direction = "higher is better" if metric.higher_is_better else "lower is better"
    order = OBJECTIVES[q.objective].format(metric=metric.label, direction=direction)
    scope = "every run" if q.all_variants else "best run per method"
    lines = [
        f"Task: {rec.task.name} → {rec.benchmark.key}: {rec.benchmark.title}",
        f"Budget: {q.vram_gib:g} GiB of GPU memory (GiB = 2^30 bytes; a '24 GB' card is 24 GiB)",
        f"Measured on: {setup_text(rec.setup, rec.benchmark.seq_label)}",
        *(
            [f"Memory predicted for: {rec.memory.describe()} ({rec.memory.shape.params_source})"]
            if rec.memory is not None
            else []
        ),
        f"Ranked {order}; {scope}; {rec.total_rows} row(s), {rec.excluded['over_budget']} run(s) over budget"
        + (f", {rec.excluded['requirements']} not meeting --require" if rec.excluded["requirements"] else "")
        + (f", {rec.excluded['no_metric']} without {metric.short}" if rec.excluded["no_metric"] else ""),
    ]
    if rec.memory is not None:
        lines += [f"Assumed: {text}" for text in rec.memory.shape.assumptions]
    lines += [f"Note: {note}" for note in rec.notes]
    return lines


def _vs_best(row: Row) -> str:
    if row.within_noise:
        return "yes"
    return "far below" if row.far_below else ""


def table_spec(rec: Recommendation) -> TableSpec:
    predicted = rec.memory is not None and rec.memory.model_given
    columns = (
        Column("#", "right"),
        Column("method"),
        Column("variant"),
        Column(rec.metric.short, "right"),
        Column("pred. GiB" if rec.memory is not None else "peak GiB", "right"),
        Column("frontier"),
        Column("≈best"),
        Column("bench. min" if predicted else "train min", "right", drop=3),
        Column("ckpt MB*" if predicted else "ckpt MB", "right", drop=4),
        Column("trainable*" if predicted else "trainable", "right", drop=5),
        Column("can", drop=2),
    )
    rows = []
    highlight = set()
    for index, row in enumerate(rec.rows):
        run = row.run
        rows.append(
            (
                str(row.rank),
                row.method.display_name,
                variant_text(run),
                f"{row.score:.4f}",
                f"{run.peak_memory_gib:.2f}",
                "yes" if row.pareto else "",
                _vs_best(row),
                f"{run.train_time_s / 60:.1f}" if run.train_time_s is not None else "-",
                f"{run.checkpoint_bytes / 1e6:.1f}" if run.checkpoint_bytes is not None else "-",
                f"{run.trainable_params:,}" if run.trainable_params is not None else "-",
                _flags(row),
            )
        )
        if row.method.peft_type == "LORA":
            highlight.add(index)
    return TableSpec(columns=columns, rows=tuple(rows), highlight_rows=frozenset(highlight))


def _mark_line(mark: LoraMark | None, label: str, rec: Recommendation) -> str:
    if mark is None:
        return f"{label}: no such run in the benchmark"
    accuracy = rec.metric.key.endswith("accuracy")
    run = mark.run
    if mark.rank is not None:
        where = f"row {mark.rank}" + (" (below --top)" if mark.rank > len(rec.rows) else "")
    elif mark.fits:
        where = "not a row (another run of its method ranks higher)"
    else:
        where = "does not fit"
    text = f"{label} ({variant_text(run)}): {mark.score:.4f} at {run.peak_memory_gib:.2f} GiB, {where}"
    if not mark.fits:
        text += f" (needs {run.peak_memory_gib - rec.query.vram_gib:.2f} GiB more)"
    best = rec.best
    if mark.gain_of_best is None or best is None:
        return text
    best_name = f"{best.method.display_name} {variant_text(best.run)}, row {best.rank}"
    if best.run.id == run.id:
        return text + "; it is the best-scoring row"
    if mark.gain_of_best > 1e-12:
        noise = {True: " — within noise", False: " — beyond noise"}.get(mark.within_noise, "")  # type: ignore[arg-type]
        return text + f"; the best-scoring row ({best_name}) is {_points(mark.gain_of_best, accuracy)} better{noise}"
    if mark.gain_of_best < -1e-12:
        return text + f"; {_points(-mark.gain_of_best, accuracy)} better than every row"
    return text + f"; it scores as high as the best-scoring row ({best_name})"


def _variant_line(rec: Recommendation) -> str:
    """The best LoRA variant, and plainly when no variant (DoRA, rsLoRA, ...) beats plain LoRA."""
    text = _mark_line(rec.lora.best_variant, "Best LoRA variant", rec)
    plain, variant = rec.lora.plain, rec.lora.best_variant
    if plain is None or variant is None:
        return text
    sign = 1 if rec.metric.higher_is_better else -1
    if sign * (variant.score - plain.score) < 0:
        text += f"; it scores below plain LoRA ({plain.score:.4f}): no LoRA variant beats plain LoRA here"
    return text


def footer_lines(rec: Recommendation) -> list[str]:
    lines = [
        _mark_line(rec.lora.plain, "Plain LoRA", rec),
        _variant_line(rec),
        f"Noise rule: {rec.noise_rule}",
        "frontier = Pareto-optimal on score vs peak memory among the rows; ≈best = within noise of the best "
        "(far below = under half its score); "
        "can = merge / lora (LoRA-convertible) / vllm / diffusers (served as trained; (conv) = through our "
        "LoRA converter) / 4/8bit (bitsandbytes base); each shown on a tiny model (`peft-advise methods NAME`)",
    ]
    note = serving_note(rec)
    if note:
        lines.append(note)
    if rec.memory is not None and rec.memory.model_given:
        lines.append(
            f"* scaled to {rec.memory.shape.name}; bench. min = train minutes measured on the benchmark, not predicted"
        )
    if len(rec.rows) < rec.total_rows:
        lines.append(f"Showing the top {len(rec.rows)} of {rec.total_rows} rows (--top).")
    src = rec.snapshot_source
    commit = (src.get("upstream_commit") or "unknown")[:12]
    lines.append(f"Data: PEFT method-comparison results @ {commit}, imported {src.get('imported_at', '?')[:10]}")
    return lines


def usage_lines(rec: Recommendation, usage: Any) -> list[str]:
    """What people use, from the latest Hub scan (``peft-advise scan ...``), next to what we recommend."""
    if usage is None or not usage.exactly_one:
        return []
    text = (
        f"Hub usage ({usage.kind} scan of {usage.cards:,} cards, {usage.exactly_one:,} reporting exactly one "
        f"technique, {usage.scanned_at[:10]}): LoRA {100 * usage.share_of('lora'):.1f}%"
    )
    top = rec.rows[0].method if rec.rows else None
    if top is not None and top.name != "lora":
        text += f"; {top.display_name} (our #1) {100 * usage.share_of(top.name):.1f}%"
    return [text]


def usage_json(rec: Recommendation, usage: Any) -> dict[str, Any] | None:
    if usage is None:
        return None
    top = rec.rows[0].method if rec.rows else None
    return {
        **usage.to_dict(),
        "recommended": {"method": top.name, "share": usage.share_of(top.name)} if top is not None else None,
    }


def nothing_fits_lines(rec: Recommendation) -> list[str]:
    assert rec.nothing_fits is not None
    small = rec.nothing_fits.smallest
    return [
        f"No {rec.benchmark.key} run fits {rec.query.vram_gib:g} GiB.",
        f"The smallest is {small.experiment} at {small.peak_memory_gib:.2f} GiB: "
        f"it needs {rec.nothing_fits.shortfall_gib:.2f} GiB more.",
        (
            "These are measured figures for the setup above: a smaller batch, shorter sequences, gradient "
            "checkpointing or a quantised base need less memory than shown; predict yours with --model, "
            "--batch-size, --seq-len, --grad-checkpointing, --quant."
            if rec.memory is None
            else f"These are predictions for your setup: {', '.join(_memory_levers(rec.memory.setup))} lower them; "
            "--explain shows where the memory goes."
        ),
    ]


def _memory_levers(setup: Any) -> list[str]:
    """What the user has not used yet that lowers the prediction, most effective first."""
    levers = []
    if setup.attention == "eager":
        levers.append("--attention sdpa")
    if not setup.grad_checkpointing:
        levers.append("--grad-checkpointing")
    if setup.quant == "none":
        levers.append("--quant 4bit")
    if setup.gpus > 1 and not setup.shards_params:
        levers.append("--sharding fsdp")
    return [*levers, "a smaller --batch-size or --seq-len"]


def _row_json(row: Row) -> dict[str, Any]:
    run = row.run
    return {
        "rank": row.rank,
        "method": row.method.name,
        "method_display": row.method.display_name,
        "peft_type": row.method.peft_type,
        "variant": run.variant,
        "experiment": run.experiment,
        "variant_flags": list(run.variant_flags),
        "score": row.score,
        "score_se": _round(row.score_se, 5),
        "gap_to_best": _round(row.gap_to_best, 5),
        "peak_memory_gib": _gib(run.peak_memory_bytes),
        "p99_memory_gib": _gib(run.p99_memory_bytes),
        "pareto": row.pareto,
        "within_noise": row.within_noise,
        "far_below_best": row.far_below,
        "train_time_s": _round(run.train_time_s, 1),
        "checkpoint_bytes": run.checkpoint_bytes,
        "trainable_params": run.trainable_params,
        "metrics": run.metrics,
        "can_merge": row.caps.can_merge,
        "lora_convertible": row.caps.lora_convertible,
        "vllm_servable": row.caps.vllm_servable,
        "diffusers_loadable": row.caps.diffusers_loadable,
        "serving": dict(row.caps.serving),
        "quantized_base": row.caps.quantized_base,
        "key_config": run.key_config,
        "learning_rate": run.learning_rate,
        "source_file": run.source_file,
    }


def _mark_json(mark: LoraMark | None) -> dict[str, Any] | None:
    if mark is None:
        return None
    return {
        "method": mark.run.method,
        "variant": mark.run.variant,
        "experiment": mark.run.experiment,
        "variant_flags": list(mark.run.variant_flags),
        "score": mark.score,
        "peak_memory_gib": _gib(mark.run.peak_memory_bytes),
        "fits": mark.fits,
        "rank": mark.rank,
        "gain_of_best": _round(mark.gain_of_best, 5),
        "within_noise": mark.within_noise,
    }


def explain_table(rec: Recommendation) -> TableSpec:
    """--explain: each shown row's predicted memory, term by term (GiB)."""
    from advisor.memory.model import TERMS

    present = [t for t in TERMS if any(t in b.terms for b in rec.breakdowns.values())]
    columns = (
        Column("#", "right"),
        Column("method"),
        Column("variant", drop=2),
        *(Column(term, "right") for term in present),
        Column("a", "right", drop=3),
        Column("total GiB", "right"),
    )
    shown = [(str(row.rank), row.method.display_name, row.run) for row in rec.rows]
    if rec.nothing_fits is not None:  # nothing to rank: explain why the smallest run does not fit
        shown = [("-", rec.nothing_fits.smallest.method, rec.nothing_fits.smallest)]
    rows = []
    for rank, name, run in shown:
        b = rec.breakdowns[run.id]
        rows.append(
            (
                rank,
                name,
                variant_text(run),
                *(f"{b.terms.get(term, 0.0) / GIB:.2f}" for term in present),
                f"{b.activation_factor:.2f}",
                f"{b.total / GIB:.2f}",
            )
        )
    title = (
        "Predicted memory by term (GiB); a = activation vectors kept per token and layer, fitted to the run's "
        "measured figure on the benchmark setup"
    )
    return TableSpec(columns, tuple(rows), title=title)


def explain_lines(rec: Recommendation) -> list[str]:
    """--explain, below the table: what each shown term counts, then every assumption of the prediction."""
    if rec.memory is None:
        return []
    from advisor.memory.explain import setup_assumptions
    from advisor.memory.model import TERMS

    present = [t for t in TERMS if any(t in b.terms for b in rec.breakdowns.values())]
    return [f"Term {term}: {TERMS[term]}" for term in present] + [
        f"Assumed: {text}" for text in setup_assumptions(rec.memory)
    ]


def memory_json(rec: Recommendation) -> dict[str, Any] | None:
    if rec.memory is None:
        return None
    request = rec.memory
    from advisor.memory.explain import setup_assumptions
    from advisor.memory.model import PREDICTED_FIELDS, TERMS

    predicted = PREDICTED_FIELDS if request.model_given else PREDICTED_FIELDS[:1]
    return {
        "predicted": True,
        "predicted_fields": [name.replace("peak_memory_bytes", "peak_memory_gib") for name in predicted],
        "measured_on_benchmark": ["score", "train_time_s"],
        "model": request.shape.to_dict(),
        "model_given": request.model_given,
        "setup": {
            "batch_size": request.setup.batch_size,
            "sequence_length": request.setup.seq_len,
            "dtype": request.setup.dtype,
            "quant": request.setup.quant,
            "gradient_checkpointing": request.setup.grad_checkpointing,
            "optimizer": request.setup.optimizer,
            "memory": request.setup.mode,
            "attention": request.setup.attention,
            "amp": request.setup.amp,
            "gpus": request.setup.gpus,
            "sharding": request.setup.sharding,
            "offload": request.setup.offload,
            "per_gpu": True,
        },
        "terms": dict(TERMS),
        "assumptions": setup_assumptions(request),
        "breakdown_gib": {
            row.run.id: {
                **{k: round(v / GIB, 3) for k, v in rec.breakdowns[row.run.id].terms.items()},
                "activation_factor": round(rec.breakdowns[row.run.id].activation_factor, 3),
            }
            for row in rec.rows
        },
    }


def recommendation_json(rec: Recommendation) -> dict[str, Any]:
    setup = rec.setup
    nothing = rec.nothing_fits
    return {
        "memory_model": memory_json(rec),
        "task": rec.task.name,
        "benchmark": rec.benchmark.key,
        "task_note": rec.task.note,
        "unit": "GiB",
        "budget": rec.query.vram_gib,
        "objective": rec.query.objective,
        "metric": {
            "name": rec.metric.short,
            "key": rec.metric.key,
            "label": rec.metric.label,
            "higher_is_better": rec.metric.higher_is_better,
        },
        "all_variants": rec.query.all_variants,
        "require": list(rec.query.require),
        "setup": {
            "model": setup.model_id,
            "dtype": setup.dtype,
            "batch_size": setup.batch_size,
            "sequence_length" if rec.benchmark.domain == "llm" else "resolution": setup.seq_len,
            "gradient_checkpointing": setup.grad_checkpointing,
            "max_steps": setup.max_steps,
            "gpu": setup.gpu,
            "memory_figure": "peak reserved accelerator memory over the whole run (torch), bytes → GiB",
        },
        "noise_rule": rec.noise_rule,
        "rows": [_row_json(r) for r in rec.rows],
        "total_rows": rec.total_rows,
        "best": (
            {
                "rank": rec.best.rank,
                "method": rec.best.method.name,
                "variant": rec.best.run.variant,
                "score": rec.best.score,
            }
            if rec.best
            else None
        ),
        "lora": {"plain": _mark_json(rec.lora.plain), "best_variant": _mark_json(rec.lora.best_variant)},
        "excluded": rec.excluded,
        "nothing_fits": (
            {
                "smallest": nothing.smallest.experiment,
                "peak_memory_gib": _gib(nothing.smallest.peak_memory_bytes),
                "shortfall_gib": round(nothing.shortfall_gib, 3),
            }
            if nothing
            else None
        ),
        "notes": list(rec.notes),
        "snapshot": rec.snapshot_source,
    }
