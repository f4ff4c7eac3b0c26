"""Running torch, transformers and peft for the trial and the converter: the device, and quiet loading.

Both tools load models and pick a device; doing it in one place means ``--device cuda`` on a machine
without a GPU is the same one-line error everywhere, and neither tool prints transformers' advice.
torch and transformers are imported inside the functions (the recommend path never comes here).
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Iterator

from advisor.errors import UserError


def resolve_device(device: str) -> str:
    """``auto`` → ``cuda`` when torch sees a GPU, else ``cpu``; ``cuda[:N]`` only when a GPU is visible."""
    import torch

    wanted = device.strip().lower()
    if wanted == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if wanted.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {device}: no CUDA GPU is visible to torch {torch.__version__}; use --device cpu")
    if wanted != "cpu" and not wanted.startswith("cuda"):
        raise UserError(f"--device must be auto, cpu, cuda or cuda:N (got {device!r})")
    return wanted


@contextlib.contextmanager
def quiet_hf() -> Iterator[None]:
    """transformers/peft print advice (and tqdm bars) on load; our own output says what matters."""
    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        from transformers.utils import logging as hf_logging

        level = hf_logging.get_verbosity()
        bars = hf_logging.is_progress_bar_enabled()
        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        try:
            yield
        finally:
            hf_logging.set_verbosity(level)
            if bars:
                hf_logging.enable_progress_bar()


def load_tokenizer_or_none(name_or_path: str) -> object | None:
    """The model's tokenizer with a pad token, or None when it has none that tokenizes.

    transformers 5 builds an *empty* tokenizer of the model type's class for a folder without vocabulary files
    (a model saved from a config): it turns every text into zero tokens, which would train on empty batches.
    Both the trial and the converter then fall back to their own token ids.
    """
    try:
        from transformers import AutoTokenizer

        with quiet_hf():
            tokenizer = AutoTokenizer.from_pretrained(name_or_path)
        if not tokenizer("The quick brown fox.")["input_ids"]:
            return None
    except Exception:
        return None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    return tokenizer
