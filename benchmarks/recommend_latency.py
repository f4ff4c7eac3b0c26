"""Recommend latency vs ``import peft``, measured in the same run (target ratio ≤ 0.05).

Both are timed as fresh processes, the way a user meets them: the console script
``peft-advise --vram 24 --task math`` (plain text to a pipe, the common scripted case, and
``--json``) against ``python -c "import peft"``. Each is run ``--repeat`` times after one warm-up
(so .pyc files exist for both); the medians are compared.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time


def time_command(cmd: list[str], repeat: int) -> list[float]:
    subprocess.run(cmd, capture_output=True, check=True)  # warm-up: byte-compile, fill the page cache
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(cmd, capture_output=True, check=True)
        samples.append(time.perf_counter() - start)
    return samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    script = shutil.which("peft-advise")
    advise = [script] if script else [sys.executable, "-m", "advisor.cli"]
    cases = {
        "peft-advise --vram 24 --task math": [*advise, "--vram", "24", "--task", "math"],
        "peft-advise --vram 24 --task math --json": [*advise, "--vram", "24", "--task", "math", "--json"],
        "python -c 'import peft'": [sys.executable, "-c", "import peft"],
        "python -c 'pass' (interpreter start)": [sys.executable, "-c", "pass"],
    }
    medians = {}
    for label, cmd in cases.items():
        samples = time_command(cmd, args.repeat)
        medians[label] = statistics.median(samples)
        print(f"{label:45s} median {medians[label] * 1000:8.1f} ms  (min {min(samples) * 1000:.1f}, n={len(samples)})")
    peft_time = medians["python -c 'import peft'"]
    for label in list(cases)[:2]:
        ratio = medians[label] / peft_time
        verdict = "OK" if ratio <= 0.05 else "ABOVE TARGET"
        print(f"ratio  {label} / import peft = {ratio:.3f}  (target <= 0.05: {verdict})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
