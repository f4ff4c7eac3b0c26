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
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from advisor.errors import UserError
from hub_scan.records import CardRecord

BATCH_ROWS = 1024
PREFILTER_ROWS = 8_192  # rows per prefilter call (a few MB to tens of MB of text)

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
    for key, candidates in COLUMNS.items():
        column = next((c for c in candidates if c in names), None)
        if column is not None:
            present[key] = column
    missing = [f for f in ("id", "card") if f not in present]
    if missing:
        wanted = " / ".join(COLUMNS[missing[0]])
        raise UserError(f"{where} has no {missing[0]} column (expected one of: {wanted}); its columns: {names}")
    return present


MAX_CARD_CHARS = 1_000_000  # a longer card is classified on its first million characters (counted in the notes)


def _iso(value: Any) -> str | None:
    """Dates as the dump stores them: timestamps, dates, ISO strings or epoch numbers."""
    if value is None:
        return None
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def _text(value: Any) -> str | None:
    """A card as text: bytes (a binary column, or a string column with invalid UTF-8) decode with U+FFFD."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", errors="replace")
    return str(value)


def _tags(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):  # some dumps flatten the list into one string
        return tuple(t.strip(" '\"") for t in value.strip("[]").split(",") if t.strip(" '\""))
    return tuple(str(t) for t in value if t is not None)


def _column_values(batch: Any, column: str) -> list[Any]:
    """A column as Python values; a string column whose bytes are not UTF-8 is read as bytes instead."""
    import pyarrow as pa

    array = batch.column(column)
    try:
        return array.to_pylist()
    except UnicodeDecodeError:
        return array.cast(pa.large_binary()).to_pylist()


def _records(columns: dict[str, list[Any]], mapping: dict[str, str]) -> list[CardRecord]:
    get = {field: columns[column] for field, column in mapping.items()}
    n = len(get["id"])
    empty = [None] * n
    tags, library, pipeline = get.get("tags", empty), get.get("library_name", empty), get.get("pipeline_tag", empty)
    created, downloads = get.get("created_at", empty), get.get("downloads", empty)
    records = []
    for i in range(n):
        card = _text(get["card"][i])
        records.append(
            CardRecord(
                id=_text(get["id"][i]) or f"row-{i}",
                card=card[:MAX_CARD_CHARS] if card is not None and len(card) > MAX_CARD_CHARS else card,
                tags=_tags(tags[i]),
                library_name=_text(library[i]),
                pipeline_tag=_text(pipeline[i]),
                created_at=_iso(created[i]),
                downloads=downloads[i] if isinstance(downloads[i], int) else None,
            )
        )
    return records


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
    """Rows in local shards from parquet footers (no data read); None for Hub shards not yet downloaded.
    A shard whose footer does not read counts nothing here (the scan reports it)."""
    if shards.repo_id is not None:
        return None
    if len(shards.files) == 1:
        return _open_parquet(Path(shards.files[0]), shards.files[0]).metadata.num_rows
    total = 0
    for name in shards.files:
        try:
            total += _open_parquet(Path(name), name).metadata.num_rows
        except UserError:
            continue
    return total


@dataclass
class DumpBatch:
    """A batch of the dump: the records to classify, and how many rows the prefilter already counted as
    ``none`` (never turned into Python strings)."""

    records: list[CardRecord]
    plain: int = 0
    truncated: int = 0


@dataclass
class PrefilterGauge:
    """Whether the prefilter pays: on a dump of mostly PEFT cards (every card a candidate) it only adds a
    regex pass, so after ``TRIAL_ROWS`` rows it turns itself off when more than ``MAX_KEPT`` of the rows
    were kept. Either way the counts are the same."""

    active: bool = True
    seen: int = 0
    kept: int = 0
    switched_off_at: int | None = None

    TRIAL_ROWS = 16_384
    MAX_KEPT = 0.75

    def record(self, rows: int, kept: int) -> None:
        self.seen += rows
        self.kept += kept
        if self.active and self.seen >= self.TRIAL_ROWS and self.kept > self.MAX_KEPT * self.seen:
            self.active = False
            self.switched_off_at = self.seen


@dataclass
class ShardReport:
    """What went wrong with the shards that could not be read; the scan went on after each."""

    skipped: list[str] = field(default_factory=list)


def iter_batches(
    shards: DumpShards, batch_rows: int = BATCH_ROWS, limit: int | None = None
) -> Iterator[list[CardRecord]]:
    """CardRecords in batches of ``batch_rows``, shard after shard; at most ``limit`` records (no prefilter)."""
    for batch in iter_dump(shards, batch_rows, limit, prefilter=False):
        yield batch.records


def iter_dump(
    shards: DumpShards,
    batch_rows: int = BATCH_ROWS,
    limit: int | None = None,
    *,
    prefilter: bool = True,
    report: ShardReport | None = None,
    gauge: PrefilterGauge | None = None,
) -> Iterator[DumpBatch]:
    """The dump batch by batch, shard after shard, at most ``limit`` rows. With ``prefilter``, rows that
    cannot be anything but ``none`` (:mod:`hub_scan.prefilter`) are only counted. A shard whose data
    cannot be read (corrupt) is reported in ``report`` and the scan goes on with the next one; when it is
    the only shard, or no report is kept, it is a one-line error."""
    left = limit
    gauge = gauge or PrefilterGauge(active=prefilter)
    for name in shards.files:
        reader = _ShardReader(shards, name, batch_rows, gauge, left)
        try:
            yield from reader.batches()
        except _CorruptShard as exc:
            if len(shards.files) == 1 or report is None:
                raise UserError(f"{name} cannot be read ({exc}); the file is corrupt: download it again") from None
            counted = f"; its first {reader.rows:,} rows are counted" if reader.rows else ""
            report.skipped.append(f"{name} ({exc}{counted})")
        if left is not None:
            left -= reader.rows
            if left <= 0:
                return


class _CorruptShard(Exception):
    """A shard opened but its data did not read (a torn download, a bad page)."""


@dataclass
class _ShardReader:
    shards: DumpShards
    name: str
    batch_rows: int
    gauge: PrefilterGauge
    left: int | None
    rows: int = 0

    def batches(self) -> Iterator[DumpBatch]:
        import pyarrow as pa

        try:
            handle = _open_parquet(self.shards.local_path(self.name), self.name)
        except UserError as exc:
            raise _CorruptShard(str(exc)) from None
        mapping = _column_map(handle.schema_arrow.names, self.name)
        columns = list(mapping.values())
        # The prefilter reads big slices: pyarrow compiles its regexes on every call (~10 ms for the
        # technique pattern), which at 1,024 rows a call would cost more than the matching itself.
        try:
            for group in range(handle.num_row_groups):
                read_rows = max(self.batch_rows, PREFILTER_ROWS) if self.gauge.active else self.batch_rows
                for batch in handle.iter_batches(batch_size=read_rows, row_groups=[group], columns=columns):
                    if self.left is not None:
                        batch = batch.slice(0, max(0, self.left - self.rows))
                    if batch.num_rows == 0:
                        return
                    self.rows += batch.num_rows
                    yield from self._split(self._convert(batch, mapping))
        except (pa.ArrowException, OSError) as exc:
            raise _CorruptShard(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from None

    def _split(self, batch: DumpBatch) -> Iterator[DumpBatch]:
        """The records in ``batch_rows`` pieces for the classifier's workers (the counts ride on the first)."""
        records = batch.records
        for start in range(0, max(1, len(records)), self.batch_rows):
            first = start == 0
            yield DumpBatch(
                records[start : start + self.batch_rows], batch.plain if first else 0, batch.truncated if first else 0
            )

    def _convert(self, batch: Any, mapping: dict[str, str]) -> DumpBatch:
        rows, plain, names_nothing = batch.num_rows, 0, None
        if self.gauge.active:
            import pyarrow.compute as pc

            from hub_scan.prefilter import candidate_kinds

            column = {key: batch.column(name) for key, name in mapping.items()}
            peft, full = candidate_kinds(column["card"], column.get("tags"), column.get("library_name"))
            keep = pc.or_(peft, full)
            batch = batch.filter(keep)
            names_nothing = full.filter(keep).to_pylist()
            plain = rows - batch.num_rows
            self.gauge.record(rows, batch.num_rows)
        values = {name: _column_values(batch, name) for name in mapping.values()}
        truncated = sum(1 for v in values[mapping["card"]] if v is not None and len(v) > MAX_CARD_CHARS)
        records = _records(values, mapping)
        if names_nothing is not None:
            records = [replace(r, names_nothing=True) if n else r for r, n in zip(records, names_nothing, strict=True)]
        return DumpBatch(records, plain, truncated)


def scan_card_dump(
    location: str, *, limit: int | None = None, workers: int = 0, progress: Any = None, prefilter: bool = True
) -> Any:
    """Resolve, stream and classify a card dump on ``workers`` processes (0: all cores): a ScanResult.

    ``prefilter``: rows the vectorised filter proves ``none`` are counted without being classified (the
    counts are the same either way; ``--no-prefilter`` exists to show that, and to time it)."""
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
    report = ShardReport()
    gauge = PrefilterGauge(active=prefilter)
    tally = {"plain": 0, "truncated": 0}

    def record_batches() -> Iterator[list[CardRecord]]:
        for batch in iter_dump(shards, limit=limit, report=report, gauge=gauge):
            tally["plain"] += batch.plain
            tally["truncated"] += batch.truncated
            if batch.records:
                yield batch.records

    def with_plain(done: int, _total: int) -> None:
        if progress:
            progress(done + tally["plain"], total)

    stats = scan_batches_parallel(record_batches(), workers=processes, progress=with_plain, total=total)
    stats.add_plain(tally["plain"])
    if progress:
        progress(stats.cards, total)
    if stats.cards == 0 and report.skipped:
        raise UserError(f"no shard of {location} could be read: {'; '.join(report.skipped[:3])}")
    notes = [f"{len(shards.files)} parquet file(s), {processes} process(es)"]
    if prefilter:
        notes.append(
            f"prefilter: {tally['plain']:,} of {stats.cards:,} cards name no technique, adapter or training sign "
            "and were counted as none without being classified"
            + (
                f" (switched off after {gauge.switched_off_at:,} rows: {gauge.kept / gauge.seen:.0%} were "
                "candidates, so classifying every card is cheaper)"
                if gauge.switched_off_at
                else ""
            )
        )
    if tally["truncated"]:
        notes.append(f"{tally['truncated']:,} cards longer than {MAX_CARD_CHARS:,} characters were read up to there")
    notes += [f"skipped unreadable shard {name}; the scan went on after it" for name in report.skipped]
    return ScanResult(location, "dataset", stats, elapsed_s=time.perf_counter() - start, notes=notes)
