"""The user's own data for a quick trial: read, recognised, validated, split the same way every time.

A trial is only fair if every candidate sees the same rows in the same order, so the split is a
seeded permutation fixed by ``seed`` alone (not by file order or hashing). Two shapes are
understood, from the column names:

- classification: a text column plus a label column (``text``/``sentence`` + ``label``);
- text generation: a ``text`` column, prompt/response pairs (``prompt``/``response``,
  ``instruction``/``output``, ``question``/``answer``, ``input``/``output``), or conversations (``messages``
  of {role, content} as TRL and OpenAI write them, ShareGPT's ``conversations`` of {from, value}): the last
  assistant turn is learned, the turns before it are the prompt.

Files: ``.jsonl``, ``.json`` (a list of objects), ``.csv``, ``.parquet``; anything else that looks
like ``OWNER/NAME`` is a Hub dataset, read from its parquet files. Every problem is a
:class:`~advisor.errors.UserError` that says what was expected.
"""

from __future__ import annotations

import csv
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from advisor.errors import UserError
from advisor.paths import PACKAGE_DATA

SAMPLE_DATASET = PACKAGE_DATA / "trial_sample_sentiment.jsonl"
MIN_TRAIN_ROWS = 8
MIN_EVAL_ROWS = 4
TEXT_COLUMNS = ("text", "sentence", "content", "review")
LABEL_COLUMNS = ("label", "labels", "category", "class")
PAIR_COLUMNS = (("prompt", "response"), ("instruction", "output"), ("question", "answer"), ("input", "output"))
# Conversations: TRL's / OpenAI's ``messages`` ({role, content}) and ShareGPT's ``conversations`` ({from, value}).
CHAT_COLUMNS = ("messages", "conversations")
ASSISTANT_ROLES = ("assistant", "gpt", "model", "bot")


@dataclass(frozen=True)
class Example:
    text: str  # the model input (classification) or the prompt part (generation)
    target: str = ""  # generation: the response to learn ("" when the whole text is learned)
    label: int | None = None  # classification: index into TrialData.labels


@dataclass(frozen=True)
class TrialData:
    source: str
    kind: str  # "classification" | "generation"
    columns: tuple[str, ...]  # the columns used, for the report
    labels: tuple[str, ...]  # classification label names, sorted; () for generation
    train: tuple[Example, ...]
    eval: tuple[Example, ...]
    seed: int
    found_columns: tuple[str, ...] = ()  # every column of the file, for messages
    label_like: tuple[str, ...] = ()  # unused columns with few distinct values: what --label-column could name

    def describe(self) -> str:
        what = f"{len(self.labels)}-class classification" if self.kind == "classification" else "text generation"
        return (
            f"{self.source}: {what} from {', '.join(self.columns)}; {len(self.train)} train / {len(self.eval)} eval "
            f"rows (seed {self.seed})"
        )


def read_rows(location: str) -> tuple[list[dict[str, Any]], str]:
    """Rows as dicts from a local file or a Hub dataset id, and how to name the source."""
    path = Path(location).expanduser()
    if path.is_file():
        return _read_file(path), str(path)
    if path.exists():
        raise UserError(f"--data {location} is a folder; pass a .jsonl, .json, .csv or .parquet file")
    if location.count("/") == 1 and not location.endswith((".jsonl", ".json", ".csv", ".parquet")):
        return _read_hub_dataset(location), location
    raise UserError(f"--data {location}: no such file; pass a .jsonl, .json, .csv or .parquet file or a Hub dataset id")


def _read_file(path: Path) -> list[dict[str, Any]]:
    suffix = path.suffix.lower()
    try:
        if suffix == ".jsonl":
            rows = []
            with open(path, encoding="utf-8") as handle:
                for number, line in enumerate(handle, 1):
                    if line.strip():
                        try:
                            rows.append(json.loads(line))
                        except ValueError as exc:
                            raise UserError(f"{path} line {number} is not JSON ({exc.args[0]})") from None
            return _objects(rows, path)
        if suffix == ".json":
            data = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(data, dict) and len(data) == 1 and isinstance(next(iter(data.values())), list):
                data = next(iter(data.values()))  # {"train": [...]}
            if not isinstance(data, list):
                raise UserError(f"{path} must hold a JSON list of objects (one per row)")
            return _objects(data, path)
        if suffix == ".csv":
            with open(path, encoding="utf-8", newline="") as handle:
                return list(csv.DictReader(handle))
        if suffix == ".parquet":
            import pyarrow.parquet as pq

            return pq.read_table(path).to_pylist()
    except UserError:
        raise
    except (ValueError, OSError, UnicodeDecodeError) as exc:
        raise UserError(
            f"cannot read {path} ({str(exc).splitlines()[0]}); check that it is valid {suffix[1:]}"
        ) from None
    except ImportError as exc:
        raise UserError(f"reading {suffix} needs pyarrow: pip install 'peft-advisor[scan]' ({exc})") from None
    raise UserError(f"--data {path}: unsupported file type {suffix or '(none)'}; use .jsonl, .json, .csv or .parquet")


def _objects(rows: list[Any], path: Path) -> list[dict[str, Any]]:
    bad = next((i for i, row in enumerate(rows, 1) if not isinstance(row, dict)), None)
    if bad is not None:
        raise UserError(f"{path} row {bad} is not an object; expected one JSON object per row")
    return rows


def _read_hub_dataset(repo_id: str) -> list[dict[str, Any]]:
    from hub_scan.sources.card_dump import resolve_shards

    shards = resolve_shards(f"hf://datasets/{repo_id}")
    import pyarrow.parquet as pq

    rows: list[dict[str, Any]] = []
    for name in shards.files:
        if "/test" in name or "validation" in name:
            continue  # the user's training split; our own split makes the eval rows
        rows += pq.read_table(shards.local_path(name)).to_pylist()
    return rows


def _pick(columns: list[str], wanted: tuple[str, ...], explicit: str | None, what: str) -> str | None:
    if explicit:
        if explicit not in columns:
            raise UserError(f"--{what}-column {explicit!r} is not a column; the columns are: {', '.join(columns)}")
        return explicit
    lowered = {c.lower(): c for c in columns}
    return next((lowered[w] for w in wanted if w in lowered), None)


def _clean(value: Any) -> str:
    return "" if value is None else str(value).strip()


def recognise(
    rows: list[dict[str, Any]], source: str, *, text_column: str | None = None, label_column: str | None = None
) -> tuple[str, tuple[str, ...], list[Example], tuple[str, ...]]:
    """The data's kind, the columns used, one Example per row, and the label names."""
    if not rows:
        raise UserError(f"{source} has no rows")
    columns = list(rows[0].keys())
    text = _pick(columns, TEXT_COLUMNS, text_column, "text")
    label = _pick(columns, LABEL_COLUMNS, label_column, "label")
    if text and label:
        names = [_clean(row.get(label)) for row in rows]
        missing = next((i for i, n in enumerate(names, 1) if not n), None)
        if missing is not None:
            raise UserError(f"{source} row {missing} has no {label!r}; every classification row needs a label")
        labels = tuple(sorted(set(names)))
        if len(labels) < 2:
            raise UserError(
                f"{source}: the {label!r} column has a single value ({labels[0]!r}); a classifier needs two"
            )
        index = {n: i for i, n in enumerate(labels)}
        examples = [Example(_clean(row.get(text)), label=index[n]) for row, n in zip(rows, names, strict=True)]
        return "classification", (text, label), examples, labels
    chat = next((c for c in CHAT_COLUMNS if c in columns), None)
    if chat and not text_column:
        return "generation", (chat,), [_conversation(row.get(chat), source, i) for i, row in enumerate(rows, 1)], ()
    pair = next(((p, r) for p, r in PAIR_COLUMNS if p in columns and r in columns), None)
    if pair and not text_column:
        examples = [Example(_clean(row.get(pair[0])), target=_clean(row.get(pair[1]))) for row in rows]
        return "generation", pair, examples, ()
    if text:
        return "generation", (text,), [Example(_clean(row.get(text))) for row in rows], ()
    raise UserError(
        f"{source}: no columns to train on. Expected 'text' (+ 'label' for classification), prompt/response "
        f"pairs ({', '.join('/'.join(p) for p in PAIR_COLUMNS)}) or a conversation ({' or '.join(CHAT_COLUMNS)}); "
        f"found: {', '.join(columns) or 'none'}"
    )


def _conversation(turns: Any, source: str, row: int) -> Example:
    """A conversation as prompt + response: every turn before the last assistant turn, one ``role: content`` line
    each (the same plain rendering for every candidate; no model's chat template), and that turn to learn."""
    if not isinstance(turns, list) or not all(isinstance(t, dict) for t in turns):
        raise UserError(f"{source} row {row}: a conversation must be a list of {{role, content}} turns")
    parsed = [
        (_clean(t.get("role", t.get("from"))).lower(), _turn_text(t.get("content", t.get("value")))) for t in turns
    ]
    last = max((i for i, (role, _) in enumerate(parsed) if role in ASSISTANT_ROLES), default=None)
    if last is None:
        raise UserError(f"{source} row {row}: the conversation has no assistant turn to learn from")
    prompt = "".join(f"{role}: {text}\n" for role, text in parsed[:last]) + "assistant:"
    return Example(prompt, target=parsed[last][1])


def _turn_text(content: Any) -> str:
    """A turn's text: a string, or the text parts of a list of content parts (images and audio are left out)."""
    if isinstance(content, list):
        return " ".join(_clean(part.get("text")) for part in content if isinstance(part, dict) and part.get("text"))
    return _clean(content)


def split(examples: list[Example], eval_fraction: float, seed: int) -> tuple[tuple[Example, ...], tuple[Example, ...]]:
    """A seeded permutation, then the first ``eval_fraction`` for eval: same seed, same split, any machine."""
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    n_eval = max(MIN_EVAL_ROWS, round(len(examples) * eval_fraction))
    eval_rows = tuple(examples[i] for i in sorted(order[:n_eval]))
    train_rows = tuple(examples[i] for i in order[n_eval:])  # shuffled once; every candidate reads this order
    return train_rows, eval_rows


def load_trial_data(
    location: str,
    *,
    eval_fraction: float = 0.2,
    seed: int = 0,
    text_column: str | None = None,
    label_column: str | None = None,
) -> TrialData:
    if not 0 < eval_fraction < 1:
        raise UserError(f"--eval-fraction must be between 0 and 1 (got {eval_fraction})")
    rows, source = read_rows(location)
    kind, columns, examples, labels = recognise(rows, source, text_column=text_column, label_column=label_column)
    empty = next((i for i, e in enumerate(examples, 1) if not e.text and not e.target), None)
    if empty is not None:
        raise UserError(f"{source} row {empty} has an empty {columns[0]!r}")
    needed = MIN_TRAIN_ROWS + max(MIN_EVAL_ROWS, round(len(examples) * eval_fraction))
    if len(examples) < needed:
        raise UserError(
            f"{source} has {len(examples)} rows; a trial needs at least {needed} "
            f"({MIN_TRAIN_ROWS} to train, {MIN_EVAL_ROWS}+ to evaluate)"
        )
    train, evaluation = split(examples, eval_fraction, seed)
    found = tuple(rows[0].keys())
    return TrialData(source, kind, columns, labels, train, evaluation, seed, found, _label_like(rows, found, columns))


def _label_like(rows: list[dict[str, Any]], found: tuple[str, ...], used: tuple[str, ...]) -> tuple[str, ...]:
    """Unused columns that look like class labels: 2 to 50 distinct values, each seen twice on average."""
    limit = min(50, len(rows) // 2)
    picks = []
    for column in found:
        if column in used:
            continue
        values = {_clean(row.get(column)) for row in rows}
        if 2 <= len(values) <= limit and "" not in values:
            picks.append(column)
    return tuple(picks)


def check_fits_model(data: TrialData, config: dict[str, Any], model: str) -> None:
    """Refuse, before any training, data whose shape the model cannot learn (one line: found, expected, what to do).

    Generation data needs a causal LM; classification needs a model transformers can put a
    classification head on. Without this, every candidate would fail the same way minutes later.
    """
    from advisor.model_kinds import can_classify, describe_architecture, is_causal_lm_config

    found = ", ".join(data.found_columns) or "none"
    arch = describe_architecture(config)
    if data.kind == "generation" and not is_causal_lm_config(config):
        hint = (
            f"name the label column: --label-column {data.label_like[0]}"
            if data.label_like
            else f"add a label column ({'/'.join(LABEL_COLUMNS)})"
        )
        raise UserError(
            f"{data.source} was read as text generation (columns found: {found}; used: {', '.join(data.columns)}), "
            f"which needs a causal LM, but --model {model} is {arch}. For classification, {hint}; for generation, "
            "use a causal LM"
        )
    if data.kind == "classification" and not can_classify(config):
        raise UserError(
            f"{data.source} is classification data (text {data.columns[0]!r}, label {data.columns[1]!r}), but "
            f"transformers has no classification head for --model {model} ({arch}); use an encoder such as BERT "
            "or a causal LM, or give generation data (text, or prompt/response columns)"
        )
