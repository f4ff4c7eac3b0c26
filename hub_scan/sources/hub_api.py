"""The live Hub: list adapter repos, read each one's adapter_config.json (truth) and card, count.

1. List: ``HfApi.list_models`` with a filter (default the ``peft`` tag, which the Hub sets from
   ``library_name: peft``), with tags, library_name, pipeline_tag, createdAt and the commit sha.
   The listing is saved once complete, so a resumed scan reads the same repos at the same commits.
2. Fetch: ``adapter_config.json`` and ``README.md`` at that sha, concurrently (threads; the work is
   waiting on the network). ``hf_hub_download`` keeps them in the HF cache: a rerun reads from disk.
   429 / 5xx / dropped connections are retried with back-off (:mod:`advisor.hub_access`).
3. Journal: each finished repo is one line appended (and flushed) to ``results.jsonl`` in the scan's
   state folder. A scan killed mid-way resumes from it: repos in the journal are not fetched again,
   a torn last line is dropped and redone, so no repo is lost or counted twice.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import hashlib
import json
import os
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from advisor.hub_access import NoAccess, NotOnHub, hub_errors, require_hub, with_backoff
from advisor.paths import user_data_dir, write_text_atomic
from advisor.peft_files import CONFIG_NAME
from hub_scan.records import CardRecord, ScannedCard, config_base_model, config_facts
from hub_scan.scan import ScanResult, scan_record
from hub_scan.stats import UsageStats

Progress = Callable[[str, int, int], None]
EXPAND = ["tags", "library_name", "pipeline_tag", "createdAt", "downloads", "sha", "siblings"]


@dataclass(frozen=True)
class HubQuery:
    """What to list: every repo matching *any* of ``filters`` (a union, each repo once), narrowed by author
    and search; ``limit`` caps each filter's listing."""

    filters: tuple[str, ...] = ("peft",)
    author: str | None = None
    search: str | None = None
    limit: int | None = None

    def key(self) -> str:
        """A stable name for this query's state folder (the filters' order does not matter)."""
        data = {**asdict(self), "filters": sorted(set(self.filters))}
        text = json.dumps(data, sort_keys=True)
        name = "+".join(sorted(set(self.filters)))
        slug = re.sub(r"[^\w.-]+", "-", f"{name}-{self.author or ''}-{self.search or ''}").strip("-")
        return f"{slug}-{hashlib.sha1(text.encode()).hexdigest()[:10]}"

    def describe(self) -> str:
        union = " or ".join(repr(f) for f in self.filters)
        return f"filter {union}" + (f" author={self.author}" if self.author else "")


@dataclass(frozen=True)
class ListedRepo:
    id: str
    sha: str | None
    tags: tuple[str, ...]
    library_name: str | None
    pipeline_tag: str | None
    created_at: str | None
    downloads: int | None
    files: tuple[str, ...] = ()
    matched: tuple[str, ...] = ()  # the query's filters this repo matched (the population it belongs to)

    @property
    def base_model(self) -> str | None:
        for prefix in ("base_model:adapter:", "base_model:finetune:", "base_model:"):
            for tag in self.tags:
                if tag.startswith(prefix) and tag.count(":") == prefix.count(":"):
                    return tag[len(prefix) :]
        return None


def default_state_dir(query: HubQuery) -> Path:
    return user_data_dir() / "hub-scans" / query.key()


def list_repos(query: HubQuery) -> list[ListedRepo]:
    """Every repo matching any filter, once, in first-listed order, with the filters each matched."""
    from huggingface_hub import HfApi

    api = HfApi()
    found: dict[str, ListedRepo] = {}
    for name in dict.fromkeys(query.filters):  # each filter once, in the order given
        with hub_errors(f"the model list (filter {name!r})"):
            infos = with_backoff(
                lambda name=name: list(
                    api.list_models(
                        filter=name or None,
                        author=query.author,
                        search=query.search,
                        limit=query.limit,
                        expand=EXPAND,
                    )
                )
            )
        for info in infos:
            if info.id in found:
                found[info.id] = replace(found[info.id], matched=(*found[info.id].matched, name))
                continue
            created = getattr(info, "created_at", None)
            found[info.id] = ListedRepo(
                id=info.id,
                sha=getattr(info, "sha", None),
                tags=tuple(getattr(info, "tags", None) or ()),
                library_name=getattr(info, "library_name", None),
                pipeline_tag=getattr(info, "pipeline_tag", None),
                created_at=created.isoformat() if hasattr(created, "isoformat") else created,
                downloads=getattr(info, "downloads", None),
                files=tuple(s.rfilename for s in (getattr(info, "siblings", None) or ())),
                matched=(name,),
            )
    return list(found.values())


def population_note(query: HubQuery, repos: list[ListedRepo]) -> str:
    """Which repos the figures describe: the union of the filters, each repo counted once."""
    if len(query.filters) == 1:
        return f"population: {len(repos)} repos matching filter {query.filters[0]!r}"
    each = ", ".join(f"{name!r} {sum(name in r.matched for r in repos)}" for name in dict.fromkeys(query.filters))
    several = sum(len(r.matched) > 1 for r in repos)
    return (
        f"population: {len(repos)} repos matching any of the filters ({each}); {several} matched more than one "
        "and are counted once"
    )


def _download_text(repo: ListedRepo, filename: str) -> str | None:
    from huggingface_hub import hf_hub_download

    try:
        path = with_backoff(lambda: hf_hub_download(repo.id, filename, revision=repo.sha or None))
    except NotOnHub:
        return None
    with open(path, encoding="utf-8", errors="replace") as handle:
        return handle.read()


def fetch_record(repo: ListedRepo) -> CardRecord:
    """adapter_config.json first (the truth), then the card; either may be missing. A repo without a PEFT
    config that holds a .safetensors file gets that file's tensor names (its header, by range request):
    kohya and LyCORIS LoRA repos say what they are there."""
    peft_type, flags, base = None, (), None
    config_text = _download_text(repo, CONFIG_NAME) if not repo.files or CONFIG_NAME in repo.files else None
    if config_text is not None:
        with contextlib.suppress(ValueError):
            config = json.loads(config_text)
            peft_type, flags = config_facts(config)
            base = config_base_model(config)
    keys: tuple[str, ...] = ()
    if peft_type is None and not any(f.endswith("pytorch_lora_weights.safetensors") for f in repo.files):
        weights = next((f for f in repo.files if f.endswith(".safetensors") and "/" not in f), None)
        if weights is not None:
            keys = _header_keys(repo, weights)
    return CardRecord(
        id=repo.id,
        card=_download_text(repo, "README.md"),
        tags=repo.tags,
        library_name=repo.library_name,
        pipeline_tag=repo.pipeline_tag,
        created_at=repo.created_at,
        base_model=repo.base_model,
        downloads=repo.downloads,
        config_peft_type=peft_type,
        config_flags=flags,
        config_base_model=base,
        files=repo.files,
        weight_keys=keys,
    )


def _header_keys(repo: ListedRepo, filename: str, limit: int = 64) -> tuple[str, ...]:
    """Tensor names from a weights file's header (range requests: no weights downloaded); () on failure."""
    from huggingface_hub import HfApi

    try:
        metadata = with_backoff(
            lambda: HfApi().parse_safetensors_file_metadata(repo.id, filename, revision=repo.sha or None)
        )
    except Exception:  # an unreadable header says nothing about the method; the card and files still do
        return ()
    return tuple(sorted(metadata.tensors)[:limit])


class Journal:
    """Append-only record of finished repos; what a resumed scan starts from."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.results = folder / "results.jsonl"
        self.listing = folder / "listing.json"

    def load_listing(self) -> list[ListedRepo] | None:
        if not self.listing.is_file():
            return None
        try:
            data = json.loads(self.listing.read_text(encoding="utf-8"))
            return [
                ListedRepo(
                    **{
                        **r,
                        "tags": tuple(r["tags"]),
                        "files": tuple(r.get("files", ())),
                        "matched": tuple(r.get("matched", ())),
                    }
                )
                for r in data["repos"]
            ]
        except (ValueError, KeyError, TypeError):
            return None

    def save_listing(self, repos: list[ListedRepo]) -> None:
        data = {
            "repos": [
                {**asdict(r), "tags": list(r.tags), "files": list(r.files), "matched": list(r.matched)} for r in repos
            ]
        }
        write_text_atomic(self.listing, json.dumps(data))

    def load_done(self) -> dict[str, ScannedCard]:
        done: dict[str, ScannedCard] = {}
        if not self.results.is_file():
            return done
        with open(self.results, encoding="utf-8") as handle:
            for line in handle:
                try:
                    card = ScannedCard.from_dict(json.loads(line))
                except (ValueError, KeyError, TypeError):
                    continue  # a line torn by a kill: that repo is scanned again
                done[card.id] = card  # a repeated id keeps one entry: never counted twice
        return done

    def open_for_append(self):
        self.folder.mkdir(parents=True, exist_ok=True)
        # A torn last line (no newline) must not glue onto the next record.
        if self.results.is_file() and self.results.stat().st_size:
            with open(self.results, "rb") as handle:
                handle.seek(-1, os.SEEK_END)
                needs_newline = handle.read(1) != b"\n"
            if needs_newline:
                with open(self.results, "a", encoding="utf-8") as handle:
                    handle.write("\n")
        return open(self.results, "a", encoding="utf-8")

    def clear(self) -> None:
        for path in (self.results, self.listing):
            path.unlink(missing_ok=True)


def scan_hub(
    query: HubQuery,
    *,
    state_dir: Path | None = None,
    workers: int = 8,
    fresh: bool = False,
    keep_cards: bool = False,
    progress: Progress | None = None,
) -> ScanResult:
    start = time.perf_counter()
    journal = Journal(state_dir or default_state_dir(query))
    if fresh:
        journal.clear()
    repos = journal.load_listing()
    resumed = repos is not None
    what = f"scanning the Hub ({query.describe()})"
    if repos is None:
        if progress:
            progress("listing repos", 0, 0)
        require_hub(what)
        repos = list_repos(query)
        journal.save_listing(repos)
    done = journal.load_done()
    wanted = {r.id for r in repos}
    done = {k: v for k, v in done.items() if k in wanted}
    todo = [r for r in repos if r.id not in done]
    failures: list[str] = []
    no_access: list[str] = []
    if progress:
        progress("fetching configs and cards", len(done), len(repos))
    with journal.open_for_append() as out, cf.ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        futures = {pool.submit(fetch_record, repo): repo for repo in todo}
        for future in cf.as_completed(futures):
            repo = futures[future]
            try:
                card = scan_record(future.result())
            except NoAccess:
                no_access.append(repo.id)
                continue
            except Exception as exc:  # after the retries: reported, left out, retried on the next run
                failures.append(f"{repo.id}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
                continue
            out.write(json.dumps(card.to_dict()) + "\n")
            out.flush()
            done[card.id] = card
            if progress:
                progress("fetching configs and cards", len(done), len(repos))
    stats = UsageStats()
    ordered = [done[r.id] for r in repos if r.id in done]
    for card in ordered:
        stats.add(card)
    notes = [f"state folder {journal.folder}" + (" (resumed)" if resumed else ""), population_note(query, repos)]
    if failures:
        notes.append(
            f"{len(failures)} repos failed after retries and are not counted (run again to retry): "
            + "; ".join(failures[:3])
        )
    if no_access:
        notes.append(f"{len(no_access)} gated or private repos left out (set HF_TOKEN with access to include them)")
    source = f"Hub models {query.describe()}"
    return ScanResult(
        source, "hub", stats, ordered if keep_cards else [], elapsed_s=time.perf_counter() - start, notes=notes
    )
