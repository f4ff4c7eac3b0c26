"""`convert` (any weight-based adapter to LoRA, fidelity measured) and `check-lora` (consumer checks)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from advisor.cli.common import choices, user_errors
from advisor.errors import UserError
from advisor.vocabulary import CONSUMER_TARGETS


def _parse_ranks(value: str | None) -> tuple[int, ...]:
    if not value:
        return ()
    try:
        return tuple(sorted({int(part) for part in value.split(",") if part.strip()}))
    except ValueError:
        raise UserError(f"--sweep takes comma-separated ranks such as 16,32,64 (got {value!r}).") from None


@user_errors
def convert_command(
    source: Annotated[str | None, typer.Argument(help="Adapter folder or Hub repo id (safetensors).")] = None,
    out: Annotated[Path | None, typer.Argument(help="Output folder for the LoRA adapter.")] = None,
    rank: Annotated[
        int | None, typer.Option(help="One rank for every layer (default 64, or chosen by --sweep).")
    ] = None,
    energy: Annotated[
        float | None, typer.Option(help="Per-layer rank: keep this fraction of each update's energy, e.g. 0.9.")
    ] = None,
    max_rank: Annotated[int | None, typer.Option(help="Upper bound on any layer's rank.")] = None,
    base_model: Annotated[
        str | None, typer.Option(help="Base model id or folder (default: the adapter's base_model_name_or_path).")
    ] = None,
    calibration: Annotated[
        Path | None, typer.Option(help="Your inputs (.txt lines, .jsonl/.json 'text'): fit and fidelity samples.")
    ] = None,
    target: Annotated[
        str, typer.Option("--for", help=f"{choices(CONSUMER_TARGETS)}: who will load the result.")
    ] = "peft",
    sweep: Annotated[
        str | None, typer.Option(help="Measure these ranks, e.g. 8,16,32,64,128 (plain vs calibrated).")
    ] = None,
    min_fidelity: Annotated[
        float | None, typer.Option(help="Refuse to write (exit 1) below this fidelity (0-1).")
    ] = None,
    warn_below: Annotated[
        float,
        typer.Option(help="Warn in the summary below this fidelity, and let --sweep pick the smallest rank above it."),
    ] = 0.9,
    factorization: Annotated[
        str,
        typer.Option(
            help="auto (calibrated: output-aware, where the layer's inputs were recorded; else plain) | "
            "calibrated | plain (SVD)."
        ),
    ] = "auto",
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N")] = "auto",
    stream: Annotated[
        bool | None,
        typer.Option(
            "--stream/--no-stream",
            help="Read the base model one block at a time (memory: one block, not the model; default: for "
            "checkpoints of 1 GiB or more); --no-stream loads it whole.",
        ),
    ] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing output folder.")] = False,
    allow_pickle: Annotated[
        bool, typer.Option("--allow-pickle", help="Accept adapter_model.bin (only from sources you trust).")
    ] = False,
    revision: Annotated[str | None, typer.Option(help="Hub revision of SRC.")] = None,
    push_to_hub: Annotated[str | None, typer.Option(help="Also upload the result to this Hub repo.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Measure (and sweep) without writing.")] = False,
    list_methods: Annotated[bool, typer.Option("--list", help="Show which PEFT methods convert, and how.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable result.")] = False,
) -> None:
    """Export a PEFT adapter (OFT, BOFT, HRA, IA3, LoHa, ...) to a plain LoRA adapter, with measured fidelity."""
    from advisor.output import convert_view as view
    from advisor.output import emit_json
    from advisor.output.tables import print_table

    if list_methods:
        from converters.coverage import coverage_table

        rows = coverage_table()
        if as_json:
            emit_json([row.to_dict() for row in rows])
        else:
            print_table(view.coverage_table(rows))
        return
    if source is None or (out is None and not dry_run):
        raise UserError("usage: peft-advise convert SRC OUT [options]  (or --list to see what converts).")
    from advisor.output.progress import phase_reporter
    from converters.convert import ConversionRejected, ConvertOptions, convert_adapter

    options = ConvertOptions(
        rank=rank,
        energy=energy,
        max_rank=max_rank,
        base_model=base_model,
        calibration=calibration,
        target=target.lower(),
        sweep=_parse_ranks(sweep),
        min_fidelity=min_fidelity,
        warn_below=warn_below,
        factorization=factorization.lower(),
        device=device,
        overwrite=overwrite,
        allow_pickle=allow_pickle,
        revision=revision,
        dry_run=dry_run,
        stream=stream,
    )
    try:
        with phase_reporter(enabled=not as_json) as progress:
            result = convert_adapter(source, out, options, progress)
    except ConversionRejected as rejected:
        _render_conversion(rejected.result, as_json)
        print(f"Error: {rejected.reason}", file=sys.stderr)
        raise typer.Exit(1) from None
    if push_to_hub and result.written:
        from converters.hub import push_adapter

        result.notes.append(f"uploaded to {push_adapter(Path(result.out), push_to_hub)}")
    _render_conversion(result, as_json)
    if result.check is not None and not result.check.passed:
        raise typer.Exit(1)


def _render_conversion(result: Any, as_json: bool) -> None:
    from advisor.output import convert_view as view
    from advisor.output import emit_json, print_lines
    from advisor.output.tables import print_table

    if as_json:
        emit_json(result.to_dict())
        return
    if result.sweep:
        print_table(view.sweep_table(result))
    print_lines(view.result_lines(result))


@user_errors
def check_lora_command(
    folder: Annotated[Path, typer.Argument(help="A LoRA adapter folder.")],
    target: Annotated[str, typer.Option("--for", help=choices(CONSUMER_TARGETS))] = "vllm",
    base_model: Annotated[
        str | None, typer.Option(help="Base model folder/id for shape and architecture checks.")
    ] = None,
    fix: Annotated[
        Path | None, typer.Option("--fix", help="Write a fixed copy here (fold scale, uniform rank, drop bias).")
    ] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing --fix folder.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable report.")] = False,
) -> None:
    """Check that a LoRA folder loads in vLLM / PEFT / Diffusers; print the vllm serve command."""
    from advisor.output import convert_view as view
    from advisor.output import emit_json, print_lines
    from converters.consumers import base_info, check_lora, fix_lora

    if not folder.is_dir():
        raise UserError(f"{folder} is not a folder; pass a LoRA adapter folder.")
    if fix is not None:
        from advisor.paths import check_destination

        check_destination(fix, overwrite=overwrite or fix.resolve() == folder.resolve(), option="--fix")
    info = base_info(base_model) if base_model else None
    changes: list[str] = []
    if fix is not None:
        changes = fix_lora(folder, fix, target=target.lower(), overwrite=overwrite)
        folder = fix
    report = check_lora(folder, target.lower(), info)
    if as_json:
        emit_json({**report.to_dict(), "fixed": changes})
    else:
        print_lines([f"fixed: {change}" for change in changes] + view.check_lines(report))
    if not report.passed:
        raise typer.Exit(1)
