"""`auto`: from a GPU budget and your data to the adapter a server loads, in one command."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from advisor.cli.common import choices, user_errors
from advisor.errors import UserError
from advisor.vocabulary import CONSUMER_TARGETS


@user_errors
def auto_command(
    data: Annotated[
        str, typer.Option("--data", help="Your data: .jsonl/.json/.csv/.parquet, or a Hub dataset id OWNER/NAME.")
    ],
    model: Annotated[str, typer.Option("--model", help="Base model: Hub id or local folder.")],
    vram: Annotated[float, typer.Option("--vram", help="GPU budget in GiB.")],
    out: Annotated[Path, typer.Option("--out", help="Folder for everything: trial, served adapter, report.")],
    task: Annotated[
        str | None, typer.Option(help="Which benchmark ranks the methods (math, code, chat, text; default text).")
    ] = None,
    candidates: Annotated[
        str, typer.Option(help="auto (recommender's top K + plain LoRA) or a list: lora,oft,ia3.")
    ] = "auto",
    top: Annotated[int, typer.Option(help="With auto: how many recommended methods besides LoRA.")] = 2,
    steps: Annotated[int | None, typer.Option(help="Optimizer steps per candidate (default 30).")] = None,
    minutes: Annotated[float | None, typer.Option(help="Instead of --steps: minutes for the whole trial.")] = None,
    serve: Annotated[
        str | None,
        typer.Option(
            help=f"Who serves the result: {choices(CONSUMER_TARGETS)} (default vllm for a causal LM, else peft)."
        ),
    ] = None,
    min_fidelity: Annotated[
        float,
        typer.Option(help="A converted LoRA must keep at least this share of the adapter's effect, in (0, 1]."),
    ] = 0.95,
    lr_search: Annotated[str, typer.Option(help="auto: search each candidate's learning rate | off.")] = "auto",
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N")] = "auto",
    seed: Annotated[int, typer.Option(help="Seed for the split, data order and initialisation.")] = 0,
    text_column: Annotated[str | None, typer.Option(help="Name of the text column, if not text/sentence.")] = None,
    label_column: Annotated[str | None, typer.Option(help="Name of the label column, if not label.")] = None,
    fresh: Annotated[bool, typer.Option("--fresh", help="Ignore earlier results in --out.")] = False,
    in_process: Annotated[
        bool, typer.Option("--in-process", help="Train in this process (faster start; memory figures overlap).")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable result (see README).")] = False,
) -> None:
    """Recommend, trial on your data, pick the winner, convert it for your server, check it, write a report."""
    from advisor.auto.flow import AutoRequest, FidelityRefused, TrialFailed, validate

    request = AutoRequest(
        data=data,
        model=model,
        vram_gib=vram,
        out=out,
        task=task,
        candidates=candidates,
        top=top,
        steps=steps,
        minutes=minutes,
        serve=serve.strip().lower() if serve else None,
        min_fidelity=min_fidelity,
        device=device,
        fresh=fresh,
        isolate=not in_process,
        lr_search=lr_search.strip().lower(),
        seed=seed,
        text_column=text_column,
        label_column=label_column,
    )
    validate(request)  # before importing torch: a typo costs no seconds
    try:
        from advisor.auto.flow import run_auto
    except ImportError as exc:  # pragma: no cover - the [peft] extra is missing
        raise UserError(f"auto needs torch, transformers and peft: pip install 'peft-advisor[peft]' ({exc})") from None
    from advisor.output import emit_json, print_lines
    from advisor.output.auto_report import auto_json, summary_lines
    from advisor.output.progress import stage_progress

    try:
        with stage_progress(enabled=not as_json) as progress:
            result = run_auto(request, progress)
    except KeyboardInterrupt:
        print(f"Interrupted. Finished work is kept in {out}; run the same command to continue.", file=sys.stderr)
        raise typer.Exit(130) from None
    except FidelityRefused as refused:
        if as_json:
            emit_json({"error": refused.message, "conversion": refused.conversion})
        print(f"Error: {refused.message}", file=sys.stderr)
        raise typer.Exit(1) from None
    except TrialFailed as failed:
        print(f"Error: {failed}", file=sys.stderr)
        raise typer.Exit(1) from None
    if as_json:
        emit_json(auto_json(result))
    else:
        print_lines(summary_lines(result))
    if not result.served.check.get("passed"):
        raise typer.Exit(1)
