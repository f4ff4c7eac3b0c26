"""``peft-advise``: the command line front end. Thin by design.

One module per command group (:mod:`~advisor.cli.recommend`, :mod:`~advisor.cli.methods`,
:mod:`~advisor.cli.convert`, :mod:`~advisor.cli.trial`, :mod:`~advisor.cli.scan`,
:mod:`~advisor.cli.space`); this module only wires them into one Typer app. Each command parses its
options, calls one library function and hands the result to the output layer. Heavy modules are
imported inside the command that needs them, so the default command (the recommender) starts fast.
User mistakes raise :class:`~advisor.errors.UserError`: one ``Error: ...`` line, exit code 2.
"""

from __future__ import annotations

import sys

import typer

from advisor.cli import auto, convert, methods, recommend, scan, space, trial

app = typer.Typer(
    name="peft-advise",
    help="Choose a PEFT method for your GPU and task from PEFT's own benchmark results.",
    invoke_without_command=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.callback()(recommend.recommend_command)
app.command("refresh-benchmarks")(methods.refresh_benchmarks_command)
app.command("methods")(methods.methods_command)
app.command("convert")(convert.convert_command)
app.command("check-lora")(convert.check_lora_command)
app.command("trial")(trial.trial_command)
app.command("trial-worker")(trial.trial_worker_command)
app.command("auto")(auto.auto_command)
app.command("space")(space.space_command)
app.add_typer(scan.scan_app, name="scan")


def main() -> None:
    """Console-script entry point.

    Click's own usage errors (``--vram abc``, an unknown option) would print three lines of usage
    banner; like our :class:`~advisor.errors.UserError`, they become one ``Error:`` line and exit code 2.
    Typer's click exceptions are recognised by what they offer (``format_message``, ``exit_code``), so
    no private module of typer is imported and typer can be upgraded freely.
    """
    try:
        code = app(standalone_mode=False)
    except typer.Abort:
        print("Aborted.", file=sys.stderr)
        sys.exit(130)
    except Exception as exc:
        format_message = getattr(exc, "format_message", None)
        exit_code = getattr(exc, "exit_code", None)
        if not callable(format_message) or not isinstance(exit_code, int):
            raise
        hint = " (see `peft-advise --help`)" if exit_code == 2 else ""  # click's UsageError family
        print(f"Error: {format_message()}{hint}", file=sys.stderr)
        sys.exit(exit_code)
    sys.exit(code if isinstance(code, int) else 0)
