"""Card-dump scan throughput and memory: `peft-advise scan dataset` vs a bare DuckDB regexp_matches scan.

Two mixes, each a parquet of N cards (default 1,000,000) where no two rows are equal (a unique run line
is appended to each):

- ``peft``: every card a real one from ../shared/model-cards (a PEFT-heavy file: the worst case for a
  prefilter, since almost every card must be classified);
- ``realistic``: 5% real PEFT cards, 95% ordinary Hub-like cards of varied kinds and lengths
  (benchmarks/card_mix.py: quantised re-uploads, Trainer cards of full fine-tunes, base models,
  sentence-transformers, vision, near-empty cards), as the Hub's dump is.

Then, on the same file, one after the other, each in its own process (peak RSS sampled from /proc over
the whole process tree):

- baseline: DuckDB (all cores) counting, per technique of our vocabulary, the cards whose text matches
  a case-insensitive keyword regex (the blog's method: `regexp_matches`, RE2, in C++);
- ours: `peft-advise scan dataset FILE` (all cores): the vectorised RE2 prefilter, then the full
  classifier with guards and evidence on the candidates;
- ours without the prefilter (`--no-prefilter`: what the scan did before it; the counts are equal);
- with ``--before REF``: the scan as it was at commit REF (default 695fcfe, the last commit before issue
  19's work), run from a temporary git worktree of this repository on the same file: "today" in the
  issue's "no slower than today".

Targets: realistic mix >= 3x the baseline's cards/s and peak RSS <= 1.5 GB; PEFT-heavy mix no slower
than before (``--before``) and than without the prefilter.

    python benchmarks/scan_throughput.py [--cards 1000000] [--mix peft|realistic|both] [--keep DIR] [--before REF]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from card_mix import ordinary_cards
from measure import run_measured, worktree

REPO = Path(__file__).resolve().parents[1]
SHARED_CARDS = REPO.parent / "shared" / "model-cards"
ROW_GROUP = 20_000


def build_parquet(path: Path, n: int, cards_from: Path = SHARED_CARDS, mix: str = "peft") -> int:
    import datetime as dt

    import pyarrow as pa
    import pyarrow.parquet as pq

    folders = sorted(p for p in cards_from.iterdir() if (p / "README.md").is_file())
    cards = [(p / "README.md").read_text(encoding="utf-8", errors="replace") for p in folders]
    ordinary = ordinary_cards(4000, seed=7) if mix == "realistic" else []
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
                if ordinary and i % 20:  # 19 in 20 ordinary, 1 in 20 a PEFT card
                    base = ordinary[i % len(ordinary)]
                else:
                    base = cards[(i // 20 if ordinary else i) % len(cards)]
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


def measure_mix(path: Path, cards: int, before: Path | None = None) -> dict[str, float]:
    patterns = keyword_patterns()
    base_s, base_rss, base_out = run_measured([sys.executable, "-c", DUCKDB_SCRIPT, str(path), json.dumps(patterns)])
    scan = [sys.executable, "-m", "advisor.cli", "scan", "dataset", str(path), "--json", "--no-save"]
    env = {**os.environ, "PEFT_ADVISOR_PLAIN": "1", "PYTHONPATH": str(REPO)}
    ours_s, ours_rss, ours_out = run_measured(scan, env=env, cwd=REPO)
    plain_s, plain_rss, plain_out = run_measured([*scan, "--no-prefilter"], env=env, cwd=REPO)
    ours, plain = json.loads(ours_out), json.loads(plain_out)
    baseline = json.loads(base_out)
    assert ours["stats"]["cards"] == baseline["cards"] == cards, (ours["stats"]["cards"], baseline["cards"])
    assert ours["stats"] == plain["stats"], "the prefilter changed the counts"
    extra: dict[str, float] = {}
    if before is not None:  # the same command from the old tree (its own modules first on the path)
        old_s, old_rss, old_out = run_measured(scan, env={**env, "PYTHONPATH": str(before)}, cwd=before)
        assert json.loads(old_out)["stats"]["cards"] == cards
        extra = {"before_s": old_s, "before_rss": old_rss}
    return {
        **extra,
        "baseline_s": base_s,
        "baseline_rss": base_rss,
        "ours_s": ours_s,
        "ours_rss": ours_rss,
        "no_prefilter_s": plain_s,
        "no_prefilter_rss": plain_rss,
        "lora_keyword_cards": baseline["lora"],
        "prefilter_note": next((n for n in ours["notes"] if n.startswith("prefilter")), ""),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cards", type=int, default=1_000_000)
    parser.add_argument("--mix", choices=("peft", "realistic", "both"), default="both")
    parser.add_argument("--keep", type=Path, help="build (or reuse) the parquet files in this folder")
    parser.add_argument(
        "--cards-from", type=Path, default=SHARED_CARDS, help="a folder of repo folders with README.md cards"
    )
    parser.add_argument(
        "--before",
        metavar="REF",
        nargs="?",
        const="695fcfe",
        help="also time the scan as it was at this commit (default 695fcfe: before issue 19), from a git worktree",
    )
    args = parser.parse_args()
    if not args.cards_from.is_dir():
        raise SystemExit(f"needs a folder of real cards (<repo>/README.md): {args.cards_from} is missing")
    mixes = ("peft", "realistic") if args.mix == "both" else (args.mix,)
    print(f"cores: {os.cpu_count()}; {len(keyword_patterns())} technique keyword regexes in the baseline")
    with tempfile.TemporaryDirectory() as tmp, worktree(args.before) as before:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        for mix in mixes:
            path = folder / f"cards-{mix}-{args.cards}.parquet"
            if not path.exists():
                t0 = time.perf_counter()
                size = build_parquet(path, args.cards, args.cards_from, mix)
                print(
                    f"[{mix}] built {args.cards:,} cards ({size / 1e9:.2f} GB of text, "
                    f"{path.stat().st_size / 1e6:.0f} MB parquet) in {time.perf_counter() - t0:.0f} s"
                )
            r = measure_mix(path, args.cards, before)
            keys = ("baseline", "ours", "no_prefilter") + (("before",) if before else ())
            rate = {k: args.cards / r[f"{k}_s"] for k in keys}
            labels = {
                "baseline": "DuckDB regexp",
                "ours": "peft-advise",
                "no_prefilter": "no prefilter",
                "before": f"at {args.before}",
            }
            for key in keys:
                label = labels[key]
                print(
                    f"[{mix}] {label:14s} {r[f'{key}_s']:8.1f} s  {rate[key]:10,.0f} cards/s  "
                    f"peak RSS {r[f'{key}_rss'] / 1e9:.2f} GB"
                )
            target = ">= 3" if mix == "realistic" else ">= 1 vs no prefilter"
            print(
                f"[{mix}] ratio ours/baseline {rate['ours'] / rate['baseline']:.2f}, ours/no-prefilter "
                f"{rate['ours'] / rate['no_prefilter']:.2f} (target {target}); our peak RSS "
                f"{r['ours_rss'] / 1e9:.2f} GB (target <= 1.5); {r['prefilter_note']}"
            )
            if before:
                print(f"[{mix}] ratio ours/at {args.before} {rate['ours'] / rate['before']:.2f} (target >= 1)")


if __name__ == "__main__":
    main()
