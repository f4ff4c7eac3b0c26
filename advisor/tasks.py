"""User-facing task names and which stored benchmark answers for each.

Only two benchmarks exist, so most task names are stand-ins; the ``note`` says so plainly
instead of pretending MetaMathQA measures coding ability.
"""

from __future__ import annotations

from dataclasses import dataclass

from advisor.errors import UserError


@dataclass(frozen=True)
class TaskChoice:
    name: str
    benchmark: str
    exact: bool
    note: str | None = None


_LLM_STAND_IN = "no {task} benchmark is stored; MetaMathQA (math word problems on Llama-3.2-3B) stands in for it"

TASKS: dict[str, TaskChoice] = {
    "math": TaskChoice("math", "MetaMathQA", True),
    "llm": TaskChoice("llm", "MetaMathQA", True, "MetaMathQA (math word problems) is the stored LLM benchmark"),
    "reasoning": TaskChoice("reasoning", "MetaMathQA", False, _LLM_STAND_IN.format(task="general reasoning")),
    "text": TaskChoice("text", "MetaMathQA", False, _LLM_STAND_IN.format(task="general text")),
    "chat": TaskChoice("chat", "MetaMathQA", False, _LLM_STAND_IN.format(task="chat / instruction")),
    "code": TaskChoice("code", "MetaMathQA", False, _LLM_STAND_IN.format(task="code")),
    "image": TaskChoice("image", "image-gen", True),
    "image-gen": TaskChoice("image-gen", "image-gen", True),
    "diffusion": TaskChoice("diffusion", "image-gen", True),
    "dreambooth": TaskChoice("dreambooth", "image-gen", True),
}


def resolve_task(name: str) -> TaskChoice:
    key = name.strip().lower().replace("_", "-")
    if key in ("metamathqa",):
        key = "math"
    if key not in TASKS:
        valid = ", ".join(TASKS)
        raise UserError(f"unknown task {name!r}; valid tasks: {valid}")
    return TASKS[key]
