"""Score-vs-memory plot of a recommendation: a static image (matplotlib) or an interactive page (plotly)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from advisor.output.figures import plotly_go, save_plot
from advisor.recommend import Recommendation


def pareto_plot(rec: Recommendation, path: Path) -> Path:
    """Every row as a point, the frontier as a line, LoRA runs highlighted, the budget marked (.html: plotly)."""
    return save_plot(path, lambda plt: _pareto_static(rec, plt), lambda: pareto_figure(rec))


def _pareto_static(rec: Recommendation, plt: Any) -> Any:
    fig, ax = plt.subplots(figsize=(9, 6), dpi=120)
    rows = rec.ranked  # the whole ranking, not just the --top rows
    xs = [r.run.peak_memory_gib for r in rows]
    ys = [r.score for r in rows]
    lora = [r.method.peft_type == "LORA" for r in rows]
    ax.scatter(
        [x for x, is_l in zip(xs, lora, strict=True) if not is_l],
        [y for y, is_l in zip(ys, lora, strict=True) if not is_l],
        color="#4c72b0",
        label="other methods",
        zorder=3,
    )
    ax.scatter(
        [x for x, is_l in zip(xs, lora, strict=True) if is_l],
        [y for y, is_l in zip(ys, lora, strict=True) if is_l],
        color="#dd8452",
        s=80,
        marker="D",
        label="LoRA",
        zorder=4,
    )
    front = sorted((r.run.peak_memory_gib, r.score) for r in rows if r.pareto)
    if front:
        ax.step([p[0] for p in front], [p[1] for p in front], where="post", color="#55a868", label="Pareto frontier")
    for r in rows:
        if r.pareto or r.method.peft_type == "LORA" or r.rank <= 3:
            ax.annotate(
                r.method.display_name,
                (r.run.peak_memory_gib, r.score),
                fontsize=8,
                xytext=(4, 3),
                textcoords="offset points",
            )
    ax.axvline(rec.query.vram_gib, color="#c44e52", linestyle="--", label=f"budget {rec.query.vram_gib:g} GiB")
    ax.set_xlabel("peak GPU memory (GiB)")
    ax.set_ylabel(rec.metric.label + ("" if rec.metric.higher_is_better else " (lower is better)"))
    ax.set_title(f"{rec.benchmark.key}: {rec.metric.short} vs memory ({rec.setup.model_id})", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    return fig


def pareto_figure(rec: Recommendation) -> Any:
    """The same score-vs-memory view as :func:`pareto_plot`, as an interactive plotly figure (the Space)."""
    go = plotly_go()
    rows = rec.ranked
    memory_label = "predicted" if rec.memory is not None else "peak"
    fig = go.Figure()
    for is_lora, name, color, symbol in (
        (False, "other methods", "#4c72b0", "circle"),
        (True, "LoRA", "#dd8452", "diamond"),
    ):
        chosen = [r for r in rows if (r.method.peft_type == "LORA") == is_lora]
        fig.add_trace(
            go.Scatter(
                x=[r.run.peak_memory_gib for r in chosen],
                y=[r.score for r in chosen],
                mode="markers",
                name=name,
                marker={"color": color, "symbol": symbol, "size": 12 if is_lora else 9},
                text=[f"#{r.rank} {r.method.display_name} ({r.run.variant})" for r in chosen],
                hovertemplate="%{text}<br>%{y:.4f} at %{x:.2f} GiB<extra></extra>",
            )
        )
    front = sorted((r.run.peak_memory_gib, r.score) for r in rows if r.pareto)
    if front:
        fig.add_trace(
            go.Scatter(
                x=[p[0] for p in front],
                y=[p[1] for p in front],
                mode="lines",
                line={"shape": "hv", "color": "#55a868"},
                name="Pareto frontier",
                hoverinfo="skip",
            )
        )
    fig.add_vline(x=rec.query.vram_gib, line_dash="dash", line_color="#c44e52")
    fig.update_layout(
        title=f"{rec.benchmark.key}: {rec.metric.short} vs {memory_label} memory",
        xaxis_title=f"{memory_label} GPU memory (GiB); budget {rec.query.vram_gib:g} GiB",
        yaxis_title=rec.metric.label,
        height=480,
    )
    return fig
