"""Every method the converter claims, on a tiny random Llama and on the real MiniLM.

Full rank must reproduce the original adapter's outputs to float tolerance (after writing the
folder and reloading it with PEFT on a freshly loaded base model); a low rank must still load,
pass the PEFT consumer check and lose part of the effect, never gain it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from adapter_factory import NEEDS_BIASES, convertible_methods, make_adapter

from converters.convert import ConvertOptions, convert_adapter

METHODS = convertible_methods()


def test_the_registry_claims_the_headline_methods() -> None:
    assert {"OFT", "BOFT", "HRA", "IA3", "ADALORA", "LOHA", "LOKR", "LORA", "VERA"} <= set(METHODS)
    assert not {"PROMPT_TUNING", "PREFIX_TUNING", "LN_TUNING", "POLY"} & set(METHODS)


@pytest.mark.parametrize("arch", ["llama", pytest.param("bert", marks=pytest.mark.slow)])
@pytest.mark.parametrize("peft_type", METHODS)
def test_full_rank_conversion_reproduces_the_adapter(
    peft_type: str, arch: str, tiny_llama: Path, minilm: Path, tmp_path: Path
) -> None:
    base = tiny_llama if arch == "llama" else minilm
    if arch == "llama" and peft_type in NEEDS_BIASES:
        from advisor.methods.behaviour import save_probe_llama  # the probe's Llama has biases

        base = save_probe_llama(tmp_path / "biased-llama")
    source = make_adapter(peft_type, arch, base, tmp_path / "source")
    out = tmp_path / "lora"
    result = convert_adapter(str(source), out, ConvertOptions(rank=4096, factorization="plain", device="cpu"))

    fid = result.fidelity
    assert fid.effect_size > 1e-3, "the test adapter must change the outputs, or the check proves nothing"
    assert fid.output_error < 1e-4
    assert fid.fidelity > 0.999
    if arch == "llama":
        assert fid.top1_agreement == 1.0
        assert fid.kl < 1e-8
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA"
    assert config["base_model_name_or_path"] == str(base)
    assert (out / "README.md").read_text().count(peft_type) >= 1
    assert result.check.passed, result.check.findings

    low = convert_adapter(str(source), None, ConvertOptions(sweep=(2,), dry_run=True, device="cpu"))
    assert {row.factorization for row in low.sweep} <= {"plain", "calibrated"}
    for row in low.sweep:
        assert 0.0 <= row.fidelity.fidelity <= fid.fidelity + 1e-6
        assert row.parameters <= result.parameters
