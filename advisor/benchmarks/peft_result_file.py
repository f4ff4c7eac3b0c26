"""Reading one result file of PEFT's method-comparison suite (the only module that knows its layout).

Layout (PEFT's method_comparison/<benchmark>/results/*.json): ``run_info`` (experiment name, train
config, PEFT config), ``train_info`` (status, memory in bytes, time, size, parameter counts,
periodic metrics whose last entry holds the final test metrics) and ``meta_info`` (versions, GPU).
Anything unusable raises :class:`ResultFileError` with a reason the import summary can show.
"""

from __future__ import annotations

import json
import math
import statistics
from typing import Any

from advisor.benchmarks.definitions import BenchmarkDef
from advisor.benchmarks.records import BenchmarkRun
from advisor.methods.registry import Registry
from advisor.methods.variants import variant_flags

# PEFT config fields that say what a run's adapter looks like at a glance.
_KEY_CONFIG_FIELDS = (
    "r",
    "lora_alpha",
    "target_modules",
    "oft_block_size",
    "boft_block_size",
    "num_virtual_tokens",
    "n_frequency",
    "use_rslora",
    "use_dora",
)


class ResultFileError(ValueError):
    """This file is not a usable, finished result; the message says why."""


def load_json_bytes(raw: bytes) -> dict[str, Any]:
    """Parse a result file. Upstream writes Python's ``NaN`` for undefined metrics; keep it."""
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ResultFileError(f"not UTF-8 text ({exc.reason})") from exc
    except json.JSONDecodeError as exc:
        raise ResultFileError(f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from exc
    if not isinstance(data, dict):
        raise ResultFileError("not a JSON object")
    return data


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _require_int(section: dict[str, Any], key: str) -> int:
    value = section.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ResultFileError(f"train_info.{key} is missing or not a positive number ({value!r})")
    return int(value)


def _optional_int(value: Any) -> int | None:
    number = _finite(value)
    return int(number) if number is not None else None


def _test_se_estimate(metrics: list[dict[str, Any]], train_config: dict[str, Any], bench: BenchmarkDef) -> float | None:
    """Std of the last validation scores, scaled from the validation to the test set size.

    A mean over n items has SE ∝ 1/sqrt(n), so a spread seen on ``valid_size`` items shrinks by
    sqrt(valid_size / test_size) on the test set.
    """
    noise = bench.headline.noise
    if noise is None or noise.kind != "validation-spread" or not noise.validation_metric:
        return None
    values = [v for m in metrics if (v := _finite(m.get(noise.validation_metric))) is not None]
    tail = values[-noise.last_k :]
    if len(tail) < 2:
        return None
    spread = statistics.stdev(tail)
    valid_size, test_size = _finite(train_config.get("valid_size")), _finite(train_config.get("test_size"))
    if valid_size and test_size:
        spread *= math.sqrt(valid_size / test_size)
    return spread


def short_variant(experiment: str, model_prefix: str) -> str:
    """'lora/llama-3.2-3B-rank32' → 'rank32' given the benchmark's shared model prefix."""
    variant = experiment.split("/", 1)[1] if "/" in experiment else experiment
    if model_prefix and variant.startswith(model_prefix):
        variant = variant[len(model_prefix) :].lstrip("-_") or "default"
    return variant


def parse_result(
    data: dict[str, Any],
    *,
    bench: BenchmarkDef,
    registry: Registry,
    source_file: str,
    upstream_commit: str | None,
) -> BenchmarkRun:
    """One finished run from a parsed result file, or :class:`ResultFileError`."""
    run_info = data.get("run_info")
    train_info = data.get("train_info")
    if not isinstance(run_info, dict) or not isinstance(train_info, dict):
        raise ResultFileError("not a PEFT method-comparison result (no run_info / train_info)")
    status = train_info.get("status")
    if status != "success":
        error = str(run_info.get("error_msg") or "").strip().splitlines()
        detail = f": {error[-1][:120]}" if error else ""
        raise ResultFileError(f"run did not finish (status {status!r}){detail}")
    experiment = run_info.get("experiment_name")
    if not isinstance(experiment, str) or not experiment:
        raise ResultFileError("run_info.experiment_name is missing")
    train_config = run_info.get("train_config")
    if not isinstance(train_config, dict):
        raise ResultFileError("run_info.train_config is missing")
    peft_config = run_info.get("peft_config") or {}
    if not isinstance(peft_config, dict):
        raise ResultFileError("run_info.peft_config is not an object")
    peft_type = peft_config.get("peft_type")
    method = registry.get(peft_type) if peft_type else registry.get("full")
    if method is None:
        raise ResultFileError(f"unknown peft_type {peft_type!r} (not in the method registry; refresh it?)")

    metrics_log = train_info.get("metrics")
    if not isinstance(metrics_log, list) or not metrics_log or not isinstance(metrics_log[-1], dict):
        raise ResultFileError("train_info.metrics is empty: no final evaluation")
    final = metrics_log[-1]
    metrics = {m.key: _finite(final.get(m.key)) for m in bench.metrics}
    if metrics[bench.headline.key] is None:
        raise ResultFileError(f"final metrics lack {bench.headline.key!r}")

    meta = data.get("meta_info") if isinstance(data.get("meta_info"), dict) else {}
    packages = meta.get("package_info") if isinstance(meta.get("package_info"), dict) else {}
    system = meta.get("system_info") if isinstance(meta.get("system_info"), dict) else {}
    optimizer_kwargs = train_config.get("optimizer_kwargs") or {}
    peft_config_clean = {k: v for k, v in peft_config.items() if not (isinstance(v, float) and not math.isfinite(v))}

    return BenchmarkRun(
        id=f"{bench.key}/{experiment}",
        benchmark=bench.key,
        experiment=experiment,
        variant=experiment.split("/", 1)[-1],
        method=method.name,
        peft_type=method.peft_type,
        variant_flags=tuple(variant_flags(method.peft_type, peft_config, train_config)),
        key_config={k: peft_config[k] for k in _KEY_CONFIG_FIELDS if peft_config.get(k) not in (None, False)},
        peft_config=peft_config_clean,
        model_id=str(train_config.get("model_id") or ""),
        dtype=str(train_config.get("dtype") or ""),
        batch_size=_optional_int(train_config.get("batch_size")),
        seq_len=_optional_int(train_config.get(bench.seq_setting)),
        grad_checkpointing=train_config.get("use_gc") if isinstance(train_config.get("use_gc"), bool) else None,
        max_steps=_optional_int(train_config.get("max_steps")),
        learning_rate=_finite(optimizer_kwargs.get("lr")) if isinstance(optimizer_kwargs, dict) else None,
        optimizer=train_config.get("optimizer_type"),
        metrics=metrics,
        peak_memory_bytes=_require_int(train_info, "accelerator_memory_max"),
        p99_memory_bytes=_optional_int(train_info.get("accelerator_memory_reserved_99th")),
        avg_memory_bytes=_optional_int(train_info.get("accelerator_memory_reserved_avg")),
        train_time_s=_finite(train_info.get("train_time")),
        checkpoint_bytes=_optional_int(train_info.get("file_size")),
        trainable_params=_optional_int(train_info.get("num_trainable_params")),
        total_params=_optional_int(train_info.get("num_total_params")),
        gpu=system.get("accelerator"),
        peft_version=packages.get("peft-version"),
        created_at=run_info.get("created_at"),
        source_file=source_file,
        upstream_commit=upstream_commit,
        test_se_estimate=_test_se_estimate(metrics_log, train_config, bench),
    )
