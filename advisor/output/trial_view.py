"""How a quick trial looks: the fair-setup header, the leaderboard, the verdict, JSON and a plot.

Presentation only: the ranking, the noise test and the next command come from
:mod:`advisor.trial.leaderboard`; this module formats them.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from advisor.errors import UserError
from advisor.output.figures import plotly_go, save_plot
from advisor.output.tables import Column, TableSpec
from advisor.trial.leaderboard import Standing
from advisor.trial.run import TrialReport, entry_dict

MIB = 2**20


def _mib(n_bytes: float | None) -> str:
    return f"{n_bytes / MIB:,.0f}" if n_bytes is not None else "-"


def _config_text(config: dict[str, Any]) -> str:
    """The config fields that tell candidates apart (rank, block size, modules), not all forty."""
    keys = ("r", "oft_block_size", "boft_block_size", "lora_alpha", "init_lora_weights", "use_dora", "use_rslora")
    parts = [f"{k}={config[k]}" for k in keys if config.get(k) not in (None, False, {}, []) and k in config]
    modules = config.get("target_modules")
    if isinstance(modules, (list, tuple, set)):
        parts.append("on " + ",".join(sorted(modules)))
    elif modules:
        parts.append(f"on {modules}")
    return " ".join(parts)


def header_lines(report: TrialReport) -> list[str]:
    b = report.budget
    warmup = max(1, round(b.steps * b.warmup_fraction))
    lines = [
        f"Data: {report.data.describe()}",
        f"Model: {report.request.model} on {b.device}",
        f"Same for every candidate: seed {b.seed}, the same {len(report.data.train)} train rows in the same order, "
        f"{b.steps} steps x batch {b.batch_size} (≤128 tokens per row), AdamW, {warmup} warm-up step(s) then "
        f"linear decay, the same {len(report.data.eval)} eval rows",
        "Differs by design (each from its PEFT benchmark run on Llama-3.2-3B, modules mapped to this model"
        + ("; the learning rate searched for this trial):" if report.request.searching else "):"),
    ]
    for entry in report.entries:
        result = entry.result
        lines.append(
            f"  {entry.name}: lr {entry.learning_rate:.3g}{_search_text(entry)}, {_config_text(result.peft_config)} "
            f"[{entry.run_id.split('/', 1)[-1]}; {entry.why}]"
        )
    lines += [f"Note: {note}" for note in report.notes]
    return lines


def _search_text(entry: Any) -> str:
    """``(searched 6 rates, 3.16e-05 to 0.01; benchmark 0.0001)``: where the chosen rate came from."""
    search = entry.lr_search
    if not search:
        return ""
    rates = sorted({t["learning_rate"] for t in search["tried"]})
    if not rates:
        return " (finished earlier)"
    base = search["base_learning_rate"]
    return f" (searched {len(rates)} rates, {rates[0]:.3g} to {rates[-1]:.3g}; benchmark {base:.3g})"


def lr_search_lines(report: TrialReport) -> list[str]:
    """Per candidate, every rate tried with its rung scores (eval loss), the chosen one marked."""
    lines = []
    for entry in report.entries:
        search = entry.lr_search
        if not search or not search["tried"]:
            continue
        parts = []
        for rate in sorted({t["learning_rate"] for t in search["tried"]}):
            scores = [t for t in search["tried"] if t["learning_rate"] == rate]
            last = scores[-1]
            shown = f"{last['score']:.4f}" if last["score"] is not None else last["status"]
            mark = "*" if search["chosen"] is not None and math.isclose(rate, search["chosen"]) else ""
            parts.append(f"{rate:.3g}{mark}: {shown} ({last['steps']} steps)")
        lines.append(f"  {entry.name}: " + ", ".join(parts))
    if lines:
        metric = "accuracy" if report.data.kind == "classification" else "eval loss"
        lines.insert(
            0, f"Learning-rate search ({metric} at each rate's last rung; * = the rate trained the full steps):"
        )
    return lines


def _score_text(standing: Standing, metric: str) -> str:
    if standing.score is None:
        return "-"
    return f"{standing.score:.3f}" if metric == "eval accuracy" else f"{standing.score:.4f}"


def gap_with_se(gap: float, se: float | None) -> str:
    """A gap at the precision its SE allows (two significant digits of SE): "1.999 ± 0.035", never "2 ± 0.035"."""
    if se is None or not se > 0 or not math.isfinite(se):
        return f"{gap:.3g}"
    decimals = max(0, 1 - math.floor(math.log10(se)))
    return f"{gap:.{decimals}f} ± {se:.{decimals}f}"


def _gap_text(standing: Standing) -> str:
    if standing.rank is None or standing.gap is None:
        return "-"
    if standing.rank == 1:
        return "winner"
    return gap_with_se(standing.gap, standing.gap_se) + (" ≈" if standing.within_noise else "")


def leaderboard_table(report: TrialReport) -> TableSpec:
    board = report.leaderboard
    classification = board.metric == "eval accuracy"
    predicted = any(s.entry.predicted_memory_bytes for s in board.standings)
    columns = [Column("#", "right"), Column("candidate"), Column("status"), Column("lr", "right", drop=2)]
    if classification:
        columns += [Column("accuracy", "right"), Column("eval loss", "right", drop=1)]
    else:
        columns += [Column("eval loss", "right"), Column("tok acc", "right", drop=1)]
    columns += [
        Column("gap ± SE", "right"),
        Column("frontier", drop=3),
        Column("peak MiB", "right"),
        *([Column("pred. MiB", "right", drop=5)] if predicted else []),
        Column("s/step", "right", drop=2),
        Column("tok/s", "right", drop=6),
        Column("trainable", "right", drop=4),
        Column("ckpt KiB", "right", drop=7),
        Column("wall s", "right", drop=8),
    ]
    rows = []
    for s in board.standings:
        r = s.entry.result
        name = s.entry.name + (" (baseline)" if s.entry.is_baseline else "")
        status = r.status + (" (resumed)" if s.entry.resumed else "")
        cells = [str(s.rank) if s.rank else "-", name, status, f"{s.entry.learning_rate:.3g}"]
        if classification:
            cells += [_score_text(s, board.metric), f"{r.eval_loss:.4f}" if r.eval_loss is not None else "-"]
        else:
            accuracy = f"{r.eval_token_accuracy:.3f}" if r.eval_token_accuracy is not None else "-"
            cells += [_score_text(s, board.metric), accuracy]
        cells += [
            _gap_text(s),
            "yes" if s.pareto else "",
            _mib(r.peak_memory_bytes),
            *([_mib(s.entry.predicted_memory_bytes)] if predicted else []),
            f"{r.step_s:.3f}" if r.step_s else "-",
            f"{r.tokens_per_s:,.0f}" if r.tokens_per_s else "-",
            f"{r.trainable_params:,}",
            f"{r.checkpoint_bytes / 1024:,.0f}" if r.checkpoint_bytes else "-",
            f"{r.wall_s:.1f}",
        ]
        rows.append(tuple(cells))
    winner = {0} if board.winner is not None else set()
    return TableSpec(tuple(columns), tuple(rows), title="Trial leaderboard", highlight_rows=frozenset(winner))


def footer_lines(report: TrialReport, plot: Path | None, lr_plot: Path | None = None) -> list[str]:
    board = report.leaderboard
    lines = lr_search_lines(report)
    for s in board.standings:
        if s.entry.result.status != "ok":
            lines.append(f"{s.entry.name} {s.entry.result.status}: {s.entry.result.message}")
    memory_kind = next((s.entry.result.memory_kind for s in board.standings if s.entry.result.memory_kind), "")
    if memory_kind:
        isolated = " (each candidate in its own process)" if report.request.isolate else ""
        lines.append(f"peak memory = {memory_kind}{isolated}")
    if any(s.entry.predicted_memory_bytes for s in board.standings):
        cpu = report.budget.device == "cpu"
        lines.append(
            f"pred. MiB = the memory model's GPU prediction for this trial's own setup (fp32, batch "
            f"{report.budget.batch_size}, ≤128 tokens)"
            + ("; on the CPU the measured column is RSS growth, not comparable" if cpu else "; compare with peak MiB")
        )
    lines.append(f"Noise rule: {board.noise_rule}; ≈ marks a gap within noise")
    if board.min_detectable is not None:
        lines.append(
            f"Smallest difference this trial can detect: ≈{board.min_detectable:.3g} {board.metric} "
            f"(1.96 × the paired SE over {len(report.data.eval)} eval rows); more eval rows detect less"
        )
    winner, baseline = board.winner, board.baseline
    if winner is not None and board.undecided:
        cheapest = board.cheapest
        assert cheapest is not None
        result = cheapest.entry.result
        lines.append(
            f"No detectable difference: every candidate is within noise of the best ({winner.entry.name}, "
            f"{board.metric} {_score_text(winner, board.metric)}); the cheapest is {cheapest.entry.name} "
            f"({_mib(result.peak_memory_bytes)} MiB peak, {result.trainable_params:,} trainable parameters)"
        )
    elif winner is not None:
        score = _score_text(winner, board.metric)
        lines.append(f"Winner: {winner.entry.name} ({winner.entry.display_name}), {board.metric} {score}")
    shows_baseline = baseline is not None and baseline is not winner and baseline.rank is not None
    if winner is not None and not board.undecided and shows_baseline:
        assert baseline is not None
        verdict = (
            "within noise: on this data the trial cannot tell them apart"
            if baseline.within_noise
            else "a real difference at 95%"
        )
        place = f"#{baseline.rank} of {sum(1 for s in board.standings if s.rank is not None)}"
        gap = gap_with_se(baseline.gap, baseline.gap_se) if baseline.gap is not None else "-"
        lines.append(f"LoRA baseline: {place} on the leaderboard, {gap} behind the winner — {verdict}")
    lines.append(f"Results: {report.results_file} (re-run the same command to resume; --fresh to start over)")
    if plot is not None:
        lines.append(f"Plot written to {plot}")
    if lr_plot is not None:
        lines.append(f"Learning-rate plot written to {lr_plot}")
    lines.append(report.next_text)
    if report.next_command:
        lines.append(f"  {report.next_command}")
    return lines


def _row_search_json(entry: Any) -> dict[str, Any] | None:
    search = entry.lr_search
    if not search:
        return None
    return {
        "tried": [
            {"learning_rate": t["learning_rate"], "score": t["score"], "steps": t["steps"], "rung": t["rung"],
             "eval_loss": t["eval_loss"], "status": t["status"]}
            for t in search["tried"]
        ],
        "chosen": entry.learning_rate,
        "base_learning_rate": search.get("base_learning_rate"),
        "at_edge": search.get("at_edge"),
    }  # fmt: skip


def _search_json(report: TrialReport) -> dict[str, Any] | None:
    if not report.request.searching:
        return None
    from advisor.trial.lr_search import ENGINE, parse_range, total_steps

    policy = parse_range(report.request.lr_range)
    return {
        "policy": policy.describe(),
        "factors": policy.factors(),
        "engine": ENGINE,
        "total_steps": total_steps(len(policy.factors()), report.budget.steps, policy.eta),
        "score": "each rung's eval accuracy (classification) or eval loss (generation)",
    }


def trial_json(report: TrialReport, plot: Path | None) -> dict[str, Any]:
    board = report.leaderboard
    b = report.budget
    return {
        "data": {
            "source": report.data.source,
            "kind": report.data.kind,
            "columns": list(report.data.columns),
            "labels": list(report.data.labels),
            "train_rows": len(report.data.train),
            "eval_rows": len(report.data.eval),
            "seed": report.data.seed,
        },
        "model": report.request.model,
        "budget": {
            "steps": b.steps,
            "batch_size": b.batch_size,
            "seed": b.seed,
            "device": b.device,
            "warmup_fraction": b.warmup_fraction,
        },
        "metric": board.metric,
        "higher_is_better": board.higher_is_better,
        "noise_rule": board.noise_rule,
        "leaderboard": [
            {
                "rank": s.rank,
                **entry_dict(s.entry),
                "score": s.score,
                "gap_to_winner": s.gap,
                "gap_se": s.gap_se,
                "within_noise": s.within_noise,
                "pareto": s.pareto,
                "lr_search": _row_search_json(s.entry),
                **{k: v for k, v in s.entry.result.to_dict().items() if k not in ("method", "eval_per_row")},
            }
            for s in board.standings
        ],
        "winner": board.winner.entry.name if board.winner else None,
        "verdict": "no detectable difference" if board.undecided else ("winner" if board.winner else "none finished"),
        "pick": board.pick.entry.name if board.pick else None,
        "min_detectable_difference": board.min_detectable,
        "lr_search": _search_json(report),
        "next": {"text": report.next_text, "command": report.next_command},
        "results_file": str(report.results_file),
        "plot": str(plot) if plot is not None else None,
        "notes": report.notes,
    }


def _plot_title(report: TrialReport) -> str:
    return (
        f"Quick trial: {Path(report.request.model).name} on {Path(report.data.source).name}, "
        f"{report.budget.steps} steps (≈: within noise of the winner)"
    )


def trial_plot(report: TrialReport, path: Path) -> Path:
    """Eval score against peak memory, one point per finished candidate; the frontier and the winner marked.

    ``.html`` gives the same view as an interactive plotly page (:func:`trial_figure`).
    """
    return save_plot(path, lambda plt: _trial_static(report, plt), lambda: trial_figure(report))


def _trial_static(report: TrialReport, plt: Any) -> Any:
    board = report.leaderboard
    done = [s for s in board.standings if s.rank is not None]
    if not done:
        raise UserError("no candidate finished: nothing to plot")
    fig, ax = plt.subplots(figsize=(8, 5.5), dpi=120)
    for s in done:
        x = (s.entry.result.peak_memory_bytes or 0) / MIB
        is_winner = s is board.winner
        ax.scatter(
            [x],
            [s.score],
            s=140 if is_winner else 70,
            marker="*" if is_winner else ("D" if s.entry.method == "lora" else "o"),
            color="#c44e52" if is_winner else ("#dd8452" if s.entry.method == "lora" else "#4c72b0"),
            zorder=4,
        )
        label = s.entry.name + (" ≈ winner" if s.within_noise and not is_winner else "")
        ax.annotate(label, (x, s.score), fontsize=9, xytext=(5, 4), textcoords="offset points")
    front = sorted(((s.entry.result.peak_memory_bytes or 0) / MIB, s.score) for s in done if s.pareto)
    if len(front) > 1:
        step = "post" if board.higher_is_better else "pre"
        ax.step([p[0] for p in front], [p[1] for p in front], where=step, color="#55a868", label="Pareto frontier")
        ax.legend(loc="best", fontsize=8)
    ax.set_xlabel(f"peak memory, MiB ({done[0].entry.result.memory_kind})")
    ax.set_ylabel(board.metric + ("" if board.higher_is_better else " (lower is better)"))
    ax.set_title(_plot_title(report), fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def trial_figure(report: TrialReport) -> Any:
    """The trial plot as an interactive plotly figure: hover shows each candidate's lr, score and gap."""
    go = plotly_go()
    board = report.leaderboard
    done = [s for s in board.standings if s.rank is not None]
    if not done:
        raise UserError("no candidate finished: nothing to plot")
    fig = go.Figure()
    for s in done:
        is_winner = s is board.winner
        fig.add_trace(
            go.Scatter(
                x=[(s.entry.result.peak_memory_bytes or 0) / MIB],
                y=[s.score],
                mode="markers+text",
                name=s.entry.name,
                text=[s.entry.name + (" ≈ winner" if s.within_noise and not is_winner else "")],
                textposition="top right",
                marker={
                    "size": 16 if is_winner else 10,
                    "symbol": "star" if is_winner else ("diamond" if s.entry.method == "lora" else "circle"),
                },
                hovertemplate=(
                    f"{s.entry.name}: lr {s.entry.learning_rate:g}, {board.metric} %{{y:.4f}}, gap "
                    f"{_gap_text(s)}<br>peak %{{x:,.0f}} MiB<extra></extra>"
                ),
            )
        )
    front = sorted(((s.entry.result.peak_memory_bytes or 0) / MIB, s.score) for s in done if s.pareto)
    if len(front) > 1:
        shape = "hv" if board.higher_is_better else "vh"
        fig.add_trace(
            go.Scatter(
                x=[p[0] for p in front],
                y=[p[1] for p in front],
                mode="lines",
                line={"shape": shape, "color": "#55a868"},
                name="Pareto frontier",
                hoverinfo="skip",
            )
        )
    fig.update_layout(
        title=_plot_title(report),
        xaxis_title=f"peak memory, MiB ({done[0].entry.result.memory_kind})",
        yaxis_title=board.metric + ("" if board.higher_is_better else " (lower is better)"),
        height=480,
    )
    return fig


def lr_plot(report: TrialReport, path: Path) -> Path:
    """Eval loss against learning rate, one line per candidate and rung; the chosen rate marked."""
    searched = [e for e in report.entries if e.lr_search and e.lr_search["tried"]]
    if not searched:
        raise UserError("no learning-rate search to plot")
    return save_plot(path, lambda plt: _lr_static(searched, plt), lambda: _lr_figure(searched))


def _lr_points(entry: Any) -> list[tuple[int, list[tuple[float, float]]]]:
    by_rung: dict[int, list[tuple[float, float]]] = {}
    for t in entry.lr_search["tried"]:
        if t["score"] is not None:
            by_rung.setdefault(t["rung"], []).append((t["learning_rate"], t["score"]))
    return sorted((rung, sorted(points)) for rung, points in by_rung.items())


def _lr_axis(entries: list[Any]) -> str:
    accuracy = any(t["eval_accuracy"] is not None for e in entries for t in e.lr_search["tried"])
    return "eval accuracy (higher is better)" if accuracy else "eval loss (lower is better)"


def _lr_static(entries: list[Any], plt: Any) -> Any:
    fig, ax = plt.subplots(figsize=(8, 5.5), dpi=120)
    for index, entry in enumerate(entries):
        color = f"C{index % 10}"
        for rung, points in _lr_points(entry):
            ax.plot(
                [p[0] for p in points], [p[1] for p in points], marker="o", color=color,
                alpha=0.35 + 0.65 * (rung + 1) / 3, linestyle="-" if rung == 0 else ":",
                label=f"{entry.name} (rung {rung})",
            )  # fmt: skip
        chosen = [t for t in entry.lr_search["tried"] if t["learning_rate"] == entry.learning_rate and t["score"]]
        if chosen:
            ax.scatter([chosen[-1]["learning_rate"]], [chosen[-1]["score"]], s=160, marker="*", color=color, zorder=5)
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel(_lr_axis(entries))
    ax.set_title("Learning-rate search: each rung's score; ★ the rate trained for the full steps", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig


def _lr_figure(entries: list[Any]) -> Any:
    go = plotly_go()
    fig = go.Figure()
    for entry in entries:
        for rung, points in _lr_points(entry):
            fig.add_trace(
                go.Scatter(
                    x=[p[0] for p in points], y=[p[1] for p in points], mode="lines+markers",
                    name=f"{entry.name} (rung {rung})",
                    hovertemplate=f"{entry.name}: lr %{{x:.3g}}, score %{{y:.4f}} (rung {rung})<extra></extra>",
                )
            )  # fmt: skip
    fig.update_layout(
        xaxis_type="log", xaxis_title="learning rate", yaxis_title=_lr_axis(entries), height=480,
        title="Learning-rate search",
    )  # fmt: skip
    return fig
