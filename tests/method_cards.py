"""Hand-written model cards for techniques the real corpus lacks, and traps, with the expected verdict.

Real non-LoRA cards are rare on the Hub (../shared/model-cards has none for IA3, OFT, BOFT, LoHa,
LoKr or VeRA), so these follow the shapes real cards take: PEFT's auto template with a tag, a
custom card that names the method, a config dump in a code block, and the keyword traps.
"""

TEMPLATE = """---
base_model: {base}
library_name: peft
tags:
- base_model:adapter:{base}
{tags}---

# Model Card for Model ID

<!-- Provide a quick summary of what the model is/does. e.g. LoRA, prefix tuning, IA3 -->

## Model Details

- **Developed by:** [More Information Needed]
- **Finetuned from model [optional]:** {base}

{body}

### Framework versions

- PEFT 0.17.1
"""


def template(body: str, tags: str = "", base: str = "meta-llama/Llama-3.2-1B") -> str:
    return TEMPLATE.format(body=body, tags=tags, base=base)


CARDS: dict[str, tuple[str, list[str]]] = {
    "ia3-custom": (
        "# T0-style IA3 adapter\n\nTrained with (IA)^3 (infused adapter by inhibiting and amplifying inner "
        "activations) on flan-t5-base using PEFT's `IA3Config`.",
        ["ia3"],
    ),
    "ia3-template-tag": (template("Training used the default settings.", tags="- ia3\n"), ["ia3"]),
    "oft-custom": (
        "# OFT adapter for SDXL\n\nFine-tuned with OFT (orthogonal fine-tuning), block size 32, via `OFTConfig`.",
        ["oft"],
    ),
    "oft-microsoft-trap": (
        "# Phi-3 OFT adapter\n\nBase model by Microsoft; software license MIT. PEFT method: OFT with COFT enabled.",
        ["oft"],
    ),
    "boft-custom": ("# BOFT DreamBooth\n\nButterfly orthogonal fine-tuning (BOFT) of the UNet.", ["boft"]),
    "loha-config": (
        '# LoHa on SD 1.5\n\n```json\n{"peft_type": "LOHA", "r": 8, "alpha": 16}\n```',
        ["loha"],
    ),
    "lokr-custom": ("# Style LoKr\n\nA LoKr (Kronecker product) adapter for FLUX, trained with PEFT.", ["lokr"]),
    "vera-custom": ("# VeRA adapter\n\nVeRA with a shared random projection, r=256, on RoBERTa-large.", ["vera"]),
    "vera-name-trap": (
        "# Sentiment model\n\nFine-tuned version of distilbert-base-uncased on SST-2 by Vera Schmidt. "
        "Average accuracy 91%.",
        ["full"],
    ),
    "prompt-tuning": (
        template("We used prompt tuning with 20 virtual tokens initialised from text.", tags=""),
        ["prompt_tuning"],
    ),
    "prefix-tuning-tag": (template("Soft prefixes of length 30.", tags="- prefix-tuning\n"), ["prefix_tuning"]),
    "p-tuning": ("# GPT-2 P-Tuning\n\nP-tuning v1 with a prompt encoder (MLP), 20 virtual tokens.", ["p_tuning"]),
    "adalora-named": (
        "# AdaLoRA adapter\n\nTrained with AdaLoRA (target_r=8, init_r=12) on DeBERTa-v3 for MNLI.",
        ["adalora"],
    ),
    "lycoris-locon": ("# Anime LoCon\n\nLyCORIS LoCon trained with kohya sd-scripts.", ["lycoris"]),
    "galore-full": ("# Llama 7B GaLore\n\nPre-trained from scratch with GaLore on C4, rank 512.", ["galore"]),
    "longlora": ("# LongLoRA 32k\n\nContext extended with LongLoRA (shifted sparse attention).", ["longlora"]),
    "options-list-trap": (
        template(
            "This adapter's method is not stated. PEFT supports many methods, such as LoRA, IA3 and prefix tuning."
        ),
        ["unknown"],
    ),
    "comment-trap": (template("<!-- e.g. LoRA, OFT, IA3 -->\nNothing else is known."), ["unknown"]),
    "adapter-word-trap": (
        "# Power adapter detector\n\nA ResNet classifier for photos of power adapters and chargers, trained "
        "for 20 epochs.",
        ["full"],
    ),
    "cpt-trap": (
        "# Legal Llama\n\nCPT (continued pre-training) of Llama-3-8B on 2B tokens of case law.",
        ["full"],
    ),
    "no-method-base": ("# BERT base\n\nPretrained on Wikipedia and BookCorpus.", ["none"]),
    "qlora-comparison": (
        "# QLoRA adapter\n\nTrained with QLoRA (4-bit NF4). Compared to full fine-tuning and to DoRA, it "
        "needs far less memory.",
        ["qlora"],
    ),
}
