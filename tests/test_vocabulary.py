"""One vocabulary: no product module keeps its own copy of a list that advisor/vocabulary.py (or the registry) owns."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from advisor import vocabulary
from advisor.methods.registry import load_registry

REPO = Path(__file__).resolve().parent.parent
PRODUCT = ("advisor", "converters", "hub_scan", "space")
OWNER = REPO / "advisor" / "vocabulary.py"

# Each list, and how many of its words in one literal make that literal a copy of it.
GROUPS: dict[str, tuple[frozenset[str], int]] = {
    "objectives": (frozenset(vocabulary.OBJECTIVES) - {"memory"}, 2),  # "memory" is also a common key
    "requirements": (frozenset(vocabulary.REQUIREMENTS), 3),
    "consumer targets": (frozenset(vocabulary.CONSUMER_TARGETS), 3),
    "quantisation": (frozenset(vocabulary.QUANT_CHOICES), 2),
    "tasks": (frozenset(vocabulary.TASKS) - {"text", "image", "llm"}, 3),
    "LoRA switches": (frozenset(vocabulary.LORA_SWITCHES), 3),
}
# A consumer's own list that happens to share words with ours (vLLM's rejected config keys) is a fact about
# that consumer, kept with the other consumer facts.
NOT_COPIES = {("LoRA switches", REPO / "converters" / "consumer_facts.py")}


def _literals(tree: ast.AST) -> list[tuple[int, set[str]]]:
    """String constants of every tuple/list/set literal and of every dict literal's keys."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            items = node.elts
        elif isinstance(node, ast.Dict):
            items = [k for k in node.keys if k is not None]
        else:
            continue
        words = {item.value for item in items if isinstance(item, ast.Constant) and isinstance(item.value, str)}
        if len(words) >= 2:
            found.append((node.lineno, words))
    return found


def _product_files() -> list[Path]:
    return sorted(p for package in PRODUCT for p in (REPO / package).rglob("*.py") if p != OWNER)


def test_the_checker_finds_a_copy() -> None:
    copy = ast.parse('QUANT = ("none", "8bit", "4bit")\nCHOICES = {"vllm": 1, "peft": 2, "diffusers": 3}')
    hits = [name for _, words in _literals(copy) for name, (group, n) in GROUPS.items() if len(words & group) >= n]
    assert hits == ["quantisation", "consumer targets"]


@pytest.mark.parametrize("group", sorted(GROUPS))
def test_no_second_copy_of_a_vocabulary_list(group: str) -> None:
    words, threshold = GROUPS[group]
    copies = [
        f"{path.relative_to(REPO)}:{line} {sorted(found & words)}"
        for path in _product_files()
        if (group, path) not in NOT_COPIES
        for line, found in _literals(ast.parse(path.read_text(encoding="utf-8")))
        if len(found & words) >= threshold
    ]
    assert copies == [], f"import these from advisor/vocabulary.py instead: {copies}"


def test_no_literal_list_of_method_names_outside_the_registry() -> None:
    names = {m.name for m in load_registry().methods} - {"full", "lora"}
    allowed = {REPO / "advisor" / "methods" / "known.py"}  # the registry's own hand-written facts
    copies = [
        f"{path.relative_to(REPO)}:{line} {sorted(found & names)}"
        for path in _product_files()
        if path not in allowed
        for line, found in _literals(ast.parse(path.read_text(encoding="utf-8")))
        if len(found & names) >= 4
    ]
    assert copies == [], f"read method names from the registry (or advisor/vocabulary.py): {copies}"
