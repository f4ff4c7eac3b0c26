"""Usage statistics over scanned cards, kept as counters so a scan of millions stays small in memory.

The headline is the blog's statistic, made less naive: among cards that report exactly one PEFT
technique (after the classifier's guards, variants rolled into their family: QLoRA and DoRA count
as LoRA), the share of each. Next to it: config truth (``peft_type`` of adapter_config.json, DoRA
split out by ``use_dora``), the agreement matrix card-vs-config, trends by month of creation, and
splits by pipeline tag and base-model family. :class:`UsageStats` adds up, so partial scans
(workers, a resumed run) merge exactly.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from hub_scan.records import ScannedCard
from hub_scan.techniques import by_name, family_of

NO_CONFIG = "no config"


def card_family_label(card: ScannedCard) -> str:
    """One label per card for the agreement matrix: a family, "multiple", "full", "unknown" or "none"."""
    families = peft_families(card.techniques)
    if len(families) == 1:
        return next(iter(families))
    if len(families) > 1:
        return "multiple"
    if "full" in card.techniques:
        return "full"
    return card.status if card.status in ("unknown", "none") else "other"


def peft_families(names: Iterable[str]) -> set[str]:
    table = by_name()
    return {family_of(n) for n in names if n in table and table[n].peft_like}


def config_label(peft_type: str | None, flags: Iterable[str]) -> str:
    """The config's technique in registry names: "lora", "adalora", ...; "dora" for LORA + use_dora."""
    if not peft_type:
        return NO_CONFIG
    if peft_type == "LORA" and "use_dora" in set(flags):
        return "dora"
    from advisor.methods.registry import load_registry

    method = load_registry().get(peft_type)
    return method.name if method else peft_type.lower()


def base_family(base_model: str | None) -> str:
    """'meta-llama/Llama-3.1-8B' -> 'llama', 'Qwen/Qwen2.5-7B' -> 'qwen', 'unsloth/gemma-2-9b-bnb-4bit' -> 'gemma'."""
    if not base_model:
        return "unknown"
    name = base_model.rsplit("/", 1)[-1].lower()
    for prefix in ("meta-", "hf-", "tiny-random-", "unsloth-"):
        name = name.removeprefix(prefix)
    match = re.match(r"[a-z]+", name)
    if not match:
        return "other"
    token = match.group(0)
    return {"stable": "stable-diffusion", "sd": "stable-diffusion", "sdxl": "stable-diffusion"}.get(token, token)


@dataclass
class UsageStats:
    cards: int = 0
    status: Counter = field(default_factory=Counter)
    techniques: Counter = field(default_factory=Counter)  # cards reporting each technique (any count per card)
    exactly_one: Counter = field(default_factory=Counter)  # family, among repos whose verdict is one PEFT family
    exactly_one_card: Counter = field(default_factory=Counter)  # the same from the card text alone (blog's method)
    with_config: Counter = field(default_factory=Counter)  # config truth label
    agreement: Counter = field(default_factory=Counter)  # (card label, config label)
    by_month: Counter = field(default_factory=Counter)  # (YYYY-MM, family) for exactly-one cards
    by_pipeline: Counter = field(default_factory=Counter)  # (pipeline tag, family)
    by_base_family: Counter = field(default_factory=Counter)  # (base-model family, family)

    def add(self, card: ScannedCard) -> None:
        self.cards += 1
        self.status[card.status] += 1
        self.techniques.update(set(card.techniques))
        families = peft_families(card.techniques)
        card_families = peft_families(card.card_only)
        if len(card_families) == 1:
            self.exactly_one_card[next(iter(card_families))] += 1
        truth = config_label(card.config_peft_type, card.config_flags)
        if truth != NO_CONFIG:
            self.with_config[truth] += 1
        self.agreement[(card_family_label(card), truth)] += 1
        if len(families) == 1:
            family = next(iter(families))
            self.exactly_one[family] += 1
            if card.created_at:
                self.by_month[(card.created_at[:7], family)] += 1
            self.by_pipeline[(card.pipeline_tag or "unknown", family)] += 1
            self.by_base_family[(base_family(card.base_model), family)] += 1

    def add_plain(self, count: int) -> None:
        """``count`` cards the prefilter proved ``none`` (no technique, adapter or training sign, no config):
        exactly what :meth:`add` would count for them."""
        if count:
            self.cards += count
            self.status["none"] += count
            self.agreement[("none", NO_CONFIG)] += count

    def merge(self, other: UsageStats) -> UsageStats:
        self.cards += other.cards
        for name in (
            "status",
            "techniques",
            "exactly_one",
            "exactly_one_card",
            "with_config",
            "agreement",
            "by_month",
            "by_pipeline",
            "by_base_family",
        ):
            getattr(self, name).update(getattr(other, name))
        return self

    @property
    def exactly_one_total(self) -> int:
        return sum(self.exactly_one.values())

    def shares(self) -> list[dict[str, Any]]:
        """The blog's statistic: share of each family among cards that report exactly one PEFT family."""
        total = self.exactly_one_total
        return [
            {"technique": name, "cards": count, "share": count / total if total else 0.0}
            for name, count in self.exactly_one.most_common()
        ]

    def card_only_shares(self) -> list[dict[str, Any]]:
        """The blog's statistic exactly as it is computed: the card text alone, config and files unread."""
        total = sum(self.exactly_one_card.values())
        return [
            {"technique": name, "cards": count, "share": count / total if total else 0.0}
            for name, count in self.exactly_one_card.most_common()
        ]

    def config_shares(self) -> list[dict[str, Any]]:
        total = sum(self.with_config.values())
        return [
            {"peft_type": name, "adapters": count, "share": count / total if total else 0.0}
            for name, count in self.with_config.most_common()
        ]

    def to_dict(self) -> dict[str, Any]:
        def pairs(counter: Counter, a: str, b: str) -> list[dict[str, Any]]:
            return [{a: k[0], b: k[1], "cards": v} for k, v in sorted(counter.items())]

        return {
            "cards": self.cards,
            "status": dict(self.status.most_common()),
            "techniques": dict(self.techniques.most_common()),
            "exactly_one": {
                "cards": self.exactly_one_total,
                "shares": self.shares(),
                "population": "repos whose verdict (card, adapter config, base model, files) is one PEFT family",
            },
            "exactly_one_card_only": {
                "cards": sum(self.exactly_one_card.values()),
                "shares": self.card_only_shares(),
                "population": "cards whose text alone names one PEFT family (the blog's method)",
            },
            "config_truth": {"adapters": sum(self.with_config.values()), "shares": self.config_shares()},
            "agreement": pairs(self.agreement, "card", "config"),
            "by_month": pairs(self.by_month, "month", "technique"),
            "by_pipeline_tag": pairs(self.by_pipeline, "pipeline_tag", "technique"),
            "by_base_family": pairs(self.by_base_family, "base_family", "technique"),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> UsageStats:
        stats = cls(cards=data["cards"])
        stats.status.update(data["status"])
        stats.techniques.update(data["techniques"])
        stats.exactly_one.update({r["technique"]: r["cards"] for r in data["exactly_one"]["shares"]})
        card_only = data.get("exactly_one_card_only", {}).get("shares", [])
        stats.exactly_one_card.update({r["technique"]: r["cards"] for r in card_only})
        stats.with_config.update({r["peft_type"]: r["adapters"] for r in data["config_truth"]["shares"]})
        for key, a, b, target in (
            ("agreement", "card", "config", stats.agreement),
            ("by_month", "month", "technique", stats.by_month),
            ("by_pipeline_tag", "pipeline_tag", "technique", stats.by_pipeline),
            ("by_base_family", "base_family", "technique", stats.by_base_family),
        ):
            target.update({(r[a], r[b]): r["cards"] for r in data[key]})
        return stats


def compute_stats(cards: Iterable[ScannedCard]) -> UsageStats:
    stats = UsageStats()
    for card in cards:
        stats.add(card)
    return stats
