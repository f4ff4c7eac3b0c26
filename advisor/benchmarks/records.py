"""Typed records of the benchmark knowledge base and their JSON form.

A :class:`Snapshot` is what the importer writes and the recommender reads: one
:class:`BenchmarkRun` per successful result file plus a :class:`BenchmarkSetup` per benchmark.
Memory is stored in bytes, exactly as measured; conversion to GiB happens at presentation.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

SCHEMA_VERSION = 1
GIB = 2**30


@dataclass(frozen=True)
class BenchmarkRun:
    id: str  # "<benchmark>/<experiment_name>", unique in a snapshot
    benchmark: str
    experiment: str  # "lora/llama-3.2-3B-rank32"
    variant: str  # experiment variant without the model prefix: "rank32"
    method: str  # registry name: "lora", "oft", "full" ...
    peft_type: str | None
    variant_flags: tuple[str, ...]
    key_config: dict[str, Any]
    peft_config: dict[str, Any]
    model_id: str
    dtype: str
    batch_size: int | None
    seq_len: int | None  # tokens (LLM) or pixels (image resolution)
    grad_checkpointing: bool | None
    max_steps: int | None
    learning_rate: float | None
    optimizer: str | None
    metrics: dict[str, float | None]
    peak_memory_bytes: int
    p99_memory_bytes: int | None
    avg_memory_bytes: int | None
    train_time_s: float | None
    checkpoint_bytes: int | None
    trainable_params: int | None
    total_params: int | None
    gpu: str | None
    peft_version: str | None
    created_at: str | None
    source_file: str
    upstream_commit: str | None
    # Estimated standard error of the final test score, from how much the last validation
    # scores still move (see definitions.NoiseModel); None where the benchmark has no such model.
    test_se_estimate: float | None = None

    @property
    def peak_memory_gib(self) -> float:
        return self.peak_memory_bytes / GIB

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["variant_flags"] = list(self.variant_flags)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BenchmarkRun:
        data = dict(data)
        data["variant_flags"] = tuple(data.get("variant_flags", ()))
        return cls(**data)

    def comparable(self) -> dict[str, Any]:
        """The measured figures, for telling a changed run from an unchanged one."""
        return {
            "metrics": self.metrics,
            "peak_memory_bytes": self.peak_memory_bytes,
            "p99_memory_bytes": self.p99_memory_bytes,
            "train_time_s": self.train_time_s,
            "checkpoint_bytes": self.checkpoint_bytes,
            "trainable_params": self.trainable_params,
            "peft_config": self.peft_config,
        }


@dataclass(frozen=True)
class BenchmarkSetup:
    """The setup most runs of a benchmark share: what the memory figures were measured on."""

    benchmark: str
    model_id: str
    dtype: str
    batch_size: int | None
    seq_len: int | None
    grad_checkpointing: bool | None
    max_steps: int | None
    gpu: str | None
    noise_se: dict[str, float] = field(default_factory=dict)  # metric key → pooled SE, where estimated

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BenchmarkSetup:
        return cls(**data)


@dataclass(frozen=True)
class Snapshot:
    source: dict[str, Any]  # location, kind, upstream_commit, imported_at
    setups: dict[str, BenchmarkSetup]
    runs: tuple[BenchmarkRun, ...]
    skipped: tuple[dict[str, str], ...] = ()
    origin: str = ""  # the file this snapshot was read from (not stored)

    def runs_for(self, benchmark: str) -> list[BenchmarkRun]:
        return [r for r in self.runs if r.benchmark == benchmark]

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "source": self.source,
            "setups": {k: v.to_dict() for k, v in self.setups.items()},
            "runs": [r.to_dict() for r in self.runs],
            "skipped": list(self.skipped),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], origin: str = "") -> Snapshot:
        version = data.get("schema_version")
        if version != SCHEMA_VERSION:
            raise ValueError(f"snapshot schema {version!r} is not the supported {SCHEMA_VERSION}")
        return cls(
            source=data["source"],
            setups={k: BenchmarkSetup.from_dict(v) for k, v in data["setups"].items()},
            runs=tuple(BenchmarkRun.from_dict(r) for r in data["runs"]),
            skipped=tuple(data.get("skipped", ())),
            origin=origin,
        )
