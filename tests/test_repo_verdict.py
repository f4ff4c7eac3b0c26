"""One verdict per repo: the card, adapter_config.json, the base model and the files read together.

The cards here are the shapes real Hub adapter repos have: PEFT's old auto-generated template (no method
named, a bitsandbytes block listing every field), unsloth 4-bit bases, Diffusers and kohya LoRA files.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from typer.testing import CliRunner

from advisor.cli import app
from hub_scan.records import CardRecord
from hub_scan.scan import scan_record

runner = CliRunner()


def template_card(base_model: str, *, load_in_4bit: bool | None = None) -> str:
    """PEFT's auto-generated card of the 0.4-0.6 era: it names no method; the quantisation block lists all."""
    block = ""
    if load_in_4bit is not None:
        block = (
            "\n## Training procedure\n\nThe following `bitsandbytes` quantization config was used during training:\n"
            "- quant_method: bitsandbytes\n"
            f"- load_in_8bit: {not load_in_4bit}\n"
            f"- load_in_4bit: {load_in_4bit}\n"
            "- llm_int8_threshold: 6.0\n"
            "- bnb_4bit_quant_type: nf4\n"
            "- bnb_4bit_use_double_quant: True\n"
            "- bnb_4bit_compute_dtype: bfloat16\n"
        )
    return (
        f"---\nlibrary_name: peft\nbase_model: {base_model}\n---\n\n# Model Card for Model ID\n\n"
        "<!-- Provide a quick summary of what the model is/does. -->\n\n## Model Details\n\n"
        f"- **Developed by:** [More Information Needed]\n{block}\n### Framework versions\n\n- PEFT 0.6.2\n"
    )


def adapter_repo(root: Path, name: str, card: str, config: dict | None) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "README.md").write_text(card)
    if config is not None:
        (folder / "adapter_config.json").write_text(json.dumps(config))
    return folder


def lora_config(base: str, **extra: object) -> dict:
    return {"peft_type": "LORA", "r": 16, "base_model_name_or_path": base, "target_modules": ["q_proj"], **extra}


def write_safetensors(path: Path, names: list[str]) -> None:
    header = {
        name: {"dtype": "F16", "shape": [2, 2], "data_offsets": [8 * i, 8 * i + 8]} for i, name in enumerate(names)
    }
    blob = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(blob)) + blob + b"\0" * (8 * len(names)))


def test_scan_dir_reports_qlora_and_dora_with_inferred_evidence(tmp_path: Path) -> None:
    unsloth = "unsloth/llama-3-8b-bnb-4bit"
    adapter_repo(tmp_path, "qlora-base", template_card(unsloth), lora_config(unsloth))
    adapter_repo(
        tmp_path, "qlora-block", template_card("meta-llama/Llama-2-7b-hf", load_in_4bit=True), lora_config("x")
    )
    adapter_repo(
        tmp_path,
        "dora",
        template_card("meta-llama/Llama-2-7b-hf"),
        lora_config("meta-llama/Llama-2-7b-hf", use_dora=True),
    )
    adapter_repo(tmp_path, "lora-8bit", template_card("meta-llama/Llama-2-7b-hf", load_in_4bit=False), lora_config("x"))
    result = runner.invoke(app, ["scan", "dir", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    cards = {c["id"]: c for c in json.loads(result.output)["cards"]}
    assert cards["qlora-base"]["techniques"] == ["qlora"]
    inferred = cards["qlora-base"]["evidence"]["qlora"][-1]
    assert inferred["where"] == "inferred" and "4-bit" in inferred["rule"] and unsloth in inferred["text"]
    block = cards["qlora-block"]["evidence"]["qlora"][-1]
    assert cards["qlora-block"]["techniques"] == ["qlora"] and "load_in_4bit: True" in block["text"]
    assert cards["dora"]["techniques"] == ["dora"] and cards["dora"]["card_only"] == []  # the text names nothing
    assert cards["dora"]["evidence"]["dora"][0] == {
        "text": "adapter_config.json: peft_type LORA, use_dora: true",
        "where": "config",
        "line": 0,
        "usage": True,
    }
    assert cards["lora-8bit"]["techniques"] == ["lora"]  # load_in_4bit: False: its bnb_4bit_* defaults say nothing
    stats = json.loads(result.output)["stats"]
    # the card text alone sees the two 4-bit adapters (a PEFT card on a 4-bit base), not the DoRA or the LoRA
    assert stats["exactly_one"]["cards"] == 4 and stats["exactly_one_card_only"]["cards"] == 2


def record(card: str, **fields: object) -> CardRecord:
    return CardRecord(id="r", card=card, **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("card", "fields", "expected", "where"),
    [
        # the config is ground truth for the family: a card that names LoRA but ships IA3
        ("This adapter was trained with LoRA.", {"config_peft_type": "IA3"}, ("ia3",), "config"),
        ("---\nlibrary_name: peft\n---\nAn adapter.", {"config_peft_type": "ADALORA"}, ("adalora",), "config"),
        # a card that says QLoRA for a LORA config keeps the more specific name
        ("Fine-tuned with QLoRA.", {"config_peft_type": "LORA"}, ("qlora",), "config"),
        # no config: Diffusers' LoRA file, kohya and LyCORIS tensor names
        ("A style.", {"files": ("README.md", "pytorch_lora_weights.safetensors")}, ("lora",), "files"),
        (
            "A style.",
            {"weight_keys": ("lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight",)},
            ("lora",),
            "files",
        ),
        ("A style.", {"weight_keys": ("lora_unet_mid_block_attentions_0_proj_in.hada_w1_a",)}, ("loha",), "files"),
        ("A style.", {"weight_keys": ("lora_te_text_model_encoder_layers_0_mlp_fc1.lokr_w1",)}, ("lokr",), "files"),
        # LyCORIS / sd-scripts: DoRA's dora_scale beside lora_down/up (sorted as a header's names are), GLoRA,
        # diag-OFT (sd-scripts' oft_ prefix), full weight differences
        (
            "A style.",
            {"weight_keys": ("lora_unet_a_b.alpha", "lora_unet_a_b.dora_scale", "lora_unet_a_b.lora_down.weight")},
            ("dora",),
            "files",
        ),
        ("A style.", {"weight_keys": ("lora_unet_a_b.a1.weight", "lora_unet_a_b.alpha")}, ("glora",), "files"),
        ("A style.", {"weight_keys": ("oft_unet_a_b.alpha", "oft_unet_a_b.oft_blocks")}, ("oft",), "files"),
        ("A style.", {"weight_keys": ("lora_te1_a_b.diff", "lora_te1_a_b.diff_b")}, ("full",), "files"),
        # nothing to go on: no verdict, never a guess
        ("A style.", {"files": ("README.md", "model.safetensors")}, (), None),
    ],
)
def test_repo_evidence(card: str, fields: dict, expected: tuple[str, ...], where: str | None) -> None:
    scanned = scan_record(record(card, **fields))
    assert scanned.techniques == expected, scanned.evidence
    if where is not None:
        assert any(e["where"] == where for items in scanned.evidence.values() for e in items)


def test_kohya_file_in_a_folder_is_read_from_its_header(tmp_path: Path) -> None:
    folder = tmp_path / "style"
    folder.mkdir()
    (folder / "README.md").write_text("---\ntags: [stable-diffusion]\n---\nMy style.")
    write_safetensors(
        folder / "style.safetensors",
        ["lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight", "lora_unet_x.alpha"],
    )
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "README.md").write_text("Nothing here.")
    (tmp_path / "broken" / "w.safetensors").write_bytes(b"\x00\x01")  # not a safetensors file: says nothing
    result = runner.invoke(app, ["scan", "dir", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    cards = {c["id"]: c for c in json.loads(result.output)["cards"]}
    assert cards["style"]["techniques"] == ["lora"] and cards["style"]["evidence"]["lora"][0]["where"] == "files"
    assert cards["broken"]["techniques"] == []
