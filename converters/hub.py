"""Uploading a converted adapter to the Hub (huggingface_hub: HF_TOKEN / HF_ENDPOINT honoured)."""

from __future__ import annotations

from pathlib import Path

from advisor.hub_access import hub_errors
from advisor.peft_files import CARD_NAME, CONFIG_NAME


def push_adapter(folder: Path, repo_id: str, *, private: bool = False) -> str:
    """Create ``repo_id`` if needed and upload the adapter folder; returns the repo URL."""
    from huggingface_hub import HfApi

    api = HfApi()
    with hub_errors(f"upload to {repo_id}", writing=True):
        url = api.create_repo(repo_id, exist_ok=True, private=private)
        api.upload_folder(
            repo_id=repo_id,
            folder_path=str(folder),
            allow_patterns=[CONFIG_NAME, "*.safetensors", CARD_NAME],
            commit_message="LoRA converted with peft-advisor",
        )
    return str(url)
