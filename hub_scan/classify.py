"""Read one model card and say which fine-tuning technique it reports, with the evidence.

Keyword counting over-counts: "Microsoft" contains "oft", "flora" contains "lora", "Vera" is a
name, a card lists "LoRA, adapters" as *examples*, compares against a DoRA run it did not ship, or
carries text-generation-webui's "Download custom model or LoRA" button label. So each match is a
piece of :class:`Evidence` with where it stands and whether it reports *use*:

- spellings come from :mod:`hub_scan.techniques` (letter boundaries, case rules for short names);
- template comments (``<!-- -->``) are dropped; a match in an example list ("e.g.", "such as"), a
  comparison ("compared to", "vs", "instead of"), a negation ("without", "not"), or a citation is
  a *mention*, not use; known UI boilerplate is ignored;
- front-matter ``tags`` name techniques directly (PEFT's own template adds ``lora`` for LoRA only);
- a variant absorbs its family: a card that says QLoRA or DoRA and also LoRA reports QLoRA / DoRA;
- LoRA trained on a 4-bit base (``load_in_4bit: True`` in the training block, "4-bit NF4", a
  ``bnb-4bit`` base model) is QLoRA; 4-bit *inference* instructions are not;
- full fine-tuning needs a positive sign (Trainer's auto card, "fine-tuned version of", "continued
  pre-training") and no adapter sign;
- a card that reports nothing is ``unknown`` when it is an adapter card (``library_name: peft``, a
  ``base_model:adapter`` tag, ``PeftModel``), else ``none``: never a guess.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any

from hub_scan.earliest_match import Branch, EarliestMatch
from hub_scan.techniques import Technique, by_name, in_vocabulary_order, tag_index, techniques

MAX_EVIDENCE_PER_TECHNIQUE = 3
_WINDOW = 48  # characters around an anchor the full pattern may span (longest alias: ~40)

_FRONT_MATTER = re.compile(r"\A\ufeff?---[ \t]*\r?\n(.*?)\r?\n---[ \t]*(?:\r?\n|\Z)", re.S)
_COMMENT = re.compile(r"<!--.*?-->", re.S)
_FENCE = re.compile(r"^[ \t]*(```|~~~)", re.M)
_HEADING = re.compile(r"^[ \t]*#{1,6}[ \t]")
_HEADING_LINE = re.compile(r"^[ \t]*#{1,6}[ \t]", re.M)
_BIBTEX_START = re.compile(r"^\s*@\w+\s*\{", re.M)

# Words that turn a match into a mention: examples, comparisons, alternatives, negations, support lists.
_MENTION_ONLY = re.compile(
    r"(?i)\b(?:e\.g\.?|i\.e\.|for example|such as|like|instead of|rather than|compared?(?:\s+(?:to|with|against))?"
    r"|comparison|comparative|versus|vs\.?|unlike|alternatives?|other (?:methods|techniques|approaches)"
    r"|not (?:use|used|using|a)|without|no |supports?|supported|or other|can be used|compatible with"
    r"|for instance|planned|future work|todo)\b"
)
# Text of other tools that names techniques without saying anything about this model.
_BOILERPLATE = re.compile(r"(?i)custom model or lora|lora(?:s)? (?:are|is) not supported|loras? folder")
_BOILERPLATE_KEYS = ("custom model or", "not supported", "folder")
_CITATION_SECTION = re.compile(r"(?i)^[ \t]*#{1,6}[^\n]*(?:citation|references?|bibtex|acknowledg)")

_FOUR_BIT = re.compile(
    r"(?i)(?<![A-Za-z0-9])(?:4[\s_\-]?bits?|nf4|int4|bnb[\s_\-]?4[\s_\-]?bit|q4)(?![A-Za-z0-9])"
    r"|load_in_4bit\s*[:=]\s*True|4비트|4ビット|4位"
)
_INFERENCE_CONTEXT = re.compile(
    r"(?i)inference|推理|推論|serv(?:e|ing)|deploy|vram|显存|(?<![A-Za-z])GB\b|memory|requirement|--load_in_4bit|webui|gguf"
)
_TRAINING_CODE = re.compile(
    r"prepare_model_for_kbit_training|Trainer\(|\.train\(|get_peft_model|SFTConfig|TrainingArguments"
)
_FOUR_BIT_BASE = re.compile(r"(?i)(?:bnb[\-_]?4bit|[\-_]4bit|[\-_]nf4)")
_LOAD_IN_4BIT = re.compile(r"(?i)load_in_4bit\W{0,3}[:=]\s*(true|false)")

# Signs of an adapter repo in the card body (lower-cased), besides the word "peft" itself.
_ADAPTER_SIGNS = (
    "peftmodel",
    "peft_model",
    "adapter_config.json",
    "adapter_model.safetensors",
    "adapter_model.bin",
    "load_adapter",
    "parameter-efficient",
    "parameter efficient",
)
# bytes.translate + split is ~3x faster than a regex split: every byte but a-z / 0-9 becomes a space.
_WORD_BYTES = bytes(c if (48 <= c <= 57 or 97 <= c <= 122) else 32 for c in range(256))


def card_words(lowered: str) -> set[bytes]:
    """The card's ASCII words (lower-case letters and digits), as bytes."""
    return set(lowered.encode("utf-8", "ignore").translate(_WORD_BYTES).split())


# Signs of full fine-tuning, and of a model that was not fine-tuned: searched branch by branch on the
# lower-cased card (hub_scan.earliest_match: same leftmost match as the alternation, ~5x faster).
_FULL_SIGNS = EarliestMatch(
    (
        Branch(r"fine-?tuned version of", "fine"),
        Branch(r"fine-?tuned (?:from|on|for)\b", "fine"),
        Branch(r"\ba fine-?tuned\b", "a fine"),
        Branch(r"finetuned from model", "finetuned"),
        Branch(r"fine-?tuning framework", "framework"),
        Branch(r"pipeline to fine-?tune", "pipeline"),
        Branch(r"training (?:the )?\S+ (?:architecture|model) on", "training"),
        Branch(r"^\W*epochs?\W*\d+", "epoch"),
        Branch(r"further (?:pre-?)?train", "further"),
        Branch(r"continued (?:pre-?)?training", "continued"),
        Branch(r"continual pre-?training", "continual"),
        Branch(r"full[\s\-](?:parameter|weights?|model) (?:fine-?tun|train)", "full"),
        Branch(r"trained for \d+ epochs", "epoch"),
        Branch(r"distill(?:ed|ation) (?:from|of)", "distill"),
        Branch(r"\bsft\b.{0,40}\bfull\b", "sft"),
    ),
    re.M,
)
_NOT_FINE_TUNED = EarliestMatch(
    (
        Branch(r"designed to be fine-?tuned", "designed"),
        Branch(r"can be fine-?tuned", "can be"),
        Branch(r"without (?:any |prior )?fine-?tuning", "without"),
        Branch(r"pre-?trained from scratch", "scratch"),
    )
)


@dataclass(frozen=True)
class Evidence:
    technique: str
    text: str  # the matched words in their context, trimmed to one line
    where: str  # "tags", "title", "text", "code", "citation", "inferred", "config", "files"
    line: int  # 1-based line in the card; 0 for front-matter metadata
    usage: bool  # False: a mention only (example list, comparison, citation, negation)
    rule: str = ""  # for inferred evidence: the rule that fired, in words

    def to_dict(self) -> dict[str, Any]:
        data = {"text": self.text, "where": self.where, "line": self.line, "usage": self.usage}
        if self.rule:
            data["rule"] = self.rule
        return data


@dataclass(frozen=True)
class CardVerdict:
    techniques: tuple[str, ...]  # reported as used, variants absorbing their family ("qlora" not "lora")
    status: str  # "found" | "unknown" (an adapter card that names no method) | "none"
    mentioned: tuple[str, ...]  # every technique the card names at all, used or not
    evidence: tuple[Evidence, ...]
    library_name: str | None = None
    pipeline_tag: str | None = None
    base_model: str | None = None

    def evidence_by_technique(self) -> dict[str, list[dict[str, Any]]]:
        grouped: dict[str, list[dict[str, Any]]] = {}
        for item in self.evidence:
            bucket = grouped.setdefault(item.technique, [])
            if len(bucket) < MAX_EVIDENCE_PER_TECHNIQUE:
                bucket.append(item.to_dict())
        return grouped


@dataclass(frozen=True)
class CardText:
    """A card split into its YAML metadata and its body, with body line numbers kept."""

    metadata: dict[str, Any]
    body: str
    body_first_line: int


def split_card(text: str) -> CardText:
    """Separate the YAML front matter from the body, keeping body line numbers."""
    match = _FRONT_MATTER.match(text)
    if not match:
        return CardText({}, text, 1)
    first_line = text.count("\n", 0, match.end()) + 1
    return CardText(front_matter_fields(match.group(1)), text[match.end() :], first_line)


_TOP_KEY = re.compile(r"^([A-Za-z_][\w\-]*)[ \t]*:[ \t]*(.*?)[ \t]*$")


def _scalar(value: str) -> str:
    value = value.split(" #", 1)[0].strip()
    return value[1:-1] if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"" else value


def front_matter_fields(yaml_text: str) -> dict[str, Any]:
    """Top-level ``key: value`` and ``key:`` + ``- item`` lists of a card's YAML front matter.

    The classifier needs five keys (tags, library_name, base_model, base_model_relation,
    pipeline_tag), all top-level scalars or flat lists. A full YAML parse costs more than the
    rest of the classification together, and broken YAML is common on the Hub; this reader never
    fails and skips nested structures (model-index, widget).
    """
    fields: dict[str, Any] = {}
    key: str | None = None
    for line in yaml_text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line[0] not in " \t-":
            top = _TOP_KEY.match(line)
            key = top.group(1) if top else None
            if top and top.group(2):
                value = top.group(2)
                if value.startswith("[") and value.endswith("]"):
                    fields[key] = [_scalar(v) for v in value[1:-1].split(",") if v.strip()]
                else:
                    fields[key] = _scalar(value)
                key = None  # a scalar: following indented lines belong to something else
            continue
        stripped = line.strip()
        if key is not None and stripped.startswith("- ") and (line.startswith("-") or line.startswith("  -")):
            item = _scalar(stripped[2:])
            values = fields.setdefault(key, [])
            if item and isinstance(values, list):
                values.append(item)
    return fields


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value if v is not None]
    return [str(value)]


def _blank(match: re.Match[str]) -> str:
    """Replace a span by spaces, keeping its newlines so line numbers stay right."""
    return "\n".join(" " * len(part) for part in match.group(0).split("\n"))


def _regions(body: str, lowered: str) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """Character ranges of fenced code blocks and of citation blocks (BibTeX entries, citation sections)."""
    code: list[tuple[int, int]] = []
    if "```" not in body and "~~~" not in body and "@" not in body and "#" not in body:
        return code, []
    fences = [m.start() for m in _FENCE.finditer(body)] if ("```" in body or "~~~" in body) else []
    for start, end in zip(fences[::2], fences[1::2], strict=False):
        code.append((start, end))
    if len(fences) % 2:
        code.append((fences[-1], len(body)))
    citations: list[tuple[int, int]] = []
    for m in _BIBTEX_START.finditer(body) if "@" in body else ():
        end = body.find("\n}", m.start())
        citations.append((m.start(), len(body) if end < 0 else end + 2))
    has_section = any(w in lowered for w in ("citation", "reference", "bibtex", "acknowledg"))
    for m in _CITATION_SECTION.finditer(body) if has_section else ():
        nxt = _HEADING_LINE.search(body, m.end())
        citations.append((m.start(), nxt.start() if nxt else len(body)))
    return code, citations


def _inside(pos: int, ranges: list[tuple[int, int]]) -> bool:
    return any(start <= pos < end for start, end in ranges)


def _line_bounds(body: str, pos: int) -> tuple[int, int]:
    start = body.rfind("\n", 0, pos) + 1
    end = body.find("\n", pos)
    return start, len(body) if end < 0 else end


def _snippet(line: str, start: int, end: int, width: int = 60) -> str:
    left = max(0, start - width)
    right = min(len(line), end + width)
    text = line[left:right].strip()
    return ("…" if left > 0 else "") + text + ("…" if right < len(line) else "")


def _clause(line: str, start: int, end: int) -> str:
    """The part of a line a match belongs to: cut at sentence ends and table cells, at most ±100 chars."""
    left = max(0, start - 100)
    right = min(len(line), end + 100)
    for stop in (". ", "; ", "|", "。"):
        cut = line.rfind(stop, left, start)
        if cut >= 0:
            left = max(left, cut + len(stop))
        cut = line.find(stop, end, right)
        if cut >= 0:
            right = min(right, cut)
    return line[left:right]


def _matches(technique: Technique, body: str, lowered: str) -> list[re.Match[str]]:
    """The technique's matches, searched only in windows around its anchors.

    A case-insensitive regex over a 5 kB card costs ~0.2 ms in Python's ``re``; ``str.find`` on
    the lower-cased text finds the few places worth a look in microseconds, and the regex then
    runs on ~100 characters around each (its lookbehind still sees the text before the window).
    """
    spans: dict[tuple[int, int], re.Match[str]] = {}
    for anchor in technique.anchors:
        at = lowered.find(anchor)
        while at >= 0:
            stop = min(len(body), at + len(anchor) + _WINDOW)
            match = technique.pattern.search(body, max(0, at - _WINDOW), stop)
            while match is not None:
                spans.setdefault(match.span(), match)
                match = technique.pattern.search(body, match.end(), stop)
            at = lowered.find(anchor, stop - len(anchor) + 1 if stop > at + len(anchor) else at + 1)
    return [spans[k] for k in sorted(spans)]


def _text_evidence(
    body: str, lowered: str, first_line: int, chosen: list[Technique], regions: tuple[list, list]
) -> list[Evidence]:
    code, citations = regions
    hits = [(m.start(), m.end(), t) for t in chosen for m in _matches(t, body, lowered)]
    # A name inside a longer name of another technique is not a mention of its own:
    # "orthogonal fine-tuning" in "Butterfly orthogonal fine-tuning", "LoRA" in "X-LoRA" / "VB-LoRA".
    hits = [
        (a, b, t)
        for a, b, t in hits
        if not any(a2 <= a and b <= b2 and (b2 - a2) > (b - a) and t2 is not t for a2, b2, t2 in hits)
    ]
    found: list[Evidence] = []
    boilerplate = any(k in lowered for k in _BOILERPLATE_KEYS)
    mention_only: dict[str, bool] = {}
    for pos, end, technique in hits:
        lstart, lend = _line_bounds(body, pos)
        line = body[lstart:lend]
        mstart, mend = pos - lstart, end - lstart
        if boilerplate and _BOILERPLATE.search(line):
            continue
        line_no = first_line + body.count("\n", 0, pos)
        in_code = _inside(pos, code)
        if _inside(pos, citations):
            where, usage = "citation", False
        elif in_code:
            where, usage = "code", True
        else:
            where = "title" if _HEADING.match(line) else "text"
            clause = _clause(line, mstart, mend)
            if clause not in mention_only:
                mention_only[clause] = bool(_MENTION_ONLY.search(clause))
            usage = not mention_only[clause]
        found.append(Evidence(technique.name, _snippet(line, mstart, mend), where, line_no, usage))
    return found


def _four_bit_training(
    body: str, lowered: str, first_line: int, base_models: list[str], code: list[tuple[int, int]]
) -> Evidence | None:
    """Evidence that training ran on a 4-bit base: base model name, or a 4-bit remark outside inference text."""
    for base in base_models:
        if _FOUR_BIT_BASE.search(base):
            return Evidence("qlora", f"base_model: {base}", "inferred", 0, True, "LoRA on a 4-bit base model is QLoRA")
    if not any(
        k in lowered for k in ("4bit", "4-bit", "4 bit", "4_bit", "nf4", "int4", "q4", "4비트", "4ビット", "4位")
    ):
        return None
    block = {value.lower() for value in _LOAD_IN_4BIT.findall(body)}
    if block == {"false"}:
        return None  # a bitsandbytes block that says load_in_4bit: False (its bnb_4bit_* defaults say nothing)
    for match in _FOUR_BIT.finditer(body):
        lstart, lend = _line_bounds(body, match.start())
        line = body[lstart:lend]
        block = next(((s, e) for s, e in code if s <= match.start() < e), None)
        if block is not None:
            if not _TRAINING_CODE.search(body, block[0], block[1]):
                continue
        elif _INFERENCE_CONTEXT.search(line) and "load_in_4bit: True" not in line:
            continue
        line_no = first_line + body.count("\n", 0, match.start())
        text = _snippet(line, match.start() - lstart, match.end() - lstart)
        return Evidence("qlora", text, "inferred", line_no, True, "LoRA trained with a 4-bit base is QLoRA")
    return None


def four_bit_training(text: str | None, base_models: list[str]) -> Evidence | None:
    """Evidence that this repo's training ran on a 4-bit base, from its card and base-model names (the card's
    front matter, the Hub's metadata, the adapter config's base_model_name_or_path): the repo-level QLoRA rule."""
    card = split_card(text or "")
    body = _COMMENT.sub(_blank, card.body) if "<!--" in card.body else card.body
    lowered = _lower_same_length(body)
    bases = [*_as_list(card.metadata.get("base_model")), *(b for b in base_models if b)]
    return _four_bit_training(body, lowered, card.body_first_line, bases, _regions(body, lowered)[0])


def _lower_same_length(text: str) -> str:
    """``text.lower()``, but never longer ('İ'.lower() is two characters): match offsets must stay valid."""
    lowered = text.lower()
    if len(lowered) == len(text):
        return lowered
    return "".join(c if len(c.lower()) != 1 else c.lower() for c in text)


@lru_cache(maxsize=1)
def _anchor_index() -> dict[bytes, tuple[Technique, ...]]:
    index: dict[bytes, list[Technique]] = {}
    for technique in techniques():
        for anchor in technique.anchors:
            word = re.sub(r"[^a-z0-9]+", "", anchor).encode()  # "ia³" is found as "ia"
            if word:
                index.setdefault(word, []).append(technique)
    return {k: tuple(v) for k, v in index.items()}


def candidates(words: set[bytes]) -> list[Technique]:
    """Techniques one of whose anchors is a word of the card: a set lookup per anchor, no text scan."""
    found: dict[str, Technique] = {}
    for anchor, owners in _anchor_index().items():
        if anchor in words:
            for technique in owners:
                found.setdefault(technique.name, technique)
    return [by_name()[name] for name in in_vocabulary_order(found)]


def _families(names: set[str]) -> set[str]:
    from hub_scan.techniques import by_name

    table = by_name()
    return {table[n].family for n in names if n in table and table[n].family and table[n].family != n}


def _card_parts(
    text: str | None, tags: list[str] | tuple[str, ...], library_name: str | None, pipeline_tag: str | None
) -> tuple[CardText, list[str], str | None, str | None, list[str]]:
    """The card split, with its tags, library, pipeline tag and base models (the source's metadata first)."""
    card = split_card(text or "")
    meta = card.metadata
    all_tags = [*_as_list(meta.get("tags")), *tags]
    library = library_name or (str(meta["library_name"]) if meta.get("library_name") else None)
    pipeline = pipeline_tag or (str(meta["pipeline_tag"]) if meta.get("pipeline_tag") else None)
    return card, all_tags, library, pipeline, _as_list(meta.get("base_model"))


def classify_card(
    text: str | None,
    *,
    tags: list[str] | tuple[str, ...] = (),
    library_name: str | None = None,
    pipeline_tag: str | None = None,
) -> CardVerdict:
    """Classify a card (its full README.md text, front matter included) plus metadata a source already knows.

    ``tags`` / ``library_name`` / ``pipeline_tag`` are the repo's own metadata (the Hub API or the
    dump's columns); they complement the front matter, they do not replace the card.
    """
    card, all_tags, library, pipeline, base_models = _card_parts(text, tags, library_name, pipeline_tag)
    meta = card.metadata
    evidence: list[Evidence] = []

    index = tag_index()
    for tag in all_tags:
        name = index.get(re.sub(r"[\s_\-]+", "", tag.strip().lower()))
        if name:
            evidence.append(Evidence(name, f"tags: {tag}", "tags", 0, True))

    body = _COMMENT.sub(_blank, card.body) if "<!--" in card.body else card.body
    lowered = _lower_same_length(body)
    words = card_words(lowered)
    chosen = candidates(words)
    regions = _regions(body, lowered)
    evidence += _text_evidence(body, lowered, card.body_first_line, chosen, regions)

    mentioned = {e.technique for e in evidence}
    used = {e.technique for e in evidence if e.usage}
    used -= _families(used)  # QLoRA / DoRA / LongLoRA absorb LoRA

    adapter_card = (
        (library or "").lower() == "peft"
        or any(t.startswith("base_model:adapter:") for t in all_tags)
        or str(meta.get("base_model_relation", "")).lower() == "adapter"
        or b"peft" in words
        or any(sign in lowered for sign in _ADAPTER_SIGNS)
    )

    if used == {"lora"}:
        four_bit = _four_bit_training(body, lowered, card.body_first_line, base_models, regions[0])
        if four_bit is not None:
            evidence.append(four_bit)
            used = {"qlora"}

    if not used and adapter_card:
        # A PEFT adapter card naming no method, trained on a 4-bit base (an unsloth bnb-4bit base model, PEFT's
        # old template block with load_in_4bit: True): the adapter people train on a 4-bit base is LoRA.
        four_bit = _four_bit_training(body, lowered, card.body_first_line, base_models, regions[0])
        if four_bit is not None:
            rule = "an adapter card naming no method, trained on a 4-bit base: QLoRA"
            evidence.append(replace(four_bit, rule=rule))
            used = {"qlora"}

    if not used:
        inferred = _infer_without_names(body, lowered, card.body_first_line, all_tags, base_models, adapter_card)
        if inferred is not None:
            evidence.append(inferred)
            used = {inferred.technique}

    found = in_vocabulary_order(used)
    status = "found" if found else ("unknown" if adapter_card else "none")
    return CardVerdict(
        techniques=found,
        status=status,
        mentioned=in_vocabulary_order(mentioned),
        evidence=tuple(evidence),
        library_name=library,
        pipeline_tag=pipeline,
        base_model=base_models[0] if base_models else None,
    )


def classify_without_names(
    text: str | None,
    *,
    tags: list[str] | tuple[str, ...] = (),
    library_name: str | None = None,
    pipeline_tag: str | None = None,
) -> CardVerdict:
    """:func:`classify_card` for a card already known to name no technique and to be no adapter card (the
    card-dump prefilter proves it): only full fine-tuning, or QLoRA on a 4-bit base, can then be inferred,
    so the technique search is skipped. Same verdict, a fraction of the cost."""
    card, all_tags, library, pipeline, base_models = _card_parts(text, tags, library_name, pipeline_tag)
    body = _COMMENT.sub(_blank, card.body) if "<!--" in card.body else card.body
    lowered = _lower_same_length(body)
    inferred = _infer_without_names(body, lowered, card.body_first_line, all_tags, base_models, False)
    found = (inferred.technique,) if inferred is not None else ()
    return CardVerdict(
        techniques=found,
        status="found" if found else "none",
        mentioned=(),
        evidence=(inferred,) if inferred is not None else (),
        library_name=library,
        pipeline_tag=pipeline,
        base_model=base_models[0] if base_models else None,
    )


def _infer_without_names(
    body: str, lowered: str, first_line: int, tags: list[str], base_models: list[str], adapter_card: bool
) -> Evidence | None:
    """Full fine-tuning (or QLoRA on a 4-bit base) from what the card says, when it names no technique."""
    if adapter_card:
        return None
    full_sign = next((t for t in tags if t == "generated_from_trainer"), None)
    match = _FULL_SIGNS.search(lowered)
    if full_sign is None and match is None:
        return None
    if _NOT_FINE_TUNED.search(lowered) and full_sign is None:
        return None
    four_bit_base = next((b for b in base_models if _FOUR_BIT_BASE.search(b)), None)
    if four_bit_base:
        # A 4-bit quantised model cannot be fully fine-tuned: a fine-tune of it trained adapters.
        return Evidence("qlora", f"fine-tuned from 4-bit base_model: {four_bit_base}", "inferred", 0, True)
    if match is not None:
        lstart, lend = _line_bounds(body, match.start())
        line_no = first_line + body.count("\n", 0, match.start())
        text = _snippet(body[lstart:lend], match.start() - lstart, match.end() - lstart)
        return Evidence("full", text, "inferred", line_no, True)
    return Evidence("full", "tags: generated_from_trainer", "inferred", 0, True)
