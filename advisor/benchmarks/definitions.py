"""The benchmarks peft-advisor knows: what they measure, their headline metric, their noise.

PEFT's method-comparison suite has one folder per benchmark. This module says how to read
each: which metric is the headline, which direction is better, and how large a score
difference is still noise (see :class:`NoiseModel`).
"""

from __future__ import annotations

from dataclasses import dataclass

from advisor.errors import UserError


@dataclass(frozen=True)
class NoiseModel:
    """How to estimate the standard error of a run's final score.

    ``binomial``: an accuracy over ``n`` independent test items; SE = sqrt(p(1-p)/n).
    ``validation-spread``: no per-item data is stored, so the importer measures how much the
    periodic validation score of a run still moves at the end of training (std of the last
    ``last_k`` evaluations, median over the benchmark's runs) and scales it from the validation
    set size to the test set size. It covers evaluation noise and late-training wobble.
    """

    kind: str
    n: int | None = None
    validation_metric: str | None = None
    last_k: int = 3


@dataclass(frozen=True)
class MetricDef:
    key: str  # the key in the result file's final metrics entry
    short: str  # the name users pass to --metric
    label: str
    higher_is_better: bool
    noise: NoiseModel | None = None


@dataclass(frozen=True)
class BenchmarkDef:
    key: str
    title: str
    domain: str  # "llm" or "image": decides which serving stacks apply
    folder_names: tuple[str, ...]
    metrics: tuple[MetricDef, ...]  # the first one is the headline
    seq_setting: str  # train_config key holding the sequence length or resolution
    seq_label: str

    @property
    def headline(self) -> MetricDef:
        return self.metrics[0]

    def metric(self, short_or_key: str | None) -> MetricDef:
        if short_or_key is None:
            return self.headline
        wanted = short_or_key.strip().lower()
        for metric in self.metrics:
            if wanted in (metric.short, metric.key.lower()):
                return metric
        valid = ", ".join(m.short for m in self.metrics)
        raise UserError(f"unknown metric {short_or_key!r} for {self.key}; choose one of: {valid}")


# GSM8K's test split has 1,319 problems; every stored accuracy is k/1319.
GSM8K_TEST_SIZE = 1319

BENCHMARKS: dict[str, BenchmarkDef] = {
    "MetaMathQA": BenchmarkDef(
        key="MetaMathQA",
        title="MetaMathQA → GSM8K (math word problems, causal LM)",
        domain="llm",
        folder_names=("MetaMathQA",),
        metrics=(
            MetricDef(
                "test accuracy",
                "accuracy",
                "GSM8K test accuracy",
                True,
                NoiseModel("binomial", n=GSM8K_TEST_SIZE),
            ),
            MetricDef("forgetting", "forgetting", "forgetting (loss increase on general text)", False),
        ),
        seq_setting="max_seq_length",
        seq_label="seq",
    ),
    "image-gen": BenchmarkDef(
        key="image-gen",
        title="DreamBooth-style concept learning (FLUX.2-klein, text-to-image)",
        domain="image",
        folder_names=("image-gen", "image_gen"),
        metrics=(
            MetricDef(
                "test dino_similarity",
                "dino_similarity",
                "DINOv2 similarity to the concept",
                True,
                NoiseModel("validation-spread", validation_metric="valid dino_similarity"),
            ),
            MetricDef("drift", "drift", "drift on unrelated prompts", False),
        ),
        seq_setting="resolution",
        seq_label="px",
    ),
}


def benchmark_for_folder(name: str) -> BenchmarkDef | None:
    for bench in BENCHMARKS.values():
        if name in bench.folder_names:
            return bench
    return None
