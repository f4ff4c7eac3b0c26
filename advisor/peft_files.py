"""The names a PEFT adapter folder is made of, and the key prefix of its tensors: written once.

Every tool reads or writes these folders (the converter, the consumer checks, the trial's adapters, the
Hub scanner, the Space's uploads); each imports the names from here.
"""

from __future__ import annotations

CONFIG_NAME = "adapter_config.json"
WEIGHTS_NAME = "adapter_model.safetensors"
PICKLE_NAMES = ("adapter_model.bin", "adapter_model.pt")  # read only with --allow-pickle
CARD_NAME = "README.md"
# Diffusers reads its own file (transformer.* keys), never adapter_config.json.
DIFFUSERS_WEIGHTS_NAME = "pytorch_lora_weights.safetensors"
# PeftModel.save_pretrained stores tensors under the wrapped model: base_model.model.<module path>.<param>.
PEFT_PREFIX = "base_model.model."


def module_path(key: str) -> str:
    """A tensor key without the PEFT prefix (``base_model.model.model.layers.0.q_proj.lora_A.weight`` →
    ``model.layers.0.q_proj.lora_A.weight``)."""
    return key.removeprefix(PEFT_PREFIX)
