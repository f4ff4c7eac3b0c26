"""Typed records that flow from the scan sources to the statistics.

A source yields :class:`CardRecord` (what the Hub or a dump knows about one repo); the classifier
turns its card into a :class:`~hub_scan.classify.CardVerdict`; :class:`ScannedCard` joins the two
and is what statistics, JSON output and the resume journal read and write.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hub_scan.classify import CardVerdict


@dataclass(frozen=True)
class CardRecord:
    """One model repo: its card text and the metadata a source can tell without reading the card."""

    id: str
    card: str | None  # README.md text; None when the repo has no card
    tags: tuple[str, ...] = ()
    library_name: str | None = None
    pipeline_tag: str | None = None
    created_at: str | None = None  # ISO date
    base_model: str | None = None
    downloads: int | None = None
    config_peft_type: str | None = None  # from adapter_config.json: ground truth where present
    config_flags: tuple[str, ...] = ()  # e.g. "use_dora" (DoRA is peft_type LORA with use_dora=true)


@dataclass(frozen=True)
class ScannedCard:
    """A record with its verdict: everything the statistics need, and nothing of the card text."""

    id: str
    techniques: tuple[str, ...]
    status: str
    config_peft_type: str | None
    config_flags: tuple[str, ...]
    evidence: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    pipeline_tag: str | None = None
    created_at: str | None = None
    base_model: str | None = None
    library_name: str | None = None

    @classmethod
    def from_verdict(cls, record: CardRecord, verdict: CardVerdict) -> ScannedCard:
        return cls(
            id=record.id,
            techniques=verdict.techniques,
            status=verdict.status,
            config_peft_type=record.config_peft_type,
            config_flags=record.config_flags,
            evidence=verdict.evidence_by_technique(),
            pipeline_tag=record.pipeline_tag or verdict.pipeline_tag,
            created_at=record.created_at,
            base_model=record.base_model or verdict.base_model,
            library_name=record.library_name or verdict.library_name,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "techniques": list(self.techniques),
            "status": self.status,
            "config_peft_type": self.config_peft_type,
            "config_flags": list(self.config_flags),
            "evidence": self.evidence,
            "pipeline_tag": self.pipeline_tag,
            "created_at": self.created_at,
            "base_model": self.base_model,
            "library_name": self.library_name,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ScannedCard:
        return cls(
            id=data["id"],
            techniques=tuple(data["techniques"]),
            status=data["status"],
            config_peft_type=data.get("config_peft_type"),
            config_flags=tuple(data.get("config_flags", ())),
            evidence=data.get("evidence", {}),
            pipeline_tag=data.get("pipeline_tag"),
            created_at=data.get("created_at"),
            base_model=data.get("base_model"),
            library_name=data.get("library_name"),
        )


def config_facts(config: Any) -> tuple[str | None, tuple[str, ...]]:
    """``(peft_type, flags)`` from a parsed adapter_config.json; ``(None, ())`` when it is not a PEFT config."""
    if not isinstance(config, dict) or not isinstance(config.get("peft_type"), str):
        return None, ()
    from advisor.vocabulary import SCANNED_LORA_SWITCHES

    flags = tuple(flag for flag in SCANNED_LORA_SWITCHES if config.get(flag) is True)
    return config["peft_type"].upper(), flags
