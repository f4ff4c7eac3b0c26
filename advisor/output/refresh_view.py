"""The summary of a benchmark refresh: what was added, changed, removed and skipped."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from advisor.benchmarks.importer import ImportReport
from advisor.output.tables import Column, TableSpec, print_lines, print_table


def report_json(report: ImportReport, path: Path) -> dict[str, Any]:
    snap = report.snapshot
    return {
        "snapshot": str(path),
        "source": snap.source,
        "runs": len(snap.runs),
        "runs_per_benchmark": {k: len(snap.runs_for(k)) for k in snap.setups},
        "added": list(report.added),
        "changed": list(report.changed),
        "removed": list(report.removed),
        "unchanged": report.unchanged,
        "skipped": list(report.skipped),
    }


def print_report(report: ImportReport, path: Path) -> None:
    snap = report.snapshot
    per_bench = ", ".join(f"{k}: {len(snap.runs_for(k))}" for k in snap.setups)
    commit = snap.source.get("upstream_commit") or "unknown"
    print_lines(
        [
            f"Imported {len(snap.runs)} runs ({per_bench}) from {snap.source['location']} @ {commit}",
            f"Snapshot written to {path}",
            f"{len(report.added)} added, {len(report.changed)} changed, {len(report.removed)} removed, "
            f"{report.unchanged} unchanged, {len(report.skipped)} file(s) skipped",
        ]
    )
    changes = [("added", rid) for rid in report.added] + [("changed", rid) for rid in report.changed]
    changes += [("removed", rid) for rid in report.removed]
    if changes and len(changes) <= 200:
        print_table(TableSpec((Column("change"), Column("run")), tuple(changes)))
    if report.skipped:
        print_table(
            TableSpec(
                (Column("skipped file"), Column("reason")),
                tuple((s["file"], s["reason"]) for s in report.skipped),
            )
        )
