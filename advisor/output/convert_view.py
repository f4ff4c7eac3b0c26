"""Presentation of conversions, coverage and LoRA checks. Renders only; computes nothing."""

from __future__ import annotations

from typing import Any

from advisor.output.tables import Column, TableSpec


def _pct(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{100 * value:.{digits}f}%"


def _num(value: float | None, fmt: str = ".3g") -> str:
    return "-" if value is None else format(value, fmt)


def coverage_table(rows: list[Any]) -> TableSpec:
    return TableSpec(
        title="What converts to LoRA (peft-advise convert)",
        columns=(Column("method"), Column("peft_type"), Column("converts"), Column("how / why not")),
        rows=tuple(
            (c.method.display_name, c.method.peft_type or "-", c.route if c.convertible else "no", c.how) for c in rows
        ),
    )


def sweep_table(result: Any) -> TableSpec:
    causal = any(row.fidelity.kl is not None for row in result.sweep)
    columns = [
        Column("rank", "right"),
        Column("factorisation"),
        Column("params", "right", drop=2),
        Column("energy", "right", drop=4),
        Column("weight err", "right", drop=5),
        Column("layer out err", "right", drop=3),
        Column("model out err", "right", drop=1),
        Column("fidelity", "right"),
    ]
    if causal:
        columns += [Column("KL", "right", drop=1), Column("top-1", "right", drop=1)]
    rows = []
    for row in result.sweep:
        cells = [
            str(row.rank),
            row.factorization,
            f"{row.parameters:,}",
            _pct(row.retained_energy),
            _pct(row.weight_error, 2),
            _pct(row.layer_output_error, 2),
            _num(row.fidelity.output_error),
            f"{row.fidelity.fidelity:.4f}",
        ]
        if causal:
            cells += [_num(row.fidelity.kl), _pct(row.fidelity.top1_agreement)]
        rows.append(tuple(cells))
    return TableSpec(
        title="Rank sweep (errors on held-out samples; fidelity = 1 − lost share of the adapter's effect)",
        columns=tuple(columns),
        rows=tuple(rows),
    )


def result_lines(result: Any) -> list[str]:
    written = "written to " + result.out if result.written else "not written"
    lines = [
        f"{result.source_method} adapter {result.source} → LoRA ({written})",
        f"  base model     {result.base_model}",
        f"  layers         {result.layers} ({', '.join(f'{n} via {r}' for r, n in sorted(result.routes.items()))})",
        f"  rank           {result.rank_summary}   parameters {result.parameters:,}",
    ]
    if result.rank_choice:
        lines.append(f"                 {result.rank_choice}")
    lines.append(f"  factorisation  {result.factorization}   calibration: {result.calibration}")
    fid = result.fidelity
    if fid is not None:
        line = f"  fidelity       {fid.fidelity:.4f}   relative output error {fid.output_error:.3g}"
        if fid.kl is not None:
            line += f"   KL {fid.kl:.3g}   top-1 agreement {_pct(fid.top1_agreement)}"
            line += f" (bare base: {_pct(fid.base_top1_agreement)})"
        lines.append(line + "   [PEFT reload of the written folder]")
    lines += [f"  WARNING: {warning}" for warning in result.warnings]
    lines += [f"  note: {note}" for note in result.notes]
    if result.rejected:
        lines.append(f"  nothing written: {result.rejected}")
    elif result.check is not None:
        caveat = "it loads, but read the WARNING above before serving it" if result.warnings else None
        lines += check_lines(result.check, caveat=caveat)
    return lines


def check_lines(report: Any, caveat: str | None = None) -> list[str]:
    verdict = "ready" if report.passed else "NOT ready"
    lines = [f"{verdict} for {report.target}: {report.modules} modules, max rank {report.max_rank}"]
    if caveat and report.passed:
        lines[0] += f" ({caveat})"
    marks = {"error": "✗", "warning": "!", "info": "·"}
    for finding in report.findings:
        fix = " (fixable: peft-advise check-lora --fix)" if finding.fixable else ""
        lines.append(f"  {marks[finding.level]} {finding.level}: {finding.message}{fix}")
    if report.serve_command:
        lines.append(f"  serve it: {report.serve_command}")
    return lines
