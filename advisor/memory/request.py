"""From the user's setup flags (CLI options, Space widgets) to a :class:`MemoryRequest`, in one place.

Unset flags keep the benchmark's own values; no flag at all means no request, and the recommender
shows the measured figures as stored.
"""

from __future__ import annotations

from advisor.memory.model import BENCHMARK_SETUP, BENCHMARK_SHAPE, MemoryRequest, MemorySetup, validate_setup
from advisor.memory.shapes import read_shape


def memory_request(
    model: str | None = None,
    *,
    quant: str | None = None,
    dtype: str | None = None,
    batch_size: int | None = None,
    seq_len: int | None = None,
    grad_checkpointing: bool | None = None,
    optimizer: str | None = None,
    mode: str | None = None,
    force: bool = False,
) -> MemoryRequest | None:
    """None when nothing differs from the benchmark (unless ``force``); else the validated request."""
    model = (model or "").strip() or None
    flags = (model, quant, dtype, batch_size, seq_len, grad_checkpointing, optimizer, mode)
    if all(flag is None for flag in flags) and not force:
        return None
    base = BENCHMARK_SETUP
    setup = MemorySetup(
        batch_size=base.batch_size if batch_size is None else batch_size,
        seq_len=base.seq_len if seq_len is None else seq_len,
        dtype=(dtype or base.dtype).lower(),
        quant=(quant or base.quant).lower(),
        grad_checkpointing=base.grad_checkpointing if grad_checkpointing is None else grad_checkpointing,
        optimizer=(optimizer or base.optimizer).lower(),
        mode=(mode or base.mode).lower(),
    )
    validate_setup(setup)
    shape = read_shape(model) if model else BENCHMARK_SHAPE
    return MemoryRequest(shape, setup, model_given=model is not None)
