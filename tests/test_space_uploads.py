"""Hostile uploads are refused with a message and leave nothing behind; honest ones unpack."""

from __future__ import annotations

import stat
import tempfile
import zipfile
from pathlib import Path

import pytest

from advisor.errors import UserError
from space import uploads


def _zip(path: Path, members: dict[str, bytes], *, symlink: str | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as bundle:
        for name, data in members.items():
            bundle.writestr(name, data)
        if symlink:
            info = zipfile.ZipInfo(symlink)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            bundle.writestr(info, "/etc/passwd")
    return path


def _leftovers() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).glob("peft-advisor-upload-*")}


GOOD = {"oft/adapter_config.json": b'{"peft_type": "OFT"}', "oft/adapter_model.safetensors": b"x" * 100}


def test_a_good_adapter_zip_unpacks(tmp_path: Path) -> None:
    folder = uploads.adapter_folder([_zip(tmp_path / "a.zip", GOOD)])
    assert (folder / "adapter_config.json").read_bytes() == b'{"peft_type": "OFT"}'
    assert (folder / "adapter_model.safetensors").stat().st_size == 100


@pytest.mark.parametrize(
    ("members", "symlink", "message"),
    [
        ({**GOOD, "../../evil.json": b"{}"}, None, "outside the archive"),
        ({**GOOD, "/etc/cron.d/x.json": b"{}"}, None, "absolute"),
        ({**GOOD, "oft\\..\\x.json": b"{}"}, None, "Windows path"),
        ({"oft/adapter_config.json": b"{}", "oft/adapter_model.bin": b"pickle"}, None, "pickle"),
        ({**GOOD, "run.sh": b"rm -rf /"}, None, "only .json"),
        (GOOD, "oft/link.json", "symlink"),
        ({"a/adapter_config.json": b"{}", "b/adapter_config.json": b"{}"}, None, "exactly one adapter_config"),
    ],
)
def test_hostile_archives_are_refused_and_leave_nothing(
    tmp_path: Path, members: dict, symlink: str | None, message: str
) -> None:
    before = _leftovers()
    with pytest.raises(UserError, match=message):
        uploads.adapter_folder([_zip(tmp_path / "bad.zip", members, symlink=symlink)])
    assert _leftovers() == before
    assert not (tmp_path.parent / "evil.json").exists()


def test_zip_bomb_is_refused_before_writing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(uploads, "MAX_UNPACKED_BYTES", 1000)
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as bundle:
        bundle.writestr("adapter_config.json", b"{}")
        bundle.writestr("adapter_model.safetensors", b"\0" * 100_000)  # compresses to ~100 bytes
    assert bomb.stat().st_size < 1000
    with pytest.raises(UserError, match="unpacks to"):
        uploads.extract_zip(bomb)


def test_loose_files_and_data_limits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "adapter_config.json").write_text("{}")
    (tmp_path / "adapter_model.safetensors").write_bytes(b"x")
    folder = uploads.adapter_folder([tmp_path / "adapter_config.json", tmp_path / "adapter_model.safetensors"])
    assert sorted(p.name for p in folder.iterdir()) == ["adapter_config.json", "adapter_model.safetensors"]
    (tmp_path / "weights.pt").write_bytes(b"x")
    with pytest.raises(UserError, match="pickle"):
        uploads.adapter_folder([tmp_path / "adapter_config.json", tmp_path / "weights.pt"])
    with pytest.raises(UserError, match="not a readable zip"):
        uploads.adapter_folder([_fake_zip(tmp_path)])
    data = tmp_path / "rows.jsonl"
    data.write_text('{"text": "a", "label": "x"}\n' * 10)
    assert uploads.data_file(data) == data
    monkeypatch.setattr(uploads, "MAX_DATA_BYTES", 10)
    with pytest.raises(UserError, match="the limit here is"):
        uploads.data_file(data)
    with pytest.raises(UserError, match=r"upload a \.jsonl"):
        uploads.data_file(tmp_path / "notes.txt")


def _fake_zip(tmp_path: Path) -> Path:
    path = tmp_path / "fake.zip"
    path.write_bytes(b"not a zip at all")
    return path
