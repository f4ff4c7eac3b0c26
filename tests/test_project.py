"""Project-level guarantees: the README's set-up commands, CI reading them, and lint cleanliness."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.conftest import REPO


def test_ci_runs_exactly_the_readme_test_command() -> None:
    awk = (
        "/<!-- test-command -->/{found=1; next} found && /^```bash/{inblock=1; next} "
        "inblock && /^```/{exit} inblock{print}"
    )
    extracted = subprocess.run(["awk", awk, "README.md"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    lines = extracted.strip().splitlines()
    assert len(lines) == 1 and "pytest" in lines[0] and "HF_HUB_OFFLINE=1" in lines[0]
    assert awk in (REPO / ".ci" / "run").read_text()
    assert "pip install -e . && peft-advise --vram 24 --task math" in (REPO / "README.md").read_text()


def test_ruff_is_clean() -> None:
    ruff = shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed")
    cmd = [ruff, "check", "--output-format", "concise", "."]
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


# Top-level modules of the third-party distributions the product imports (tests and benchmarks aside).
DISTRIBUTIONS = {
    "torch": "torch",
    "transformers": "transformers",
    "peft": "peft",
    "safetensors": "safetensors",
    "huggingface_hub": "huggingface_hub",
    "pyarrow": "pyarrow",
    "matplotlib": "matplotlib",
    "plotly": "plotly",
    "gradio": "gradio",
    "typer": "typer",
    "rich": "rich",
    "optuna": "optuna",
}


def _imported_distributions(*folders: str) -> set[str]:
    import ast

    found: set[str] = set()
    for folder in folders:
        for path in (REPO / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                names = []
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                found |= {DISTRIBUTIONS[n.split(".")[0]] for n in names if n.split(".")[0] in DISTRIBUTIONS}
    return found


def _extra(name: str) -> set[str]:
    import re

    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]

    def expand(extra: str) -> set[str]:
        names: set[str] = set()
        for requirement in extras[extra]:
            nested = re.fullmatch(r"peft-advisor\[([^\]]+)\]", requirement)
            if nested:
                for inner in nested.group(1).split(","):
                    names |= expand(inner)
            else:
                names.add(re.split(r"[<>=!\[ ;]", requirement)[0].lower().replace("-", "_"))
        return names

    core = {re.split(r"[<>=!\[ ;]", r)[0].lower() for r in project["dependencies"]}
    return expand(name) | core


def test_extras_cover_what_each_tool_imports() -> None:
    """[peft] brings what the trial and the converter import, [scan] what the scanner imports, [space]
    everything the four tabs reach (the whole product)."""
    assert _imported_distributions("advisor/trial", "converters") <= _extra("peft")
    assert _imported_distributions("hub_scan") <= _extra("scan")
    assert _imported_distributions("advisor/output") - {"gradio"} <= _extra("plot")
    assert _imported_distributions("advisor", "converters", "hub_scan", "space") <= _extra("space")


def test_space_requirements_file_is_generated_from_pyproject() -> None:
    from space.export import requirements_text, space_requirements

    assert (REPO / "space" / "requirements.txt").read_text() == requirements_text()
    names = {line.split(">")[0].split("<")[0].split("=")[0] for line in space_requirements()}
    assert {"gradio", "torch", "peft", "pyarrow", "plotly", "matplotlib", "typer"} <= names
