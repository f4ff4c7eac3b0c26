"""What ``peft-advise auto`` shows: terminal lines, the JSON contract, and ``OUT/report.html``.

The report is one self-contained file (tables as HTML, plots embedded) so it can be mailed, kept
as a CI artifact or downloaded from the Space, and read with no server. Paths in it are relative
to OUT: the folder the user has, not the machine it was made on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from advisor.errors import UserError
from advisor.output import html, trial_view
from advisor.output import recommend_view as rec_view
from advisor.output.tables import Column, TableSpec
from advisor.paths import write_text_atomic

FIDELITY_EXPLAINED = (
    "fidelity = the share of the adapter's effect on the model's outputs that the LoRA keeps "
    "(1.0: the same outputs as the trained adapter), measured by reloading the written folder with PEFT"
)


def _rel(result: Any, path: Path | str | None) -> str | None:
    if path is None:
        return None
    path = Path(path)
    try:
        return path.resolve().relative_to(Path(result.request.out).resolve()).as_posix()
    except ValueError:
        return str(path)


def served_lines(result: Any) -> list[str]:
    s = result.served
    chosen = result.chosen.entry
    lines = []
    if result.serving_cost:
        lines.append(f"Note: {result.serving_cost}")
    how = (
        f"converted to LoRA rank {s.rank}, fidelity {s.fidelity:.4f} (minimum {result.request.min_fidelity:g})"
        if s.converted and s.fidelity is not None
        else "as trained (the consumer loads it natively)"
    )
    verdict = "passes" if s.check.get("passed") else "FAILS"
    lines += [
        f"Served: {chosen.display_name} for {s.consumer}, {how}",
        f"  folder   {s.adapter_dir}   (in {result.request.out})",
        f"  check    {verdict} the {s.consumer} checks"
        + "".join(f"; {f['message']}" for f in s.check.get("findings", []) if f.get("level") == "error"),
        f"  serve    (from {result.request.out}) {s.serve_command}",
    ]
    if s.converted:
        lines.append(f"  {FIDELITY_EXPLAINED}")
    return lines


def summary_lines(result: Any) -> list[str]:
    board = result.trial.leaderboard
    verdict = (
        f"no detectable difference; {result.best.entry.display_name} is the cheapest"
        if board.undecided
        else f"{result.best.entry.display_name} won"
    )
    return [
        f"Budget {result.request.vram_gib:g} GiB, data {result.trial.data.source}, model {result.request.model}",
        f"Trial ({board.metric}): {verdict}",
        *served_lines(result),
        f"Report: {_rel(result, result.report) or 'not written'}  (in {result.request.out})",
    ]


def auto_json(result: Any) -> dict[str, Any]:
    trial_plot = result.plots.get("trial")
    served = result.served.to_dict()
    return {
        "recommendation": rec_view.recommendation_json(result.recommendation),
        "trial": {**trial_view.trial_json(result.trial, trial_plot), "lr_plot": _rel(result, result.plots.get("lr"))},
        "winner": result.best.entry.name,
        "served_candidate": result.chosen.entry.name,
        "serving_cost": result.serving_cost,
        "served": {k: served[k] for k in ("consumer", "method", "adapter_dir", "converted", "rank", "fidelity")}
        | {"check": served["check"], "serve_command": served["serve_command"], "name": served["name"]},
        "conversion": result.served.conversion,
        "report": _rel(result, result.report),
    }


# --------------------------------------------------------------------------- the HTML report


def _sweep_table(conversion: dict[str, Any]) -> TableSpec:
    rows = []
    for row in conversion.get("sweep", []):
        kl = row.get("kl")
        top1 = row.get("top1_agreement")
        rows.append(
            (
                str(row["rank"]),
                row["factorization"],
                f"{row['parameters']:,}",
                f"{row['fidelity']:.4f}",
                "-" if kl is None else f"{kl:.3g}",
                "-" if top1 is None else f"{top1 * 100:.1f}%",
            )
        )
    chosen = conversion.get("ranks") or {}
    top = max(chosen.values()) if chosen else None
    highlight = frozenset(i for i, r in enumerate(conversion.get("sweep", [])) if r["rank"] == top)
    return TableSpec(
        columns=(
            Column("rank", "right"),
            Column("factorisation"),
            Column("parameters", "right"),
            Column("fidelity", "right"),
            Column("KL", "right"),
            Column("top-1", "right"),
        ),
        rows=tuple(rows),
        title="Rank sweep on held-out samples (the written rank highlighted)",
        highlight_rows=highlight,
    )


def _plots(result: Any) -> dict[str, Path]:
    """Recommendation, trial and learning-rate plots as PNG files in OUT (needs the [plot] extra)."""
    from advisor.output.plots import pareto_plot

    out = Path(result.request.out)
    plots: dict[str, Path] = {}
    for key, draw, path in (
        ("recommendation", lambda p: pareto_plot(result.recommendation, p), out / "recommendation.png"),
        ("trial", lambda p: trial_view.trial_plot(result.trial, p), out / "trial" / "trial.png"),
        ("lr", lambda p: trial_view.lr_plot(result.trial, p), out / "trial" / "lr-search.png"),
    ):
        try:
            plots[key] = draw(path)
        except UserError:
            continue  # no matplotlib, or nothing to draw (e.g. no search): the report says so by omission
    return plots


def report_html(result: Any) -> str:
    rec, trial, served = result.recommendation, result.trial, result.served
    sections = [html.lines_html(summary_lines(result)[:2])]
    sections.append(html.lines_html(served_lines(result), "ok" if served.check.get("passed") else "callout"))
    sections.append("<h2>Serve it</h2>")
    sections.append(
        html.lines_html([f"From the folder {result.request.out} (the served adapter is {served.adapter_dir}):"])
    )
    sections.append(html.code_html(served.serve_command))
    sections.append("<h2>1. Recommendation for the budget</h2>")
    sections.append(html.lines_html(rec_view.header_lines(rec)))
    if rec.nothing_fits is not None:
        sections.append(html.lines_html(rec_view.nothing_fits_lines(rec), "callout"))
    else:
        sections.append(html.table_html(rec_view.table_spec(rec)))
    sections.append(html.image_html(result.plots.get("recommendation"), "score vs peak memory, Pareto frontier"))
    sections.append(html.lines_html(rec_view.footer_lines(rec), "muted"))
    sections.append("<h2>2. Trial on your data</h2>")
    sections.append(html.lines_html(trial_view.header_lines(trial)))
    sections.append(html.table_html(trial_view.leaderboard_table(trial)))
    sections.append(html.image_html(result.plots.get("trial"), "trial: score vs memory"))
    search = trial_view.lr_search_lines(trial)
    if search:
        sections.append("<h3>Learning-rate search</h3>")
        sections.append(html.lines_html(search))
        sections.append(html.image_html(result.plots.get("lr"), "score vs learning rate per candidate"))
    sections.append(html.lines_html(trial.notes, "muted"))
    sections.append("<h2>3. Conversion</h2>")
    if served.conversion:
        sections.append(html.table_html(_sweep_table(served.conversion)))
        sections.append(html.lines_html([FIDELITY_EXPLAINED, served.conversion.get("rank_choice", "")], "muted"))
        warnings = served.conversion.get("warnings") or []
        if warnings:
            sections.append(html.lines_html([f"Warning: {w}" for w in warnings], "callout"))
    else:
        sections.append(html.lines_html([f"No conversion: {served.consumer} loads this adapter as trained."]))
    if result.serving_cost:
        sections.append(html.lines_html([result.serving_cost], "callout"))
    return html.page(f"peft-advisor: {result.request.vram_gib:g} GiB and your data → a served adapter", sections)


def write_report(result: Any) -> Path:
    result.plots = _plots(result)
    path = Path(result.request.out) / "report.html"
    write_text_atomic(path, report_html(result))
    return path
