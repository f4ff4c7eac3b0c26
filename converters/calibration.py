"""Sample inputs for calibrated factorisation and for measuring fidelity.

The user's own data is best (``--calibration FILE``: .txt with one sample per line, or .jsonl /
.json records with a ``text`` field or ``prompt``/``response`` pairs). Without it we use a fixed set
of short, varied English prompts. Samples are split deterministically: every fourth one is held
out, so the calibrated factorisation is never judged on the inputs it was fitted to.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from advisor.errors import UserError

BUILTIN_PROMPTS: tuple[str, ...] = (
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May.",
    "How many clips did Natalia sell altogether in April and May?",
    "Write a Python function that returns the n-th Fibonacci number using memoisation.",
    "The mitochondria is the powerhouse of the cell, producing most of its chemical energy.",
    "Translate to French: The weather is lovely today, let's go for a walk by the river.",
    "Q: What is the capital of Australia? A: The capital of Australia is Canberra.",
    "def quicksort(items):\n    if len(items) <= 1:\n        return items",
    "Once upon a time, in a village at the edge of a great forest, there lived an old clockmaker.",
    "Summarise the main causes of the French Revolution in three sentences.",
    "If a train travels 120 km in 1.5 hours, what is its average speed in km per hour?",
    "SELECT name, COUNT(*) FROM orders GROUP BY name HAVING COUNT(*) > 5;",
    "Dear team, please find attached the quarterly report. Let me know if you have questions.",
    "The derivative of x^3 + 2x is 3x^2 + 2, and its integral is x^4/4 + x^2 + C.",
    "User: Can you recommend a good book on machine learning?\nAssistant: Sure!",
    "Photosynthesis converts light energy, water and carbon dioxide into glucose and oxygen.",
    "Explain the difference between a list and a tuple in Python.",
    "A rectangle has a perimeter of 30 cm and a length of 9 cm. What is its area?",
    "The quick brown fox jumps over the lazy dog while the cat watches from the window.",
    "In 1969, Apollo 11 landed on the Moon and Neil Armstrong took the first steps.",
    "import numpy as np\nx = np.linspace(0, 1, 100)\ny = np.sin(2 * np.pi * x)",
    "Please classify the sentiment of this review: The film was long but beautifully shot.",
    "Water boils at 100 degrees Celsius at sea level, but at lower temperatures at altitude.",
    "Janet's ducks lay 16 eggs per day. She eats three for breakfast and bakes muffins with four.",
    "What are the health benefits of regular exercise? List at least four.",
    "The stock market fell sharply on Monday after the central bank raised interest rates.",
    "<html><body><h1>Welcome</h1><p>This is a test page.</p></body></html>",
    "Solve for x: 3x - 7 = 11. First add 7 to both sides, then divide by 3.",
    "Shakespeare wrote Hamlet, Macbeth, Othello and King Lear among many other plays.",
    "Give me a recipe for a simple tomato soup with basil and garlic.",
    "A neural network learns by adjusting its weights to reduce the loss on training data.",
    "The museum opens at nine in the morning and closes at six in the evening, except on Mondays.",
    "How do I reverse a linked list in place? Describe the algorithm step by step.",
    "Mount Everest is the highest mountain above sea level, at 8,849 metres.",
    "Tom has twice as many marbles as Jerry. Together they have 36. How many does Tom have?",
    "Le petit prince demanda au renard de l'apprivoiser.",
    "Error: index out of range at line 42. Check the loop bounds and the list length.",
)

HOLD_OUT_EVERY = 4


@dataclass(frozen=True)
class CalibrationSet:
    """Texts to fit on and texts to measure on, and where they came from."""

    fit: tuple[str, ...]
    held_out: tuple[str, ...]
    source: str

    @property
    def size(self) -> int:
        return len(self.fit) + len(self.held_out)


def split(texts: list[str] | tuple[str, ...], source: str) -> CalibrationSet:
    held = tuple(t for i, t in enumerate(texts) if i % HOLD_OUT_EVERY == HOLD_OUT_EVERY - 1)
    fit = tuple(t for i, t in enumerate(texts) if i % HOLD_OUT_EVERY != HOLD_OUT_EVERY - 1)
    return CalibrationSet(fit=fit, held_out=held, source=source)


def builtin_set() -> CalibrationSet:
    return split(BUILTIN_PROMPTS, "built-in prompts")


def read_calibration(path: Path, *, limit: int = 512) -> CalibrationSet:
    """Read up to ``limit`` text samples from a .txt, .jsonl or .json file."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"calibration file {path} not found.")
    suffix = path.suffix.lower()
    try:
        raw = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UserError(f"{path} is not UTF-8 text; pass a .txt, .jsonl or .json file of text samples.") from None
    if suffix == ".txt":
        texts = [line.strip() for line in raw.splitlines() if line.strip()]
    elif suffix in (".jsonl", ".json"):
        texts = _texts_from_records(_records(raw, path, suffix), path)
    else:
        raise UserError(f"calibration file {path} must be .txt (one sample per line), .jsonl or .json.")
    texts = texts[:limit]
    if len(texts) < HOLD_OUT_EVERY:
        raise UserError(f"{path} has {len(texts)} usable samples; calibration needs at least {HOLD_OUT_EVERY}.")
    return split(texts, f"{path.name} ({len(texts)} samples)")


def _records(raw: str, path: Path, suffix: str) -> list[object]:
    try:
        if suffix == ".json":
            data = json.loads(raw)
            return data if isinstance(data, list) else [data]
        return [json.loads(line) for line in raw.splitlines() if line.strip()]
    except json.JSONDecodeError as exc:
        raise UserError(f"{path} is not valid JSON{' lines' if suffix == '.jsonl' else ''}: {exc}.") from None


def _texts_from_records(records: list[object], path: Path) -> list[str]:
    texts = []
    for record in records:
        if isinstance(record, str):
            texts.append(record)
        elif isinstance(record, dict):
            if isinstance(record.get("text"), str):
                texts.append(record["text"])
            elif isinstance(record.get("prompt"), str):
                texts.append(record["prompt"] + " " + str(record.get("response", record.get("completion", ""))))
    texts = [t.strip() for t in texts if t and t.strip()]
    if not texts:
        raise UserError(f"{path} has no 'text' (or 'prompt'/'response') fields; put one text sample per record.")
    return texts
