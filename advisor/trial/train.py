"""Train one trial candidate for a fixed budget and measure it: the same loop for every method.

Fairness is this module's job: every candidate gets the same seed (model init, adapter init,
dropout), the same rows in the same order, the same batch size, step count and schedule shape
(linear warm-up over 10% of the steps, then linear decay), and the same evaluation. What may
differ per method (learning rate, the adapter config) is passed in and reported with the result.

Peak memory: ``torch.cuda.max_memory_reserved`` on a GPU; on the CPU the growth of the process's
peak RSS during the candidate (``ru_maxrss`` after minus resident memory before), which is an upper
bound once an earlier candidate has already raised the process's peak: run candidates in their
own processes when CPU memory figures matter.
"""

from __future__ import annotations

import enum
import math
import resource
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from advisor.errors import UserError
from advisor.trial.data import Example, TrialData

MAX_TOKENS = 128
DIVERGENCE_FACTOR = 10.0  # a loss this many times the first step's loss, after warm-up, is a diverging run


@dataclass(frozen=True)
class TrainBudget:
    steps: int = 30
    batch_size: int = 8
    warmup_fraction: float = 0.1
    seed: int = 0
    device: str = "cpu"
    # Stop after this many steps, on the schedule of the full ``steps``: a learning-rate search rung is the
    # beginning of the very run it predicts (same warm-up, same decay), then evaluated.
    stop_at: int | None = None
    # CPU threads for this run (None: torch's default). The search runs its CPU jobs on one thread each:
    # torch's CPU kernels sum in an order that depends on the thread count, so only a fixed count gives the
    # same numbers for any number of workers; and N workers then use N cores without oversubscribing them.
    threads: int | None = None

    @property
    def steps_to_run(self) -> int:
        return min(self.stop_at, self.steps) if self.stop_at else self.steps


@dataclass
class CandidateResult:
    method: str
    peft_config: dict[str, Any]
    learning_rate: float
    status: str = "ok"  # "ok" | "diverged" | "failed"
    message: str = ""
    steps_done: int = 0
    train_losses: list[float] = field(default_factory=list)
    eval_loss: float | None = None
    eval_accuracy: float | None = None
    eval_token_accuracy: float | None = None  # generation: response tokens predicted exactly
    peak_memory_bytes: int | None = None
    memory_kind: str = ""  # "cuda max reserved" | "cpu peak RSS growth"
    wall_s: float = 0.0  # load + train + eval + save
    step_s: float | None = None  # median seconds per optimizer step, the first (warm-up) step left out
    tokens_per_s: float = 0.0
    trainable_params: int = 0
    checkpoint_bytes: int = 0
    adapter_dir: str | None = None
    # One figure per eval row, in eval order (1/0 correct for classification, mean target-token loss for
    # generation): comparing two candidates row by row is what makes the noise estimate paired.
    eval_per_row: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def config_dict(config: Any) -> dict[str, Any]:
    """A PEFT config as plain, stable JSON: sets become sorted lists (their order varies between processes)."""

    def plain(value: Any) -> Any:
        if isinstance(value, enum.Enum):
            return plain(value.value)
        if isinstance(value, (set, frozenset)):
            return sorted(plain(v) for v in value)
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {str(k): plain(v) for k, v in value.items()}
        if value is None or isinstance(value, (str, int, float, bool)):
            return value
        return str(value)  # enums (PeftType, TaskType) and the odd object

    return plain(config.to_dict())


def _rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        import os

        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def load_model(model_path: str, data: TrialData, device: str) -> tuple[Any, Any]:
    """The base model for the data's kind (a classifier head sized to its labels) and its tokenizer, if any."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification

    from advisor.torch_runtime import load_tokenizer_or_none

    try:
        config = AutoConfig.from_pretrained(model_path)
    except (OSError, ValueError) as exc:
        raise UserError(f"--model {model_path}: cannot read its config.json ({str(exc).splitlines()[0]})") from None
    kwargs: dict[str, Any] = {"dtype": torch.float32}
    if data.kind == "classification":
        model = AutoModelForSequenceClassification.from_pretrained(model_path, num_labels=len(data.labels), **kwargs)
    else:
        from advisor.model_kinds import is_causal_lm_config

        if not is_causal_lm_config(config.to_dict()):  # GPT2LMHeadModel too; transformers 5 configs lack is_decoder
            raise UserError(
                f"--model {model_path} is not a causal LM ({config.architectures}); text generation data "
                "needs one (or give the data a label column for classification)"
            )
        model = AutoModelForCausalLM.from_pretrained(model_path, **kwargs)
    tokenizer = load_tokenizer_or_none(model_path)  # None: a model built from a config; byte-level ids below
    if getattr(model.config, "pad_token_id", None) is None and tokenizer is not None:
        model.config.pad_token_id = tokenizer.pad_token_id
    return model.to(device), tokenizer


def _ids(tokenizer: Any, text: str, vocab: int) -> list[int]:
    if tokenizer is not None:
        return tokenizer(text, add_special_tokens=True, truncation=True, max_length=MAX_TOKENS)["input_ids"]
    return [2 + b % (vocab - 2) for b in text.encode("utf-8")][:MAX_TOKENS]  # 0/1 kept for pad/bos


def encode_batch(examples: tuple[Example, ...], tokenizer: Any, kind: str, vocab: int, pad_id: int) -> dict[str, Any]:
    """Padded tensors for a batch; for generation, prompt tokens are masked out of the loss."""
    import torch

    rows, label_rows = [], []
    for example in examples:
        if kind == "generation" and example.target:
            prompt = _ids(tokenizer, example.text, vocab)
            answer = _ids(tokenizer, " " + example.target, vocab)
            if tokenizer is not None and answer and answer[0] == getattr(tokenizer, "bos_token_id", None):
                answer = answer[1:]
            ids = (prompt + answer)[:MAX_TOKENS]
            labels = ([-100] * len(prompt) + answer)[:MAX_TOKENS]
        else:
            ids = _ids(tokenizer, example.text, vocab)
            labels = list(ids)
        rows.append(ids)
        label_rows.append(labels)
    width = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    lm_labels = torch.full((len(rows), width), -100, dtype=torch.long)
    for i, (ids, labels) in enumerate(zip(rows, label_rows, strict=True)):
        input_ids[i, : len(ids)] = torch.tensor(ids)
        mask[i, : len(ids)] = 1
        lm_labels[i, : len(labels)] = torch.tensor(labels)
    batch: dict[str, Any] = {"input_ids": input_ids, "attention_mask": mask}
    if kind == "classification":
        batch["labels"] = torch.tensor([e.label for e in examples], dtype=torch.long)
    else:
        batch["labels"] = lm_labels
    return batch


def _schedule(step: int, budget: TrainBudget) -> float:
    warmup = max(1, round(budget.steps * budget.warmup_fraction))
    if step < warmup:
        return (step + 1) / warmup
    return max(0.0, (budget.steps - step) / max(1, budget.steps - warmup))


def evaluate(
    model: Any, data: TrialData, tokenizer: Any, budget: TrainBudget, vocab: int, pad_id: int
) -> tuple[float, float | None, list[float], float | None]:
    """Mean eval loss (per example for classification, per target token for generation), accuracy, per-row
    figures, and for generation the share of response tokens predicted exactly (greedy, teacher-forced)."""
    import torch
    import torch.nn.functional as F

    model.eval()
    total_loss, weight = 0.0, 0
    correct_tokens = 0
    per_row: list[float] = []
    with torch.no_grad():
        for start in range(0, len(data.eval), budget.batch_size):
            chunk = data.eval[start : start + budget.batch_size]
            batch = {
                k: v.to(budget.device) for k, v in encode_batch(chunk, tokenizer, data.kind, vocab, pad_id).items()
            }
            logits = model(**batch).logits.float()
            labels = batch["labels"]
            if data.kind == "classification":
                losses = F.cross_entropy(logits, labels, reduction="none")
                total_loss += float(losses.sum())
                weight += len(chunk)
                per_row += [float(x) for x in (logits.argmax(-1) == labels).float()]
            else:
                shifted, targets = logits[:, :-1], labels[:, 1:]
                token_loss = F.cross_entropy(shifted.transpose(1, 2), targets, ignore_index=-100, reduction="none")
                counts = (targets != -100).sum(1)
                total_loss += float(token_loss.sum())
                weight += int(counts.sum())
                per_row += [float(x) for x in token_loss.sum(1) / counts.clamp(min=1)]
                correct_tokens += int(((shifted.argmax(-1) == targets) & (targets != -100)).sum())
    model.train()
    accuracy = sum(per_row) / len(per_row) if data.kind == "classification" and per_row else None
    token_accuracy = correct_tokens / weight if data.kind == "generation" and weight else None
    return total_loss / max(weight, 1), accuracy, per_row, token_accuracy


def train_candidate(
    model_path: str,
    data: TrialData,
    method: str,
    peft_config: Any,
    learning_rate: float,
    budget: TrainBudget,
    out_dir: Path | None = None,
    on_step: Callable[[int, float], None] | None = None,
) -> CandidateResult:
    """Train ``peft_config`` (a peft ``PeftConfig``) on ``data`` for ``budget``; never raises for a bad run.

    ``on_step(step, loss)`` is called after every optimizer step (progress bars). Batches are
    tokenised before the clock of their step starts, so step times measure the model, not the tokenizer.
    """
    import peft
    import torch

    from advisor.torch_runtime import quiet_hf

    result = CandidateResult(method, config_dict(peft_config), learning_rate)
    cuda = budget.device.startswith("cuda")
    if budget.threads and not cuda:
        torch.set_num_threads(budget.threads)
    rss_before = _rss_bytes()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    torch.manual_seed(budget.seed)
    with quiet_hf():  # "classifier newly initialised" is the point of a trial, not news
        model, tokenizer = load_model(model_path, data, budget.device)
    torch.manual_seed(budget.seed)  # the adapter's init draws the same numbers for every candidate
    try:
        with quiet_hf():
            model = peft.get_peft_model(model, peft_config)
    except Exception as exc:  # a config this model cannot take (e.g. layer types the method does not support)
        result.status, result.message = "failed", f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
        return result
    trainable = [p for p in model.parameters() if p.requires_grad]
    result.trainable_params = sum(p.numel() for p in trainable)
    try:
        _train_and_evaluate(model, tokenizer, trainable, data, learning_rate, budget, result, out_dir, on_step)
    except Exception as exc:  # a forward pass this model/method pair cannot do, out of memory, ...
        result.status = "failed"
        result.message = f"{type(exc).__name__} at step {result.steps_done + 1}: {str(exc).splitlines()[0][:300]}"
        result.eval_loss = result.eval_accuracy = None
    result.wall_s = time.perf_counter() - start
    if cuda:
        result.peak_memory_bytes, result.memory_kind = torch.cuda.max_memory_reserved(), "cuda max reserved"
    else:
        result.peak_memory_bytes = max(0, _peak_rss_bytes() - rss_before)
        result.memory_kind = "cpu peak RSS growth"
    return result


def _train_and_evaluate(
    model: Any,
    tokenizer: Any,
    trainable: list[Any],
    data: TrialData,
    learning_rate: float,
    budget: TrainBudget,
    result: CandidateResult,
    out_dir: Path | None,
    on_step: Callable[[int, float], None] | None,
) -> None:
    """The loop itself; fills ``result`` as it goes, so a failure part-way still reports the steps done."""
    import torch

    cuda = budget.device.startswith("cuda")
    vocab = int(model.config.vocab_size)
    pad_id = int(getattr(model.config, "pad_token_id", None) or 0)
    optimizer = torch.optim.AdamW(trainable, lr=learning_rate)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: _schedule(step, budget))
    model.train()
    tokens = 0
    first_loss = None
    rows = data.train
    encoded: dict[int, dict[str, Any]] = {}  # by first row: the data cycles, so batches repeat
    step_times: list[float] = []
    for step in range(budget.steps_to_run):
        first_row = (step * budget.batch_size) % len(rows)
        if first_row not in encoded:
            chunk = tuple(rows[(first_row + i) % len(rows)] for i in range(budget.batch_size))
            encoded[first_row] = {
                k: v.to(budget.device) for k, v in encode_batch(chunk, tokenizer, data.kind, vocab, pad_id).items()
            }
        batch = encoded[first_row]
        step_start = time.perf_counter()
        loss = model(**batch).loss
        value = float(loss.detach())
        result.train_losses.append(round(value, 6))
        first_loss = value if first_loss is None else first_loss
        warm = step >= max(1, round(budget.steps * budget.warmup_fraction))
        if not math.isfinite(value) or (warm and value > DIVERGENCE_FACTOR * first_loss):
            result.status = "diverged"
            result.message = f"loss {value:.4g} at step {step + 1} (first step {first_loss:.4g}); stopped"
            break
        loss.backward()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        if cuda:
            torch.cuda.synchronize()
        step_times.append(time.perf_counter() - step_start)
        tokens += int(batch["attention_mask"].sum())
        result.steps_done = step + 1
        if on_step is not None:
            on_step(step + 1, value)
    loop_s = sum(step_times)
    result.tokens_per_s = tokens / loop_s if loop_s > 0 else 0.0
    timed = sorted(step_times[1:] or step_times)
    result.step_s = timed[len(timed) // 2] if timed else None
    if result.status == "ok":
        result.eval_loss, result.eval_accuracy, result.eval_per_row, result.eval_token_accuracy = evaluate(
            model, data, tokenizer, budget, vocab, pad_id
        )
        if out_dir is not None:
            model.save_pretrained(out_dir)
            result.adapter_dir = str(out_dir)
            result.checkpoint_bytes = sum(p.stat().st_size for p in Path(out_dir).rglob("*") if p.is_file())
