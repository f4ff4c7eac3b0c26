"""Diffusers as the judge: OFT adapters on tiny FLUX, SD3 and SD1.5/SDXL-UNet models, converted and served.

For each model kind: a pipeline folder with a seeded random component, an OFT adapter with a seeded
update, ``peft-advise convert --for diffusers --base-model PIPELINE`` at full rank, then Diffusers' own
``Model.load_lora_adapter(prefix=...)`` on a fresh component. Prints the relative error of the served
outputs against PEFT's OFT outputs, as a share of the adapter's effect (target ≤ 1e-3), for each kind.
The same check runs in the test suite (``tests/test_convert_diffusers.py``); this prints the table.

Run: ``python benchmarks/consumers/diffusers_models.py [--work DIR]`` (needs the ``[diffusers]`` extra).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO), str(REPO / "tests")]


def check(kind: str, work: Path) -> dict:
    from diffusers_factory import MODELS, make_oft, make_pipeline, served_by_diffusers

    from converters.convert import ConvertOptions, convert_adapter

    pipeline = make_pipeline(work / kind / "pipeline", kind)
    adapter = make_oft(pipeline, kind, work / kind / "oft")
    out = work / kind / "lora"
    options = ConvertOptions(rank=4096, target="diffusers", base_model=str(pipeline), device="cpu", overwrite=True)
    result = convert_adapter(str(adapter), out, options)
    effect, error = served_by_diffusers(pipeline, kind, adapter, out)
    return {"kind": kind, "class": MODELS[kind][2], "fidelity": result.fidelity.fidelity, "error": error / effect,
            "ok": error <= 1e-3 * effect}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()
    import diffusers
    from diffusers_factory import MODELS

    work = args.work or Path(tempfile.mkdtemp(prefix="diffusers-consumer-"))
    rows = [check(kind, work) for kind in MODELS]
    print(f"\nDiffusers {diffusers.__version__}: load_lora_adapter on a fresh component vs PEFT's OFT outputs")
    print(f"{'model':<11}{'class':<26}{'our fidelity':>14}{'served error / effect':>23}  ok")
    for r in rows:
        ok = "yes" if r["ok"] else "NO"
        print(f"{r['kind']:<11}{r['class']:<26}{r['fidelity']:>14.6f}{r['error']:>23.2e}  {ok}")
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
