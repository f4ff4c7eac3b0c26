"""Make a folder that deploys as a Hugging Face Space as it is: the app, the library, requirements.

A Space repo only has what is pushed to it, so the export vendors the project's own packages
(advisor, converters, hub_scan, space, with their data files) next to an ``app.py`` entry point,
the Space card (README.md with its front matter) and ``requirements.txt`` for the third-party
packages. Written to a temporary folder beside the target and renamed: never half an export.
"""

from __future__ import annotations

import shutil
from pathlib import Path

PACKAGES = ("advisor", "converters", "hub_scan", "space")
ENTRY_POINT = '''"""Hugging Face Space entry point: the peft-advisor app, with its library vendored beside it."""

from space.app import main

if __name__ == "__main__":
    main(host="0.0.0.0", port=7860)
'''


def export_space(dest: Path, *, overwrite: bool = False) -> Path:
    from advisor.paths import publish, staging_folder

    here = Path(__file__).resolve().parent
    with staging_folder(Path(dest), overwrite=overwrite, option="--export") as staging:
        for name in PACKAGES:
            module = __import__(name)
            source = Path(module.__file__).resolve().parent
            shutil.copytree(source, staging / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        shutil.copyfile(here / "README.md", staging / "README.md")
        shutil.copyfile(here / "requirements.txt", staging / "requirements.txt")
        (staging / "app.py").write_text(ENTRY_POINT, encoding="utf-8")
        publish(staging, Path(dest))
    return Path(dest)
