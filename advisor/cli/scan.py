"""`scan dir|dataset|hub`: which PEFT methods people use, from cards and adapter configs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from advisor.cli.common import user_errors
from advisor.errors import UserError

scan_app = typer.Typer(
    help="Which PEFT methods people use: classify Hub model cards and adapter configs, and count.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)


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
    prefilter: Annotated[
        bool,
        typer.Option(
            "--prefilter/--no-prefilter",
            help="Count cards a vectorised RE2 pass proves 'none' without classifying them (same counts).",
        ),
    ] = True,
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
        result = scan_card_dump(location, limit=limit, workers=workers, progress=progress, prefilter=prefilter)
    _scan_outputs(result, as_json=as_json, csv_path=csv_path, plot=plot, save=save, show_cards=False)


@scan_app.command("hub")
@user_errors
def scan_hub_command(
    filters: Annotated[
        list[str] | None,
        typer.Option(
            "--filter",
            help="Hub tag to list; repeat for a union, each repo counted once (peft: library_name peft; lora, "
            "lycoris: LoRA tags, Diffusers and kohya repos included). Default: peft.",
        ),
    ] = None,
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
    chosen = tuple(f.strip() for f in (filters or ["peft"]) if f.strip())
    if not chosen:
        raise UserError("--filter needs a tag, e.g. --filter peft --filter lora")
    query = HubQuery(filters=chosen, author=author, search=search, limit=limit)
    with phase_reporter(enabled=not as_json) as progress:
        result = scan_hub(query, state_dir=state_dir, workers=workers, fresh=fresh, keep_cards=True, progress=progress)
    _scan_outputs(result, as_json=as_json, csv_path=csv_path, plot=plot, save=save, show_cards=cards)
