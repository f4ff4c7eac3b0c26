"""Adapters of Diffusers models: an OFT adapter on a tiny FLUX transformer inside a pipeline folder.

Diffusers' own loader is the judge: the written ``pytorch_lora_weights.safetensors``, loaded with
``FluxTransformer2DModel.load_lora_adapter(prefix="transformer")``, must reproduce what PEFT computes
with the original OFT adapter.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from advisor.cli import app

diffusers = pytest.importorskip("diffusers")
from diffusers_factory import MODELS, make_oft, make_pipeline, served_by_diffusers  # noqa: E402


def invoke(*args: object):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def flux_pipeline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_pipeline(tmp_path_factory.mktemp("flux-pipeline"), "flux")


@pytest.fixture(scope="module")
def flux_oft(flux_pipeline: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_oft(flux_pipeline, "flux", tmp_path_factory.mktemp("flux-oft"))


@pytest.mark.slow
@pytest.mark.parametrize("kind", list(MODELS))
def test_oft_on_a_pipeline_converts_and_diffusers_reproduces_it(kind: str, tmp_path: Path) -> None:
    pipeline = make_pipeline(tmp_path / "pipeline", kind)
    adapter = make_oft(pipeline, kind, tmp_path / "oft")
    out = tmp_path / "lora"
    result = invoke("convert", adapter, out, "--for", "diffusers", "--rank", "4096", "--base-model", pipeline)
    assert result.exit_code == 0, result.output
    assert "fidelity       1.0000" in result.stdout and "ready for diffusers" in result.stdout

    effect, error = served_by_diffusers(pipeline, kind, adapter, out)  # Diffusers' own loader and forward
    assert effect > 1e-3, "the adapter must change the outputs, or the check proves nothing"
    assert error <= 1e-3 * effect


@pytest.mark.slow
def test_pipeline_bad_inputs_are_one_line_and_write_nothing(
    flux_pipeline: Path, flux_oft: Path, tmp_path: Path, tiny_llama: Path
) -> None:
    import shutil

    from adapter_factory import make_adapter

    empty = tmp_path / "no-transformer"
    empty.mkdir()
    shutil.copy(flux_pipeline / "model_index.json", empty / "model_index.json")
    result = invoke("convert", flux_oft, tmp_path / "a", "--for", "diffusers", "--base-model", empty)
    assert result.exit_code == 2 and "transformer listed in model_index.json but not there" in result.stderr
    llama_adapter = make_adapter("OFT", "llama", tiny_llama, tmp_path / "llama-oft")
    result = invoke("convert", llama_adapter, tmp_path / "b", "--for", "diffusers", "--base-model", flux_pipeline)
    assert result.exit_code == 2 and "match no component of the pipeline" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
