"""Rank trained candidates and say honestly whether the winner really won.

The score is eval accuracy for classification (eval loss breaks ties) and eval loss for text
generation. A short trial on a few hundred rows is noisy, so every gap to the winner comes with
a paired standard error: both candidates were scored on the *same* eval rows, so the SE of the
mean row-by-row difference is the right yardstick (it cancels the rows' own difficulty). A gap
within 1.96 SE is reported as "within noise": the trial cannot tell those two apart.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from advisor.recommend import Z_95, pareto_flags
from advisor.trial.train import CandidateResult


@dataclass(frozen=True)
class Entry:
    """One candidate as trained: where its config came from, and what it measured."""

    name: str
    method: str  # registry name
    display_name: str
    run_id: str
    why: str
    learning_rate: float
    result: CandidateResult
    is_baseline: bool
    lora_convertible: bool
    resumed: bool = False
    predicted_memory_bytes: float | None = None  # the memory model's figure for the trial's own setup
    lr_search: dict | None = None  # what the learning-rate search tried and chose (None: --lr-search off)


@dataclass(frozen=True)
class Standing:
    entry: Entry
    rank: int | None  # None for diverged / failed runs
    score: float | None
    gap: float | None  # winner's score minus this one's, oriented so that ≥ 0
    gap_se: float | None
    within_noise: bool | None
    pareto: bool


@dataclass(frozen=True)
class Leaderboard:
    metric: str  # "eval accuracy" | "eval loss"
    higher_is_better: bool
    standings: tuple[Standing, ...]
    noise_rule: str
    min_detectable: float | None = None  # the smallest gap this eval set can tell from noise (95%)

    @property
    def winner(self) -> Standing | None:
        """The best score measured (first place), whether or not it is detectably better."""
        return self.standings[0] if self.standings and self.standings[0].rank == 1 else None

    @property
    def ranked(self) -> list[Standing]:
        return [s for s in self.standings if s.rank is not None]

    @property
    def undecided(self) -> bool:
        """Two or more candidates finished and every one is within noise of the first: no detectable difference."""
        ranked = self.ranked
        return len(ranked) > 1 and all(s.within_noise for s in ranked)

    @property
    def cheapest(self) -> Standing | None:
        """Among the finished, the lightest: peak memory, then trainable parameters.

        Peaks within 5% (and 16 MiB) of the lowest count as equal: on a CPU they are RSS growth, where a few
        MiB are noise, and the trainable parameters then decide.
        """
        ranked = self.ranked
        if not ranked:
            return None
        lowest = min(s.entry.result.peak_memory_bytes or 0 for s in ranked)
        light = [s for s in ranked if (s.entry.result.peak_memory_bytes or 0) <= lowest * 1.05 + 16 * 2**20]
        return min(light, key=lambda s: (s.entry.result.trainable_params, s.entry.result.peak_memory_bytes or 0))

    @property
    def pick(self) -> Standing | None:
        """What to take forward: the winner, or the cheapest when the data cannot tell the candidates apart."""
        return self.cheapest if self.undecided else self.winner

    @property
    def baseline(self) -> Standing | None:
        return next((s for s in self.standings if s.entry.is_baseline), None)


def _score(result: CandidateResult, classification: bool) -> float | None:
    return result.eval_accuracy if classification else result.eval_loss


def paired_se(a: list[float], b: list[float]) -> float | None:
    """Standard error of the mean of a[i] - b[i]; None when the rows do not line up."""
    if len(a) != len(b) or len(a) < 2:
        return None
    diffs = [x - y for x, y in zip(a, b, strict=True)]
    mean = sum(diffs) / len(diffs)
    variance = sum((d - mean) ** 2 for d in diffs) / (len(diffs) - 1)
    return math.sqrt(variance / len(diffs))


def rank_entries(entries: list[Entry], classification: bool, *, eval_rows: int | None = None) -> Leaderboard:
    """Finished candidates by score with paired-noise gaps; ``eval_rows`` names the eval set in the rule text."""
    metric = "eval accuracy" if classification else "eval loss"
    higher = classification
    ok = [e for e in entries if e.result.status == "ok" and _score(e.result, classification) is not None]
    bad = [e for e in entries if e not in ok]

    def key(e: Entry) -> tuple[float, float]:
        score = _score(e.result, classification)
        assert score is not None
        loss = e.result.eval_loss if e.result.eval_loss is not None else math.inf
        return (-score, loss) if higher else (score, 0.0)

    ok.sort(key=key)
    oriented = [(_score(e.result, classification) or 0.0) * (1 if higher else -1) for e in ok]
    memory = [float(e.result.peak_memory_bytes or 0) for e in ok]
    front = pareto_flags(list(zip(oriented, memory, strict=True)))
    standings: list[Standing] = []
    best = ok[0] if ok else None
    for rank, (entry, on_front, value) in enumerate(zip(ok, front, oriented, strict=True), start=1):
        score = _score(entry.result, classification)
        gap = oriented[0] - value
        se = paired_se(best.result.eval_per_row, entry.result.eval_per_row) if best is not None else None
        within = True if entry is best else (None if se is None else gap <= Z_95 * se + 1e-12)
        standings.append(Standing(entry, rank, score, gap, se, within, on_front))
    standings += [Standing(e, None, None, None, None, None, False) for e in bad]
    rows = eval_rows if eval_rows is not None else (len(best.result.eval_per_row) if best is not None else 0)
    what = "1/0 correct" if classification else "mean target-token loss"
    rule = (
        f"within noise: gap to the winner ≤ {Z_95}·SE, SE of the mean row-by-row difference ({what}) "
        f"over the same {rows} eval rows (paired, 95%)"
    )
    return Leaderboard(metric, higher, tuple(standings), rule, _min_detectable(standings, classification, rows))


def _min_detectable(standings: list[Standing], classification: bool, rows: int) -> float | None:
    """``1.96 × SE`` of a paired gap, from the SEs this eval set gave (their median); for accuracy never below
    one row's worth (1/n: a gap of a single eval row cannot be told from noise)."""
    ses = sorted(s.gap_se for s in standings if s.rank not in (None, 1) and s.gap_se is not None)
    floor = 1 / rows if classification and rows else 0.0
    if not ses:
        return Z_95 * floor if floor else None
    return Z_95 * max(ses[len(ses) // 2], floor)


def next_step(board: Leaderboard, model: str, kind: str) -> tuple[str, str | None]:
    """What to do with the winner: a sentence, and the exact command when there is one."""
    winner = board.pick
    if winner is None:
        return "No candidate finished; see the messages above (lower --lr-scale if runs diverged).", None
    entry = winner.entry
    if board.undecided:
        lead = f"No detectable difference; {entry.display_name} is the cheapest"
    else:
        lead = f"{entry.display_name} won"
    adapter = entry.result.adapter_dir or "?"
    consumer = "vllm" if kind == "generation" else "peft"
    if entry.method == "lora":
        return (
            f"{lead}, and it is already a LoRA adapter; check that {consumer} loads it:",
            f"peft-advise check-lora {_quote(adapter)} --for {consumer} --base-model {_quote(model)}",
        )
    if entry.lora_convertible:
        folder = Path(adapter)
        target = str(folder.parent.parent / f"{folder.name}-as-lora")  # OUT/<name>-as-lora, beside adapters/
        return (
            f"{lead}; export it to a standard LoRA adapter (fidelity is measured) to serve it:",
            f"peft-advise convert {_quote(adapter)} {_quote(target)} --base-model {_quote(model)} --for {consumer}",
        )
    return (
        f"{lead}, but it has no LoRA form (see `peft-advise convert --list`): serve it with PEFT "
        f"(PeftModel.from_pretrained(base, {adapter!r})), or pick the best convertible runner-up.",
        None,
    )


def _quote(text: str) -> str:
    import shlex

    return shlex.quote(text)
