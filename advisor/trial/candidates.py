"""Turn a stored benchmark run's PEFT config into one for the user's model and trial budget.

The benchmark configs name Llama's modules (q_proj, v_proj, down_proj, ...). A BERT classifier
calls them query / value / output.dense, a diffusion transformer to_q / to_v. Each Llama name
stands for a *role* in the block (attention query, MLP down-projection, ...); the role is looked
up among the user's model's own linear layers, read from its config on the meta device (no
weights loaded). Step-dependent fields (AdaLoRA's schedule) are scaled to the trial's steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from advisor.errors import UserError
from advisor.vocabulary import ROLE_NAMES

LLAMA_ROLE = {
    "q_proj": "q",
    "k_proj": "k",
    "v_proj": "v",
    "o_proj": "o",
    "gate_proj": "gate",
    "up_proj": "up",
    "down_proj": "down",
    "input_layernorm": "norm",
    "post_attention_layernorm": "norm",
    "norm": "final_norm",
}
MODULE_FIELDS = ("target_modules", "feedforward_modules", "exclude_modules")
NOT_COPIED = {
    "peft_type",
    "base_model_name_or_path",
    "revision",
    "peft_version",
    "auto_mapping",
    "task_type",
    "inference_mode",
    "rank_pattern",
    "alpha_pattern",
    "layers_to_transform",
    "layers_pattern",
    # Prompt learning: shapes of the benchmark's model; PEFT reads the user's model config when unset.
    "token_dim",
    "num_attention_heads",
    "num_layers",
    "num_transformer_submodules",
}
STEP_FIELDS = ("total_step", "tinit", "tfinal")


@dataclass(frozen=True)
class Candidate:
    method: str
    run_id: str  # the benchmark run the config comes from
    learning_rate: float
    config: Any  # a peft PeftConfig for the user's model
    module_map: dict[str, str]  # benchmark module name -> the user's

    def describe(self) -> str:
        mapped = ", ".join(f"{a}->{b}" for a, b in self.module_map.items() if a != b) or "names as in the benchmark"
        return f"{self.method} from {self.run_id}: lr {self.learning_rate:g}; modules {mapped}"


def module_names(model_path: str) -> list[str]:
    """Full names of the model's modules, built from its config on the meta device (no weights read).

    All modules, not only linear ones: LN tuning targets norm layers, modules_to_save heads.
    """
    import torch
    from transformers import AutoConfig, AutoModel

    from advisor.torch_runtime import quiet_hf

    try:
        config = AutoConfig.from_pretrained(model_path)
    except (OSError, ValueError) as exc:
        raise UserError(f"--model {model_path}: cannot read its config.json ({str(exc).splitlines()[0]})") from None
    with torch.device("meta"), quiet_hf():
        model = AutoModel.from_config(config)
    return [name for name, _ in model.named_modules() if name]


def resolve_role(role: str, names: list[str]) -> str | None:
    """The user's name for a role, matched on leaf modules only: a name can also be a container elsewhere
    (DBRX's ``ffn`` holds the router and the experts; ALBERT's ``ffn`` is the up projection), and PEFT
    cannot adapt a container."""
    leaves = leaf_names(names)
    for leaf in ROLE_NAMES[role]:
        if any(n == leaf or n.endswith("." + leaf) for n in leaves):
            return leaf
    return None


def leaf_names(names: list[str]) -> list[str]:
    """The names with no module under them."""
    parents = {name.rsplit(".", 1)[0] for name in names if "." in name}
    return [name for name in names if name not in parents]


def map_modules(wanted: Any, names: list[str], module_map: dict[str, str]) -> Any:
    """Map a config's module list (or "all-linear", or a regex string, kept as is) onto the user's names."""
    if not isinstance(wanted, (list, tuple, set)):
        return wanted
    mapped = []
    for name in wanted:
        role = LLAMA_ROLE.get(name)
        if any(n == name or n.endswith("." + name) for n in names):
            leaf = name  # the model uses the benchmark's own name (a Llama-style model): keep it
        elif role:
            leaf = resolve_role(role, names)
        else:
            leaf = None
        if leaf is not None:
            module_map[name] = leaf
            if leaf not in mapped:
                mapped.append(leaf)
    return mapped


def build_candidate(run: Any, model_path: str, kind: str, steps: int, names: list[str] | None = None) -> Candidate:
    """The run's config on the user's model; a :class:`UserError` when none of its modules exist there."""
    from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING

    if run.peft_type is None or run.peft_config is None:
        raise UserError(f"{run.id} is not a PEFT run (full fine-tuning has no adapter to trial)")
    config_class = PEFT_TYPE_TO_CONFIG_MAPPING[run.peft_type]
    fields = set(config_class.__dataclass_fields__)
    names = names if names is not None else module_names(model_path)
    module_map: dict[str, str] = {}
    kwargs = {k: v for k, v in run.peft_config.items() if k in fields and k not in NOT_COPIED}
    if kwargs.get("encoder_hidden_size") == run.peft_config.get("token_dim"):
        kwargs.pop("encoder_hidden_size", None)  # P-tuning's encoder as wide as the model: as wide as *this* model
    for key in MODULE_FIELDS:
        if kwargs.get(key) is not None:
            kwargs[key] = map_modules(kwargs[key], names, module_map)
    if "target_modules" in kwargs and kwargs["target_modules"] == []:
        raise UserError(
            f"{run.method}: none of the benchmark's modules {run.peft_config.get('target_modules')} has a counterpart "
            f"in {model_path} (its layers end in: {', '.join(sorted({n.rsplit('.', 1)[-1] for n in names}))})"
        )
    if "feedforward_modules" in kwargs and isinstance(kwargs.get("target_modules"), list):
        kwargs["feedforward_modules"] = [m for m in kwargs["feedforward_modules"] if m in kwargs["target_modules"]]
    if run.max_steps and any(k in kwargs for k in STEP_FIELDS):
        scale = steps / run.max_steps
        for key in STEP_FIELDS:
            if kwargs.get(key):
                kwargs[key] = round(kwargs[key] * scale) if key != "total_step" else steps
        if "tinit" in kwargs and "tfinal" in kwargs:  # AdaLoRA needs a budgeting phase of at least one step
            kwargs["tinit"] = min(kwargs["tinit"] or 0, max(0, (steps - 1) // 2))
            kwargs["tfinal"] = min(kwargs["tfinal"] or 0, max(0, steps - 1 - kwargs["tinit"]))
    if kwargs.get("tokenizer_name_or_path"):
        kwargs["tokenizer_name_or_path"] = model_path
    task_type = "SEQ_CLS" if kind == "classification" else "CAUSAL_LM"
    try:
        config = config_class(**kwargs, task_type=task_type)
    except (TypeError, ValueError) as exc:
        raise UserError(f"{run.method}: its benchmark config does not fit this trial ({exc})") from None
    return Candidate(run.method, run.id, float(run.learning_rate or 1e-4), config, module_map)
