"""The vocabulary the card classifier looks for, built from the one method registry.

Every peft method in the registry (introspected from the installed peft's ``PeftType``) plus the
techniques cards name that are not peft methods of their own (``known.CARD_TECHNIQUES``: QLoRA,
DoRA, LyCORIS, GaLore, ...). Nothing here lists method names; it only decides *how* a name may be
spelled in free text without matching ordinary words:

- names with LoRA's letters (lora, loha, lokr), several words or digits cannot be English words,
  so they match in any case: "lora_alpha", "Prefix-Tuning", "(IA)^3";
- short upper-case or mixed-case names match only as written or in capitals, because their
  lower-case forms are words or word parts: "OFT" not "oft" (Microsoft is already excluded by the
  letter boundary), "VeRA" not "Vera", "RoAd" not "road", "MiSS" not "miss", "DoRA" not "Dora";
- plain capitalised words ("Lily", "Poly", "Shadow", "Cartridge") count only next to a PEFT word
  ("Poly adapter", "Shadow tuning"), or as the config class / ``peft_type`` value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from advisor.methods import known
from advisor.methods.registry import load_registry, normalise

_SAFE_LETTERS = ("lora", "loha", "lokr")
_FULL_PHRASES = ("full-parameter fine-tuning", "full parameter fine-tuning", "full-parameter training")
_PEFT_WORDS = r"(?:adapters?|config|tuning|fine-?tun\w*|method|peft|weights)"


@dataclass(frozen=True)
class Technique:
    """One technique a card can name, and how to find it in text."""

    name: str  # output name: the registry name ("lora", "ia3", "prompt_tuning") or a card technique ("qlora")
    display: str
    family: str | None  # registry method it rolls up into for usage shares ("qlora" -> "lora")
    peft_like: bool  # counted among PEFT techniques (full fine-tuning and GaLore are not)
    anchors: tuple[str, ...]  # lower-case substrings one of which must occur before the regex runs
    pattern: re.Pattern[str]
    tag_keys: frozenset[str]  # normalised tag values that name it


def _alias_regex(alias: str) -> str:
    """Regex for an alias with flexible separators: 'prefix tuning' matches 'prefix-tuning', 'Prefix_Tuning'."""
    parts = [re.escape(p) for p in re.split(r"[\s_\-]+", alias.strip()) if p]
    return r"[\s_\-]?".join(parts)


def _case_rule(alias: str) -> str:
    """'any' (case-insensitive), 'exact' (as written or in capitals) or 'context' (next to a PEFT word)."""
    lowered = alias.lower()
    if alias.upper() in known.AMBIGUOUS_ACRONYMS:
        return "context"
    if any(s in lowered for s in _SAFE_LETTERS) or re.search(r"[\s_\-\d()^³]", alias):
        return "any"
    if alias.islower() or (alias[:1].isupper() and alias[1:].islower()):
        return "context"
    return "exact"


def _spelling_regexes(spelling: str) -> list[str]:
    rule = _case_rule(spelling)
    body = _alias_regex(spelling)
    if rule == "any":
        return [f"(?i:{body})"]
    if rule == "exact":
        return sorted({body, _alias_regex(spelling.upper())})
    # A plain word: only next to a PEFT word ("Shadow adapter", "poly tuning").
    return [f"(?i:{body})(?=[\\s_\\-]+(?i:{_PEFT_WORDS}))"]


def _anchors(spellings: list[str]) -> tuple[str, ...]:
    """The longest separator-free piece of each spelling: cheap ``in`` tests before any regex runs."""
    anchors = set()
    for spelling in spellings:
        pieces = [p for p in re.split(r"[^a-z0-9³]+", spelling.lower()) if p]
        anchors.add(max(pieces, key=len) if pieces else spelling.lower())
    return tuple(sorted(anchors))


def _build(
    name: str,
    display: str,
    family: str | None,
    peft_like: bool,
    spellings: list[str],
    extra: list[str],
    anchors: list[str],
) -> Technique:
    """``spellings``: names as people write them; ``extra``: identifiers (config class, ``peft_type: X``)
    matched literally, each findable through one of ``anchors`` (lower-case)."""
    alternatives = [rx for s in spellings for rx in _spelling_regexes(s)] + [re.escape(e) for e in extra]
    # Letter boundaries, not \b: "lora_alpha" and "SFT-LoRA" match, "flora", "QLoRA" (for lora) and "Microsoft" do not.
    pattern = re.compile(r"(?<![A-Za-z])(?:" + "|".join(alternatives) + r")(?![A-Za-z])")
    tag_keys = frozenset(normalise(s) for s in spellings)
    return Technique(name, display, family, peft_like, _anchors(spellings + anchors), pattern, tag_keys)


@lru_cache(maxsize=1)
def techniques() -> tuple[Technique, ...]:
    """Every technique, registry methods first; built once per process (regex compilation)."""
    registry = load_registry()
    out: list[Technique] = []
    for method in registry.methods:
        spellings = _dedupe([method.display_name, *method.aliases])
        extra = [method.config_class] if method.config_class else []
        anchors = [e.lower() for e in extra]
        if method.peft_type:
            extra += [f"peft_type: {method.peft_type}", f'"peft_type": "{method.peft_type}"']
            anchors.append(method.peft_type.lower())
        if method.kind == "full":
            # "full" alone is an everyday word: only the multi-word aliases ("full fine-tuning") count.
            spellings = [s for s in spellings if re.search(r"[\s_\-]", s)] + list(_FULL_PHRASES)
        technique = _build(
            method.name, method.display_name, method.name, method.kind != "full", spellings, extra, anchors
        )
        out.append(technique)
    for name, facts in known.CARD_TECHNIQUES.items():
        spellings = _dedupe([facts["display"], *facts["aliases"]])
        extra = list(facts.get("identifiers", ()))
        anchors = [name] if extra else []
        out.append(_build(name, facts["display"], facts["family"], facts["peft_like"], spellings, extra, anchors))
    return tuple(out)


def _dedupe(spellings: list[str]) -> list[str]:
    seen: dict[str, str] = {}
    for s in spellings:
        seen.setdefault(s.lower() if _case_rule(s) == "any" else s, s)
    return list(seen.values())


@lru_cache(maxsize=1)
def by_name() -> dict[str, Technique]:
    return {t.name: t for t in techniques()}


@lru_cache(maxsize=1)
def _positions() -> dict[str, int]:
    return {t.name: i for i, t in enumerate(techniques())}


def in_vocabulary_order(names: set[str] | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Technique names in the vocabulary's order (registry methods first): every verdict lists them so."""
    positions = _positions()
    return tuple(sorted(names, key=lambda n: positions.get(n, len(positions))))


def family_of(name: str) -> str:
    """The registry method a technique counts as in usage shares ('qlora' -> 'lora'); itself when none."""
    technique = by_name().get(name)
    return (technique.family if technique and technique.family else name) if technique else name


@lru_cache(maxsize=1)
def tag_index() -> dict[str, str]:
    """Normalised tag value -> technique name ("lora" -> "lora", "prefixtuning" -> "prefix_tuning")."""
    index: dict[str, str] = {}
    for technique in techniques():
        for key in technique.tag_keys:
            index.setdefault(key, technique.name)
    return index
