"""The default command: rank PEFT methods for a GPU budget and a task (no torch on this path)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from advisor.cli.common import choices, split_csv, user_errors
from advisor.errors import UserError
from advisor.vocabulary import (
    AMP_CHOICES,
    ATTENTION_CHOICES,
    OBJECTIVES,
    OPTIMIZERS,
    QUANT_CHOICES,
    REQUIREMENTS,
    SHARDING_CHOICES,
)


@user_errors
def recommend_command(
    ctx: typer.Context,
    vram: Annotated[float | None, typer.Option("--vram", help="GPU memory budget in GiB (a '24 GB' card: 24).")] = None,
    task: Annotated[str | None, typer.Option("--task", help="math, code, chat, image, ... (see README).")] = None,
    objective: Annotated[str, typer.Option(help=choices(OBJECTIVES))] = "score",
    metric: Annotated[str | None, typer.Option(help="Rank by another metric, e.g. forgetting or drift.")] = None,
    require: Annotated[str | None, typer.Option(help=f"Comma list of: {', '.join(REQUIREMENTS)}.")] = None,
    top: Annotated[int | None, typer.Option(help="Show only the first N rows.")] = None,
    all_variants: Annotated[bool, typer.Option("--all-variants", help="Every run, not the best per method.")] = False,
    show_config: Annotated[
        str | None, typer.Option("--show-config", metavar="METHOD", help="Print the PEFT config of METHOD's run.")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Machine-readable output (stable shape, see README).")
    ] = False,
    plot: Annotated[
        Path | None, typer.Option(help="Also write a score-vs-memory plot (.png/.svg/.pdf, or .html: interactive).")
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            help="Predict memory for this model: Hub id or folder (shapes from safetensors headers, no weights); "
            "--task image: a diffusers pipeline with a FLUX/SD3 transformer.",
        ),
    ] = None,
    quant: Annotated[
        str | None,
        typer.Option(help=f"{choices(QUANT_CHOICES)} (4bit/8bit: bitsandbytes; gptq/awq: a pre-quantised base)."),
    ] = None,
    dtype: Annotated[str | None, typer.Option(help="bf16 | fp16 | fp32: the weights' (and compute) precision.")] = None,
    amp: Annotated[
        str | None, typer.Option(help=f"{choices(AMP_CHOICES)}: autocast over fp32 weights (mixed precision).")
    ] = None,
    attention: Annotated[
        str | None, typer.Option(help=f"{choices(ATTENTION_CHOICES)} (benchmark: sdpa; eager keeps seq² scores).")
    ] = None,
    batch_size: Annotated[int | None, typer.Option(help="Sequences per step on each GPU (benchmark: 4).")] = None,
    seq_len: Annotated[
        int | None,
        typer.Option(help="Tokens per sequence, the longest you train on (benchmark: 768); image: prompt tokens."),
    ] = None,
    resolution: Annotated[
        int | None, typer.Option(help="Image models: training resolution in pixels a side (benchmark: 512).")
    ] = None,
    grad_checkpointing: Annotated[
        bool | None, typer.Option("--grad-checkpointing/--no-grad-checkpointing", help="Benchmark: off.")
    ] = None,
    optimizer: Annotated[str | None, typer.Option(help=f"{choices(tuple(OPTIMIZERS))} (benchmark: adamw).")] = None,
    gpus: Annotated[int | None, typer.Option(help="GPUs training together (figures are per GPU).")] = None,
    sharding: Annotated[
        str | None, typer.Option(help=f"{choices(SHARDING_CHOICES)} with --gpus 2+ (default ddp).")
    ] = None,
    offload: Annotated[
        str | None, typer.Option(help="cpu: optimizer states (fsdp/zero3: weights too) in CPU memory.")
    ] = None,
    memory: Annotated[
        str | None,
        typer.Option(
            help="peak (default: the worst step, every sequence full length; calibrated on the stored max) | "
            "train (a 99th-percentile step; calibrated on the stored p99)."
        ),
    ] = None,
    adapter_config: Annotated[
        Path | None,
        typer.Option(help="Your adapter_config.json (any PEFT method): its exact trainable count (PEFT's own)."),
    ] = None,
    lora_r: Annotated[int | None, typer.Option(help="Your LoRA's rank (with --target-modules).")] = None,
    target_modules: Annotated[
        str | None, typer.Option(help="Layers your LoRA adapts: names (q_proj,v_proj) or all-linear.")
    ] = None,
    use_dora: Annotated[bool, typer.Option("--use-dora", help="Your LoRA is a DoRA (a magnitude vector too).")] = False,
    explain: Annotated[
        bool, typer.Option("--explain", help="Show each row's predicted memory term by term, and every assumption.")
    ] = False,
) -> None:
    """Rank PEFT methods that fit --vram for --task (the default command)."""
    if ctx.invoked_subcommand is not None:
        return
    if vram is None or task is None:
        missing = " and ".join(name for name, value in (("--vram", vram), ("--task", task)) if value is None)
        raise UserError(f"{missing} missing; e.g. `peft-advise --vram 24 --task math` (see --help)")

    from advisor.benchmarks.store import load_snapshot
    from advisor.memory.request import memory_request, task_domain
    from advisor.methods.registry import load_registry
    from advisor.recommend import Query, recommend

    if plot is not None:
        from advisor.output.figures import check_plot_path

        check_plot_path(plot)

    query = Query(
        vram_gib=vram,
        task=task,
        objective=objective.strip().lower(),
        metric=metric,
        require=split_csv(require),
        top=top,
        all_variants=all_variants,
        memory=memory_request(
            model,
            quant=quant,
            dtype=dtype,
            batch_size=batch_size,
            seq_len=seq_len,
            grad_checkpointing=grad_checkpointing,
            optimizer=optimizer,
            mode=memory,
            force=explain,
            adapter_config=adapter_config,
            lora_r=lora_r,
            target_modules=target_modules,
            use_dora=use_dora,
            attention=attention,
            amp=amp,
            gpus=gpus,
            sharding=sharding,
            offload=offload,
            domain=task_domain(task),
            resolution=resolution,
        ),
    )
    registry = load_registry()
    rec = recommend(query, load_snapshot(), registry)
    if show_config:
        _show_config(rec, show_config, registry, as_json)
        return
    if plot is not None:
        from advisor.output.plots import pareto_plot

        pareto_plot(rec, plot)
    _render_recommendation(rec, as_json, plot, explain)


def _render_recommendation(rec: Any, as_json: bool, plot: Path | None, explain: bool = False) -> None:
    from advisor.output import emit_json, print_lines, print_table
    from advisor.output import recommend_view as view
    from hub_scan.usage_file import load_usage

    usage = load_usage()
    if as_json:
        emit_json({**view.recommendation_json(rec), "hub_usage": view.usage_json(rec, usage)})
        return
    print_lines(view.header_lines(rec))
    if rec.nothing_fits is not None:
        print_lines(view.nothing_fits_lines(rec))
    else:
        print_table(view.table_spec(rec))
    if explain and rec.breakdowns:
        print_table(view.explain_table(rec))
        print_lines(view.explain_lines(rec))
    print_lines(view.footer_lines(rec) + view.usage_lines(rec, usage))
    if plot is not None:
        print_lines([f"Plot written to {plot}"])


def _show_config(rec: Any, wanted: str, registry: Any, as_json: bool) -> None:
    from advisor.benchmarks.store import load_snapshot
    from advisor.config_snippet import config_snippet, select_config_run
    from advisor.output import emit_json, print_lines

    run = select_config_run(rec, wanted, load_snapshot(), registry)
    snippet = config_snippet(run, registry.resolve(run.method), registry.peft_version)
    if as_json:
        emit_json({"method": run.method, "experiment": run.experiment, "benchmark": run.benchmark, "snippet": snippet})
    else:
        print_lines([snippet])
