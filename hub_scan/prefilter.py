"""Skip, before Python, the cards the classifier would call "none": one vectorised RE2 pass per batch.

Almost every Hub card is not a PEFT card. Classifying them in Python costs the same as classifying a
PEFT card, so a card dump is first filtered with one regex in C++ (pyarrow's RE2
``match_substring_regex``: no Python strings), and only the
candidates reach :func:`hub_scan.classify.classify_card`; the rest are counted as ``none``.

The filter is exact by construction, not a heuristic: it is a *superset* of everything that can make
the classifier say anything but ``none``:

- every technique's own pattern, rewritten for RE2: the letter-boundary look-behind becomes a consumed
  ``(?:^|[^A-Za-z])``, a "next to a PEFT word" look-ahead becomes consumed text, the trailing boundary is
  dropped (each change can only add matches);
- every tag value that names a technique, standing alone, with any separators between its letters
  (front-matter tags are compared after dropping separators);
- the signs of an adapter card ("peft", "adapter", "parameter-efficient"), which make it ``unknown``;
- the signs of full fine-tuning (the classifier's own ``_FULL_SIGNS`` with ``\\b`` dropped and ``\\d``
  widened to every Unicode digit, as Python's ``re`` reads it) and ``generated_from_trainer``;
- the dump's own columns: ``library_name: peft``, a tag that names a technique, an adapter
  ``base_model`` tag, ``generated_from_trainer``.

``tests/test_prefilter.py`` checks the property on real and synthetic cards, and that a scan with the
filter counts exactly what a scan without it counts.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from hub_scan.classify import _ADAPTER_SIGNS, _FULL_SIGNS
from hub_scan.techniques import tag_index, techniques

# What makes an adapter card (classify_card's adapter_card): "peft" (the word, library_name, PeftModel),
# "adapter" (base_model:adapter tags, base_model_relation: adapter) and the classifier's own body signs.
ADAPTER_SIGNS = "(?i:" + "|".join(re.escape(sign) for sign in ("peft", "adapter", *_ADAPTER_SIGNS)) + ")"
TRAINER_TAG = "generated_from_trainer"


# Python's \s (str patterns) is every Unicode space, RE2's only ASCII ones: widened inside classes.
_PY_SPACE = r"\s\p{Z}\x{1c}-\x{1f}\x{85}"


def _technique_re2(pattern: str) -> str:
    """A Python technique pattern as an RE2 pattern matching at least wherever the original matches."""
    pattern = pattern.replace("(?<![A-Za-z])", "(?:^|[^A-Za-z])").replace("(?![A-Za-z])", "")
    return pattern.replace("(?=", "(?:").replace("[\\s", "[" + _PY_SPACE)


def _loose_tag(key: str) -> str:
    """A front-matter tag item that normalises to ``key``: its characters with any separators between them
    ('q_lo-ra' says qlora), standing alone (an item is bounded by '- ', '[', ',', quotes or the line end)."""
    between = "[" + _PY_SPACE + "_\\-]*"
    return "(?:^|[^A-Za-z0-9])(?i:" + between.join(re.escape(c) for c in key) + ")(?:[^A-Za-z0-9]|$)"


def _full_signs_re2() -> str:
    body = _FULL_SIGNS.pattern.replace(r"\b", "").replace(r"\d", r"\p{Nd}").replace("[\\s", "[" + _PY_SPACE)
    return f"(?im:{body})"


@lru_cache(maxsize=1)
def peft_patterns() -> tuple[str, ...]:
    """RE2 patterns for what can name a technique or mark an adapter card.

    Several patterns, not one alternation of all: RE2 runs each as a DFA at hundreds of MB/s, but the
    union of every technique's pattern with the tag ones exhausts the DFA's memory and falls back to a
    ~1 MB/s NFA (measured: 5 s against 70 ms for the same cards).
    """
    return (
        "|".join(f"(?:{_technique_re2(t.pattern.pattern)})" for t in techniques()),
        "|".join(_loose_tag(key) for key in sorted(tag_index())),
        ADAPTER_SIGNS,
    )


@lru_cache(maxsize=1)
def full_pattern() -> str:
    """RE2 for the signs of full fine-tuning the classifier reads when a card names no technique."""
    return _full_signs_re2() + "|" + re.escape(TRAINER_TAG)


def candidate_pattern() -> str:
    """Every pattern as one alternation (for reading; slow to run as one DFA)."""
    return "|".join(f"(?:{p})" for p in (*peft_patterns(), full_pattern()))


def candidate_mask(card: Any, tags: Any = None, library_name: Any = None) -> Any:
    """A boolean array: True where the row may be anything but ``none`` and must be classified."""
    import pyarrow.compute as pc

    peft, full = candidate_kinds(card, tags, library_name)
    return pc.or_(peft, full)


def candidate_kinds(card: Any, tags: Any = None, library_name: Any = None) -> tuple[Any, Any]:
    """Two boolean arrays: rows that may name a technique or be an adapter card (the full classifier), and
    rows that cannot but may show full fine-tuning (:func:`hub_scan.classify.classify_without_names`).

    ``card`` is a string or binary array; ``tags`` a list array and ``library_name`` a string array, when
    the dump has them. Strings are matched as UTF-8 (Unicode classes and case folding as Python's re); a
    binary column is matched byte by byte, which RE2 reads as Latin-1.
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    peft = np.zeros(len(card), dtype=bool)
    if library_name is not None and pa.types.is_string(library_name.type) | pa.types.is_large_string(library_name.type):
        peft |= pc.fill_null(pc.equal(pc.utf8_lower(library_name), "peft"), False).to_numpy(zero_copy_only=False)
    trainer = np.zeros(len(card), dtype=bool)
    if tags is not None and (pa.types.is_list(tags.type) or pa.types.is_large_list(tags.type)):
        tag_peft, trainer = _tag_rows(tags)
        peft |= tag_peft
    peft |= _matching(card, peft_patterns(), ~peft)
    full = ~peft & (trainer | _matching(card, (full_pattern(),), ~peft & ~trainer))
    return pa.array(peft), pa.array(full)


def _matching(card: Any, patterns: tuple[str, ...], rows: Any) -> Any:
    """Rows (among ``rows``) whose text matches any of ``patterns``; each pattern runs on those still unmatched."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    hits = np.zeros(len(card), dtype=bool)
    todo = np.asarray(rows, dtype=bool).copy()
    for pattern in patterns:
        rest = np.flatnonzero(todo)
        if len(rest) == 0:
            break
        texts = card.take(pa.array(rest)) if len(rest) < len(card) else card
        found = pc.fill_null(pc.match_substring_regex(texts, pattern), False).to_numpy(zero_copy_only=False)
        hits[rest[found]] = True
        todo[rest[found]] = False
    return hits


def _tag_rows(tags: Any) -> tuple[Any, Any]:
    """Rows whose tags name a technique (separators ignored) or mark an adapter, and rows tagged
    generated_from_trainer (full fine-tuning's sign)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    flat = pc.list_flatten(tags)
    peft, trainer = np.zeros(len(tags), dtype=bool), np.zeros(len(tags), dtype=bool)
    if len(flat) == 0 or not (pa.types.is_string(flat.type) or pa.types.is_large_string(flat.type)):
        return peft, trainer
    parents = pc.list_parent_indices(tags).to_numpy(zero_copy_only=False)
    normal = pc.replace_substring_regex(pc.utf8_lower(pc.utf8_trim_whitespace(flat)), r"[\s_\-]+", "")
    names = pc.or_(
        pc.is_in(normal, value_set=pa.array(sorted(tag_index()))), pc.starts_with(flat, "base_model:adapter:")
    )
    peft[parents[pc.fill_null(names, False).to_numpy(zero_copy_only=False)]] = True
    trainer[parents[pc.fill_null(pc.equal(flat, TRAINER_TAG), False).to_numpy(zero_copy_only=False)]] = True
    return peft, trainer
