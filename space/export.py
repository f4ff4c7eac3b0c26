"""Make a folder that deploys as a Hugging Face Space as it is: the app, the library, requirements.

A Space repo only has what is pushed to it, so the export vendors the project's own packages
(advisor, converters, hub_scan, space, with their data files) next to an ``app.py`` entry point,
the Space card (README.md with its front matter) and ``requirements.txt`` for the third-party
packages. Written to a temporary folder beside the target and renamed: never half an export.
"""

from __future__ import annotations

import re
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
        (staging / "requirements.txt").write_text(requirements_text(), encoding="utf-8")
        (staging / "app.py").write_text(ENTRY_POINT, encoding="utf-8")
        publish(staging, Path(dest))
    return Path(dest)


PROJECT = "peft-advisor"
_HEADER = (
    "# Generated from pyproject.toml (the core dependencies and the [space] extra) by\n"
    "# `python -m space.export --requirements`; tests/test_project.py keeps it equal. The Space's torch is\n"
    "# whatever its hardware image needs: these stay open ranges.\n"
)


def space_requirements() -> list[str]:
    """The third-party packages the Space installs: core dependencies plus the [space] extra, expanded.

    Read from pyproject.toml in a checkout, else from the installed package's metadata.
    """
    core, extras = _declared_requirements()

    def expand(name: str, seen: set[str]) -> list[str]:
        out: list[str] = []
        for requirement in extras.get(name, []):
            match = re.fullmatch(rf"{re.escape(PROJECT)}\[([^\]]+)\]", requirement.replace(" ", ""))
            if match:
                for extra in match.group(1).split(","):
                    if extra not in seen:
                        seen.add(extra)
                        out += expand(extra, seen)
            else:
                out.append(requirement)
        return out

    wanted = core + expand("space", {"space"})
    return list(dict.fromkeys(wanted))  # first mention wins, order kept


def requirements_text() -> str:
    return _HEADER + "".join(f"{line}\n" for line in space_requirements())


def _declared_requirements() -> tuple[list[str], dict[str, list[str]]]:
    pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
    try:
        import tomllib  # Python 3.11+
    except ImportError:  # pragma: no cover - 3.10 reads the installed metadata below
        tomllib = None  # type: ignore[assignment]
    if pyproject.is_file() and tomllib is not None:
        project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
        return list(project.get("dependencies", [])), dict(project.get("optional-dependencies", {}))
    from importlib.metadata import requires

    core: list[str] = []
    extras: dict[str, list[str]] = {}
    for line in requires(PROJECT) or []:
        requirement, _, marker = line.partition(";")
        found = re.search(r"extra\s*==\s*[\"']([^\"']+)[\"']", marker)
        if found:
            extras.setdefault(found.group(1), []).append(requirement.strip())
        else:
            core.append(requirement.strip())
    return core, extras


if __name__ == "__main__":
    import sys

    if sys.argv[1:] != ["--requirements"]:
        raise SystemExit("usage: python -m space.export --requirements  (rewrites space/requirements.txt)")
    target = Path(__file__).resolve().parent / "requirements.txt"
    target.write_text(requirements_text(), encoding="utf-8")
    print(f"wrote {target}")
