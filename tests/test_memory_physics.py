"""The memory model's setup terms against the code they model: what a real transformers + PEFT model keeps.

Counting the tensors autograd saves for backward (``saved_tensors_hooks``, unique storages that are not
parameters) on a tiny Llama on the CPU measures the same thing the GPU pays for. The constants of
``advisor.memory.model`` must match those counts, and PEFT's kbit preparation must upcast what the model
says it upcasts.
"""

from __future__ import annotations

import contextlib

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
peft = pytest.importorskip("peft")

from advisor.memory.model import EAGER_SCORE_BYTES  # noqa: E402
from advisor.memory.saved_tensors import peak_new_bytes, saved_storages  # noqa: E402
from advisor.vocabulary import OPTIMIZERS  # noqa: E402

BATCH, SEQ, LAYERS, HEADS, HIDDEN, VOCAB = 2, 256, 2, 4, 64, 320


def tiny_config(**extra: object):
    return transformers.LlamaConfig(
        hidden_size=HIDDEN,
        intermediate_size=2 * HIDDEN,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        num_key_value_heads=HEADS,
        vocab_size=VOCAB,
        **extra,
    )


def tiny_lora(attention: str, dtype: torch.dtype):
    config = tiny_config(attn_implementation=attention)
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(config).to(dtype)
    model = peft.get_peft_model(model, peft.LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    model.train()
    return model


def saved_for_backward(model, autocast: torch.dtype | None = None, keep=lambda t: True) -> tuple[int, int]:
    """Bytes and count of the unique non-parameter storages autograd saves in one forward pass."""
    ids = torch.randint(0, VOCAB, (BATCH, SEQ), generator=torch.Generator().manual_seed(0))
    context = torch.autocast("cpu", dtype=autocast) if autocast is not None else contextlib.nullcontext()
    with context:
        seen = saved_storages(model, input_ids=ids, labels=ids, keep=keep)
    return sum(seen.values()), len(seen)


def test_eager_attention_saves_six_bytes_per_score_per_layer() -> None:
    eager, _ = saved_for_backward(tiny_lora("eager", torch.bfloat16))
    sdpa, _ = saved_for_backward(tiny_lora("sdpa", torch.bfloat16))
    scores = LAYERS * BATCH * HEADS * SEQ**2
    measured = (eager - sdpa) / scores
    # SDPA itself saves a [batch, 1, seq, seq] mask that eager does not: a fraction of a byte per score
    assert EAGER_SCORE_BYTES * 0.85 <= measured <= EAGER_SCORE_BYTES, measured


def test_autocast_saves_a_half_copy_of_each_frozen_linear_weight() -> None:
    model = tiny_lora("sdpa", torch.float32)
    shapes = {tuple(p.shape) for n, p in model.named_parameters() if p.ndim == 2 and "lora_" not in n}

    def weight_copy(tensor) -> bool:
        return tensor.dtype == torch.bfloat16 and tuple(tensor.shape) in shapes

    copied, count = saved_for_backward(model, torch.bfloat16, weight_copy)
    blocks = sum(p.numel() for n, p in model.named_parameters() if p.ndim == 2 and ".layers." in n and "lora_" not in n)
    # the model's term: every block linear's bf16 copy (2 bytes per parameter); the head's copy comes on top
    assert count >= LAYERS * 5 and blocks * 2 * 0.8 <= copied <= (blocks + VOCAB * HIDDEN) * 2, (copied, count)


def test_kbit_preparation_upcasts_what_the_model_says(tmp_path) -> None:
    pytest.importorskip("bitsandbytes")
    config = tiny_config(tie_word_embeddings=False)
    transformers.LlamaForCausalLM(config).to(torch.bfloat16).save_pretrained(tmp_path)
    quant = transformers.BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_compute_dtype=torch.bfloat16)
    model = transformers.AutoModelForCausalLM.from_pretrained(
        tmp_path, quantization_config=quant, device_map="cpu", dtype=torch.bfloat16
    )
    model = peft.prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    upcast = {n for n, p in model.named_parameters() if p.dtype == torch.float32}
    assert "model.embed_tokens.weight" in upcast and "lm_head.weight" in upcast  # the model's 4-byte embeddings
    assert not any("proj" in n for n in upcast)  # the quantised linear layers stay 4-bit


def test_softcapping_keeps_tanh_output_of_logits_and_scores() -> None:
    """Gemma 2's final-logit and attention softcapping (x / cap, tanh, × cap) each keep tanh's bf16 output:
    SOFTCAP_BYTES more per logit and, under eager attention, per score."""
    from advisor.memory.model import SOFTCAP_BYTES
    from advisor.memory.saved_tensors import saved_bytes

    layers, heads, vocab = 2, 4, 4096
    ids = torch.randint(0, vocab, (BATCH, SEQ), generator=torch.Generator().manual_seed(0))

    def saved(final: float | None, attention: float | None) -> int:
        config = transformers.Gemma2Config(
            hidden_size=64, intermediate_size=128, num_hidden_layers=layers, num_attention_heads=heads,
            num_key_value_heads=2, head_dim=16, vocab_size=vocab, final_logit_softcapping=final,
            attn_logit_softcapping=attention, sliding_window=4096, attn_implementation="eager",
        )  # fmt: skip
        torch.manual_seed(0)
        model = transformers.Gemma2ForCausalLM(config).to(torch.bfloat16)
        model = peft.get_peft_model(model, peft.LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
        return saved_bytes(model, input_ids=ids, labels=ids)

    plain = saved(None, None)
    assert (saved(30.0, None) - plain) / (BATCH * SEQ * vocab) == SOFTCAP_BYTES
    assert (saved(None, 50.0) - plain) / (layers * BATCH * heads * SEQ**2) == SOFTCAP_BYTES


@pytest.mark.parametrize(("dtype", "moment_bytes"), [(torch.float32, 4), (torch.bfloat16, 2)])
@pytest.mark.parametrize("name", ["adamw", "adamw-fused"])
def test_adamw_step_temporaries_match_the_optimizer_table(name: str, dtype, moment_bytes: int) -> None:
    """torch's default AdamW (foreach, as on a GPU) holds one second-moment copy of every parameter during its
    step (fp32 for adapters, the weights' dtype for full fine-tuning); fused AdamW none. Measured on the ops."""
    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(96, 160, dtype=dtype)) for _ in range(6)]
    optimizer = torch.optim.AdamW(params, lr=1e-3, **({"fused": True} if name == "adamw-fused" else {"foreach": True}))
    for _ in range(2):  # the second step: the moments exist, as in every step but the first
        for p in params:
            p.grad = torch.randn_like(p)
        measured = peak_new_bytes(optimizer.step)
    table = OPTIMIZERS[name]
    expected = table.step_moments * table.state_bytes / 2 * moment_bytes / 4  # the model's moment, at this dtype
    assert measured == expected * sum(p.numel() for p in params)
