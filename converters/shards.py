"""Read single tensors out of a safetensors checkpoint (one file or shards with an index), a few rows at a time.

Why not ``safetensors.safe_open``: it memory-maps the file, and every page a read touches stays in the
process' resident set until the handle closes. Streaming a model block by block through one handle
would end with the whole checkpoint resident, which is exactly what layer streaming exists to avoid.
The headers (:mod:`advisor.safetensors_headers`) give each tensor's byte range, so tensors are read
with plain file reads into their final buffer. Rows are converted to the working dtype in slices, so a
bf16 tensor read as float32 costs its float32 size plus one slice, never both copies whole.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from advisor.errors import UserError
from advisor.safetensors_headers import TORCH_DTYPES, TensorEntry, checkpoint_files, folder_tensors

if TYPE_CHECKING:
    import torch

SLICE_BYTES = 64 * 1024 * 1024  # rows converted per step when the stored dtype differs from the wanted one


class NoSafetensors(UserError):
    """The folder has no .safetensors weights (e.g. only pytorch_model.bin)."""


class Checkpoint:
    """Every tensor of a model folder's safetensors files, addressable by key, read on demand."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.entries: dict[str, TensorEntry] = folder_tensors(folder)
        if not checkpoint_files(folder):
            raise NoSafetensors(f"{folder} has no .safetensors weights.")

    def __contains__(self, key: str) -> bool:
        return key in self.entries

    def keys(self) -> list[str]:
        return list(self.entries)

    def read(self, key: str, dtype: torch.dtype | None = None) -> torch.Tensor:
        """Tensor ``key`` on the CPU, in ``dtype`` (its stored dtype when None)."""
        import torch

        entry = self.entries[key]
        stored = getattr(torch, TORCH_DTYPES[entry.dtype])
        want = dtype or stored
        out = torch.empty(entry.shape, dtype=want)
        if out.numel() == 0:
            return out
        row_bytes = (entry.end - entry.start) // max(1, entry.shape[0]) if entry.shape else entry.end - entry.start
        with entry.file.open("rb", buffering=0) as handle:
            handle.seek(entry.start)
            if want == stored:
                _read_into(handle, out, entry)
                return out
            rows = max(1, SLICE_BYTES // max(1, row_bytes)) if entry.shape else 1
            flat = out.reshape(entry.shape[0], -1) if entry.shape else out.reshape(1, 1)
            for first in range(0, flat.shape[0], rows):
                chunk = torch.empty((min(rows, flat.shape[0] - first), flat.shape[1]), dtype=stored)
                _read_exact(handle, chunk)
                flat[first : first + chunk.shape[0]].copy_(chunk)
        return out


def _read_into(handle: Any, out: torch.Tensor, entry: TensorEntry) -> None:
    _read_exact(handle, out)
    if out.numel() * out.element_size() != entry.end - entry.start:
        raise UserError(f"{entry.file}: a tensor's size does not match its shape; download the checkpoint again.")


def _read_exact(handle: Any, tensor: torch.Tensor) -> None:
    """Fill ``tensor``'s bytes from ``handle`` (plain reads: nothing is memory-mapped)."""
    import torch

    view = memoryview(tensor.view(-1).view(torch.uint8).numpy())
    filled = 0
    while filled < len(view):
        got = handle.readinto(view[filled:])
        if not got:
            raise UserError(f"{handle.name} ends early; download the checkpoint again.")
        filled += got
