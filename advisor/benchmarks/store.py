"""Which benchmark snapshot is active, and writing a new one.

Order: ``$PEFT_ADVISOR_SNAPSHOT`` (an explicit file), then the user's refreshed snapshot
(``<user data dir>/benchmarks.json``), then the snapshot shipped inside the package.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path

from advisor.benchmarks.records import Snapshot
from advisor.errors import UserError
from advisor.paths import PACKAGE_DATA, user_data_dir, write_json_atomic

SHIPPED_SNAPSHOT = PACKAGE_DATA / "benchmarks.json"


def user_snapshot_path() -> Path:
    return user_data_dir() / "benchmarks.json"


def active_snapshot_path() -> Path:
    explicit = os.environ.get("PEFT_ADVISOR_SNAPSHOT")
    if explicit:
        return Path(explicit).expanduser()
    user = user_snapshot_path()
    return user if user.exists() else SHIPPED_SNAPSHOT


@lru_cache(maxsize=4)
def _load(path: Path) -> Snapshot:
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
        return Snapshot.from_dict(data, origin=str(path))
    except FileNotFoundError as exc:
        raise UserError(
            f"benchmark snapshot {path} does not exist; run `peft-advise refresh-benchmarks --from PATH`"
        ) from exc
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise UserError(
            f"benchmark snapshot {path} is unreadable ({exc}); rebuild it with `peft-advise refresh-benchmarks`"
        ) from exc


def load_snapshot(path: Path | None = None) -> Snapshot:
    return _load(Path(path) if path else active_snapshot_path())


def save_snapshot(snapshot: Snapshot, path: Path) -> None:
    write_json_atomic(path, snapshot.to_dict())
    _load.cache_clear()
