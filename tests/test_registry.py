"""The method registry: introspected from the installed peft, shipped as JSON, resolvable by alias."""

from __future__ import annotations

import json

import pytest

from advisor.errors import UserError
from advisor.methods.registry import (
    SHIPPED_REGISTRY,
    installed_peft_version,
    load_registry,
    refresh_registry,
    registry_from_file,
    registry_staleness,
    user_registry_path,
)


def test_shipped_registry_matches_introspection_of_installed_peft() -> None:
    peft = pytest.importorskip("peft")
    from advisor.methods.introspect import introspect_installed_peft

    shipped = json.loads(SHIPPED_REGISTRY.read_text())
    if shipped["peft_version"] != peft.__version__:
        pytest.skip(f"shipped registry is for peft {shipped['peft_version']}, {peft.__version__} installed")
    fresh = introspect_installed_peft(probe=False)  # the probe's claims: tests/test_capabilities.py
    assert fresh["methods"] == [{k: v for k, v in m.items() if k != "capabilities"} for m in shipped["methods"]]


def test_every_peft_type_is_registered_with_capabilities() -> None:
    peft_types = pytest.importorskip("peft.utils.peft_types")
    registry = load_registry()
    assert {m.peft_type for m in registry.methods if m.peft_type} == {p.value for p in peft_types.PeftType}
    oft, lora, prompt = registry.resolve("oft"), registry.resolve("lora"), registry.resolve("prompt_tuning")
    assert oft.kind == "weight" and oft.can_merge and oft.peft_to_lora == "no"  # peft 0.21 cannot convert OFT
    assert "Linear" in oft.layer_types
    assert lora.quantized_base and {"bnb-4bit", "bnb-8bit"} <= set(lora.quantization)
    assert lora.vllm_native and lora.lora_convertible
    assert prompt.kind == "prompt" and not prompt.can_merge and not prompt.lora_convertible
    assert registry.resolve("loha").peft_to_lora == "partial"  # Linear yes, Conv no
    assert registry.resolve("vera").peft_to_lora == "yes"
    assert registry.resolve("shira").peft_to_lora == "no"  # sparse delta: peft refuses SVD


def test_aliases_resolve_spelling_insensitively() -> None:
    registry = load_registry()
    assert registry.resolve("Prefix-Tuning").peft_type == "PREFIX_TUNING"
    assert registry.resolve("prefixtuning").peft_type == "PREFIX_TUNING"
    assert registry.resolve("(IA)^3").peft_type == "IA3"
    assert registry.resolve("full-finetuning").kind == "full"
    assert registry.for_peft_type(None).name == "full"
    with pytest.raises(UserError, match=r"unknown PEFT method 'lorax'.*lora"):
        registry.resolve("lorax")


def test_refresh_caches_per_peft_version_and_is_then_preferred(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("peft")
    from advisor.methods import behaviour

    # Each method's probe is held in test_capabilities.py; here LoRA and Lily are probed for real and
    # the others keep the shipped claims, so that caching is tested without minutes of probing.
    shipped = {m["peft_type"]: m["capabilities"] for m in json.loads(SHIPPED_REGISTRY.read_text())["methods"]}
    real = behaviour.probe_methods

    def some_probed(todo, **kwargs):
        probed = real([t for t in todo if t[0] in {"LORA", "LILY"}], **kwargs)
        kept = {pt: {k: behaviour.Claim(**v) for k, v in shipped[pt].items()} for pt, _, _ in todo}
        return {**kept, **probed}

    monkeypatch.setattr(behaviour, "probe_methods", some_probed)
    seen: list[str] = []
    registry, path = refresh_registry(progress=lambda name, done, total: seen.append(name))
    assert set(seen) == {"LORA", "LILY"}
    assert not registry.resolve("lily").can_merge and registry.resolve("lora").serving("vllm") == "native"
    assert path == user_registry_path(registry.peft_version)
    assert path.exists()
    load_registry.cache_clear()
    assert load_registry().source == str(path)
    assert registry_staleness(load_registry()) is None


def test_staleness_is_reported_for_another_peft_version(tmp_path) -> None:
    data = json.loads(SHIPPED_REGISTRY.read_text())
    data["peft_version"] = "0.0.1"
    other = tmp_path / "methods.json"
    other.write_text(json.dumps(data))
    if installed_peft_version() is None:
        pytest.skip("peft is not installed")
    assert "peft-advise methods --refresh" in registry_staleness(registry_from_file(other))
