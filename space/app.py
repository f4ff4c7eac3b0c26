"""peft-advisor as a Gradio app: the same library calls as the CLI, laid out in tabs.

Layout only: every button calls a function of :mod:`space.callbacks`, which calls the library.
Run locally with ``peft-advise space [--port N]`` (or ``python space/app.py``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # ``python space/app.py`` from a checkout: make the packages importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # offline: no phoning home

from advisor import vocabulary
from space import callbacks


def _recommend(
    vram: float | None, task: str, model: str, quant: str, objective: str, require: list[str], *setup: Any
) -> tuple:
    import gradio as gr

    names = ("batch_size", "seq_len", "resolution", "checkpointing", "attention", "gpus", "sharding")
    result = callbacks.recommend(vram, task, model, quant, objective, require, **dict(zip(names, setup, strict=False)))
    if result.message:
        return (
            gr.update(value=None, visible=False),  # no empty grid with placeholder headers
            None,
            gr.update(choices=[], value=None),
            f"**Error:** {result.message}",
            gr.update(value="", visible=False),
        )
    text = "\n\n".join(result.lines)
    return (
        gr.update(value=result.rows or None, headers=result.headers, visible=bool(result.rows)),
        result.figure,
        gr.update(choices=result.methods, value=result.methods[0] if result.methods else None),
        text,
        gr.update(value=f"**{result.callout}**" if result.callout else "", visible=bool(result.callout)),
    )


# Narrow screens: tables scroll sideways inside their box instead of squeezing to three columns, and
# rows of inputs stack. The callout stands out from the plain notes.
PAGE_CSS = """
.table-wrap, .table-container, [data-testid="dataframe"] { overflow-x: auto !important; max-width: 100%; }
table { min-width: max-content; }
.callout { border-left: 4px solid #bf8700; background: #fff8c5; padding: .5rem .8rem; }
@media (max-width: 640px) { .gradio-container .row, .gradio-container .form { flex-direction: column !important; } }
"""


def build_app() -> Any:
    """The four tabs, each laid out by its own function; every button calls one :mod:`space.callbacks` function."""
    import gradio as gr

    with gr.Blocks(title="peft-advisor") as app:
        gr.Markdown(
            "# peft-advisor\nFrom your GPU budget and your data to the adapter your server loads, in one go; "
            "or use the tools one by one: rank PEFT methods from PEFT's own benchmarks, see what people use on "
            "the Hub, trial methods on your data, convert an adapter to LoRA."
        )
        with gr.Tab("From budget to served adapter"):
            _auto_tab()
        with gr.Tab("Recommend"):
            _recommend_tab()
        with gr.Tab("Hub statistics"):
            _usage_tab(app)
        with gr.Tab("Quick trial"):
            _trial_tab()
        with gr.Tab("Convert to LoRA"):
            _convert_tab()
    return app


def _auto_tab() -> None:
    import gradio as gr

    gr.Markdown(
        "Your GPU budget and your data in; the adapter your server loads out. The advisor ranks methods for "
        "the budget, trains the candidates briefly on your data (each at the learning rate that suits it), "
        "picks the winner, converts it to a LoRA when the server cannot load it as trained, checks it, and "
        f"returns one zip with the served adapter and a report. Limits here: {callbacks.SPACE_MAX_CANDIDATES} "
        f"candidates, {callbacks.SPACE_MAX_STEPS} steps, {callbacks.SPACE_MAX_ROWS:,} rows, CPU only. "
        "Without an upload the bundled sentiment sample is used."
    )
    with gr.Row():
        vram = gr.Number(label="GPU memory budget (GiB)", value=24, minimum=0, elem_id="auto-vram")
        data = gr.File(
            label="Data (.jsonl/.csv/.parquet: text + label, prompt/response, or messages)", elem_id="auto-data"
        )
        model = gr.Textbox(
            label="Model (Hub id or folder)", value=callbacks.default_trial_model(), elem_id="auto-model"
        )
    with gr.Row():
        candidates = gr.CheckboxGroup(
            list(vocabulary.SPACE_TRIAL_METHODS),
            value=["lora", "oft", "ia3"],
            label="Candidates",
            elem_id="auto-candidates",
        )
        steps = gr.Slider(1, callbacks.SPACE_MAX_STEPS, value=20, step=1, label="Steps per candidate")
    with gr.Row():
        serve = gr.Radio(
            ["auto", *vocabulary.CONSUMER_TARGETS],
            value="auto",
            label="Who will serve it (auto: vLLM for a causal LM, else PEFT)",
            elem_id="auto-serve",
        )
        min_fidelity = gr.Number(
            label="Minimum fidelity (share of the adapter's effect a converted LoRA must keep)",
            value=0.95,
            minimum=0.01,
            maximum=1.0,
            elem_id="auto-min-fidelity",
        )
    run = gr.Button("Find, train and prepare my adapter", variant="primary", elem_id="auto-run")
    message = gr.Markdown(elem_id="auto-message")
    summary = gr.Markdown(elem_id="auto-summary")
    command = gr.Code(label="Serve it (from the unzipped download)", language="shell", elem_id="auto-command")
    board = gr.Dataframe(label="Trial leaderboard", interactive=False, wrap=True, visible=False, elem_id="auto-board")
    download = gr.File(label="Served adapter + report (zip)", elem_id="auto-download")
    workspace = gr.State(None)

    def _auto_with_progress(*args: Any, progress: Any = gr.Progress()) -> tuple:  # noqa: B008
        return _auto(*args, progress=progress)

    run.click(
        _auto_with_progress,
        [vram, data, model, candidates, steps, serve, min_fidelity],
        [message, summary, command, board, download, workspace],
    ).then(_cleanup, [workspace], [workspace])


def _recommend_tab() -> None:
    import gradio as gr

    with gr.Row():
        vram = gr.Number(label="GPU memory budget (GiB)", value=24, minimum=0, elem_id="vram")
        task = gr.Dropdown(list(vocabulary.MENU_TASKS), value="math", label="Task", elem_id="task")
        objective = gr.Dropdown(list(vocabulary.OBJECTIVES), value="score", label="Objective")
    with gr.Row():
        model = gr.Textbox(label="Your model (Hub id or folder, optional)", placeholder="meta-llama/Llama-3.1-8B")
        quant = gr.Radio(list(vocabulary.QUANT_CHOICES), value="none", label="Base precision")
        require = gr.CheckboxGroup(list(vocabulary.REQUIREMENTS), label="Required capabilities")
    with gr.Accordion("Your training setup (predicts memory; empty = the benchmark's)", open=False):
        with gr.Row():
            batch = gr.Number(label="Batch size per GPU", value=None, minimum=1, precision=0)
            seq = gr.Number(label="Sequence length (image: prompt tokens)", value=None, minimum=1, precision=0)
            resolution = gr.Number(label="Image resolution (px, image task)", value=None, minimum=16, precision=0)
        with gr.Row():
            checkpointing = gr.Radio(["benchmark", "on", "off"], value="benchmark", label="Gradient checkpointing")
            attention = gr.Radio(list(vocabulary.ATTENTION_CHOICES), value="sdpa", label="Attention")
            gpus = gr.Number(label="GPUs", value=None, minimum=1, precision=0)
            sharding = gr.Dropdown(["", *vocabulary.SHARDING_CHOICES], value="", label="Sharding (several GPUs)")
    submit = gr.Button("Rank methods", variant="primary", elem_id="rank")
    callout = gr.Markdown(visible=False, elem_id="nothing-fits", elem_classes=["callout"])
    table = gr.Dataframe(label="Ranking", interactive=False, wrap=True, visible=False, elem_id="ranking")
    plot = gr.Plot(label="Score vs memory")
    notes = gr.Markdown(elem_id="notes")
    with gr.Row():
        method = gr.Dropdown([], label="Config snippet of", elem_id="snippet-method")
    snippet = gr.Code(language="python", label="PEFT config (copy and run)")
    setup = [batch, seq, resolution, checkpointing, attention, gpus, sharding]
    submit.click(
        _recommend, [vram, task, model, quant, objective, require, *setup], [table, plot, method, notes, callout]
    )
    method.change(callbacks.config_snippet, [vram, task, method], [snippet])


def _usage_tab(app: Any) -> None:
    import gradio as gr

    usage_info = gr.Markdown(elem_id="usage-info")
    with gr.Row():
        usage_table = gr.Dataframe(label="Share per technique", interactive=False)
        usage_plot = gr.Plot(label="Shares and trend")
    with gr.Row():
        limit = gr.Number(value=callbacks.REFRESH_LIMIT, label="Repos to scan", precision=0)
        refresh = gr.Button("Refresh from the Hub")
    outputs = [usage_info, usage_table, usage_plot]

    def _refresh_with_progress(limit: float, progress: Any = gr.Progress()) -> tuple:  # noqa: B008
        return _refresh_usage(limit, progress)

    app.load(_usage, None, outputs)
    refresh.click(_refresh_with_progress, [limit], outputs)


def _trial_tab() -> None:
    import gradio as gr

    gr.Markdown(
        "Train a few candidates briefly on your data under the same budget and see which wins. "
        f"Limits here: {callbacks.SPACE_MAX_CANDIDATES} candidates, {callbacks.SPACE_MAX_STEPS} steps, "
        f"{callbacks.SPACE_MAX_ROWS:,} rows. Without an upload the shipped sentiment sample is used."
    )
    with gr.Row():
        trial_data = gr.File(label="Data (.jsonl/.csv/.parquet: text + label, prompt/response, or messages)")
        trial_model = gr.Textbox(label="Model (Hub id or folder)", value=callbacks.default_trial_model())
    with gr.Row():
        trial_candidates = gr.CheckboxGroup(
            list(vocabulary.SPACE_TRIAL_METHODS), value=["lora", "oft", "ia3"], label="Candidates", elem_id="candidates"
        )
        trial_steps = gr.Slider(
            1, callbacks.SPACE_MAX_STEPS, value=20, step=1, label="Steps per candidate", elem_id="trial-steps"
        )
    run_trial_button = gr.Button("Run the trial", variant="primary", elem_id="trial")
    trial_message = gr.Markdown(elem_id="trial-message")
    trial_table = gr.Dataframe(label="Leaderboard", interactive=False, wrap=True, visible=False, elem_id="leaderboard")
    trial_plot = gr.Image(label="Score vs peak memory", type="filepath")
    trial_winner = gr.File(label="Winner's adapter (zip)")
    workspace = gr.State(None)  # the request's temporary folder, removed once the response is sent

    def _trial_with_progress(
        data: Any,
        model: str,
        candidates: list[str],
        steps: float,
        progress: Any = gr.Progress(),  # noqa: B008
    ) -> tuple:
        return _trial(data, model, candidates, steps, progress)

    run_trial_button.click(
        _trial_with_progress,
        [trial_data, trial_model, trial_candidates, trial_steps],
        [trial_message, trial_table, trial_plot, trial_winner, workspace],
    ).then(_cleanup, [workspace], [workspace])


def _convert_tab() -> None:
    import gradio as gr

    gr.Markdown(
        "Export an OFT / BOFT / HRA / IA³ / LoHa / ... adapter to a plain LoRA adapter that vLLM, "
        "Diffusers and llama.cpp load. Safetensors only; a .zip of the adapter folder or its files. "
        + callbacks.FIDELITY_LINE
    )
    with gr.Row():
        hub_id = gr.Textbox(label="Hub adapter id", placeholder="user/my-oft-adapter")
        files = gr.File(
            label="…or upload the adapter (.zip, or adapter_config.json + adapter_model.safetensors)",
            file_count="multiple",
            elem_id="adapter-upload",
        )
    with gr.Row():
        target = gr.Radio(list(vocabulary.CONSUMER_TARGETS), value="vllm", label="Who will load it")
        base = gr.Textbox(label="Base model (empty: from the adapter)")
    with gr.Row():
        rank = gr.Number(label="Rank (when no ranks to try are given)", value=64, precision=0, minimum=1)
        sweep = gr.Textbox(
            label="Ranks to try (the smallest reaching the minimum fidelity is written)",
            value="8,16,32,64,128",
            elem_id="convert-sweep",
        )
        min_fidelity = gr.Number(
            label="Minimum fidelity", value=0.95, minimum=0.01, maximum=1.0, elem_id="convert-min-fidelity"
        )
    run_convert = gr.Button("Convert", variant="primary", elem_id="convert")
    convert_message = gr.Markdown(elem_id="convert-message")
    convert_command = gr.Code(label="Serve it (from where you unzipped the download)", language="shell")
    convert_report = gr.Code(label="Report", language=None, elem_id="convert-report")
    convert_file = gr.File(label="Converted LoRA (zip)")
    workspace = gr.State(None)
    run_convert.click(
        _convert,
        [hub_id, files, target, rank, base, min_fidelity, sweep],
        [convert_message, convert_command, convert_report, convert_file, workspace],
    ).then(_cleanup, [workspace], [workspace])


STAGES = ("recommend", "trial", "pick", "serve", "report")


def _auto(
    vram: float | None,
    data: Any,
    model: str,
    candidates: list[str],
    steps: float,
    serve: str,
    min_fidelity: float | None,
    progress: Any = None,
) -> tuple:
    import gradio as gr

    def on_event(event: Any) -> None:
        if progress is None:
            return
        stage = STAGES.index(event.stage) if event.stage in STAGES else 0
        trial = event.trial
        if trial is not None and trial.kind == "step" and trial.total:
            progress((stage + trial.step / trial.total) / len(STAGES), desc=f"trial: {trial.name} step {trial.step}")
        elif event.text:
            progress(stage / len(STAGES), desc=f"{event.stage}: {event.text}")

    path = getattr(data, "name", data) if data else None
    result = callbacks.auto(vram, path, model, candidates, int(steps or 0), serve, min_fidelity, on_event)
    if result.message:
        empty = gr.update(value=None, visible=False)
        return f"**Error:** {result.message}", "", gr.update(value=None), empty, None, None
    heading = f"**Warning:** {result.warning}" if result.warning else "**Ready.** Download the zip below."
    table = gr.update(value=result.rows, headers=result.headers, visible=bool(result.rows))
    return heading, result.summary, result.serve_command, table, result.download, result.workspace


def _cleanup(workspace: str | None) -> None:
    """Runs after Gradio has sent the response (and copied its files into its own cache)."""
    from space.workspace import remove_workspace

    remove_workspace(workspace)
    return None


def _trial(data: Any, model: str, candidates: list[str], steps: float, progress: Any = None) -> tuple:
    import gradio as gr

    done: dict[str, int] = {"candidates": 0, "total": 1}

    def on_event(event: Any) -> None:
        if progress is None:
            return
        if event.kind == "plan":
            done["total"] = max(1, event.total)
        elif event.kind == "end":
            done["candidates"] += 1
        elif event.kind == "step" and event.total:
            fraction = (done["candidates"] + event.step / event.total) / done["total"]
            progress(fraction, desc=f"{event.name}: step {event.step}/{event.total}")

    path = getattr(data, "name", data) if data else None
    result = callbacks.trial(path, model, candidates, int(steps or 0), on_event)
    if result.message:
        return f"**Error:** {result.message}", gr.update(value=None, visible=False), None, None, None
    text = "\n\n".join(result.lines)
    table = gr.update(value=result.rows, headers=result.headers, visible=bool(result.rows))
    return text, table, result.plot, result.winner_zip, result.workspace


def _convert(
    hub_id: str,
    files: list[Any] | None,
    target: str,
    rank: float | None,
    base: str,
    min_fidelity: float | None = None,
    sweep: str | None = None,
) -> tuple:
    paths = [getattr(f, "name", f) for f in (files or [])]
    result = callbacks.convert(hub_id, paths, target, int(rank) if rank else None, base, min_fidelity, sweep)
    if result.message:  # nothing was written
        return f"**Error:** {result.message}", None, result.report, None, result.workspace
    message = result.summary
    if result.warning:
        message = f"**Warning:** {result.warning}\n\n{message}"
    return message, result.serve_command, result.report, result.download, result.workspace


def _show_usage(result: callbacks.UsageResult) -> tuple:
    import gradio as gr

    text = result.info + (f"\n\n**Error:** {result.message}" if result.message else "")
    table = (
        gr.update(value=result.rows, headers=result.headers, visible=True)
        if result.rows
        else gr.update(value=None, visible=False)
    )
    return text, table, result.figure


def _usage() -> tuple:
    return _show_usage(callbacks.hub_statistics())


def _refresh_usage(limit: float, progress: Any = None) -> tuple:
    """Gradio injects a progress tracker for a parameter whose default is one (see build_app)."""

    def report(phase: str, done: int, total: int) -> None:
        if progress is not None:
            progress((done, total) if total else None, desc=phase)

    return _show_usage(callbacks.refresh_hub_statistics(int(limit or callbacks.REFRESH_LIMIT), report))


def main(port: int | None = None, host: str = "127.0.0.1") -> None:
    from space.uploads import MAX_UPLOAD_BYTES

    # Gradio refuses larger uploads before they reach a callback; space.uploads checks again after.
    build_app().launch(
        server_name=host, server_port=port, show_error=False, max_file_size=MAX_UPLOAD_BYTES, css=PAGE_CSS
    )


if __name__ == "__main__":
    main()
