"""Wall time and peak resident memory of a command's whole process tree, for the benchmark scripts.

Peak RSS is sampled from /proc (every ``interval`` seconds) over the command and all its children:
training and conversion spawn processes, and the memory a user needs is theirs together.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def tree_rss_bytes(root: int) -> int:
    """Resident memory of ``root`` and all its descendants, from /proc."""
    parents: dict[int, int] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
            parents[int(entry)] = int(fields[1])
            rss[int(entry)] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, IndexError, ValueError):
            continue
    members, frontier = {root}, [root]
    while frontier:
        pid = frontier.pop()
        for child, parent in parents.items():
            if parent == pid and child not in members:
                members.add(child)
                frontier.append(child)
    return sum(rss.get(p, 0) for p in members)


def run_measured(
    cmd: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None, interval: float = 0.2
) -> tuple[float, int, str]:
    """Wall seconds, peak tree RSS (bytes) and stdout of a command; a failure ends the benchmark."""
    start = time.perf_counter()
    run_env = env if env is not None else {**os.environ, "PEFT_ADVISOR_PLAIN": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=run_env, cwd=cwd)
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, tree_rss_bytes(proc.pid))
            time.sleep(interval)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = proc.communicate()
    done.set()
    sampler.join()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:4])} failed ({proc.returncode}): {err[-2000:]}")
    return time.perf_counter() - start, peak, out


@contextlib.contextmanager
def worktree(ref: str | None) -> Iterator[Path | None]:
    """A temporary, detached git worktree of this repository at ``ref`` (removed afterwards), or None: how a
    benchmark runs the code as it was before a change beside today's, on the same inputs."""
    if ref is None:
        yield None
        return
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "before"
        added = subprocess.run(
            ["git", "-C", str(REPO), "worktree", "add", "--detach", "-q", str(tree), ref],
            capture_output=True,
            text=True,
        )
        if added.returncode != 0:
            print(f"error: no commit {ref!r} in this repository; pass a commit or ref git knows", file=sys.stderr)
            raise SystemExit(2)
        try:
            yield tree
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)], check=False)
