"""`methods` (the PEFT method registry) and `refresh-benchmarks` (the benchmark snapshot)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from advisor.cli.common import user_errors
from advisor.errors import UserError


@user_errors
def refresh_benchmarks_command(
    source: Annotated[
        str,
        typer.Option("--from", help="PEFT checkout or results folder, 'github[:REF]', or a github.com repo URL."),
    ],
    output: Annotated[Path | None, typer.Option(help="Write the snapshot here instead of the user data dir.")] = None,
    commit: Annotated[
        str | None, typer.Option(help="Upstream commit of a local folder, if it cannot be found.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Rebuild the benchmark snapshot from PEFT's method-comparison result files."""
    from advisor.benchmarks.importer import build_snapshot, compare
    from advisor.benchmarks.sources import open_source
    from advisor.benchmarks.store import load_snapshot, save_snapshot, user_snapshot_path
    from advisor.output import emit_json
    from advisor.output.progress import progress_reporter
    from advisor.output.refresh_view import print_report, report_json

    target = output or user_snapshot_path()
    try:
        previous = load_snapshot(target) if target.exists() else load_snapshot()
    except UserError:
        previous = None  # an unreadable old snapshot is simply replaced
    src = open_source(source, commit)
    with progress_reporter("reading result files", enabled=not as_json) as progress:
        snapshot = build_snapshot(src, progress=progress)
    save_snapshot(snapshot, target)
    report = compare(previous, snapshot)
    if as_json:
        emit_json(report_json(report, target))
    else:
        print_report(report, target)


@user_errors
def methods_command(
    name: Annotated[str | None, typer.Argument(help="Show one method (any alias).")] = None,
    refresh: Annotated[
        bool,
        typer.Option(
            "--refresh",
            help="Re-establish capabilities for the installed peft: each is run on a tiny Llama (minutes on a CPU).",
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """List the PEFT method registry and what each method can do."""
    from advisor.methods.registry import load_registry, refresh_registry, registry_staleness
    from advisor.output import emit_json, print_lines
    from advisor.output.methods_view import evidence_lines, methods_json, methods_table
    from advisor.output.progress import phase_reporter
    from advisor.output.tables import print_table

    if refresh:
        with phase_reporter(enabled=not as_json) as progress:
            registry, path = refresh_registry(
                progress=(lambda name, done, total: progress(f"probing {name}", done, total)) if progress else None
            )
        if not as_json:
            print_lines(
                [f"Read {len(registry.methods) - 1} methods from peft {registry.peft_version}; cached in {path}"]
            )
    else:
        registry = load_registry()
    methods = [registry.resolve(name)] if name else list(registry.methods)
    if as_json:
        emit_json(methods_json(registry, methods))
        return
    print_table(methods_table(registry, methods))
    if name:
        print_lines(evidence_lines(methods[0]))
    stale = registry_staleness(registry)
    if stale:
        print_lines([f"Note: {stale}"])
