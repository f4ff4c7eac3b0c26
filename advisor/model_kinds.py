"""What a transformers model can be loaded as, read from its config: a causal LM, a sequence classifier.

The trial has to know before training whether the user's data fits the model (generation data needs a
causal LM), and the converter whether a loaded model's outputs are next-token logits (KL and top-1
agreement only mean something then). Both read it from transformers' own auto-class tables, not from the
adapter's optional ``task_type`` or from a name suffix: ``GPT2LMHeadModel`` is a causal LM, ``BertModel``
is not, although ``bert`` also appears in the causal-LM table (as ``BertLMHeadModel``, a decoder variant).

transformers is imported inside the functions: the recommend path never comes here.
"""

from __future__ import annotations

from functools import cache
from typing import Any


def _names(mapping: dict[str, Any]) -> frozenset[str]:
    names: set[str] = set()
    for value in mapping.values():
        names.update([value] if isinstance(value, str) else value)
    return frozenset(names)


@cache
def causal_lm_classes() -> frozenset[str]:
    """Every class name ``AutoModelForCausalLM`` can build (``LlamaForCausalLM``, ``GPT2LMHeadModel``, ...)."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    return _names(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES)


def is_causal_lm_class(class_name: str) -> bool:
    """``AutoModelForCausalLM`` itself, or one of the classes it builds."""
    return class_name == "AutoModelForCausalLM" or class_name in causal_lm_classes()


def is_causal_lm_config(config: dict[str, Any]) -> bool:
    """A checkpoint saved as a causal LM (its ``architectures``), or a decoder config without architectures."""
    architectures = config.get("architectures") or []
    if architectures:
        return any(is_causal_lm_class(name) for name in architectures) or bool(config.get("is_decoder"))
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    model_type = config.get("model_type")
    return bool(config.get("is_decoder")) or (
        model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and not config.get("is_encoder_decoder")
    )


def can_classify(config: dict[str, Any]) -> bool:
    """transformers has a sequence-classification head for this model type."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES

    return config.get("model_type") in MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES


def describe_architecture(config: dict[str, Any]) -> str:
    architectures = config.get("architectures") or []
    return ", ".join(architectures) if architectures else f"model_type {config.get('model_type') or 'unknown'}"
