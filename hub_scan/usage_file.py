"""The small results file the recommender and the Space show: who uses what, from the latest scan.

Written after every scan that is not a labelled test folder (``--no-save`` skips it), read with a
JSON parse only, so the recommend path stays fast and never imports the scanner's dependencies.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from advisor.paths import read_json, user_data_dir, write_json_atomic

USAGE_FILE_NAME = "hub-usage.json"


def usage_path() -> Path:
    return user_data_dir() / USAGE_FILE_NAME


@dataclass(frozen=True)
class UsageSummary:
    source: str
    kind: str
    scanned_at: str
    cards: int
    exactly_one: int  # sample size of the shares
    shares: dict[str, float]  # family -> share among cards reporting exactly one PEFT technique
    config_adapters: int
    config_shares: dict[str, float]
    # month created (YYYY-MM) -> {family: cards reporting exactly that one technique}; {} for old files
    by_month: dict[str, dict[str, int]] = field(default_factory=dict)

    def share_of(self, name: str) -> float:
        return self.shares.get(name, 0.0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "kind": self.kind,
            "scanned_at": self.scanned_at,
            "cards": self.cards,
            "exactly_one": self.exactly_one,
            "shares": self.shares,
            "config_adapters": self.config_adapters,
            "config_shares": self.config_shares,
            "by_month": self.by_month,
        }


def summary_of(result: Any) -> UsageSummary:
    stats = result.stats
    return UsageSummary(
        source=result.source,
        kind=result.kind,
        scanned_at=result.scanned_at,
        cards=stats.cards,
        exactly_one=stats.exactly_one_total,
        shares={r["technique"]: round(r["share"], 6) for r in stats.shares()},
        config_adapters=sum(stats.with_config.values()),
        config_shares={r["peft_type"]: round(r["share"], 6) for r in stats.config_shares()},
        by_month=_by_month(stats.by_month),
    )


def _by_month(counter: Any) -> dict[str, dict[str, int]]:
    months: dict[str, dict[str, int]] = {}
    for (month, family), count in sorted(counter.items()):
        if month:
            months.setdefault(month, {})[family] = count
    return months


def save_usage(result: Any, path: Path | None = None) -> Path:
    target = path or usage_path()
    write_json_atomic(target, summary_of(result).to_dict())
    return target


def load_usage(path: Path | None = None) -> UsageSummary | None:
    """The latest scan's summary, or None when no scan ran yet (or the file is unreadable)."""
    target = path or usage_path()
    if not target.is_file():
        return None
    try:
        data = read_json(target)
        fields = UsageSummary.__dataclass_fields__
        return UsageSummary(**{k: data[k] for k in fields if k in data or k != "by_month"})
    except (ValueError, KeyError, TypeError):
        return None
