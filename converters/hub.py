"""Uploading a converted adapter to the Hub (huggingface_hub: HF_TOKEN / HF_ENDPOINT honoured)."""

from __future__ import annotations

from pathlib import Path

from advisor.errors import UserError


def push_adapter(folder: Path, repo_id: str, *, private: bool = False) -> str:
    """Create ``repo_id`` if needed and upload the adapter folder; returns the repo URL."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    api = HfApi()
    try:
        url = api.create_repo(repo_id, exist_ok=True, private=private)
        api.upload_folder(
            repo_id=repo_id,
            folder_path=str(folder),
            allow_patterns=["adapter_config.json", "*.safetensors", "README.md"],
            commit_message="LoRA converted with peft-advisor",
        )
    except HfHubHTTPError as exc:
        first = str(exc).splitlines()[0]
        raise UserError(f"upload to {repo_id} failed: {first} (is HF_TOKEN set with write access?)") from None
    except OSError as exc:
        raise UserError(f"upload to {repo_id} failed: {exc} (offline? check HF_ENDPOINT)") from None
    return str(url)
