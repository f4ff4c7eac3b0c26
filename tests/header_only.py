"""Safetensors files with a real header and no data on disk (sparse), for shape-reading tests.

The memory model and the denoiser reader read only headers, so a 7B-shaped checkpoint can be tested
without gigabytes: the file has the right size, its data pages are never written.
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

ITEM_BYTES = {"BF16": 2, "F16": 2, "F32": 4, "I32": 4, "I8": 1, "U8": 1}


def write_header_only(path: Path, shapes: dict[str, list[int] | tuple[list[int], str]]) -> Path:
    """``path`` as a safetensors file holding ``shapes`` (BF16, or ``(shape, dtype)``), data left as a hole."""
    header, offset = {}, 0
    for name, spec in shapes.items():
        shape, dtype = spec if len(spec) == 2 and isinstance(spec[1], str) else (spec, "BF16")
        size = ITEM_BYTES[dtype] * math.prod(shape)
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    blob = json.dumps(header).encode()
    with path.open("wb") as handle:
        handle.write(struct.pack("<Q", len(blob)) + blob)
        handle.truncate(8 + len(blob) + offset)
    return path
