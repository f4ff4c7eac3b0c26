"""Every capability the registry states, held against behaviour, for every PEFT method.

The shipped registry (advisor/data/methods.json) was made by running each method on a tiny Llama
(advisor/methods/behaviour.py). These tests run the same experiments again and fail when a claim and
what the installed peft does part ways: a merge that raises, a conversion that loses the effect, a
quantised base that does not train. The whole matrix is in the full suite; the fast lane keeps the
methods the product's headline rests on.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from advisor.methods.registry import SHIPPED_REGISTRY, load_registry

peft = pytest.importorskip("peft")

SHIPPED = json.loads(SHIPPED_REGISTRY.read_text())
RECORDS = {m["peft_type"]: m for m in SHIPPED["methods"]}
HEADLINE = {"LORA", "OFT", "LILY", "IA3", "PROMPT_TUNING"}
pytestmark = pytest.mark.skipif(
    SHIPPED["peft_version"] != peft.__version__,
    reason=f"shipped registry is for peft {SHIPPED['peft_version']}, {peft.__version__} is installed",
)


@pytest.fixture(scope="module")
def probe_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from advisor.methods.behaviour import save_probe_llama

    return save_probe_llama(tmp_path_factory.mktemp("probe") / "llama")


@pytest.fixture(scope="module")
def trial_registry():
    """The converter must *try* each method, not consult the claims under test."""
    from advisor.methods.introspect import trying_registry

    return trying_registry(SHIPPED["methods"])


def _params() -> list:
    return [pytest.param(pt, marks=() if pt in HEADLINE else pytest.mark.slow, id=pt.lower()) for pt in sorted(RECORDS)]


@pytest.mark.parametrize("peft_type", _params())
def test_every_claim_holds_against_behaviour(peft_type: str, probe_llama: Path, trial_registry, tmp_path: Path) -> None:
    from advisor.methods.behaviour import MethodProbe

    record = RECORDS[peft_type]
    seen = MethodProbe(peft_type, record["config_class"], record["kind"], probe_llama, tmp_path).run(trial_registry)
    stated = {name: claim["value"] for name, claim in record["capabilities"].items()}
    if importlib.util.find_spec("bitsandbytes") is None:  # the quantised-base claims cannot be re-run here
        stated = {k: v for k, v in stated.items() if not k.startswith("bnb-")}
    observed = {name: claim.value for name, claim in seen.items()}
    differ = {
        name: f"registry says {stated[name]}, now {observed[name]}: {seen[name].detail}"
        for name in stated
        if stated[name] != observed.get(name)
    }
    assert not differ, differ


def test_the_registry_reads_its_capabilities_from_the_claims() -> None:
    """MethodInfo's fields are the probe's values, not the presence of a method in peft's source."""
    registry = load_registry()
    for method in registry.methods:
        if method.peft_type is None:
            continue
        claims = RECORDS[method.peft_type]["capabilities"]
        assert method.can_merge == claims["merge"]["value"], method.name
        assert method.ours_to_lora == claims["ours_to_lora"]["value"], method.name
        assert method.vllm_native == claims["vllm_native"]["value"], method.name
        assert ("bnb-4bit" in method.quantization) == claims["bnb-4bit"]["value"], method.name
        assert (method.peft_to_lora != "no") == claims["peft_to_lora"]["value"], method.name
        assert method.serving("vllm") == (
            "native" if claims["vllm_native"]["value"] else "convert" if claims["vllm_via_convert"]["value"] else None
        ), method.name


def test_headline_facts() -> None:
    """What the issue found wrong, and what the converter is for."""
    registry = load_registry()
    lily, oft, lora, beft = (registry.resolve(n) for n in ("lily", "oft", "lora", "beft"))
    assert not lily.can_merge and "NotImplementedError" in lily.why_not("merge")
    assert lily.serving("vllm") is None
    assert oft.can_merge and oft.peft_to_lora == "no" and oft.serving("vllm") == "convert"
    assert lora.serving("vllm") == "native" and lora.serving("peft") == "native"
    # A bias-only method exports to a LoRA with biases: PEFT loads it, vLLM drops the biases (nothing left).
    assert beft.ours_to_lora and beft.serving("peft") == "native" and beft.serving("vllm") is None
    # Diffusers does not read LoKr tensors: a LoKr adapter reaches Diffusers through the converter.
    assert registry.resolve("lokr").serving("diffusers") == "convert"
    assert all(claim["how"] in {"behaviour", "not established"} for claim in lily.evidence.values())
