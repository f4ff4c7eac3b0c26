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
