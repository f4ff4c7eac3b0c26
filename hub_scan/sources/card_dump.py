"""A parquet dump of model cards, such as the Hub dataset ``librarian-bots/model_cards_with_metadata``.

Streamed with pyarrow, one record batch at a time and only the columns the classifier reads, so
memory stays bounded whatever the dump's size. Where the cards live:

- a local ``.parquet`` file, a folder of them, or a glob (``dump/*.parquet``);
- a Hub dataset: ``hf://datasets/OWNER/NAME[@REVISION][/PATH-OR-GLOB]`` or plain ``OWNER/NAME``.
  Shards are fetched one by one with ``hf_hub_download`` (HF cache, HF_TOKEN and HF_ENDPOINT
  honoured, an interrupted download resumes) and streamed from the cache.
"""

from __future__ import annotations

import fnmatch
import glob
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from advisor.errors import UserError
from hub_scan.records import CardRecord

BATCH_ROWS = 1024

# Our field <- the column names dumps use for it, first present wins.
COLUMNS: dict[str, tuple[str, ...]] = {
    "id": ("modelId", "model_id", "id", "repo_id"),
    "card": ("card", "readme", "text"),
    "tags": ("tags",),
    "library_name": ("library_name",),
    "pipeline_tag": ("pipeline_tag",),
    "created_at": ("createdAt", "created_at"),
    "downloads": ("downloads",),
}
_HF_PATH = re.compile(r"^hf://datasets/(?P<repo>[^/@]+/[^/@]+)(?:@(?P<rev>[^/]+))?(?:/(?P<path>.*))?$")
_REPO_ID = re.compile(r"^[\w.\-]+/[\w.\-]+$")


@dataclass(frozen=True)
class DumpShards:
    """The parquet files to read, in order, and how to get each one onto local disk."""

    source: str
    files: tuple[str, ...]  # local paths, or paths inside the Hub dataset repo
    repo_id: str | None = None
    revision: str | None = None

    def local_path(self, name: str) -> Path:
        if self.repo_id is None:
            return Path(name)
        from huggingface_hub import hf_hub_download

        from advisor.hub_access import hub_errors

        with hub_errors(f"dataset {self.repo_id}"):
            return Path(hf_hub_download(self.repo_id, name, repo_type="dataset", revision=self.revision))


def resolve_shards(location: str) -> DumpShards:
    """Parquet files behind a local path/glob or a Hub dataset path; a clear error when there are none."""
    hub = _HF_PATH.match(location)
    local = Path(location).expanduser()
    if hub is None and not local.exists() and _REPO_ID.match(location) and not glob.has_magic(location):
        hub = _HF_PATH.match(f"hf://datasets/{location}")
    if hub is not None:
        return _hub_shards(location, hub.group("repo"), hub.group("rev"), hub.group("path") or "")
    if local.is_file():
        files = [str(local)]
    elif local.is_dir():
        files = sorted(str(p) for p in local.rglob("*.parquet"))
    else:
        files = sorted(glob.glob(str(local), recursive=True))
    if not files:
        raise UserError(
            f"no parquet files at {location}; pass a .parquet file, a folder or glob of them, "
            "or a Hub dataset (hf://datasets/OWNER/NAME or OWNER/NAME)"
        )
    return DumpShards(location, tuple(files))


def _hub_shards(location: str, repo_id: str, revision: str | None, path: str) -> DumpShards:
    from huggingface_hub import HfApi

    from advisor.hub_access import hub_errors

    with hub_errors(f"dataset {repo_id}"):
        names = HfApi().list_repo_files(repo_id, repo_type="dataset", revision=revision)
    pattern = path.rstrip("/")
    if not pattern:
        wanted = [n for n in names if n.endswith(".parquet")]
    elif glob.has_magic(pattern):
        wanted = [n for n in names if fnmatch.fnmatch(n, pattern)]
    else:
        wanted = [n for n in names if n == pattern or (n.startswith(pattern + "/") and n.endswith(".parquet"))]
    if not wanted:
        raise UserError(f"{location}: the dataset {repo_id} has no parquet files matching {pattern or '*.parquet'!r}")
    return DumpShards(location, tuple(sorted(wanted)), repo_id, revision)


def _column_map(names: list[str], where: str) -> dict[str, str]:
    present = {}
    for field, candidates in COLUMNS.items():
        column = next((c for c in candidates if c in names), None)
        if column is not None:
            present[field] = column
    missing = [f for f in ("id", "card") if f not in present]
    if missing:
        wanted = " / ".join(COLUMNS[missing[0]])
        raise UserError(f"{where} has no {missing[0]} column (expected one of: {wanted}); its columns: {names}")
    return present


def _iso(value: Any) -> str | None:
    if value is None:
        return None
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def _records(columns: dict[str, list[Any]], mapping: dict[str, str]) -> list[CardRecord]:
    get = {field: columns[column] for field, column in mapping.items()}
    n = len(get["id"])
    empty = [None] * n
    tags, library, pipeline = get.get("tags", empty), get.get("library_name", empty), get.get("pipeline_tag", empty)
    created, downloads = get.get("created_at", empty), get.get("downloads", empty)
    return [
        CardRecord(
            id=str(get["id"][i]),
            card=get["card"][i],
            tags=tuple(tags[i] or ()),
            library_name=library[i],
            pipeline_tag=pipeline[i],
            created_at=_iso(created[i]),
            downloads=downloads[i],
        )
        for i in range(n)
    ]


def _open_parquet(path: Path, name: str):
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise UserError("reading parquet needs pyarrow: pip install 'peft-advisor[scan]'") from exc
    try:
        # pre_buffer (the default) keeps every row group read so far in Arrow's pool: memory then
        # grows with the file (measured: +250 MB per 300k cards); without it the reader stays flat.
        return pq.ParquetFile(path, pre_buffer=False)
    except Exception as exc:  # pyarrow raises ArrowInvalid / OSError for non-parquet data
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"{name} is not a readable parquet file ({first}); check the path") from None


def count_rows(shards: DumpShards) -> int | None:
    """Rows in local shards from parquet footers (no data read); None for Hub shards not yet downloaded."""
    if shards.repo_id is not None:
        return None
    return sum(_open_parquet(Path(f), f).metadata.num_rows for f in shards.files)


def iter_batches(
    shards: DumpShards, batch_rows: int = BATCH_ROWS, limit: int | None = None
) -> Iterator[list[CardRecord]]:
    """CardRecords in batches of ``batch_rows``, shard after shard; at most ``limit`` records."""
    left = limit
    for name in shards.files:
        handle = _open_parquet(shards.local_path(name), name)
        mapping = _column_map(handle.schema_arrow.names, name)
        batches = (
            batch
            for group in range(handle.num_row_groups)
            for batch in handle.iter_batches(batch_size=batch_rows, row_groups=[group], columns=list(mapping.values()))
        )
        for batch in batches:
            columns = {column: batch.column(column).to_pylist() for column in mapping.values()}
            records = _records(columns, mapping)
            if left is not None:
                records = records[:left]
                left -= len(records)
            if records:
                yield records
            if left is not None and left <= 0:
                return


def scan_card_dump(location: str, *, limit: int | None = None, workers: int = 0, progress: Any = None) -> Any:
    """Resolve, stream and classify a card dump on ``workers`` processes (0: all cores): a ScanResult."""
    import os
    import time

    from hub_scan.scan import ScanResult, scan_batches_parallel

    if limit is not None and limit < 1:
        raise UserError("--limit must be at least 1")
    if workers < 0:
        raise UserError("--workers must be 0 (all cores) or more")
    start = time.perf_counter()
    shards = resolve_shards(location)
    rows = count_rows(shards)
    total = min(rows, limit) if rows is not None and limit else (rows or limit or 0)
    processes = workers or os.cpu_count() or 1
    stats = scan_batches_parallel(iter_batches(shards, limit=limit), workers=processes, progress=progress, total=total)
    notes = [f"{len(shards.files)} parquet file(s), {processes} process(es)"]
    return ScanResult(location, "dataset", stats, elapsed_s=time.perf_counter() - start, notes=notes)
