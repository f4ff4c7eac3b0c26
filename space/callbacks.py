"""The Space's callbacks: parse the widgets, call the library function the CLI calls, shape the result.

Kept free of gradio so they are tested as plain functions. Every callback returns a ``message``
instead of raising: a :class:`~advisor.errors.UserError` becomes the same one-line text the CLI
prints after ``Error:``, and nothing else reaches the page as a stack trace.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from advisor.errors import UserError

REQUIREMENTS = ("merge", "lora-convertible", "vllm", "diffusers", "quantized")
QUANT_CHOICES = ("none", "8bit", "4bit")


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
    from advisor.memory.model import BENCHMARK_SETUP, BENCHMARK_SHAPE, MemoryRequest, MemorySetup, validate_setup
    from advisor.memory.shapes import read_shape
    from advisor.methods.registry import load_registry
    from advisor.output import recommend_view as view
    from advisor.output.plots import pareto_figure
    from advisor.recommend import Query
    from advisor.recommend import recommend as rank

    try:
        if vram is None:
            raise UserError("enter your GPU memory budget in GiB (a '24 GB' card: 24)")
        memory = None
        model = (model or "").strip() or None
        quant = (quant or "none").lower()
        if model or quant != "none":
            setup = MemorySetup(quant=quant, mode=BENCHMARK_SETUP.mode)
            validate_setup(setup)
            shape = read_shape(model) if model else BENCHMARK_SHAPE
            memory = MemoryRequest(shape, setup, model_given=model is not None)
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
