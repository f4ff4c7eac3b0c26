"""What the installed peft cannot tell us about its methods, keyed by ``PeftType`` value.

This is the only hand-written knowledge about PEFT methods in the project: display names,
extra aliases, the non-peft baseline (full fine-tuning), and which methods serving stacks load
natively. Capabilities (merge, layer types, quantisation, peft's own LoRA conversion) are
introspected, not listed here.
"""

from __future__ import annotations

DISPLAY_NAMES: dict[str, str] = {
    "LORA": "LoRA",
    "ADALORA": "AdaLoRA",
    "ADAMSS": "AdaMSS",
    "ADAPTION_PROMPT": "Adaption prompt",
    "BEFT": "BEFT",
    "BOFT": "BOFT",
    "C3A": "C3A",
    "CARTRIDGE": "Cartridge",
    "CPT": "CPT",
    "DEFT": "DEFT",
    "DELORA": "DeLoRA",
    "FOURIERFT": "FourierFT",
    "FROD": "FRoD",
    "GLORA": "GLoRA",
    "GRALORA": "GraLoRA",
    "HIRA": "HiRA",
    "HRA": "HRA",
    "IA3": "IA³",
    "LILY": "Lily",
    "LN_TUNING": "LN tuning",
    "LOHA": "LoHa",
    "LOKR": "LoKr",
    "MISS": "MiSS",
    "MULTITASK_PROMPT_TUNING": "Multitask prompt tuning",
    "OFT": "OFT",
    "OSF": "OSF",
    "P_TUNING": "P-tuning",
    "PEANUT": "PEANuT",
    "POLY": "Poly",
    "PREFIX_TUNING": "Prefix tuning",
    "PROMPT_TUNING": "Prompt tuning",
    "PSOFT": "PSOFT",
    "PVERA": "PVeRA",
    "RANDLORA": "RandLoRA",
    "ROAD": "RoAd",
    "SHADOW": "Shadow",
    "SHIRA": "SHiRA",
    "SUPERTUNING": "SuperTuning",
    "TINYLORA": "TinyLoRA",
    "TRAINABLE_TOKENS": "Trainable tokens",
    "UNILORA": "UniLoRA",
    "VBLORA": "VB-LoRA",
    "VERA": "VeRA",
    "WAVEFT": "WaveFT",
    "XLORA": "X-LoRA",
}

# Extra spellings. Case, '-', '_' and spaces are ignored anyway ("prefix-tuning" == "prefixtuning").
EXTRA_ALIASES: dict[str, tuple[str, ...]] = {
    "IA3": ("(ia)^3", "(ia)3", "ia³"),
    "OFT": ("orthogonal fine-tuning", "orthogonal finetuning"),
    "BOFT": ("butterfly orthogonal fine-tuning",),
    "VERA": ("vector-based random matrix adaptation",),
    "HRA": ("householder reflection adaptation",),
    "CPT": ("context-aware prompt tuning",),
    "ADAPTION_PROMPT": ("llama-adapter", "adaptation prompt"),
    "P_TUNING": ("prompt encoder",),
    "LN_TUNING": ("layernorm tuning", "layer norm tuning"),
    "FULL": ("full fine-tuning", "full finetuning", "full-ft", "fft"),
}

# Full fine-tuning is no PEFT method, but the benchmarks run it as the baseline to beat.
FULL_FINETUNING: dict = {
    "peft_type": None,
    "name": "full",
    "kind": "full",
    "config_class": None,
    "tuner_module": None,
    "config_defaults": {},
    "layer_types": ["all"],
    "can_merge": True,
    "peft_to_lora": "no",
    "peft_to_lora_layers": {},
    "quantization": [],
}

# Adapters that a serving stack loads as trained (docs/lora-consumers.md), used only for a registry
# file without probe results (an older cache): the probe establishes these by running the consumer
# checks on each method's saved adapter. vLLM reads plain LoRA only; Diffusers reads LoRA (DoRA and
# bias too) in its own file.
VLLM_NATIVE = frozenset({"LORA"})
DIFFUSERS_NATIVE = frozenset({"LORA"})

# Which methods our converter exports is established by converting each one on a tiny model
# (advisor/methods/behaviour.py, stored in the registry). These are the reasons, in words, shown
# for methods the probe found it cannot export; anything not listed shows what the probe saw.
NOT_CONVERTIBLE: dict[str, str] = {
    "LN_TUNING": "it tunes LayerNorm weights, which a LoRA adapter cannot target",
    "LILY": "peft cannot merge Lily layers (merge raises NotImplementedError), so there is no weight update to read",
}

# Config fields a method fills in *during* training (AdaLoRA's pruned rank masks): part of a
# trained adapter's config, but not something to copy into a new run.
LEARNED_CONFIG_FIELDS: dict[str, frozenset[str]] = {"ADALORA": frozenset({"rank_pattern"})}

# Techniques that model cards name but that are not a peft method of their own (or not in peft at
# all), for the Hub scanner's card classifier. ``family`` is the registry method a usage statistic
# rolls them up into (QLoRA and DoRA adapters are LoRA adapters: peft_type LORA in their config);
# None: outside peft's methods. ``peft_like``: counted among PEFT techniques in the usage shares
# (GaLore trains every weight, only its optimizer state is low-rank).
CARD_TECHNIQUES: dict[str, dict] = {
    "qlora": {"display": "QLoRA", "family": "lora", "peft_like": True, "aliases": ("q-lora",)},
    "dora": {
        "display": "DoRA",
        "family": "lora",
        "peft_like": True,
        "aliases": ("weight-decomposed low-rank adaptation",),
        "identifiers": ("use_dora=True", "use_dora = True", "use_dora: true", '"use_dora": true'),
    },
    "longlora": {"display": "LongLoRA", "family": "lora", "peft_like": True, "aliases": ()},
    "lycoris": {"display": "LyCORIS", "family": None, "peft_like": True, "aliases": ("LoCon", "lo-con")},
    "textual_inversion": {
        "display": "Textual inversion",
        "family": None,
        "peft_like": True,
        "aliases": ("textual inversion", "textual-inversion"),
    },
    "galore": {
        "display": "GaLore",
        "family": None,
        "peft_like": False,
        "aliases": ("gradient low-rank projection",),
    },
}

# Method acronyms that mean something else in model cards: the card classifier counts them only
# next to a PEFT word ("CPT adapter", "CPTConfig"), never alone.
AMBIGUOUS_ACRONYMS: dict[str, str] = {
    "CPT": "usually 'continued pre-training' in model cards",
    "OSF": "the Open Science Framework",
    "HRA": "human-resources and health-risk-assessment data sets",
}
