"""Turn PEFT's raw result files into the compact snapshot the recommender reads.

One bad or unfinished file is reported and skipped, never fatal. The report compares the new
snapshot with the previous one (added / changed / removed runs) so a refresh says what moved.
"""

from __future__ import annotations

import os
import statistics
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime, timezone

from advisor.benchmarks.definitions import BENCHMARKS
from advisor.benchmarks.peft_result_file import ResultFileError, load_json_bytes, parse_result, short_variant
from advisor.benchmarks.records import BenchmarkRun, BenchmarkSetup, Snapshot
from advisor.benchmarks.sources import ResultFile, ResultSource
from advisor.errors import UserError
from advisor.methods.registry import Registry, load_registry

ProgressCallback = Callable[[int, int], None]


@dataclass(frozen=True)
class ImportReport:
    snapshot: Snapshot
    added: tuple[str, ...]
    changed: tuple[str, ...]
    removed: tuple[str, ...]
    unchanged: int
    skipped: tuple[dict[str, str], ...]


def _most_common(values: list) -> object:
    present = [v for v in values if v is not None]
    return Counter(present).most_common(1)[0][0] if present else None


def _common_prefix(names: list[str]) -> str:
    """Longest shared prefix ending at a '-' boundary ('llama-3.2-3B-' for the LLM runs)."""
    if len(names) < 2:
        return ""
    prefix = os.path.commonprefix(names)  # noqa: RUF071 (character-wise, then cut at "-")
    cut = prefix.rfind("-")
    return prefix[: cut + 1] if cut > 0 else ""


def _setup_for(bench_key: str, runs: list[BenchmarkRun]) -> BenchmarkSetup:
    bench = BENCHMARKS[bench_key]
    noise_se: dict[str, float] = {}
    estimates = [r.test_se_estimate for r in runs if r.test_se_estimate is not None]
    if estimates:
        # The median over runs: one run's last evaluations are too few to trust on their own.
        noise_se[bench.headline.key] = statistics.median(estimates)
    return BenchmarkSetup(
        benchmark=bench_key,
        model_id=str(_most_common([r.model_id for r in runs]) or ""),
        dtype=str(_most_common([r.dtype for r in runs]) or ""),
        batch_size=_most_common([r.batch_size for r in runs]),  # type: ignore[arg-type]
        seq_len=_most_common([r.seq_len for r in runs]),  # type: ignore[arg-type]
        grad_checkpointing=_most_common([r.grad_checkpointing for r in runs]),  # type: ignore[arg-type]
        max_steps=_most_common([r.max_steps for r in runs]),  # type: ignore[arg-type]
        gpu=_most_common([r.gpu for r in runs]),  # type: ignore[arg-type]
        noise_se=noise_se,
    )


def _read_all(
    files: tuple[ResultFile, ...], progress: ProgressCallback | None
) -> list[tuple[ResultFile, bytes | Exception]]:
    """Read every file (concurrently: a GitHub import is dozens of small downloads)."""

    def read(item: ResultFile) -> bytes | Exception:
        try:
            return item.read()
        except (OSError, UserError) as exc:
            return exc

    results: list[tuple[ResultFile, bytes | Exception]] = []
    with ThreadPoolExecutor(max_workers=8) as pool:
        for done, (item, payload) in enumerate(zip(files, pool.map(read, files), strict=True), start=1):
            results.append((item, payload))
            if progress:
                progress(done, len(files))
    return results


def build_snapshot(
    source: ResultSource, *, registry: Registry | None = None, progress: ProgressCallback | None = None
) -> Snapshot:
    registry = registry or load_registry()
    runs: list[BenchmarkRun] = []
    skipped: list[dict[str, str]] = []
    seen: dict[str, str] = {}
    for item, payload in _read_all(source.files, progress):
        if isinstance(payload, Exception):
            skipped.append({"file": item.path, "reason": f"cannot read: {payload}"})
            continue
        try:
            run = parse_result(
                load_json_bytes(payload),
                bench=item.bench,
                registry=registry,
                source_file=item.path,
                upstream_commit=source.upstream_commit,
            )
        except ResultFileError as exc:
            skipped.append({"file": item.path, "reason": str(exc)})
            continue
        if run.id in seen:
            skipped.append({"file": item.path, "reason": f"duplicate of {seen[run.id]} ({run.experiment})"})
            continue
        seen[run.id] = item.path
        runs.append(run)

    if not runs:
        expected = ", ".join(f"{b.folder_names[0]}/" for b in BENCHMARKS.values())
        reasons = (
            f" ({len(skipped)} file(s) skipped, e.g. {skipped[0]['file']}: {skipped[0]['reason']})" if skipped else ""
        )
        raise UserError(
            f"no usable PEFT result files under {source.location}{reasons}; expected JSON results in {expected} folders"
        )

    by_bench: dict[str, list[BenchmarkRun]] = {}
    for run in runs:
        by_bench.setdefault(run.benchmark, []).append(run)
    final_runs: list[BenchmarkRun] = []
    for bench_runs in by_bench.values():
        prefix = _common_prefix([r.experiment.split("/", 1)[-1] for r in bench_runs])
        final_runs += [replace(r, variant=short_variant(r.experiment, prefix)) for r in bench_runs]
    final_runs.sort(key=lambda r: r.id)

    return Snapshot(
        source={
            "kind": source.kind,
            "location": source.location,
            "upstream_commit": source.upstream_commit,
            "imported_at": datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
            "peft_registry_version": registry.peft_version,
        },
        setups={k: _setup_for(k, v) for k, v in sorted(by_bench.items())},
        runs=tuple(final_runs),
        skipped=tuple(sorted(skipped, key=lambda s: s["file"])),
    )


def compare(previous: Snapshot | None, new: Snapshot) -> ImportReport:
    old = {r.id: r for r in previous.runs} if previous else {}
    fresh = {r.id: r for r in new.runs}
    added = sorted(set(fresh) - set(old))
    removed = sorted(set(old) - set(fresh))
    common = sorted(set(fresh) & set(old))
    changed = [rid for rid in common if fresh[rid].comparable() != old[rid].comparable()]
    return ImportReport(
        snapshot=new,
        added=tuple(added),
        changed=tuple(changed),
        removed=tuple(removed),
        unchanged=len(common) - len(changed),
        skipped=new.skipped,
    )
