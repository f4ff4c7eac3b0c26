"""EarliestMatch finds what the alternation finds: same span, on real cards and on the cases its rewrites touch."""

from __future__ import annotations

import re

import pytest
from shared_data import SHARED_CARDS

from hub_scan.classify import _FULL_SIGNS, _NOT_FINE_TUNED, _lower_same_length, split_card
from hub_scan.earliest_match import Branch, EarliestMatch

TRICKY = [
    "",
    "This is a fine-tuned model.",
    "Data fine-tuned on MetaMathQA",
    "Banana fine-tuned from x",  # 'a fine' inside a word: no boundary before 'a'
    "a fine-tuned start of text",
    "Epochs: 3\n",
    "Training\n\n- epoch 3",  # ^\W* spans the blank line before the list item
    "We use SFT with full weights",
    "NSFT then full",  # no boundary before 'sft'
    "Trained for 12 epochs, then further pre-training",
    "Continued pretraining and continual pre-training",
    "full-parameter fine-tuning; Full model train",
    "distilled from a larger teacher",
    "training the LLaMA architecture on code",
    "A FINE-TUNED VERSION OF llama, fine-tuned for chat",  # ties at different branches, upper case
    "designed to be fine-tuned, can be finetuned, without any fine-tuning, pre-trained from scratch",
    "İstanbul: a fine-tuned model",  # a character whose lower() is longer: offsets must hold
]


def _alternation(searcher: EarliestMatch) -> re.Pattern[str]:
    return re.compile(searcher.pattern, searcher.flags | re.I)


def _cards() -> list[str]:
    cards = list(TRICKY)
    if SHARED_CARDS.is_dir():
        cards += [split_card(p.read_text(encoding="utf-8")).body for p in sorted(SHARED_CARDS.glob("*/README.md"))]
    return cards


@pytest.mark.parametrize("searcher", [_FULL_SIGNS, _NOT_FINE_TUNED], ids=["full_signs", "not_fine_tuned"])
def test_same_span_as_the_alternation(searcher: EarliestMatch) -> None:
    slow = _alternation(searcher)
    found = 0
    for body in _cards():
        expected = slow.search(body)
        got = searcher.search(_lower_same_length(body))
        assert (got.span() if got else None) == (expected.span() if expected else None), body[:200]
        found += expected is not None
    assert found >= 5  # the comparison saw matches, not only misses


def test_leading_boundary_is_checked_after_the_literal() -> None:
    searcher = EarliestMatch((Branch(r"\bab\b", "ab"),))
    assert searcher.search("ab") is not None
    assert searcher.search("x ab y").span() == (2, 4)
    assert searcher.search("xab ab").span() == (4, 6)
    assert searcher.search("xab") is None


def test_ties_go_to_the_earlier_branch() -> None:
    searcher = EarliestMatch((Branch("fine-tuned", "fine"), Branch("fine-tuned version", "fine")))
    assert searcher.search("a fine-tuned version").group(0) == "fine-tuned"
    reordered = EarliestMatch((Branch("fine-tuned version", "fine"), Branch("fine-tuned", "fine")))
    assert reordered.search("a fine-tuned version").group(0) == "fine-tuned version"


def test_a_missing_required_word_skips_the_branch() -> None:
    searcher = EarliestMatch((Branch(r"^\W*epochs?\W*\d+", "epoch"),), re.M)
    assert searcher.search("- epochs: 3") is not None
    assert searcher.search("- steps: 3") is None
