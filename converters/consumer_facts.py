"""What serving stacks accept, as data. Source: docs/lora-consumers.md (vLLM 0.33.0,
Diffusers 0.42.1, read from their code) and vLLM's supported-models tables (LoRA column).

Kept apart from the checks so a new vLLM release means editing facts, not logic.
"""

from __future__ import annotations

from advisor.methods.variants import VLLM_OK_INITS as _VLLM_OK_INITS

# vLLM config/lora.py MaxLoRARanks; an adapter's r may be any value up to the chosen one.
VLLM_MAX_LORA_RANKS: tuple[int, ...] = (1, 8, 16, 32, 64, 128, 256, 320, 512)
VLLM_DEFAULT_MAX_LORA_RANK = 16

_LLAMA_LINEAR = frozenset({"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"})
_EMBEDDINGS = frozenset({"embed_tokens", "lm_head"})


class VllmArch:
    """One architecture's LoRA support in vLLM: the HF leaf names it maps, and its embedding modules."""

    def __init__(self, linear: frozenset[str], embeddings: frozenset[str] = frozenset(), note: str = "") -> None:
        self.linear = linear
        self.embeddings = embeddings
        self.note = note

    @property
    def modules(self) -> frozenset[str]:
        return self.linear | self.embeddings


# Architectures that implement SupportsLoRA, with the HF (unpacked) leaf names of their LinearBase
# modules. Embedding LoRA only where the model declares embedding_modules (Qwen2 does not).
VLLM_LORA_ARCHITECTURES: dict[str, VllmArch] = {
    "LlamaForCausalLM": VllmArch(_LLAMA_LINEAR, _EMBEDDINGS),
    "MistralForCausalLM": VllmArch(_LLAMA_LINEAR, _EMBEDDINGS),
    "Qwen2ForCausalLM": VllmArch(_LLAMA_LINEAR, note="Qwen2 declares no embedding_modules"),
    "Qwen3ForCausalLM": VllmArch(_LLAMA_LINEAR, _EMBEDDINGS),
    "GemmaForCausalLM": VllmArch(_LLAMA_LINEAR),
    "Gemma2ForCausalLM": VllmArch(_LLAMA_LINEAR),
    "Gemma3ForCausalLM": VllmArch(_LLAMA_LINEAR),
    "Phi3ForCausalLM": VllmArch(frozenset({"qkv_proj", "o_proj", "gate_up_proj", "down_proj"})),
    "GraniteForCausalLM": VllmArch(_LLAMA_LINEAR),
    "OlmoForCausalLM": VllmArch(_LLAMA_LINEAR),
    "Olmo2ForCausalLM": VllmArch(_LLAMA_LINEAR),
}

# Architectures vLLM serves, but without LoRA (no SupportsLoRA in the model class), and encoders
# it does not run at all as generators. Said plainly instead of letting a check pass.
VLLM_NO_LORA: dict[str, str] = {
    "BertModel": "vLLM serves BERT as an embedding model (BertEmbeddingModel) without LoRA support",
    "BertForMaskedLM": "vLLM has no masked-LM BERT and no LoRA for BERT",
    "BertForSequenceClassification": "vLLM's BERT classifier does not implement LoRA",
    "RobertaModel": "vLLM serves RoBERTa as an embedding model without LoRA support",
    "XLMRobertaModel": "vLLM serves XLM-RoBERTa as an embedding model without LoRA support",
    "GPT2LMHeadModel": "vLLM's GPT-2 does not implement LoRA",
    "T5ForConditionalGeneration": "vLLM does not serve T5 with LoRA",
}

# init_lora_weights strings vLLM 0.32+ accepts (PiSSA/OLoRA/CorDA/LoftQ are rejected): one list,
# shared with the recommender's "servable as trained" rule.
VLLM_OK_INITS = _VLLM_OK_INITS
# Config keys vLLM 0.32+ rejects when set.
VLLM_REJECTED_WHEN_SET = ("lora_bias", "alora_invocation_tokens", "layer_replication", "use_bdlora", "use_qalora")
