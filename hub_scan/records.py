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
    config_base_model: str | None = None  # adapter_config.json's base_model_name_or_path
    files: tuple[str, ...] = ()  # the repo's file names (pytorch_lora_weights.safetensors says Diffusers LoRA)
    weight_keys: tuple[str, ...] = ()  # a sample of tensor names from a weights file's header (kohya: lora_unet_*)
    names_nothing: bool = False  # the dump prefilter proved the card names no technique and is no adapter card


@dataclass(frozen=True)
class ScannedCard:
    """A record with its verdict: everything the statistics need, and nothing of the card text."""

    id: str
    techniques: tuple[str, ...]  # the repo's verdict: card, config, base model and files read together
    status: str
    config_peft_type: str | None
    config_flags: tuple[str, ...]
    evidence: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    pipeline_tag: str | None = None
    created_at: str | None = None
    base_model: str | None = None
    library_name: str | None = None
    card_techniques: tuple[str, ...] | None = None  # the card text alone (the blog's method); None: same as above
    card_status: str | None = None  # the card text's own status when it differs (an "unknown" card, a LORA config)

    @property
    def card_only(self) -> tuple[str, ...]:
        return self.techniques if self.card_techniques is None else self.card_techniques

    @classmethod
    def from_verdict(cls, record: CardRecord, verdict: CardVerdict, card: CardVerdict | None = None) -> ScannedCard:
        """``verdict``: the repo's; ``card``: the card text's own, when it differs."""
        card_techniques = None if card is None or card.techniques == verdict.techniques else card.techniques
        card_status = None if card is None or card.status == verdict.status else card.status
        return cls(
            id=record.id,
            techniques=verdict.techniques,
            status=verdict.status,
            config_peft_type=record.config_peft_type,
            config_flags=record.config_flags,
            evidence=verdict.evidence_by_technique(),
            pipeline_tag=record.pipeline_tag or verdict.pipeline_tag,
            created_at=record.created_at,
            base_model=record.base_model or verdict.base_model or record.config_base_model,
            library_name=record.library_name or verdict.library_name,
            card_techniques=card_techniques,
            card_status=card_status,
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
            "card_only": list(self.card_only),
            "card_only_status": self.card_status or self.status,
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
            card_techniques=(
                tuple(data["card_only"])
                if "card_only" in data and tuple(data["card_only"]) != tuple(data["techniques"])
                else None
            ),
            card_status=(
                data["card_only_status"] if data.get("card_only_status") not in (None, data["status"]) else None
            ),
        )


def config_base_model(config: Any) -> str | None:
    """adapter_config.json's base_model_name_or_path (a Hub id or a local path), when it states one."""
    value = config.get("base_model_name_or_path") if isinstance(config, dict) else None
    return value if isinstance(value, str) and value.strip() else None


def config_facts(config: Any) -> tuple[str | None, tuple[str, ...]]:
    """``(peft_type, flags)`` from a parsed adapter_config.json; ``(None, ())`` when it is not a PEFT config."""
    if not isinstance(config, dict) or not isinstance(config.get("peft_type"), str):
        return None, ()
    from advisor.vocabulary import SCANNED_LORA_SWITCHES

    flags = tuple(flag for flag in SCANNED_LORA_SWITCHES if config.get(flag) is True)
    return config["peft_type"].upper(), flags
