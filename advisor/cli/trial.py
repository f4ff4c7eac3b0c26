"""`trial`: train the candidates briefly on the user's data under one budget and rank them."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from advisor.cli.common import user_errors
from advisor.errors import UserError


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
    lr_search: Annotated[
        str,
        typer.Option(
            help="auto: search each candidate's learning rate (successive halving, same steps for all) | "
            "off: train at its benchmark rate x --lr-scale."
        ),
    ] = "auto",
    lr_range: Annotated[
        str | None, typer.Option(help="The search's grid, LOW:HIGH multiples of the benchmark rate (default 0.3:100).")
    ] = None,
    devices: Annotated[
        str | None,
        typer.Option(help="Search workers: auto (one per GPU) | cpu | cuda:0,cuda:1 (default: --device)."),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(help="CPU search workers (default 1); 0: only `peft-advise trial-worker` processes run jobs."),
    ] = None,
    lr_storage: Annotated[
        str | None,
        typer.Option(
            help="The search's Optuna storage: a .journal file (default: OUT/lr-search.journal; on a shared "
            "filesystem it serves several machines) or a PostgreSQL URL, shared with trial-worker processes."
        ),
    ] = None,
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
        lr_search=lr_search.strip().lower(),
        lr_range=lr_range,
        devices=devices,
        workers=workers,
        lr_storage=lr_storage,
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
    written = lr_written = None
    try:
        written = view.trial_plot(report, plot_path)
    except UserError:
        if plot is not None:
            raise  # asked for explicitly: say why it cannot be drawn
    if request.searching:
        try:
            lr_written = view.lr_plot(report, plot_path.with_name("lr-search" + plot_path.suffix))
        except UserError:
            lr_written = None  # nothing searched (every candidate finished earlier), or no matplotlib
    if as_json:
        emit_json({**view.trial_json(report, written), "lr_plot": str(lr_written) if lr_written else None})
    else:
        print_lines(view.header_lines(report))
        print_table(view.leaderboard_table(report))
        print_lines(view.footer_lines(report, written, lr_written))
    if report.leaderboard.winner is None:
        raise typer.Exit(1)  # every candidate failed or diverged: no verdict to act on


@user_errors
def trial_worker_command(
    lr_storage: Annotated[
        str, typer.Option("--lr-storage", help="The storage the trial was started with (.journal file or URL).")
    ],
    study: Annotated[
        str | None, typer.Option(help="The trial's study name (default: the only one in the storage).")
    ] = None,
    device: Annotated[str, typer.Option(help="cpu | cuda | cuda:N: where this worker trains.")] = "cpu",
    idle_minutes: Annotated[float, typer.Option(help="Stop after this long without a job.")] = 10.0,
    in_process: Annotated[bool, typer.Option("--in-process", help="Train in this process, not a child.")] = False,
) -> None:
    """Run a trial's learning-rate search jobs from a shared storage (on this or another machine).

    Start the trial with `--lr-storage URL` (and `--workers 0` to leave every job to workers like this one);
    the data file and the model must be reachable here under the same paths or Hub ids.
    """
    from advisor.trial.remote import serve_study

    done = serve_study(lr_storage, study, device, idle_s=idle_minutes * 60, isolate=not in_process)
    print(f"trial-worker: {done} job(s) run; the trial is finished or no job came for {idle_minutes:g} minutes")
