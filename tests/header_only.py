"""Safetensors files with a real header and no data on disk (sparse), for shape-reading tests.

The memory model and the denoiser reader read only headers, so a 7B-shaped checkpoint can be tested
without gigabytes: the file has the right size, its data pages are never written.
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path


def write_header_only(path: Path, shapes: dict[str, list[int]]) -> Path:
    """``path`` as a BF16 safetensors file holding ``shapes``, data left as a hole."""
    header, offset = {}, 0
    for name, shape in shapes.items():
        size = 2 * math.prod(shape)
        header[name] = {"dtype": "BF16", "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    blob = json.dumps(header).encode()
    with path.open("wb") as handle:
        handle.write(struct.pack("<Q", len(blob)) + blob)
        handle.truncate(8 + len(blob) + offset)
    return path
