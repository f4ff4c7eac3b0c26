"""``peft-advise``: the command line front end. Thin by design.

Each command parses its options, calls one library function and hands the result to the
output layer. Heavy or slow modules are imported inside the command that needs them, so the
default command (the recommender) starts fast. User mistakes raise :class:`UserError`, which
becomes a one-line ``Error: ...`` on stderr and exit code 2.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from advisor.errors import UserError

F = TypeVar("F", bound=Callable[..., Any])

app = typer.Typer(
    name="peft-advise",
    help="Choose a PEFT method for your GPU and task from PEFT's own benchmark results.",
    invoke_without_command=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def user_errors(func: F) -> F:
    """Turn a :class:`UserError` into ``Error: <message>`` on stderr and exit code 2."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except UserError as exc:
            print(f"Error: {exc}", file=sys.stderr)
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]


def _split_csv(value: str | None) -> tuple[str, ...]:
    return tuple(part.strip().lower() for part in (value or "").split(",") if part.strip())


@app.callback()
@user_errors
def recommend_command(
    ctx: typer.Context,
    vram: Annotated[float | None, typer.Option("--vram", help="GPU memory budget in GiB (a '24 GB' card: 24).")] = None,
    task: Annotated[str | None, typer.Option("--task", help="math, code, chat, image, ... (see README).")] = None,
    objective: Annotated[str, typer.Option(help="score | memory | speed | size | balanced")] = "score",
    metric: Annotated[str | None, typer.Option(help="Rank by another metric, e.g. forgetting or drift.")] = None,
    require: Annotated[
        str | None, typer.Option(help="Comma list of: merge, lora-convertible, vllm, diffusers, quantized.")
    ] = None,
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
        str | None, typer.Option("--model", help="Predict memory for this model (Hub id or folder; config only).")
    ] = None,
    quant: Annotated[str | None, typer.Option(help="none | 8bit | 4bit (bitsandbytes base).")] = None,
    dtype: Annotated[str | None, typer.Option(help="bf16 | fp16 | fp32 (compute precision).")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Sequences per step (benchmark: 4).")] = None,
    seq_len: Annotated[
        int | None, typer.Option(help="Tokens per sequence, the longest you train on (benchmark: 768).")
    ] = None,
    grad_checkpointing: Annotated[
        bool | None, typer.Option("--grad-checkpointing/--no-grad-checkpointing", help="Benchmark: off.")
    ] = None,
    optimizer: Annotated[str | None, typer.Option(help="adamw | adamw-8bit.")] = None,
    memory: Annotated[
        str | None,
        typer.Option(
            help="peak (default: the worst step, every sequence full length; calibrated on the stored max) | "
            "train (a 99th-percentile step; calibrated on the stored p99)."
        ),
    ] = None,
    explain: Annotated[bool, typer.Option("--explain", help="Show each row's predicted memory term by term.")] = False,
) -> None:
    """Rank PEFT methods that fit --vram for --task (the default command)."""
    if ctx.invoked_subcommand is not None:
        return
    if vram is None or task is None:
        missing = " and ".join(name for name, value in (("--vram", vram), ("--task", task)) if value is None)
        raise UserError(f"{missing} missing; e.g. `peft-advise --vram 24 --task math` (see --help)")

    from advisor.benchmarks.store import load_snapshot
    from advisor.memory.request import memory_request
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
        require=_split_csv(require),
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


@app.command("refresh-benchmarks")
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


@app.command("methods")
@user_errors
def methods_command(
    name: Annotated[str | None, typer.Argument(help="Show one method (any alias).")] = None,
    refresh: Annotated[bool, typer.Option("--refresh", help="Re-read capabilities from the installed peft.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """List the PEFT method registry and what each method can do."""
    from advisor.methods.registry import load_registry, refresh_registry, registry_staleness
    from advisor.output import emit_json, print_lines
    from advisor.output.methods_view import methods_json, methods_table
    from advisor.output.tables import print_table

    if refresh:
        registry, path = refresh_registry()
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
    stale = registry_staleness(registry)
    if stale:
        print_lines([f"Note: {stale}"])


def _parse_ranks(value: str | None) -> tuple[int, ...]:
    if not value:
        return ()
    try:
        return tuple(sorted({int(part) for part in value.split(",") if part.strip()}))
    except ValueError:
        raise UserError(f"--sweep takes comma-separated ranks such as 16,32,64 (got {value!r}).") from None


@app.command("convert")
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
    target: Annotated[str, typer.Option("--for", help="peft | vllm | diffusers: who will load the result.")] = "peft",
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


@app.command("check-lora")
@user_errors
def check_lora_command(
    folder: Annotated[Path, typer.Argument(help="A LoRA adapter folder.")],
    target: Annotated[str, typer.Option("--for", help="vllm | peft | diffusers")] = "vllm",
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
        from converters.lora_writer import check_destination

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


@app.command("trial")
@user_errors
def trial_command(
    data: Annotated[
        str, typer.Option("--data", help="Your data: .jsonl/.json/.csv/.parquet, or a Hub dataset id OWNER/NAME.")
    ],
    model: Annotated[str, typer.Option("--model", help="Base model: Hub id or local folder.")],
    task: Annotated[str, typer.Option(help="Which benchmark picks the candidates (math, code, chat, text).")] = "text",
    vram: Annotated[float | None, typer.Option("--vram", help="GPU budget in GiB for picking candidates.")] = None,
    candidates: Annotated[
        str, typer.Option(help="auto (recommender's top K + plain LoRA) or a list: lora,oft,ia3 (method:variant ok).")
    ] = "auto",
    top: Annotated[int, typer.Option(help="With auto: how many recommended methods besides LoRA.")] = 2,
    steps: Annotated[int | None, typer.Option(help="Optimizer steps per candidate (default 30).")] = None,
    minutes: Annotated[
        float | None, typer.Option(help="Instead of --steps: total minutes; one step count for all, sized on LoRA.")
    ] = None,
    eval_fraction: Annotated[float, typer.Option(help="Share of rows held out for evaluation.")] = 0.2,
    batch_size: Annotated[int, typer.Option(help="Rows per step, the same for every candidate.")] = 8,
    seed: Annotated[int, typer.Option(help="Seed for the split, data order and initialisation.")] = 0,
    lr_scale: Annotated[
        float, typer.Option(help="Multiply every candidate's benchmark learning rate (keeps their ratios).")
    ] = 1.0,
    text_column: Annotated[str | None, typer.Option(help="Name of the text column, if not text/sentence.")] = None,
    label_column: Annotated[str | None, typer.Option(help="Name of the label column, if not label.")] = None,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N")] = "auto",
    out: Annotated[Path, typer.Option(help="Folder for adapters, results file and plot.")] = Path("peft-trial"),
    plot: Annotated[
        Path | None,
        typer.Option(help="Score-vs-memory plot (.png/.svg/.pdf, or .html: interactive); default OUT/trial.png."),
    ] = None,
    fresh: Annotated[bool, typer.Option("--fresh", help="Ignore the results of an earlier run in --out.")] = False,
    in_process: Annotated[
        bool, typer.Option("--in-process", help="Train in this process (faster start; memory figures overlap).")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable leaderboard.")] = False,
) -> None:
    """Train the top candidates briefly on your data, under the same budget, and pick the winner."""
    from advisor.output import emit_json, print_lines, print_table
    from advisor.output import trial_view as view
    from advisor.output.figures import check_plot_path
    from advisor.output.progress import trial_progress

    if plot is not None:
        check_plot_path(plot)  # before minutes of training, not after
    try:
        from advisor.trial.run import TrialRequest, run_trial
    except ImportError as exc:  # pragma: no cover - the [peft] extra is missing
        raise UserError(f"trials need torch, transformers and peft: pip install 'peft-advisor[peft]' ({exc})") from None
    request = TrialRequest(
        data=data,
        model=model,
        out=out,
        task=task,
        vram_gib=vram,
        candidates=candidates,
        top=top,
        steps=steps,
        minutes=minutes,
        eval_fraction=eval_fraction,
        batch_size=batch_size,
        seed=seed,
        lr_scale=lr_scale,
        device=device,
        isolate=not in_process,
        fresh=fresh,
        text_column=text_column,
        label_column=label_column,
    )
    try:
        with trial_progress(enabled=not as_json) as progress:
            report = run_trial(request, progress)
    except KeyboardInterrupt:
        print(
            f"Interrupted. Finished candidates are kept in {out / 'trial.json'}; run the same command to "
            "continue with the rest.",
            file=sys.stderr,
        )
        raise typer.Exit(130) from None
    plot_path = plot or out / "trial.png"
    written = None
    try:
        written = view.trial_plot(report, plot_path)
    except UserError:
        if plot is not None:
            raise  # asked for explicitly: say why it cannot be drawn
    if as_json:
        emit_json(view.trial_json(report, written))
    else:
        print_lines(view.header_lines(report))
        print_table(view.leaderboard_table(report))
        print_lines(view.footer_lines(report, written))
    if report.leaderboard.winner is None:
        raise typer.Exit(1)  # every candidate failed or diverged: no verdict to act on


@app.command("space")
@user_errors
def space_command(
    port: Annotated[int | None, typer.Option(help="Port to serve on (default: Gradio's, 7860).")] = None,
    host: Annotated[str, typer.Option(help="Address to bind; 0.0.0.0 to serve your network.")] = "127.0.0.1",
    export: Annotated[
        Path | None, typer.Option("--export", help="Instead: write a folder that deploys as a Space as it is.")
    ] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing --export folder.")] = False,
) -> None:
    """Serve the peft-advisor web app (the Hugging Face Space) locally, or export it for the Hub."""
    if export is not None:
        from space.export import export_space

        print(f"Space folder written to {export_space(export, overwrite=overwrite)} (push it to a Gradio Space)")
        return
    try:
        from space.app import main as serve
    except ImportError as exc:
        raise UserError(f"the app needs gradio: pip install 'peft-advisor[space]' ({exc})") from None
    serve(port=port, host=host)


scan_app = typer.Typer(
    help="Which PEFT methods people use: classify Hub model cards and adapter configs, and count.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)
app.add_typer(scan_app, name="scan")


def _scan_outputs(
    result: Any,
    *,
    as_json: bool,
    csv_path: Path | None,
    plot: Path | None,
    save: bool,
    show_cards: bool,
    evaluation: tuple[list[Any], list[Any]] | None = None,
) -> None:
    """Render a scan the same way for every source; write CSV / chart / the usage file when asked."""
    from advisor.output import emit_json, print_lines, print_table
    from advisor.output import scan_view as view
    from hub_scan.usage_file import save_usage

    written = []
    if csv_path is not None:
        view.write_csv(result, csv_path)
        written.append(f"CSV written to {csv_path}")
    if plot is not None:
        view.write_chart(result, plot)
        written.append(f"Chart written to {plot}")
    if save and result.stats.exactly_one_total:
        written.append(f"Usage summary saved to {save_usage(result)} (shown by the recommender)")
    if as_json:
        data = view.usage_json(result, with_cards=show_cards)
        if evaluation is not None:
            data["evaluation"] = {
                "reading": [s.to_dict() for s in evaluation[0]],
                "config": [s.to_dict() for s in evaluation[1]],
            }
        emit_json(data)
        return
    print_lines(view.header_lines(result))
    if show_cards and result.cards:
        print_table(view.cards_table(result.cards))
    for table in view.report_tables(result):
        print_table(table)
    if evaluation is not None:
        for table in view.evaluation_tables(*evaluation):
            print_table(table)
    print_lines(written)


def _check_scan_outputs(csv_path: Path | None, plot: Path | None) -> None:
    """Output paths are checked before a scan that may take minutes."""
    from advisor.output.figures import check_plot_path
    from advisor.paths import check_output_file

    if csv_path is not None:
        check_output_file(csv_path, "--csv")
    if plot is not None:
        check_plot_path(plot)


JsonOption = Annotated[bool, typer.Option("--json", help="Print the results as JSON.")]
CsvOption = Annotated[Path | None, typer.Option("--csv", help="Write all statistics as CSV (long format).")]
PlotOption = Annotated[
    Path | None, typer.Option("--plot", help="Chart of shares and trend: .png/.svg/.pdf, or .html (interactive).")
]
SaveOption = Annotated[
    bool, typer.Option("--save/--no-save", help="Keep the summary for the recommender and the Space.")
]


@scan_app.command("dir")
@user_errors
def scan_dir_command(
    folder: Annotated[
        Path, typer.Argument(help="Folder of model repos (sub-folders with README.md) or of *.md cards.")
    ],
    as_json: JsonOption = False,
    csv_path: CsvOption = None,
    plot: PlotOption = None,
    save: SaveOption = False,
    cards: Annotated[bool, typer.Option("--cards/--no-cards", help="List every card with its verdict.")] = True,
    evaluate: Annotated[
        bool, typer.Option("--evaluate", help="Score the classifier against labels in <repo>/meta.json.")
    ] = False,
) -> None:
    """Classify the cards in a local folder (README.md + adapter_config.json per repo)."""
    from advisor.output.progress import progress_reporter
    from hub_scan.scan import scan_records
    from hub_scan.sources.local_dir import read_local_dir, repo_folders

    _check_scan_outputs(csv_path, plot)

    total = len(repo_folders(folder)) if folder.is_dir() else 0
    with progress_reporter("classifying cards", enabled=not as_json) as progress:
        result = scan_records(read_local_dir(folder), source=str(folder), kind="dir", total=total, progress=progress)
    evaluation = None
    if evaluate:
        from hub_scan.evaluate import config_scores, labels_from_meta, reading_scores

        labels = labels_from_meta(folder)
        if not labels and not result.stats.with_config:
            raise UserError(f"--evaluate: {folder} has no <repo>/meta.json labels and no adapter_config.json files")
        evaluation = (reading_scores(result.cards, labels), config_scores(result.cards))
    _scan_outputs(
        result, as_json=as_json, csv_path=csv_path, plot=plot, save=save, show_cards=cards, evaluation=evaluation
    )


@scan_app.command("dataset")
@user_errors
def scan_dataset_command(
    location: Annotated[
        str,
        typer.Argument(help="Parquet file/folder/glob, or a Hub dataset: hf://datasets/OWNER/NAME[@REV][/GLOB]."),
    ] = "hf://datasets/librarian-bots/model_cards_with_metadata",
    limit: Annotated[int | None, typer.Option(help="Read at most this many cards.")] = None,
    workers: Annotated[int, typer.Option(help="Classifier processes (default: all cores).")] = 0,
    as_json: JsonOption = False,
    csv_path: CsvOption = None,
    plot: PlotOption = None,
    save: SaveOption = True,
) -> None:
    """Classify a parquet card dump (the blog's source), streaming: memory stays bounded."""
    from advisor.output.progress import progress_reporter
    from hub_scan.sources.card_dump import scan_card_dump

    _check_scan_outputs(csv_path, plot)

    with progress_reporter("classifying cards", enabled=not as_json) as progress:
        result = scan_card_dump(location, limit=limit, workers=workers, progress=progress)
    _scan_outputs(result, as_json=as_json, csv_path=csv_path, plot=plot, save=save, show_cards=False)


@scan_app.command("hub")
@user_errors
def scan_hub_command(
    filter: Annotated[str, typer.Option("--filter", help="Hub tag to list (library_name peft sets 'peft').")] = "peft",
    author: Annotated[str | None, typer.Option(help="Only this user's or organisation's repos.")] = None,
    search: Annotated[str | None, typer.Option(help="Only repos whose id contains this.")] = None,
    limit: Annotated[int | None, typer.Option(help="Scan at most this many repos.")] = None,
    workers: Annotated[int, typer.Option(help="Concurrent downloads.")] = 8,
    state_dir: Annotated[
        Path | None, typer.Option(help="Where the listing and the resume journal live (default: per query).")
    ] = None,
    fresh: Annotated[bool, typer.Option("--fresh", help="Forget a previous, interrupted scan of this query.")] = False,
    cards: Annotated[bool, typer.Option("--cards/--no-cards", help="List every repo with its verdict.")] = False,
    as_json: JsonOption = False,
    csv_path: CsvOption = None,
    plot: PlotOption = None,
    save: SaveOption = True,
) -> None:
    """Scan the live Hub: adapter configs (truth) and cards, concurrently, resumable, cached."""
    from advisor.output.progress import phase_reporter
    from hub_scan.sources.hub_api import HubQuery, scan_hub

    if limit is not None and limit < 1:
        raise UserError("--limit must be at least 1")
    if workers < 1:
        raise UserError("--workers must be at least 1")
    _check_scan_outputs(csv_path, plot)
    query = HubQuery(filter=filter, author=author, search=search, limit=limit)
    with phase_reporter(enabled=not as_json) as progress:
        result = scan_hub(query, state_dir=state_dir, workers=workers, fresh=fresh, keep_cards=True, progress=progress)
    _scan_outputs(result, as_json=as_json, csv_path=csv_path, plot=plot, save=save, show_cards=cards)


def main() -> None:
    """Console-script entry point.

    Click's own usage errors (``--vram abc``, an unknown option) would print three lines of
    usage banner; like our :class:`UserError`, they become one ``Error:`` line and exit code 2.
    """
    # typer 0.26-0.28 vendor click as typer._click (pinned in pyproject.toml).
    from typer import Abort
    from typer._click.exceptions import ClickException, UsageError

    try:
        code = app(standalone_mode=False)
    except UsageError as exc:
        print(f"Error: {exc.format_message()} (see `peft-advise --help`)", file=sys.stderr)
        sys.exit(2)
    except ClickException as exc:
        print(f"Error: {exc.format_message()}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except Abort:
        print("Aborted.", file=sys.stderr)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
