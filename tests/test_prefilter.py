"""The card-dump prefilter is exact, and the dump reader survives the dump's real column types and faults.

Exact: a card the vectorised filter drops is one the classifier calls ``none``, on the real labelled cards,
on ordinary Hub-like cards and on cards written to slip past a careless filter (Unicode spaces inside a
name, separators inside a tag, names only in the tags column); and a scan counts the same with and without
the filter.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from shared_data import SHARED_CARDS, needs_shared_cards
from typer.testing import CliRunner

from advisor.cli import app
from advisor.errors import UserError
from hub_scan.classify import classify_card, classify_without_names
from hub_scan.prefilter import candidate_kinds, candidate_mask
from hub_scan.sources.card_dump import MAX_CARD_CHARS, scan_card_dump

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from card_mix import ordinary_cards

runner = CliRunner()

SLIPPERY = [
    "Trained with prefix\u00a0tuning on our data.",  # a no-break space inside a two-word name
    "---\ntags:\n- q_lo-ra\n---\nOur model.",  # a tag whose separators the classifier drops
    "---\ntags: [ 'IA3' ]\n---\nOur model.",
    "---\nlibrary_name: peft\n---\nAn adapter for chat.",  # an adapter card naming no method: unknown
    "---\nbase_model_relation: adapter\n---\nx",
    "We fine-tuned from Mistral for three epochs.",  # full fine-tuning signs
    "Epoch ٣ results",  # a non-ASCII digit after "epoch"
    "This is a fine-tuned version of gpt2.",
    "An OFT adapter.",
    "Uses LoraConfig(r=8).",
    "plain text about roads and lilies, nothing else",
]


def cards_for_the_property() -> list[str]:
    cards = [*SLIPPERY, *ordinary_cards(300, seed=1)]
    if SHARED_CARDS.is_dir():
        cards += [p.read_text(encoding="utf-8") for p in sorted(SHARED_CARDS.glob("*/README.md"))]
    return cards


def test_every_card_the_filter_drops_is_none_to_the_classifier() -> None:
    cards = cards_for_the_property()
    mask = candidate_mask(pa.array(cards)).to_pylist()
    dropped = [card for card, keep in zip(cards, mask, strict=True) if not keep]
    for card in dropped:
        verdict = classify_card(card)
        assert verdict.techniques == () and verdict.status == "none", card[:200]
    assert all(mask[: len(SLIPPERY) - 1])  # every slippery card is kept for the classifier
    ordinary = candidate_mask(pa.array(ordinary_cards(300, seed=1))).to_pylist()
    assert 1 - sum(ordinary) / len(ordinary) > 0.3  # and the filter does drop ordinary cards


def test_cards_that_only_show_full_fine_tuning_take_the_short_path_to_the_same_verdict() -> None:
    cards = cards_for_the_property()
    peft, full = (a.to_pylist() for a in candidate_kinds(pa.array(cards)))
    short = [card for card, only_full in zip(cards, full, strict=True) if only_full]
    assert len(short) > 20 and not any(p and f for p, f in zip(peft, full, strict=True))
    for card in short:
        assert classify_without_names(card) == classify_card(card), card[:200]


def test_the_tags_and_library_columns_keep_a_row() -> None:
    cards = pa.array(["nothing", "nothing", "nothing", "nothing"])
    tags = pa.array([["Q-LoRA"], ["base_model:adapter:x/y"], ["generated_from_trainer"], ["transformers"]])
    library = pa.array([None, None, None, "PEFT"])
    assert candidate_mask(cards, tags, library).to_pylist() == [True, True, True, True]
    assert candidate_mask(cards, pa.array([[], None, ["gguf"], ["text"]])).to_pylist() == [False] * 4


def _dump(path: Path, cards: list[str | None], **columns: object) -> Path:
    n = len(cards)
    table = {
        "modelId": [f"user/m{i}" for i in range(n)],
        "card": cards,
        "tags": [["transformers"] if i % 3 else ["lora"] for i in range(n)],
        "library_name": ["peft" if i % 7 == 0 else None for i in range(n)],
        "createdAt": [dt.datetime(2024, 1 + i % 12, 1, tzinfo=dt.timezone.utc) for i in range(n)],
        **columns,
    }
    pq.write_table(pa.table(table), path, row_group_size=64)
    return path


def _mixed_cards() -> list[str | None]:
    cards: list[str | None] = list(ordinary_cards(240, seed=2))
    if SHARED_CARDS.is_dir():
        cards += [p.read_text(encoding="utf-8") for p in sorted(SHARED_CARDS.glob("*/README.md"))]
    return [*cards, *SLIPPERY, None, ""]


def test_a_scan_counts_the_same_with_and_without_the_prefilter(tmp_path: Path) -> None:
    path = _dump(tmp_path / "cards.parquet", _mixed_cards())
    fast = scan_card_dump(str(path), workers=1)
    slow = scan_card_dump(str(path), workers=1, prefilter=False)
    assert fast.stats.to_dict() == slow.stats.to_dict()
    assert fast.stats.cards == len(_mixed_cards())
    note = next(n for n in fast.notes if n.startswith("prefilter"))
    assert "were counted as none without being classified" in note


@needs_shared_cards
def test_the_dumps_column_types_as_published(tmp_path: Path) -> None:
    cards = _mixed_cards()
    n = len(cards)
    reference = scan_card_dump(str(_dump(tmp_path / "a.parquet", cards)), workers=1).stats.to_dict()
    as_strings = _dump(
        tmp_path / "b.parquet", cards, createdAt=[f"2024-{1 + i % 12:02d}-01T00:00:00.000Z" for i in range(n)]
    )
    assert scan_card_dump(str(as_strings), workers=1).stats.to_dict() == reference  # dates as strings
    # missing optional columns: only the id and the card are needed
    pq.write_table(pa.table({"modelId": [f"m{i}" for i in range(n)], "card": cards}), tmp_path / "c.parquet")
    assert scan_card_dump(str(tmp_path / "c.parquet"), workers=1).stats.cards == n
    # a binary card column with bytes that are not UTF-8, and a very long card
    raw = [c.encode() if c is not None else None for c in cards]
    raw[0] = b"An adapter trained with LoRA \xff\xfe on old data."
    raw[1] = b"x" * (MAX_CARD_CHARS + 10) + b" LoRA"
    table = pa.table({"modelId": [f"m{i}" for i in range(n)], "card": pa.array(raw, type=pa.binary())})
    pq.write_table(table, tmp_path / "d.parquet")
    result = scan_card_dump(str(tmp_path / "d.parquet"), workers=1)
    assert result.stats.cards == n and result.stats.techniques["lora"] >= 1
    assert any("longer than 1,000,000 characters" in note for note in result.notes)


def test_bad_dumps_are_one_line_errors(tmp_path: Path) -> None:
    pq.write_table(pa.table({"modelId": ["a"], "text_body": ["x"]}), tmp_path / "nocard.parquet")
    (tmp_path / "torn.parquet").write_bytes(b"PAR1 not really parquet")
    for args, message in (
        ([str(tmp_path / "nocard.parquet")], "has no card column"),
        ([str(tmp_path / "torn.parquet")], "torn.parquet is not a readable parquet file"),
        ([str(tmp_path / "nothing-*.parquet")], "no parquet files at"),
    ):
        result = runner.invoke(app, ["scan", "dataset", *args, "--no-save"])
        assert result.exit_code == 2, result.output
        assert message in result.output and len(result.output.strip().splitlines()) == 1, result.output


def test_a_corrupt_shard_is_reported_and_the_scan_goes_on(tmp_path: Path) -> None:
    folder = tmp_path / "dump"
    folder.mkdir()
    _dump(folder / "part-0.parquet", list(ordinary_cards(50, seed=3)))
    good = _dump(folder / "part-2.parquet", list(ordinary_cards(30, seed=4)))
    torn = folder / "part-1.parquet"
    torn.write_bytes(good.read_bytes()[:-40] + b"\0" * 40)  # a download cut short: the footer is gone
    result = scan_card_dump(str(folder), workers=1)
    assert result.stats.cards == 80
    assert any("skipped unreadable shard" in n and "part-1.parquet" in n for n in result.notes)
    data = json.loads(runner.invoke(app, ["scan", "dataset", str(folder), "--json", "--no-save"]).output)
    assert data["stats"]["cards"] == 80 and any("part-1.parquet" in n for n in data["notes"])
    with pytest.raises(UserError, match="is not a readable parquet file"):
        scan_card_dump(str(torn), workers=1)


@needs_shared_cards
def test_on_a_dump_of_peft_cards_the_prefilter_steps_aside(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from hub_scan.sources.card_dump import PrefilterGauge

    monkeypatch.setattr(PrefilterGauge, "TRIAL_ROWS", 64)
    peft_cards = [p.read_text(encoding="utf-8") for p in sorted(SHARED_CARDS.glob("*/README.md"))] * 3
    path = _dump(tmp_path / "peft.parquet", list(peft_cards))
    with_filter = scan_card_dump(str(path), workers=1)
    assert with_filter.stats.to_dict() == scan_card_dump(str(path), workers=1, prefilter=False).stats.to_dict()
    assert any("switched off after" in note for note in with_filter.notes)
