"""Hub-usage scan results as tables, CSV and charts (presentation only; the numbers come from hub_scan)."""

from __future__ import annotations

import csv
import io
from collections import Counter, defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from advisor.errors import UserError
from advisor.output.figures import plotly_go, save_plot
from advisor.output.tables import Column, TableSpec
from advisor.paths import write_text_atomic

if TYPE_CHECKING:  # the views stay importable without the scanner's optional dependencies
    from hub_scan.evaluate import ClassScore
    from hub_scan.records import ScannedCard
    from hub_scan.scan import ScanResult
    from hub_scan.stats import UsageStats
    from hub_scan.usage_file import UsageSummary

TOP_SPLITS = 12


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def _display(name: str) -> str:
    from hub_scan.techniques import by_name

    technique = by_name().get(name)
    return technique.display if technique else name


def header_lines(result: ScanResult) -> list[str]:
    stats = result.stats
    status = ", ".join(f"{k} {v:,}" for k, v in stats.status.most_common())
    lines = [f"Scanned {stats.cards:,} cards from {result.source} ({result.kind}) at {result.scanned_at}: {status}."]
    lines += [f"note: {note}" for note in result.notes]
    return lines


def shares_table(stats: UsageStats) -> TableSpec:
    """Ours (every piece of a repo's evidence) beside the blog's (the card text alone), one row per family."""
    card_only = {r["technique"]: r for r in stats.card_only_shares()}
    ours = stats.shares()
    names = [r["technique"] for r in ours] + [n for n in card_only if n not in {r["technique"] for r in ours}]
    by_name = {r["technique"]: r for r in ours}
    rows = []
    for name in names:
        mine, blog = by_name.get(name), card_only.get(name)
        rows.append(
            (
                _display(name),
                f"{mine['cards']:,}" if mine else "0",
                _pct(mine["share"]) if mine else "–",
                f"{blog['cards']:,}" if blog else "0",
                _pct(blog["share"]) if blog else "–",
            )
        )
    title = (
        f"Repos reporting exactly one PEFT technique: {stats.exactly_one_total:,} from card + config + base model + "
        f"files, {sum(stats.exactly_one_card.values()):,} from the card text alone (the blog's method); "
        "QLoRA/DoRA count as LoRA"
    )
    lora = names.index("lora") if "lora" in names else None
    return TableSpec(
        (
            Column("technique"),
            Column("repos", "right"),
            Column("share", "right"),
            Column("card only", "right", drop=1),
            Column("share (card only)", "right", drop=1),
        ),
        tuple(rows),
        title=title,
        highlight_rows=frozenset({lora} if lora is not None else ()),
    )


def techniques_table(stats: UsageStats) -> TableSpec:
    rows = tuple((_display(name), name, f"{count:,}") for name, count in stats.techniques.most_common())
    return TableSpec(
        (Column("technique"), Column("name"), Column("cards", "right")),
        rows,
        title="Cards reporting each technique (a card may report several)",
    )


def config_table(stats: UsageStats) -> TableSpec:
    rows = tuple((r["peft_type"], f"{r['adapters']:,}", _pct(r["share"])) for r in stats.config_shares())
    return TableSpec(
        (Column("config (peft_type)"), Column("adapters", "right"), Column("share", "right")),
        rows,
        title=f"adapter_config.json truth: {sum(stats.with_config.values()):,} adapters",
    )


def agreement_table(stats: UsageStats) -> TableSpec:
    card_labels = sorted(
        {k[0] for k in stats.agreement}, key=lambda k: -sum(v for (c, _), v in stats.agreement.items() if c == k)
    )
    config_labels = sorted(
        {k[1] for k in stats.agreement}, key=lambda k: -sum(v for (_, c), v in stats.agreement.items() if c == k)
    )
    rows = tuple(
        (label, *(str(stats.agreement.get((label, conf), 0) or "·") for conf in config_labels)) for label in card_labels
    )
    return TableSpec(
        (Column("card says \\ config"), *(Column(c, "right") for c in config_labels)),
        rows,
        title="Agreement: what the card says (rows) vs adapter_config.json (columns)",
    )


def _split_table(counter: Counter, key_name: str, title: str, limit: int = TOP_SPLITS) -> TableSpec:
    totals: Counter = Counter()
    per: dict[str, Counter] = defaultdict(Counter)
    for (key, family), count in counter.items():
        totals[key] += count
        per[key][family] += count
    rows = []
    for key, total in totals.most_common(limit):
        others = [(f, c) for f, c in per[key].most_common() if f != "lora"][:2]
        rows.append(
            (
                key,
                f"{total:,}",
                _pct(per[key]["lora"] / total),
                ", ".join(f"{_display(f)} {100 * c / total:.1f}%" for f, c in others) or "–",
            )
        )
    return TableSpec(
        (Column(key_name), Column("cards", "right"), Column("LoRA", "right"), Column("next most used", drop=1)),
        tuple(rows),
        title=title,
    )


def trend_table(stats: UsageStats) -> TableSpec:
    totals: Counter = Counter()
    lora: Counter = Counter()
    for (month, family), count in stats.by_month.items():
        totals[month] += count
        if family == "lora":
            lora[month] += count
    months = sorted(totals)[-24:]
    rows = tuple((m, f"{totals[m]:,}", _pct(lora[m] / totals[m])) for m in months)
    return TableSpec(
        (Column("month created"), Column("cards", "right"), Column("LoRA share", "right")),
        rows,
        title="Trend: LoRA's share by month of creation (last 24 months with data)",
    )


def split_tables(stats: UsageStats) -> list[TableSpec]:
    tables = []
    if stats.by_month:
        tables.append(trend_table(stats))
    if any(k[0] != "unknown" for k in stats.by_pipeline):
        tables.append(_split_table(stats.by_pipeline, "pipeline tag", "By pipeline tag"))
    if any(k[0] != "unknown" for k in stats.by_base_family):
        tables.append(_split_table(stats.by_base_family, "base-model family", "By base-model family"))
    return tables


def report_tables(result: ScanResult) -> list[TableSpec]:
    stats = result.stats
    tables = [shares_table(stats), techniques_table(stats)]
    if stats.with_config:
        tables += [config_table(stats), agreement_table(stats)]
    return tables + split_tables(stats)


def cards_table(cards: list[ScannedCard]) -> TableSpec:
    rows = []
    for card in cards:
        chosen = next((card.evidence[t] for t in card.techniques if card.evidence.get(t)), None)
        first = (chosen or next(iter(card.evidence.values()), [{}]))[-1 if chosen else 0] if card.evidence else {}
        rows.append(
            (
                card.id,
                ", ".join(card.techniques) or card.status,
                ", ".join(card.card_only) or "–",
                card.config_peft_type or "–",
                ((first.get("text") or "") + (f" [{first['rule']}]" if first.get("rule") else ""))[:90],
            )
        )
    return TableSpec(
        (
            Column("card"),
            Column("techniques"),
            Column("card only", drop=2),
            Column("config", drop=1),
            Column("evidence", drop=3),
        ),
        tuple(rows),
        title="Per card",
    )


def evaluation_tables(reading: list[ClassScore], config: list[ClassScore]) -> list[TableSpec]:
    def table(scores: list[ClassScore], title: str) -> TableSpec:
        rows = tuple((s.label, str(s.support), str(s.predicted), _pct(s.precision), _pct(s.recall)) for s in scores)
        return TableSpec(
            (
                Column("label"),
                Column("cards", "right"),
                Column("predicted", "right"),
                Column("precision", "right"),
                Column("recall", "right"),
            ),
            rows,
            title=title,
        )

    tables = []
    if reading:
        tables.append(table(reading, "Classifier vs reading labels (meta.json label_by_reading)"))
    if config:
        tables.append(table(config, "Classifier vs adapter_config.json (family level)"))
    return tables


def csv_text(result: ScanResult) -> str:
    """Long format: one row per (section, key) so a spreadsheet can pivot any of the statistics."""
    stats = result.stats
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["section", "key", "technique", "count", "share"])
    for r in stats.shares():
        writer.writerow(["exactly_one", "", r["technique"], r["cards"], f"{r['share']:.6f}"])
    for name, count in stats.techniques.most_common():
        writer.writerow(["reported", "", name, count, f"{count / stats.cards:.6f}" if stats.cards else ""])
    for r in stats.config_shares():
        writer.writerow(["config_truth", "", r["peft_type"], r["adapters"], f"{r['share']:.6f}"])
    for section, counter in (
        ("agreement", stats.agreement),
        ("month", stats.by_month),
        ("pipeline_tag", stats.by_pipeline),
        ("base_family", stats.by_base_family),
    ):
        for (key, technique), count in sorted(counter.items()):
            writer.writerow([section, key, technique, count, ""])
    for card in result.cards:
        writer.writerow(["card", card.id, "+".join(card.techniques) or card.status, 1, ""])
    return out.getvalue()


def write_csv(result: ScanResult, path: Path) -> None:
    write_text_atomic(Path(path), csv_text(result))


def _trend_series(stats: UsageStats, top: list[str]) -> tuple[list[str], dict[str, list[float]]]:
    totals: Counter = Counter()
    for (month, _), count in stats.by_month.items():
        totals[month] += count
    months = sorted(totals)
    series = {name: [stats.by_month.get((m, name), 0) / totals[m] for m in months] for name in top}
    return months, series


def write_chart(result: ScanResult, path: Path) -> Path:
    """Share bar chart (and the monthly trend when dates are known): .png/.svg/.pdf via matplotlib, .html via plotly."""
    stats = result.stats
    if not stats.exactly_one_total:
        raise UserError("nothing to chart: no card reported exactly one PEFT technique")
    shares = stats.shares()
    names = [_display(r["technique"]) for r in shares]
    values = [100 * r["share"] for r in shares]
    top = [r["technique"] for r in shares[:5]]
    months, series = _trend_series(stats, top)
    title = f"PEFT technique shares, {stats.exactly_one_total:,} cards reporting exactly one ({result.source})"

    def static(plt: Any) -> Any:
        panels = 2 if months else 1
        fig, axes = plt.subplots(1, panels, figsize=(7 * panels, 5), dpi=120, squeeze=False)
        ax = axes[0][0]
        colors = ["#dd8452" if n == "LoRA" else "#4c72b0" for n in names]
        ax.barh(names[::-1], values[::-1], color=colors[::-1])
        ax.set_xlabel("share of cards (%)")
        ax.set_title("Share", fontsize=10)
        for y, v in enumerate(values[::-1]):
            ax.text(v, y, f" {v:.1f}%", va="center", fontsize=8)
        if months:
            ax2 = axes[0][1]
            for name, ys in series.items():
                ax2.plot(months, [100 * y for y in ys], marker="o", label=_display(name))
            ax2.set_ylabel("share of the month's cards (%)")
            ax2.set_title("By month of creation", fontsize=10)
            ax2.legend(fontsize=8)
            ax2.tick_params(axis="x", labelrotation=60, labelsize=7)
        fig.suptitle(title, fontsize=10)
        fig.tight_layout()
        return fig

    return save_plot(Path(path), static, lambda: plotly_usage_figure(names, values, months, series, title))


def plotly_usage_figure(
    names: list[str], values: list[float], months: list[str], series: dict[str, list[float]], title: str
) -> Any:
    """Share bars and, when months are known, each technique's share by month of creation."""
    go = plotly_go()
    from plotly.subplots import make_subplots

    cols = 2 if months else 1
    fig = make_subplots(rows=1, cols=cols, subplot_titles=("Share", "By month of creation")[:cols])
    fig.add_trace(
        go.Bar(
            x=values[::-1],
            y=names[::-1],
            orientation="h",
            name="share (%)",
            hovertemplate="%{y}: %{x:.2f}%<extra></extra>",
        ),
        row=1,
        col=1,
    )
    for name, ys in series.items():
        if months:
            fig.add_trace(
                go.Scatter(
                    x=months,
                    y=[100 * y for y in ys],
                    mode="lines+markers",
                    name=_display(name),
                    hovertemplate="%{x}: %{y:.2f}%<extra>" + _display(name) + "</extra>",
                ),
                row=1,
                col=2,
            )
    fig.update_layout(title=title, height=520)
    return fig


TOP_TECHNIQUES = 8


def summary_rows(summary: UsageSummary) -> list[list[str]]:
    """The saved usage summary's shares as table rows: technique, share, of how many cards."""
    ranked = sorted(summary.shares.items(), key=lambda item: -item[1])
    return [[_display(name), _pct(share), f"{round(share * summary.exactly_one):,}"] for name, share in ranked]


def summary_figure(summary: UsageSummary) -> Any:
    """The saved summary as the scan's chart: top techniques' shares, and their trend by month."""
    ranked = sorted(summary.shares.items(), key=lambda item: -item[1])[:TOP_TECHNIQUES]
    names = [_display(name) for name, _ in ranked]
    values = [100 * share for _, share in ranked]
    months = sorted(summary.by_month)
    totals = {m: sum(summary.by_month[m].values()) for m in months}
    series = {name: [summary.by_month[m].get(name, 0) / totals[m] for m in months] for name, _ in ranked[:4]}
    title = (
        f"{summary.kind} scan of {summary.cards:,} cards ({summary.exactly_one:,} reporting exactly one technique), "
        f"{summary.scanned_at[:10]}"
    )
    return plotly_usage_figure(names, values, months, series if months else {}, title)


def usage_json(result: ScanResult, *, with_cards: bool) -> dict[str, Any]:
    return result.to_dict(with_cards=with_cards)
