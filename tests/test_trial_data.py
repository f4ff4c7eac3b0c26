"""The quick trial's data layer: formats, recognised shapes, a deterministic split, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from advisor.errors import UserError
from advisor.trial.data import SAMPLE_DATASET, load_trial_data


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_shipped_sample_is_balanced_classification() -> None:
    data = load_trial_data(str(SAMPLE_DATASET))
    assert data.kind == "classification" and data.labels == ("negative", "positive")
    assert len(data.train) == 192 and len(data.eval) == 48
    labels = [e.label for e in data.eval]
    assert 0.3 < sum(labels) / len(labels) < 0.7


def test_same_seed_same_split_other_seed_other_split() -> None:
    a, b = load_trial_data(str(SAMPLE_DATASET), seed=3), load_trial_data(str(SAMPLE_DATASET), seed=3)
    c = load_trial_data(str(SAMPLE_DATASET), seed=4)
    assert a.train == b.train and a.eval == b.eval
    assert a.eval != c.eval
    assert not {e.text for e in a.train} & {e.text for e in a.eval}


def test_formats_agree(tmp_path: Path) -> None:
    import csv

    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [json.loads(line) for line in SAMPLE_DATASET.read_text().splitlines()][:40]
    write_jsonl(tmp_path / "d.jsonl", rows)
    (tmp_path / "d.json").write_text(json.dumps({"train": rows}))
    with open(tmp_path / "d.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["text", "label"])
        writer.writeheader()
        writer.writerows(rows)
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "d.parquet")
    loaded = [load_trial_data(str(tmp_path / f"d.{ext}")) for ext in ("jsonl", "json", "csv", "parquet")]
    assert all(d.train == loaded[0].train and d.eval == loaded[0].eval for d in loaded)


def test_generation_shapes(tmp_path: Path) -> None:
    pairs = write_jsonl(tmp_path / "p.jsonl", [{"instruction": f"q{i}", "output": f"a{i}"} for i in range(20)])
    data = load_trial_data(str(pairs))
    assert data.kind == "generation" and data.columns == ("instruction", "output")
    assert all(e.target.startswith("a") for e in data.train)
    plain = write_jsonl(tmp_path / "t.jsonl", [{"text": f"line {i}"} for i in range(20)])
    assert load_trial_data(str(plain)).columns == ("text",)


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([], "has no rows"),
        ([{"body": "x"}] * 20, "no columns to train on"),
        ([{"text": "x", "label": "a"}] * 20, "single value"),
        ([{"text": f"x{i}", "label": "a" if i % 2 else ""} for i in range(20)], "row 1 has no 'label'"),
        ([{"text": f"x{i}", "label": str(i % 2)} for i in range(6)], "a trial needs at least"),
        ([{"text": "", "label": str(i % 2)} for i in range(20)], "empty 'text'"),
    ],
)
def test_bad_data_says_what_was_expected(tmp_path: Path, rows: list[dict], message: str) -> None:
    path = write_jsonl(tmp_path / "bad.jsonl", rows)
    with pytest.raises(UserError, match=message):
        load_trial_data(str(path))


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no such file"):
        load_trial_data(str(tmp_path / "missing.jsonl"))
    (tmp_path / "x.txt").write_text("hello")
    with pytest.raises(UserError, match="unsupported file type"):
        load_trial_data(str(tmp_path / "x.txt"))
    (tmp_path / "broken.jsonl").write_text('{"text": "a"}\n{oops\n')
    with pytest.raises(UserError, match="line 2 is not JSON"):
        load_trial_data(str(tmp_path / "broken.jsonl"))
    with pytest.raises(UserError, match="--label-column 'nope'"):
        load_trial_data(str(SAMPLE_DATASET), label_column="nope")
    with pytest.raises(UserError, match="eval-fraction"):
        load_trial_data(str(SAMPLE_DATASET), eval_fraction=1.5)


def _jsonl(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


def test_conversations_learn_the_last_assistant_turn(tmp_path: Path) -> None:
    """TRL's / OpenAI's ``messages`` and ShareGPT's ``conversations``: the turns before the last assistant turn are
    the prompt, that turn is learned; content given as parts keeps its text."""
    messages = [
        {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": f"{i} plus {i}?"},
                      {"role": "assistant", "content": [{"type": "text", "text": f"It is {2 * i}."}]}]}
        for i in range(20)
    ]  # fmt: skip
    data = load_trial_data(_jsonl(tmp_path / "messages.jsonl", messages))
    assert data.kind == "generation" and data.columns == ("messages",)
    first = next(e for e in data.train + data.eval if e.target == "It is 0.")
    assert first.text == "system: Be brief.\nuser: 0 plus 0?\nassistant:"
    sharegpt = [{"conversations": [{"from": "human", "value": f"Hi {i}"}, {"from": "gpt", "value": f"Hello {i}"},
                                   {"from": "human", "value": "Bye"}]} for i in range(20)]  # fmt: skip
    data = load_trial_data(_jsonl(tmp_path / "sharegpt.jsonl", sharegpt))
    row = next(e for e in data.train + data.eval if e.target == "Hello 3")
    assert row.text == "human: Hi 3\nassistant:"  # the turn after the last answer has nothing to learn


@pytest.mark.parametrize(
    ("turns", "message"),
    [
        ([{"role": "user", "content": "Hi"}], "has no assistant turn to learn from"),
        ("Hi there", "must be a list of {role, content} turns"),
    ],
)
def test_a_conversation_without_an_answer_is_refused_by_row(turns: object, message: str, tmp_path: Path) -> None:
    rows = [{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hey"}]}] * 19
    with pytest.raises(UserError, match=f"row 20: .*{message.replace('{', '.').replace('}', '.')}"):
        load_trial_data(_jsonl(tmp_path / "bad.jsonl", [*rows, {"messages": turns}]))
