"""Where PEFT result files come from: a local folder, or the PEFT repository on GitHub.

Both sources yield the same thing, a list of :class:`ResultFile` (path, benchmark, a way to
read the bytes) plus the upstream commit the files belong to, so the importer does not care.
GitHub is reached with the standard library only; the API and raw-file hosts can be pointed
elsewhere (``PEFT_ADVISOR_GITHUB_API`` / ``PEFT_ADVISOR_GITHUB_RAW``) for tests and mirrors.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from advisor.benchmarks.definitions import BenchmarkDef, benchmark_for_folder
from advisor.errors import UserError

# Upstream keeps unfinished and aborted runs beside the real ones; they are not results.
SKIP_DIRS = frozenset({"temporary_results", "cancelled_results", "experiments", "__pycache__", ".git"})
NOT_RESULTS = frozenset({"default_training_params.json", "training_params.json", "adapter_config.json"})
_SHA = re.compile(r"\b([0-9a-f]{40})\b")


@dataclass(frozen=True)
class ResultFile:
    path: str  # relative to the source root, with '/' separators
    bench: BenchmarkDef
    read: Callable[[], bytes]


@dataclass(frozen=True)
class ResultSource:
    kind: str  # "local" or "github"
    location: str
    upstream_commit: str | None
    files: tuple[ResultFile, ...]


def _benchmark_of(parts: tuple[str, ...]) -> BenchmarkDef | None:
    """The innermost folder in ``parts`` named like a benchmark, unless a skipped folder is in the way."""
    if any(part in SKIP_DIRS for part in parts):
        return None
    for part in reversed(parts):
        bench = benchmark_for_folder(part)
        if bench is not None:
            return bench
    return None


def _commit_from_readme(root: Path) -> str | None:
    """The results folder's README names the upstream commit it was taken at (ours does)."""
    for folder in (root, *list(root.parents)[:2]):
        readme = folder / "README.md"
        if readme.is_file():
            text = readme.read_text(encoding="utf-8", errors="replace")
            match = re.search(r"commit\s*`?([0-9a-f]{40})", text)
            if match:
                return match.group(1)
    return None


def _commit_from_git(root: Path) -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return out if _SHA.fullmatch(out) else None


def local_source(root: Path, commit: str | None = None) -> ResultSource:
    """Result files under ``root``: a PEFT checkout, its ``method_comparison`` folder, or a copy."""
    root = root.expanduser()
    if not root.exists():
        raise UserError(f"{root} does not exist; pass a PEFT checkout or a results folder to --from")
    if not root.is_dir():
        raise UserError(f"{root} is not a folder; pass the folder that holds MetaMathQA/ or image-gen/")
    root = root.resolve()
    files = []
    for path in sorted(root.rglob("*.json")):
        rel = path.relative_to(root)
        if path.name in NOT_RESULTS:
            continue
        bench = _benchmark_of((root.name, *rel.parts[:-1]))
        if bench is None:
            continue
        files.append(ResultFile(rel.as_posix(), bench, path.read_bytes))
    return ResultSource(
        kind="local",
        location=str(root),
        upstream_commit=commit or _commit_from_readme(root) or _commit_from_git(root),
        files=tuple(files),
    )


# --------------------------------------------------------------------------- GitHub


def parse_github_spec(spec: str) -> tuple[str, str, str] | None:
    """('huggingface', 'peft', 'main') from 'github', 'github:REF' or a github.com URL; else None."""
    if spec == "github" or spec.startswith("github:"):
        ref = spec.partition(":")[2] or "main"
        return "huggingface", "peft", ref
    parsed = urllib.parse.urlparse(spec)
    if parsed.scheme in ("http", "https") and parsed.netloc.lower() in ("github.com", "www.github.com"):
        parts = [p for p in parsed.path.split("/") if p]
        if len(parts) < 2:
            raise UserError(f"{spec} is not a repository URL; use https://github.com/OWNER/REPO[/tree/REF]")
        owner, repo = parts[0], parts[1].removesuffix(".git")
        ref = "/".join(parts[3:]) if len(parts) > 3 and parts[2] == "tree" else "main"
        return owner, repo, ref
    return None


class _GitHub:
    def __init__(self, owner: str, repo: str) -> None:
        self.owner, self.repo = owner, repo
        self.api = os.environ.get("PEFT_ADVISOR_GITHUB_API", "https://api.github.com").rstrip("/")
        self.raw = os.environ.get("PEFT_ADVISOR_GITHUB_RAW", "https://raw.githubusercontent.com").rstrip("/")
        self.token = os.environ.get("GITHUB_TOKEN") or os.environ.get("GH_TOKEN")

    def get(self, url: str, *, accept: str = "application/vnd.github+json", attempts: int = 4) -> bytes:
        """GET with retries on 429/5xx and connection errors (exponential back-off)."""
        headers = {"Accept": accept, "User-Agent": "peft-advisor"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        for attempt in range(attempts):
            try:
                with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=30) as response:
                    return response.read()
            except urllib.error.HTTPError as exc:
                retryable = exc.code == 429 or exc.code >= 500
                if not retryable or attempt == attempts - 1:
                    raise UserError(f"GitHub answered {exc.code} {exc.reason} for {url}") from exc
                delay = float(exc.headers.get("Retry-After") or 0) or 0.5 * 2**attempt
            except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
                if attempt == attempts - 1:
                    reason = getattr(exc, "reason", exc)
                    raise UserError(
                        f"cannot reach GitHub ({reason}); check the network, or pass a local PEFT checkout to --from"
                    ) from exc
                delay = 0.5 * 2**attempt
            time.sleep(min(delay, 10.0))
        raise AssertionError("unreachable")

    def get_json(self, url: str) -> dict:
        try:
            return json.loads(self.get(url))
        except json.JSONDecodeError as exc:
            raise UserError(f"GitHub sent something that is not JSON for {url}") from exc

    def resolve_commit(self, ref: str) -> str:
        data = self.get_json(f"{self.api}/repos/{self.owner}/{self.repo}/commits/{urllib.parse.quote(ref, safe='')}")
        sha = data.get("sha")
        if not isinstance(sha, str) or not _SHA.fullmatch(sha):
            raise UserError(f"GitHub did not return a commit for {self.owner}/{self.repo}@{ref}")
        return sha

    def tree_paths(self, sha: str) -> list[str]:
        data = self.get_json(f"{self.api}/repos/{self.owner}/{self.repo}/git/trees/{sha}?recursive=1")
        if data.get("truncated"):
            raise UserError("GitHub truncated the repository listing; clone PEFT and pass the folder to --from")
        return [e["path"] for e in data.get("tree", []) if e.get("type") == "blob" and isinstance(e.get("path"), str)]

    def raw_reader(self, sha: str, path: str) -> Callable[[], bytes]:
        url = f"{self.raw}/{self.owner}/{self.repo}/{sha}/{urllib.parse.quote(path)}"
        return lambda: self.get(url, accept="application/octet-stream")


def github_source(owner: str, repo: str, ref: str) -> ResultSource:
    """Result files under ``method_comparison/<benchmark>/results/`` at ``ref`` (resolved to a commit)."""
    hub = _GitHub(owner, repo)
    sha = hub.resolve_commit(ref)
    files = []
    for path in sorted(hub.tree_paths(sha)):
        parts = path.split("/")
        if len(parts) != 4 or parts[0] != "method_comparison" or parts[2] != "results":
            continue
        if not parts[3].endswith(".json"):
            continue
        bench = benchmark_for_folder(parts[1])
        if bench is not None:
            files.append(ResultFile(path, bench, hub.raw_reader(sha, path)))
    return ResultSource("github", f"https://github.com/{owner}/{repo}/tree/{sha}", sha, tuple(files))


def open_source(spec: str, commit: str | None = None) -> ResultSource:
    """A local folder path, ``github[:REF]`` or a github.com repository URL."""
    github = parse_github_spec(spec)
    if github is not None:
        return github_source(*github)
    if re.match(r"^[a-z]+://", spec):
        raise UserError(
            f"unsupported URL {spec!r}; use a local folder, 'github[:REF]' or https://github.com/OWNER/REPO"
        )
    return local_source(Path(spec), commit)
