"""The cases every consumer check serves: a small Llama with a real tokenizer, converted adapters, PEFT's answers.

``build(work)`` writes, under ``work``:

- ``llama/``: a random Llama (2 layers, hidden 256, head size 64) in safetensors with a SentencePiece
  tokenizer trained on the converter's built-in prompts (``tokenizer.model``: llama.cpp's converter reads it);
- ``<method>/`` and ``<method>-lora/`` for OFT, BOFT, HRA and IA³: an adapter with a seeded non-trivial update,
  and its conversion by ``peft-advise convert --for vllm`` at full rank;
- ``cases.json``: the prompt prefixes (token ids) and, for each method, PEFT's next-token log-probabilities
  after each prefix: with the converted LoRA reloaded by PEFT (the reference a consumer must match), with the
  original adapter, and for the bare base model (how far the adapter moves them at all).

A consumer check loads ``llama/`` with ``<method>-lora/`` in its own engine and compares its log-probs with
the reference (``compare``). Needs ``pip install sentencepiece protobuf``.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO), str(REPO / "tests")]  # the adapter factory the tests use

METHODS = ("OFT", "BOFT", "HRA", "IA3")
LLAMA = {
    "hidden_size": 256,
    "intermediate_size": 512,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 256,
    "tie_word_embeddings": False,
}
PROMPTS = (
    "Natalia sold clips to 48 of her friends in April.",
    "Write a Python function that returns the n-th Fibonacci number.",
    "The capital of Australia is Canberra, not Sydney.",
    "Once upon a time there lived an old clockmaker.",
)
TOP_K = 20  # log-probs a consumer returns per position (vLLM's default ceiling)


def _tokenizer(folder: Path) -> Any:
    import sentencepiece as spm
    from transformers import LlamaTokenizer

    from converters.calibration import BUILTIN_PROMPTS

    corpus = folder / "corpus.txt"
    corpus.write_text("\n".join(BUILTIN_PROMPTS * 4), encoding="utf-8")
    spm.SentencePieceTrainer.train(
        input=str(corpus), model_prefix=str(folder / "tokenizer"), vocab_size=400, model_type="bpe",
        byte_fallback=True, bos_id=1, eos_id=2, unk_id=0, pad_id=-1, minloglevel=2,
    )  # fmt: skip
    corpus.unlink()
    (folder / "tokenizer.vocab").unlink()
    tokenizer = LlamaTokenizer.from_pretrained(folder, legacy=False)  # converts tokenizer.model (needs protobuf)
    if not tokenizer("The quick brown fox.")["input_ids"]:
        raise SystemExit("the SentencePiece tokenizer did not load: pip install sentencepiece protobuf")
    tokenizer.save_pretrained(folder)
    return tokenizer


def _base(work: Path) -> tuple[Path, Any]:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    folder = work / "llama"
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = _tokenizer(folder)
    torch.manual_seed(0)
    config = LlamaConfig(**LLAMA, vocab_size=len(tokenizer), bos_token_id=1, eos_token_id=2)
    config.architectures = ["LlamaForCausalLM"]
    LlamaForCausalLM(config).save_pretrained(folder)
    return folder, tokenizer


def _adapter(method: str, base: Path, folder: Path) -> Path:
    import peft
    import torch
    from adapter_factory import save_trained
    from transformers import AutoModelForCausalLM

    from advisor.methods.behaviour import probe_config
    from advisor.methods.registry import load_registry

    torch.manual_seed(1)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    config = probe_config(method, load_registry().for_peft_type(method).config_class)
    return save_trained(peft.get_peft_model(model, config), folder, base)


def _logprobs(model: Any, prefixes: list[list[int]]) -> list[list[float]]:
    import torch

    rows = []
    with torch.no_grad():
        for ids in prefixes:
            logits = model(input_ids=torch.tensor([ids])).logits[0, -1].double()
            rows.append(torch.log_softmax(logits, -1).tolist())
    return rows


def build(work: Path) -> dict[str, Any]:
    """Write the base model, the adapters and their conversions, and PEFT's log-probs; returns cases.json."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from converters.convert import ConvertOptions, convert_adapter

    cases_file = work / "cases.json"
    if cases_file.exists():
        return json.loads(cases_file.read_text())
    base, tokenizer = _base(work)
    prefixes = []
    for prompt in PROMPTS:
        ids = tokenizer(prompt)["input_ids"]
        prefixes += [ids[:n] for n in range(2, len(ids) + 1, 3)]
    fresh = lambda: AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32).eval()  # noqa: E731
    cases: dict[str, Any] = {"base": str(base), "prefixes": prefixes, "bare": _logprobs(fresh(), prefixes)}
    cases["methods"] = {}
    for method in METHODS:
        source = _adapter(method, base, work / method.lower())
        lora = work / f"{method.lower()}-lora"
        result = convert_adapter(
            str(source), lora, ConvertOptions(rank=512, target="vllm", device="cpu", overwrite=True)
        )
        ranks = sorted(set(result.ranks.values()))
        cases["methods"][method] = {
            "lora": str(lora),
            "rank": ranks[-1],
            "fidelity": result.fidelity.fidelity,
            "adapter": _logprobs(PeftModel.from_pretrained(fresh(), str(source)).eval(), prefixes),
            "peft_lora": _logprobs(PeftModel.from_pretrained(fresh(), str(lora)).eval(), prefixes),
        }
    cases_file.write_text(json.dumps(cases))
    return cases


def compare(cases: dict[str, Any], method: str, got: list[dict[str, float]]) -> dict[str, Any]:
    """A consumer's top-k log-probs per prefix (token id → log-prob) against PEFT's, for one converted adapter.

    ``max_abs_diff``: the largest |consumer − PEFT| over the returned tokens; ``top1``: how often the
    consumer's most likely token is PEFT's; ``effect``: the largest |adapter − bare| log-prob change on the
    same tokens (what a wrong or missing LoRA would get wrong).
    """
    peft_rows = cases["methods"][method]["peft_lora"]
    bare = cases["bare"]
    diff = effect = 0.0
    agree = 0
    for row, mine, base in zip(peft_rows, got, bare, strict=True):
        for token, logprob in mine.items():
            diff = max(diff, abs(logprob - row[int(token)]))
            effect = max(effect, abs(row[int(token)] - base[int(token)]))
        best = max(mine, key=mine.get)
        agree += int(int(best) == max(range(len(row)), key=row.__getitem__))
    return {
        "method": method,
        "rank": cases["methods"][method]["rank"],
        "fidelity": cases["methods"][method]["fidelity"],
        "max_abs_diff": diff,
        "effect": effect,
        "top1": agree / len(got),
        "ok": diff < 0.05 * max(effect, 1e-6) and math.isfinite(diff),
    }


def arguments(doc: str, venv: str) -> Any:
    """The consumer scripts' options: where the cases live and where the engine's own venv goes."""
    import argparse

    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path("/tmp/peft-advisor-consumers"))
    parser.add_argument("--venv", type=Path, default=Path(venv))
    return parser.parse_args()


def report(cases: dict[str, Any], consumer: str, got: dict[str, Any], table: Path) -> int:
    """Compare every method's consumer log-probs with PEFT's, print the table, save it; exit code 0 if all match."""
    rows = [compare(cases, method, got[method]) for method in cases["methods"]]
    print_table(consumer, rows)
    table.write_text(json.dumps(rows, indent=1))
    return 0 if all(r["ok"] for r in rows) else 1


def print_table(consumer: str, rows: list[dict[str, Any]]) -> None:
    print(f"\n{consumer}: converted adapters (full rank, --for vllm) against PEFT's reload of the same folder")
    print(f"{'method':<8}{'rank':>6}{'fidelity':>10}{'max |Δ logprob|':>17}{'adapter effect':>16}{'top-1':>8}  ok")
    for r in rows:
        print(
            f"{r['method']:<8}{r['rank']:>6}{r['fidelity']:>10.4f}{r['max_abs_diff']:>17.2e}{r['effect']:>16.3f}"
            f"{r['top1']:>8.2f}  {'yes' if r['ok'] else 'NO'}"
        )


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/peft-advisor-consumers")
    built = build(out)
    print(f"wrote {out}: {len(built['prefixes'])} prefixes, methods {', '.join(built['methods'])}")
