"""Ordinary (non-PEFT) model cards of the kinds that fill the Hub, for a realistic card-dump mix.

The Hub's card dump is mostly not about adapters: quantised re-uploads, Trainer's auto-generated cards of
full fine-tunes, base-model cards, sentence-transformers and vision models, near-empty cards. These
templates follow those shapes (front matter, headings, tables, hyper-parameter lists) with varied length,
so a throughput figure reflects what a real scan meets, not a file of PEFT cards only. Used by
``benchmarks/scan_throughput.py`` and by the prefilter's tests.
"""

from __future__ import annotations

import random

_BASES = ["meta-llama/Llama-3.1-8B", "Qwen/Qwen2.5-7B", "mistralai/Mistral-7B-v0.1", "google/gemma-2-9b"]
_DATASETS = ["imdb", "glue", "squad", "common_voice", "cifar10", "wikitext"]

_TEMPLATES = (
    # a quantised re-upload
    "---\nlicense: apache-2.0\nbase_model: {base}\ntags:\n- gguf\n- llama-cpp\nquantized_by: someone\n---\n"
    "# {name}-GGUF\n\nQuantised files of [{base}](https://huggingface.co/{base}) made with llama.cpp b{n}.\n\n"
    "| File | Quant | Size | Use |\n|---|---|---|---|\n{rows}\n\nRun it with `llama-cli -m {name}.Q4_K_M.gguf`.\n",
    # Trainer's auto-generated card of a full fine-tune
    "---\nlicense: mit\nbase_model: bert-base-uncased\ntags:\n- generated_from_trainer\nmetrics:\n- accuracy\n---\n\n"
    "# {name}\n\nThis model is a fine-tuned version of [bert-base-uncased](https://huggingface.co/bert-base-uncased) "
    "on the {data} dataset.\nIt achieves the following results on the evaluation set:\n- Loss: 0.{n}\n\n"
    "## Training procedure\n\n### Training hyperparameters\n\n- learning_rate: 2e-05\n- train_batch_size: 16\n"
    "- num_epochs: 3\n\n{filler}",
    # a base model's card
    "---\nlicense: other\npipeline_tag: text-generation\nlanguage:\n- en\n---\n# {name}\n\n{name} is a "
    "decoder-only language model with {n} million parameters, pretrained on a mix of web text and code. "
    "It uses grouped-query attention and a 32k vocabulary.\n\n## Evaluation\n\n| Benchmark | Score |\n|---|---|\n"
    "{rows}\n\n## Limitations\n\nThe model can produce inaccurate or biased text. {filler}",
    # sentence-transformers
    "---\npipeline_tag: sentence-similarity\ntags:\n- sentence-transformers\n- feature-extraction\n---\n\n# {name}\n\n"
    "This is a sentence-transformers model: it maps sentences and paragraphs to a 384 dimensional dense vector "
    "space and can be used for clustering or semantic search.\n\n```python\nfrom sentence_transformers import "
    "SentenceTransformer\nmodel = SentenceTransformer('{name}')\nembeddings = model.encode(sentences)\n```\n{filler}",
    # a vision model
    "---\nlibrary_name: timm\nlicense: apache-2.0\ntags:\n- image-classification\n---\n# Model card for {name}\n\n"
    "An image classification model evaluated on {data}.\n\n## Model Details\n- **Params (M):** {n}\n"
    "- **GMACs:** 4.1\n- **Image size:** 224 x 224\n\n{filler}",
    # near empty
    "---\nlicense: cc-by-4.0\n---\n",
    "# {name}\n\nUploaded for a class project. {filler}",
)
_FILLER = (
    "The results below were measured on a single GPU with the default generation settings. ",
    "Please cite the original authors if you use this model in your work. ",
    "For questions, open an issue on the repository. Contributions are welcome. ",
    "The evaluation uses the standard split and reports the mean of three seeds. ",
)


def ordinary_cards(count: int, seed: int = 0) -> list[str]:
    """``count`` ordinary cards of varied kinds and lengths (a few hundred bytes to ~20 kB)."""
    rng = random.Random(seed)
    cards = []
    for i in range(count):
        template = _TEMPLATES[rng.randrange(len(_TEMPLATES))]
        rows = "\n".join(f"| part-{j} | Q{rng.randint(2, 8)}_K | {rng.randint(1, 9)}.{j} GB | ok |" for j in range(6))
        filler = "".join(rng.choice(_FILLER) for _ in range(rng.choice((0, 2, 10, 60, 200))))
        cards.append(
            template.format(
                base=rng.choice(_BASES),
                name=f"model-{i}",
                n=rng.randint(10, 9999),
                data=rng.choice(_DATASETS),
                rows=rows,
                filler=filler,
            )
        )
    return cards
