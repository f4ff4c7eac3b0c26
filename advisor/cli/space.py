"""`space`: serve the Gradio app locally, or export a folder that deploys as a Space."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from advisor.cli.common import user_errors
from advisor.errors import UserError


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
