"""llama.cpp as the judge: convert each LoRA with llama.cpp's own converter, run it, compare with PEFT.

Builds the cases (:mod:`cases`), installs ``llama-cpp-python`` into a venv of its own (compiled from
source: about 12 minutes on 2 cores, once) with the CPU torch and transformers its converters need, and
takes ``convert_hf_to_gguf.py`` / ``convert_lora_to_gguf.py`` and ``gguf-py`` from the same sdist (the
llama.cpp revision the bindings were built from). The base model and each converted LoRA become f32 GGUF
files; ``Llama(lora_path=...)`` evaluates every prompt prefix and its last-position logits are compared with
PEFT's reload of the same LoRA folder.

Run: ``python benchmarks/consumers/llama_cpp.py [--work DIR] [--venv DIR]`` (needs ``pip install
sentencepiece protobuf`` here for the tokenizer).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cases as shared

LLAMA_CPP = "llama-cpp-python==0.3.36"
CONVERTER_NEEDS = ["torch==2.13.0", "transformers", "sentencepiece", "numpy", "safetensors", "protobuf"]

CHILD = r"""
import json, sys
import numpy as np
from llama_cpp import Llama

cases, ggufs = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
results = {}
for method, lora in ggufs["loras"].items():
    llm = Llama(model_path=ggufs["base"], lora_path=lora, logits_all=True, n_ctx=128, verbose=False, seed=0)
    rows = []
    for ids in cases["prefixes"]:
        llm.reset()
        llm.eval(ids)
        logits = np.asarray(llm.scores[len(ids) - 1], dtype=np.float64)
        logp = logits - logits.max() - np.log(np.exp(logits - logits.max()).sum())
        top = np.argsort(-logp)[:20]
        rows.append({str(int(t)): float(logp[t]) for t in top})
    results[method] = rows
json.dump(results, open(sys.argv[3], "w"))
"""


def ensure_venv(venv: Path) -> tuple[Path, Path]:
    """The venv's python and the llama.cpp source folder (converters and gguf-py) of the same sdist."""
    python = venv / "bin" / "python"
    source = venv / "llama.cpp"
    if not (venv / ".ready").exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", LLAMA_CPP, *CONVERTER_NEEDS], check=True)
        sdist = venv / "sdist"
        download = ["download", "-q", "--no-deps", "--no-binary", ":all:", LLAMA_CPP, "-d", str(sdist)]
        subprocess.run([str(python), "-m", "pip", *download], check=True)
        archive = next(sdist.glob("*.tar.gz"))
        with tarfile.open(archive) as tar:
            # the converters, the per-architecture `conversion` package they import, and gguf-py
            members = [
                m
                for m in tar.getmembers()
                if "/vendor/llama.cpp/" in m.name
                and (m.name.endswith(("convert_hf_to_gguf.py", "convert_lora_to_gguf.py")) or
                     "/gguf-py/" in m.name or "/vendor/llama.cpp/conversion/" in m.name)
            ]  # fmt: skip
            tar.extractall(venv / "src", members=members, filter="data")  # fmt: skip
        found = next((venv / "src").glob("*/vendor/llama.cpp"))
        found.rename(source)
        (venv / ".ready").write_text(LLAMA_CPP)
    return python, source


def main() -> int:
    args = shared.arguments(__doc__, "/tmp/peft-advisor-llamacpp-venv")
    cases = shared.build(args.work)
    python, source = ensure_venv(args.venv)
    env = {**os.environ, "PYTHONPATH": str(source / "gguf-py"), "HF_HUB_OFFLINE": "1"}
    base_gguf = args.work / "llama-f32.gguf"
    if not base_gguf.exists():
        subprocess.run([str(python), str(source / "convert_hf_to_gguf.py"), cases["base"], "--outtype", "f32",
                        "--outfile", str(base_gguf)], check=True, env=env)  # fmt: skip
    loras = {}
    for method, case in cases["methods"].items():
        out = args.work / f"{method.lower()}-lora-f32.gguf"
        subprocess.run([str(python), str(source / "convert_lora_to_gguf.py"), case["lora"], "--base", cases["base"],
                        "--outtype", "f32", "--outfile", str(out)], check=True, env=env)  # fmt: skip
        loras[method] = str(out)
    ggufs = args.work / "ggufs.json"
    ggufs.write_text(json.dumps({"base": str(base_gguf), "loras": loras}))
    child, results = args.work / "llama_cpp_child.py", args.work / "llama_cpp_results.json"
    child.write_text(CHILD)
    subprocess.run([str(python), str(child), str(args.work / "cases.json"), str(ggufs), str(results)], check=True,
                   env=env)  # fmt: skip
    got = json.loads(results.read_text())
    return shared.report(
        cases, f"llama.cpp ({LLAMA_CPP}, its convert_lora_to_gguf.py)", got, args.work / "llama_cpp_table.json"
    )


if __name__ == "__main__":
    raise SystemExit(main())
