"""The development data beside the checkout (../shared): where it is, and skips when a clone has none."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared"
SHARED_CARDS = SHARED / "model-cards"
SHARED_RESULTS = SHARED / "peft-method-comparison"
needs_shared_cards = pytest.mark.skipif(
    not SHARED_CARDS.is_dir(), reason="../shared/model-cards (labelled Hub cards) is not beside this checkout"
)
