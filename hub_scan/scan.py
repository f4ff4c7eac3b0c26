"""Run the classifier over any source's records and count: the one pipeline behind all three sources."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from hub_scan.classify import classify_card, classify_without_names
from hub_scan.records import CardRecord, ScannedCard
from hub_scan.stats import UsageStats

Progress = Callable[[int, int], None]


def scan_record(record: CardRecord) -> ScannedCard:
    """The repo's verdict (card, config, base model, files together), with the card-only verdict beside it."""
    from hub_scan.repo_verdict import repo_verdict

    classify = classify_without_names if record.names_nothing else classify_card
    card = classify(record.card, tags=record.tags, library_name=record.library_name, pipeline_tag=record.pipeline_tag)
    return ScannedCard.from_verdict(record, repo_verdict(record, card), card)


def scan_batch_stats(records: list[CardRecord]) -> UsageStats:
    """Worker-side: classify a batch and return only its counters (small to send back between processes)."""
    stats = UsageStats()
    for record in records:
        stats.add(scan_record(record))
    return stats


@dataclass
class ScanResult:
    source: str  # what was scanned, as the user named it
    kind: str  # "dir" | "dataset" | "hub"
    stats: UsageStats
    cards: list[ScannedCard] = field(default_factory=list)  # per-card results, when kept
    scanned_at: str = field(default_factory=lambda: dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))
    elapsed_s: float = 0.0
    notes: list[str] = field(default_factory=list)

    def to_dict(self, *, with_cards: bool = True) -> dict[str, Any]:
        data: dict[str, Any] = {
            "source": self.source,
            "kind": self.kind,
            "scanned_at": self.scanned_at,
            "elapsed_s": round(self.elapsed_s, 3),
            "notes": self.notes,
        }
        if with_cards:
            data["cards"] = [card.to_dict() for card in self.cards]
        data["stats"] = self.stats.to_dict()
        return data


def scan_records(
    records: Iterable[CardRecord],
    *,
    source: str,
    kind: str,
    keep_cards: bool = True,
    total: int = 0,
    progress: Progress | None = None,
) -> ScanResult:
    """Classify records one by one in this process (folders and Hub scans: I/O bound, not CPU bound)."""
    start = time.perf_counter()
    stats = UsageStats()
    cards: list[ScannedCard] = []
    for done, record in enumerate(records, 1):
        card = scan_record(record)
        stats.add(card)
        if keep_cards:
            cards.append(card)
        if progress:
            progress(done, total)
    return ScanResult(source, kind, stats, cards, elapsed_s=time.perf_counter() - start)


def scan_batches_parallel(
    batches: Iterator[list[CardRecord]], *, workers: int, progress: Progress | None = None, total: int = 0
) -> UsageStats:
    """Classify batches on ``workers`` processes, at most ``2 * workers`` batches in flight (bounded memory).

    Ctrl-C: the terminal signals the whole process group. Workers ignore it (no tracebacks from them); the
    parent, which polls for results, raises KeyboardInterrupt within half a second and terminates the pool,
    so nothing keeps running and nothing reaches the user but the CLI's one line.
    """
    stats = UsageStats()
    done = 0
    if workers <= 1:
        for batch in batches:
            stats.merge(scan_batch_stats(batch))
            done += len(batch)
            if progress:
                progress(done, total)
        return stats
    import multiprocessing
    import os
    import queue

    # fork: workers start without re-importing the classifier (spawn where fork does not exist).
    context = multiprocessing.get_context("fork" if hasattr(os, "fork") else "spawn")
    finished: queue.SimpleQueue = queue.SimpleQueue()  # UsageStats, or the exception a batch raised
    in_flight = 0

    def collect() -> None:
        nonlocal done, in_flight
        while True:
            try:
                part = finished.get(timeout=0.5)  # a timeout, so a pending Ctrl-C is seen at once
                break
            except queue.Empty:
                continue
        in_flight -= 1
        if isinstance(part, BaseException):
            raise part
        stats.merge(part)
        done += part.cards
        if progress:
            progress(done, total)

    pool = context.Pool(workers, initializer=_ignore_sigint)
    try:
        for batch in batches:
            if in_flight >= 2 * workers:
                collect()
            pool.apply_async(scan_batch_stats, (batch,), callback=finished.put, error_callback=finished.put)
            in_flight += 1
        while in_flight:
            collect()
    except BaseException:
        pool.terminate()
        raise
    else:
        pool.close()
    finally:
        pool.join()
    return stats


def _ignore_sigint() -> None:
    """Workers leave Ctrl-C to the parent (see :func:`scan_batches_parallel`)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
