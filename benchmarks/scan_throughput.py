"""Card-dump scan throughput and memory: `peft-advise scan dataset` vs a bare DuckDB regexp_matches scan.

Builds a parquet of N cards (default 1,000,000) from the real cards in ../shared/model-cards: card
i is real card i mod 87 with its title made unique and a unique run line appended, so no two rows
are equal and nothing can be deduplicated. Then, on the same file, one after the other:

- baseline: DuckDB (all cores) counting, per technique of our vocabulary, the cards whose text
  matches a case-insensitive keyword regex (the blog's method: `regexp_matches`, RE2, in C++);
- reference: the same DuckDB scan for the LoRA keyword alone (one regex: a lower bound on any
  scan's cost, not the same job);
- ours: `peft-advise scan dataset FILE` (all cores), the full classifier with guards and evidence.

Each runs in its own process; peak RSS is sampled from /proc over the whole process tree (our
worker processes included). Prints cards/s, peak RSS, and the throughput ratio ours / baseline
(target >= 0.5) and our peak RSS (target <= 1.5 GB).

    python benchmarks/scan_throughput.py [--cards 1000000] [--keep FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from measure import run_measured

REPO = Path(__file__).resolve().parents[1]
SHARED_CARDS = REPO.parent / "shared" / "model-cards"
ROW_GROUP = 20_000


def build_parquet(path: Path, n: int, cards_from: Path = SHARED_CARDS) -> int:
    import datetime as dt

    import pyarrow as pa
    import pyarrow.parquet as pq

    folders = sorted(p for p in cards_from.iterdir() if (p / "README.md").is_file())
    cards = [(p / "README.md").read_text(encoding="utf-8", errors="replace") for p in folders]
    schema = pa.schema(
        [
            ("modelId", pa.string()),
            ("card", pa.string()),
            ("tags", pa.list_(pa.string())),
            ("library_name", pa.string()),
            ("pipeline_tag", pa.string()),
            ("createdAt", pa.timestamp("us", tz="UTC")),
        ]
    )
    total_bytes = 0
    with pq.ParquetWriter(path, schema, compression="zstd") as writer:
        for start in range(0, n, ROW_GROUP):
            ids, texts, created = [], [], []
            for i in range(start, min(n, start + ROW_GROUP)):
                base = cards[i % len(cards)]
                text = f"{base}\n\nRun {i}: seed {i * 7919 % 100003}, model user{i % 5000}/run-{i}.\n"
                ids.append(f"user{i % 5000}/run-{i}")
                texts.append(text)
                created.append(dt.datetime(2023 + (i // 400_000) % 3, 1 + i % 12, 1, tzinfo=dt.timezone.utc))
                total_bytes += len(text)
            m = len(ids)
            writer.write_table(
                pa.table(
                    {
                        "modelId": ids,
                        "card": texts,
                        "tags": [[] for _ in range(m)],
                        "library_name": [None] * m,
                        "pipeline_tag": [None] * m,
                        "createdAt": created,
                    },
                    schema=schema,
                )
            )
    return total_bytes


DUCKDB_SCRIPT = r"""
import json, sys, duckdb
path, patterns = sys.argv[1], json.loads(sys.argv[2])
columns = ", ".join(f"sum(regexp_matches(card, $${p}$$)::INTEGER) AS \"{name}\"" for name, p in patterns.items())
con = duckdb.connect()
con.execute("SET enable_progress_bar = false")
row = con.sql(f"SELECT count(*) AS cards, {columns} FROM read_parquet('{path}')").fetchall()[0]
print(json.dumps(dict(zip(["cards", *patterns], row))))
"""


def keyword_patterns() -> dict[str, str]:
    """One RE2 keyword regex per technique of our vocabulary: its names, case-insensitive, word-bounded."""
    import re

    from advisor.methods.registry import load_registry
    from hub_scan.techniques import techniques

    registry = load_registry()
    patterns = {}
    for technique in techniques():
        method = registry.get(technique.name)
        names = {technique.display, *(method.aliases if method else ())}
        words = sorted({re.escape(n.lower()) for n in names if n})
        patterns[technique.name] = r"(?i)\b(?:" + "|".join(words) + r")\b"
    return patterns


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cards", type=int, default=1_000_000)
    parser.add_argument("--keep", type=Path, help="build (or reuse) the parquet file here")
    parser.add_argument(
        "--cards-from", type=Path, default=SHARED_CARDS, help="a folder of repo folders with README.md cards"
    )
    args = parser.parse_args()
    if not args.cards_from.is_dir():
        raise SystemExit(f"needs a folder of real cards (<repo>/README.md): {args.cards_from} is missing")
    with tempfile.TemporaryDirectory() as tmp:
        path = args.keep or Path(tmp) / "cards.parquet"
        if not path.exists():
            t0 = time.perf_counter()
            size = build_parquet(path, args.cards, args.cards_from)
            print(
                f"built {args.cards:,} cards ({size / 1e9:.2f} GB of text, {path.stat().st_size / 1e6:.0f} MB "
                f"parquet) in {time.perf_counter() - t0:.0f} s"
            )
        patterns = keyword_patterns()
        base_s, base_rss, base_out = run_measured(
            [sys.executable, "-c", DUCKDB_SCRIPT, str(path), json.dumps(patterns)]
        )
        one = {"lora": keyword_patterns()["lora"]}
        one_s, one_rss, _ = run_measured([sys.executable, "-c", DUCKDB_SCRIPT, str(path), json.dumps(one)])
        ours_s, ours_rss, ours_out = run_measured(
            [sys.executable, "-m", "advisor.cli", "scan", "dataset", str(path), "--json", "--no-save"]
        )
    counted = json.loads(ours_out)["stats"]["cards"]
    baseline = json.loads(base_out)
    assert counted == baseline["cards"] == args.cards, (counted, baseline["cards"])
    base_rate, ours_rate = args.cards / base_s, args.cards / ours_s
    print(f"cores: {os.cpu_count()}; {len(patterns)} technique keyword regexes in the baseline")
    print(f"baseline  DuckDB regexp  {base_s:8.1f} s  {base_rate:10,.0f} cards/s  peak RSS {base_rss / 1e9:.2f} GB")
    print(f"ours      peft-advise   {ours_s:8.1f} s  {ours_rate:10,.0f} cards/s  peak RSS {ours_rss / 1e9:.2f} GB")
    print(
        f"reference DuckDB, LoRA regex only  {one_s:8.1f} s  {args.cards / one_s:10,.0f} cards/s  "
        f"peak RSS {one_rss / 1e9:.2f} GB (one keyword: not the same job)"
    )
    print(
        f"throughput ratio ours/baseline: {ours_rate / base_rate:.2f} (target >= 0.5); "
        f"our peak RSS {ours_rss / 1e9:.2f} GB (target <= 1.5)"
    )
    print(f"baseline keyword counts (lora): {baseline['lora']:,} of {baseline['cards']:,} cards")


if __name__ == "__main__":
    main()
