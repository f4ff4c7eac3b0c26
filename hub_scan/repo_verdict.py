"""One verdict per repo from all its evidence: the card, adapter_config.json, the base model and the files.

The card classifier reads text; a repo says more. An adapter whose card names no method but whose
``adapter_config.json`` says ``LORA`` is a LoRA; with ``use_dora: true`` it is a DoRA; trained on a 4-bit
base (an ``unsloth/...-bnb-4bit`` base model, or PEFT's old card template listing ``load_in_4bit: True``)
it is a QLoRA by definition. A Diffusers LoRA repo has ``pytorch_lora_weights.safetensors`` and no PEFT
config; a kohya/LyCORIS file's tensor names say LoRA (``lora_down``), LoHa (``hada_w1``), LoKr
(``lokr_w1``), DoRA (``dora_scale``), GLoRA (``a1``/``b1``), OFT (``oft_blocks``) or full differences
(``diff``). Each inference is kept as evidence with ``where`` (``config``, ``files``, ``inferred``) and
the rule that fired, so a verdict can be checked by reading it.

Precedence: the config is ground truth for the method family (a card may describe another run, or only
mention a method); the card and the base model refine it (QLoRA, DoRA); files speak only when neither the
card nor a config does. The card's own verdict stays beside the repo's (``card_techniques``): the blog's
statistic is card-only, and both are shown side by side.
"""

from __future__ import annotations

import re
from dataclasses import replace

from hub_scan.classify import CardVerdict, Evidence, four_bit_training
from hub_scan.records import CardRecord
from hub_scan.techniques import by_name, family_of, in_vocabulary_order

DIFFUSERS_LORA_FILES = ("pytorch_lora_weights.safetensors", "pytorch_lora_weights.bin")
# kohya / LyCORIS tensor-name markers (the module names of LyCORIS's and sd-scripts' networks), most specific
# first: LoHa, LoKr and DoRA files also carry lora_ prefixes, and a DoRA file lora_down/lora_up keys too.
_KOHYA_PREFIX = r"^(?:lora|oft)_(?:unet|te\d?|transformer)_"
_KOHYA_KEYS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("loha", re.compile(r"\.hada_w[12]_[ab]\b")),
    ("lokr", re.compile(r"\.lokr_w[12](?:_[ab])?\b")),
    ("dora", re.compile(_KOHYA_PREFIX + r".*\.dora_scale$")),  # weight decomposition of a LoRA (LyCORIS, sd-scripts)
    ("glora", re.compile(_KOHYA_PREFIX + r".*\.[ab][12]\.weight$")),
    ("oft", re.compile(_KOHYA_PREFIX + r".*\.oft_(?:blocks|diag)$")),  # diag-OFT; LyCORIS's BOFT uses the same name
    ("full", re.compile(_KOHYA_PREFIX + r".*\.diff$")),  # LyCORIS "full": whole weight differences
    ("lora", re.compile(_KOHYA_PREFIX + r".*\.lora_(?:down|up)\.weight$")),
)


def repo_verdict(record: CardRecord, card: CardVerdict) -> CardVerdict:
    """The repo's verdict: ``card`` (the text's) refined by the config, the base model and the files."""
    from hub_scan.stats import config_label

    evidence = list(card.evidence)
    used = set(card.techniques)
    if record.config_peft_type:
        label = config_label(record.config_peft_type, record.config_flags)
        flags = ", use_dora: true" if label == "dora" else ""
        evidence.append(
            Evidence(label, f"adapter_config.json: peft_type {record.config_peft_type}{flags}", "config", 0, True)
        )
        used = _with_config(used, label, record, card, evidence)
    elif not _peft(used):
        from_files = _from_files(record)
        if from_files is not None:
            evidence.append(from_files)
            used = {from_files.technique}
            used = _with_four_bit(used, record, card, evidence)
    if set(card.techniques) == used and len(evidence) == len(card.evidence):
        return card
    found = in_vocabulary_order(used)
    return replace(card, techniques=found, status="found" if found else card.status, evidence=tuple(evidence))


def _peft(names: set[str]) -> set[str]:
    table = by_name()
    return {n for n in names if n in table and table[n].peft_like}


def _with_config(
    used: set[str], label: str, record: CardRecord, card: CardVerdict, evidence: list[Evidence]
) -> set[str]:
    """The config's family, kept as specific as the card or the base model allows."""
    family = family_of(label)
    agreeing = {n for n in _peft(used) if family_of(n) == family}
    if label != family:  # the config is itself a variant (DoRA): more specific than a card saying LoRA
        agreeing = {label}
    if agreeing:
        kept = agreeing
    else:
        if _peft(used):  # the card names another method: the config is what the repo holds
            evidence.append(
                Evidence(label, "the card names another method", "inferred", 0, True, "adapter_config.json wins")
            )
        kept = {label}
    kept |= used - _peft(used) - {"full"}  # non-PEFT techniques the card reports (textual inversion) stay
    return _with_four_bit(kept, record, card, evidence)


def _with_four_bit(used: set[str], record: CardRecord, card: CardVerdict, evidence: list[Evidence]) -> set[str]:
    """LoRA on a 4-bit base is QLoRA: the base model's name, or the card's 4-bit training block."""
    if used != {"lora"}:
        return used
    bases = [b for b in (record.base_model, record.config_base_model, card.base_model) if b]
    four_bit = four_bit_training(record.card, bases)
    if four_bit is None:
        return used
    evidence.append(four_bit)  # already "inferred", with its rule
    return {"qlora"}


def _from_files(record: CardRecord) -> Evidence | None:
    """A LoRA repo without a PEFT config: Diffusers' weight file name, or kohya/LyCORIS tensor names."""
    for name in record.files:
        if name.rsplit("/", 1)[-1] in DIFFUSERS_LORA_FILES:
            return Evidence("lora", name, "files", 0, True, "Diffusers LoRA weights file")
    for technique, pattern in _KOHYA_KEYS:
        key = next((k for k in record.weight_keys if pattern.search(k)), None)
        if key is not None:
            return Evidence(technique, key, "files", 0, True, f"kohya/LyCORIS tensor names ({technique})")
    return None
