"""Every tensor's name, dtype, shape and byte range from safetensors headers, without reading a weight.

A safetensors file is an 8-byte little-endian header length, a JSON header (dtype, shape and data
offsets per tensor), then raw data. The memory model derives a model's shape from the headers alone
(no torch: it runs on the recommend path) and the converter's streamed reader uses the byte ranges to
read one tensor at a time. One reader for both, so both refuse a corrupt file the same way.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path

from advisor.errors import UserError

# safetensors dtype names → torch's names for them (the converter's reader makes tensors of these).
TORCH_DTYPES = {
    "F64": "float64",
    "F32": "float32",
    "F16": "float16",
    "BF16": "bfloat16",
    "I64": "int64",
    "I32": "int32",
    "I16": "int16",
    "I8": "int8",
    "U8": "uint8",
    "BOOL": "bool",
    "F8_E4M3": "float8_e4m3fn",
    "F8_E5M2": "float8_e5m2",
}
MAX_HEADER = 100 * 1024 * 1024  # the format's own limit
INDEX_NAME = "model.safetensors.index.json"


@dataclass(frozen=True)
class TensorEntry:
    file: Path
    dtype: str  # safetensors name, e.g. "BF16"
    shape: tuple[int, ...]
    start: int  # absolute byte offset in the file
    end: int

    @property
    def numel(self) -> int:
        count = 1
        for dim in self.shape:
            count *= dim
        return count


def read_header(path: Path) -> dict[str, TensorEntry]:
    """The tensors of one file; a truncated or corrupt file is a one-line :class:`UserError`."""
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            raw = handle.read(8)
            if len(raw) < 8:
                raise UserError(f"{path} is not a safetensors file (too short); download the checkpoint again.")
            (length,) = struct.unpack("<Q", raw)
            if length > min(MAX_HEADER, size - 8):
                raise UserError(f"{path} has a corrupt safetensors header; download the checkpoint again.")
            header = json.loads(handle.read(length))
    except OSError as exc:
        raise UserError(f"{path} is not a readable safetensors file ({exc}).") from None
    except ValueError:
        raise UserError(f"{path} has a corrupt safetensors header; download the checkpoint again.") from None
    entries = {}
    base = 8 + length
    for key, info in header.items():
        if key == "__metadata__":
            continue
        try:
            begin, stop = info["data_offsets"]
            dtype, shape = info["dtype"], tuple(int(d) for d in info["shape"])
        except (KeyError, TypeError, ValueError):
            raise UserError(f"{path}: tensor {key} has a malformed header entry; download it again.") from None
        if dtype not in TORCH_DTYPES or not 0 <= begin <= stop <= size - base:
            raise UserError(f"{path}: tensor {key} has an unknown dtype or lies outside the file; download it again.")
        entries[key] = TensorEntry(path, dtype, shape, base + begin, base + stop)
    return entries


def checkpoint_files(folder: Path, what: str = "model folder") -> list[Path]:
    """The folder's weight files: the shards its index names when it has one (not, e.g., a consolidated copy
    some repositories ship beside them), else every ``*.safetensors``. A shard the index names but the folder
    lacks (a download cut short) is a one-line error, never a model silently counted without it."""
    files = sorted(folder.glob("*.safetensors"))
    for index in sorted(folder.glob("*.safetensors.index.json")):
        try:
            named = set(json.loads(index.read_text(encoding="utf-8")).get("weight_map", {}).values())
        except (OSError, ValueError, AttributeError) as exc:
            raise UserError(f"{index} is unreadable ({exc}); download the checkpoint again.") from None
        missing = sorted(name for name in named if not (folder / name).is_file())
        if missing:
            shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
            raise UserError(
                f"{what} {folder} is missing {len(missing)} of the {len(named)} shards its {index.name} names "
                f"({shown}); download the whole checkpoint."
            )
        if index.name == INDEX_NAME:
            files = [path for path in files if path.name in named]
    return files


def folder_tensors(folder: Path) -> dict[str, TensorEntry]:
    """Every tensor of a model folder's checkpoint (empty when it has no safetensors files)."""
    entries: dict[str, TensorEntry] = {}
    for path in checkpoint_files(folder):
        entries.update(read_header(path))
    return entries
