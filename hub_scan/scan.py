"""Run the classifier over any source's records and count: the one pipeline behind all three sources."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from hub_scan.classify import classify_card
from hub_scan.records import CardRecord, ScannedCard
from hub_scan.stats import UsageStats

Progress = Callable[[int, int], None]


def scan_record(record: CardRecord) -> ScannedCard:
    verdict = classify_card(
        record.card, tags=record.tags, library_name=record.library_name, pipeline_tag=record.pipeline_tag
    )
    return ScannedCard.from_verdict(record, verdict)


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
    """Classify batches on ``workers`` processes, at most ``2 * workers`` batches in flight (bounded memory)."""
    stats = UsageStats()
    done = 0
    if workers <= 1:
        for batch in batches:
            stats.merge(scan_batch_stats(batch))
            done += len(batch)
            if progress:
                progress(done, total)
        return stats
    import concurrent.futures as cf
    import multiprocessing
    import os

    # fork: workers start without re-importing the classifier (spawn where fork does not exist).
    context = multiprocessing.get_context("fork" if hasattr(os, "fork") else "spawn")
    with cf.ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        pending: set[cf.Future] = set()
        for batch in batches:
            if len(pending) >= 2 * workers:
                finished, pending = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
                for future in finished:
                    part = future.result()
                    stats.merge(part)
                    done += part.cards
                    if progress:
                        progress(done, total)
            pending.add(pool.submit(scan_batch_stats, batch))
        for future in cf.as_completed(pending):
            part = future.result()
            stats.merge(part)
            done += part.cards
            if progress:
                progress(done, total)
    return stats
