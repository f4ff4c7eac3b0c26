"""The published figure on PEFT usage, shown until a scan of one's own is saved.

From Hugging Face's "Beyond LoRA: Can you beat the most popular fine-tuning technique?" blog post
(https://huggingface.co/blog/peft-beyond-lora, published 2026-06-18): of the Hub model cards that
name exactly one PEFT technique, the share that name LoRA. It is *their* count, not ours, and is
always labelled as published; ``peft-advise scan`` measures it anew.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PublishedShare:
    title: str
    url: str
    published: str  # ISO date of the post
    cards: int  # model cards naming exactly one PEFT technique (the sample)
    lora_cards: int

    @property
    def lora_share(self) -> float:
        return self.lora_cards / self.cards


BEYOND_LORA = PublishedShare(
    title="Beyond LoRA: Can you beat the most popular fine-tuning technique?",
    url="https://huggingface.co/blog/peft-beyond-lora",
    published="2026-06-18",
    cards=20_834,
    lora_cards=20_509,
)
