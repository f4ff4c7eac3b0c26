"""Precision and recall of the card classifier against labelled cards.

Two truths, as in a labelled card folder (``<repo>/meta.json``): the *reading* label (what the card text says: lora,
qlora, dora, ..., full, none, unknown) and the *config* label (adapter_config.json's peft_type,
DoRA split out). A card's prediction is its techniques, or its status ("unknown" / "none") when it
reports none, so the classifier is also scored on *not* guessing.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hub_scan.records import ScannedCard
from hub_scan.stats import NO_CONFIG, config_label, peft_families
from hub_scan.techniques import family_of


@dataclass(frozen=True)
class ClassScore:
    label: str
    support: int  # cards with this label
    predicted: int  # cards predicted with it
    true_positives: int

    @property
    def precision(self) -> float | None:
        return self.true_positives / self.predicted if self.predicted else None

    @property
    def recall(self) -> float | None:
        return self.true_positives / self.support if self.support else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "support": self.support,
            "predicted": self.predicted,
            "true_positives": self.true_positives,
            "precision": self.precision,
            "recall": self.recall,
        }


def prediction(card: ScannedCard) -> set[str]:
    """What the card text alone says (reading labels describe the text): its techniques, or its status."""
    return set(card.card_only) or {card.card_status or card.status}


def score(pairs: Iterable[tuple[set[str], set[str]]]) -> list[ClassScore]:
    """Per-label scores over ``(predicted, true)`` label sets; a card can carry several of each."""
    support: Counter = Counter()
    predicted: Counter = Counter()
    hits: Counter = Counter()
    for pred, truth in pairs:
        support.update(truth)
        predicted.update(pred)
        hits.update(pred & truth)
    labels = sorted(set(support) | set(predicted), key=lambda n: (-support[n], n))
    return [ClassScore(n, support[n], predicted[n], hits[n]) for n in labels]


def reading_scores(cards: Iterable[ScannedCard], labels: dict[str, list[str]]) -> list[ClassScore]:
    return score((prediction(c), set(labels[c.id])) for c in cards if c.id in labels)


def config_scores(cards: Iterable[ScannedCard]) -> list[ClassScore]:
    """The card text against adapter_config.json, family level: a card that says DoRA or QLoRA for a LORA config
    is right. (The repo's verdict reads the config itself, so it is not scored against it.)"""
    pairs = []
    for card in cards:
        truth = config_label(card.config_peft_type, card.config_flags)
        if truth == NO_CONFIG:
            continue
        truth_family = family_of(truth)
        # A card that names nothing is a miss here (recall), not a wrong class: there is no "unknown" config.
        pairs.append((peft_families(card.card_only), {truth_family}))
    return score(pairs)


def labels_from_meta(root: Path) -> dict[str, list[str]]:
    """Reading labels from ``<repo>/meta.json`` files (one folder per repo); empty when there are none."""
    labels: dict[str, list[str]] = {}
    for path in sorted(Path(root).glob("*/meta.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            continue
        value = data.get("label_by_reading") if isinstance(data, dict) else None
        if isinstance(value, str):
            value = [value]
        if isinstance(value, list) and value:
            labels[path.parent.name] = [str(v) for v in value]
    return labels
