"""A runnable PEFT config for a benchmark run: the code a user pastes to reproduce it.

Only values that differ from the installed peft's defaults are written (defaults come from the
method registry, so this needs no peft import), which keeps the snippet short and readable.
"""

from __future__ import annotations

from typing import Any

from advisor.benchmarks.records import BenchmarkRun, Snapshot
from advisor.errors import UserError
from advisor.methods.known import LEARNED_CONFIG_FIELDS
from advisor.methods.registry import MethodInfo, Registry
from advisor.recommend import Recommendation

# Bookkeeping fields PEFT writes into every config; they are not choices a user makes.
_BOOKKEEPING = frozenset(
    {"peft_type", "peft_version", "auto_mapping", "base_model_name_or_path", "revision", "inference_mode"}
)


def _python(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_python(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_python(k)}: {_python(v)}" for k, v in value.items()) + "}"
    return repr(value)


def _normalised(value: Any) -> Any:
    """Compare lists as sets: target_modules order is meaningless and varies between runs."""
    if isinstance(value, list):
        try:
            return sorted(value)
        except TypeError:
            return value
    return value


def config_snippet(run: BenchmarkRun, method: MethodInfo, registry_version: str) -> str:
    header = [
        f"# {method.display_name} as run in PEFT's {run.benchmark} benchmark ({run.experiment}),",
        f"# peak memory {run.peak_memory_gib:.2f} GiB; training: {run.optimizer or '?'} lr={run.learning_rate}, "
        f"batch {run.batch_size}, {run.max_steps} steps, {run.dtype}.",
    ]
    if method.kind == "full" or not method.config_class:
        return "\n".join(
            [
                *header,
                "# Full fine-tuning: no PEFT config; train every parameter of the model.",
                "for parameter in model.parameters():",
                "    parameter.requires_grad_(True)",
            ]
        )
    defaults = method.config_defaults
    chosen: list[tuple[str, Any]] = []
    unknown: list[str] = []
    learned = LEARNED_CONFIG_FIELDS.get(method.peft_type or "", frozenset())
    for key, value in run.peft_config.items():
        if key in _BOOKKEEPING or key in learned:
            continue
        if key not in defaults:
            if value not in (None, False, {}, []):
                unknown.append(key)
            continue
        if _normalised(value) != _normalised(defaults[key]):
            chosen.append((key, value))
    lines = [*header, f"from peft import {method.config_class}, get_peft_model", ""]
    lines.append(f"config = {method.config_class}(")
    lines += [f"    {key}={_python(value)}," for key, value in chosen]
    lines.append(")")
    lines.append("model = get_peft_model(model, config)")
    if learned:
        lines.append(f"# Left out, learned during training: {', '.join(sorted(learned))}")
    if unknown:
        lines.append(
            f"# Not in peft {registry_version}'s {method.config_class}, left out: {', '.join(sorted(unknown))}"
        )
    return "\n".join(lines)


def select_config_run(rec: Recommendation, wanted: str, snapshot: Snapshot, registry: Registry) -> BenchmarkRun:
    """The run whose config ``--show-config METHOD[:VARIANT]`` prints.

    ``METHOD``: its row in this recommendation (the run that fits and ranks), else its
    best-scoring run in the benchmark even if it does not fit. ``METHOD:VARIANT`` (or
    ``METHOD/VARIANT``), as ``trial --candidates`` takes it: that run.
    """
    from advisor.methods.variants import split_method_spec

    name, variant = split_method_spec(wanted)
    method = registry.resolve(name)
    row = next((r for r in rec.ranked if r.method.name == method.name), None)
    if row is not None and not variant:
        return row.run
    runs = [r for r in snapshot.runs_for(rec.benchmark.key) if r.method == method.name]
    if variant:
        runs = [r for r in runs if variant in (r.variant, r.experiment.split("/", 1)[-1])]
    if not runs:
        named = f" named {variant!r}" if variant else ""
        known = ", ".join(r.variant for r in snapshot.runs_for(rec.benchmark.key) if r.method == method.name)
        raise UserError(f"{rec.benchmark.key} has no {method.name} run{named}; its runs: {known or 'none'}")
    sign = 1 if rec.metric.higher_is_better else -1
    scored = [r for r in runs if r.metrics.get(rec.metric.key) is not None] or runs
    return max(scored, key=lambda r: sign * (r.metrics.get(rec.metric.key) or 0.0))
