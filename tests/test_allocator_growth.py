"""The allocator-growth study's two tools: the allocation timeline of a training step, and the caching allocator.

``benchmarks/allocator_growth.py`` shows why a long run on varied lengths reserves more than any step needs. Its
conclusions rest on (1) the timeline following every storage's real lifetime, checked here against PyTorch's own
profiler, which sees the CPU allocator's calls; (2) the allocator model following PyTorch's rules, checked on
request sequences whose answers the rules fix.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
MIB = 2**20


def _load(name: str):
    sys.path.insert(0, str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location(f"{name}_under_test", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def _replay(requests: list[tuple], capacity: int | None = None):
    allocator = _load("caching_allocator").CachingAllocator(capacity)
    blocks = {}
    for request in requests:
        if request[0] == "alloc":
            blocks[request[1]] = allocator.malloc(request[2])
        else:
            allocator.free(blocks.pop(request[1]))
    return allocator


def test_segments_are_rounded_as_pytorch_does() -> None:
    """Up to 1 MiB: a 2 MiB small-pool segment; under 10 MiB: a 20 MiB one; above: the request rounded to 2 MiB."""
    assert _replay([("alloc", 0, 100)]).reserved == 2 * MIB
    assert _replay([("alloc", 0, MIB + 1)]).reserved == 20 * MIB
    assert _replay([("alloc", 0, 30 * MIB)]).reserved == 30 * MIB
    assert _replay([("alloc", 0, 31 * MIB + 1)]).reserved == 32 * MIB
    # Small and large requests never share a segment
    assert _replay([("alloc", 0, 100), ("free", 0), ("alloc", 1, 2 * MIB)]).reserved == 22 * MIB


def test_freed_blocks_are_split_and_merged_within_their_segment() -> None:
    reuse = _replay([("alloc", 0, 30 * MIB), ("free", 0), ("alloc", 1, 30 * MIB)])
    assert reuse.reserved == 30 * MIB
    split = [("alloc", 0, 30 * MIB), ("free", 0), ("alloc", 1, 10 * MIB), ("alloc", 2, 15 * MIB)]
    assert _replay(split).reserved == 30 * MIB  # both carved from the cached 30 MiB block
    merged = _replay([*split, ("free", 1), ("free", 2), ("alloc", 3, 30 * MIB)])
    assert merged.reserved == 30 * MIB  # the pieces merged back into one block that holds 30 MiB again
    # A remainder of 1 MiB or less is not split off: the whole block is handed out
    whole = _replay([("alloc", 0, 30 * MIB), ("free", 0), ("alloc", 1, 29 * MIB + 512)])
    assert whole.allocated == 30 * MIB


def test_free_blocks_of_different_segments_never_combine() -> None:
    """The growth mechanism: 30 and 40 MiB cached and free, a 60 MiB request still needs a new segment."""
    requests = [
        ("alloc", 0, 30 * MIB), ("alloc", 1, 5 * MIB), ("free", 0), ("alloc", 2, 40 * MIB), ("free", 1),
        ("free", 2), ("alloc", 3, 60 * MIB),
    ]  # fmt: skip
    allocator = _replay(requests)
    assert allocator.reserved == (30 + 20 + 40 + 60) * MIB
    assert allocator.peak_allocated == 60 * MIB
    # On a card that holds less, the free segments are released before a new one is taken (PyTorch's retry)
    tight = _replay(requests, capacity=100 * MIB)
    assert tight.reserved == 60 * MIB
    with pytest.raises(MemoryError):
        _replay([("alloc", 0, 60 * MIB), ("alloc", 1, 60 * MIB)], capacity=100 * MIB)


def test_expandable_segments_grow_one_segment_whose_free_blocks_all_merge() -> None:
    """expandable_segments:True: the same requests map 80 MiB (pages of 20 MiB onto one segment's tail), not 150."""
    module = _load("caching_allocator")
    requests = [
        ("alloc", 0, 30 * MIB), ("alloc", 1, 5 * MIB), ("free", 0), ("alloc", 2, 40 * MIB), ("free", 1),
        ("free", 2), ("alloc", 3, 60 * MIB),
    ]  # fmt: skip
    allocator, blocks = module.CachingAllocator(expandable=True), {}
    for request in requests:
        if request[0] == "alloc":
            blocks[request[1]] = allocator.malloc(request[2])
        else:
            allocator.free(blocks.pop(request[1]))
    assert allocator.peak_reserved == 80 * MIB
    allocator.free(blocks.pop(3))
    assert allocator.malloc(80 * MIB).size == 80 * MIB  # everything merged back into one free block
    assert allocator.reserved == 80 * MIB
    # The segment's last block, freed into its free neighbour, leaves that neighbour as the tail pages extend
    tail = module.CachingAllocator(expandable=True)
    first, last = tail.malloc(30 * MIB), tail.malloc(10 * MIB)  # 40 MiB mapped; the 10 MiB takes its free tail
    tail.free(first)
    tail.free(last)
    assert tail.malloc(60 * MIB).size == 60 * MIB
    assert tail.reserved == 60 * MIB


def test_a_fixed_length_run_stops_growing_after_its_first_step_and_varied_lengths_do_not() -> None:
    module = _load("caching_allocator")
    step = [("alloc", 0, 4, 0), ("alloc", 1, 8, 0), ("free", 0), ("alloc", 2, 2, 0), ("free", 1), ("free", 2)]

    def reserved(lengths: list[int]) -> int:
        allocator = module.CachingAllocator()
        for length in lengths:
            module.replay(allocator, step, lambda e, n=length: e[2] * n * MIB)
        return allocator.peak_reserved

    assert reserved([8] * 20) == reserved([8])
    assert reserved([2, 4, 6, 8]) > reserved([8])
    with pytest.raises(ValueError, match="never freed"):
        module.replay(module.CachingAllocator(), [("alloc", 0, MIB)], lambda e: e[2])


@pytest.fixture(scope="module")
def tiny_training_step():
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    peft = pytest.importorskip("peft")
    config = transformers.LlamaConfig(
        hidden_size=256, intermediate_size=512, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        vocab_size=1000,
    )  # fmt: skip
    torch.manual_seed(0)
    model = peft.get_peft_model(
        transformers.LlamaForCausalLM(config), peft.LoraConfig(r=4, target_modules=["q_proj", "v_proj"])
    )
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad])

    def at(length: int):
        def step() -> None:
            ids = torch.randint(0, 1000, (2, length))
            loss = model(input_ids=ids, labels=ids).loss
            loss.backward()
            del loss
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        return step

    at(16)()  # the optimizer's state exists before the steps that are traced
    return at


def _live_peak(events: list[tuple]) -> tuple[int, int]:
    sizes, live, peak = {}, 0, 0
    for event in events:
        if event[0] == "alloc":
            sizes[event[1]] = event[2]
            live += event[2]
        else:
            live -= sizes[event[1]]
        peak = max(peak, live)
    return peak, live


@pytest.mark.slow
def test_the_timeline_frees_what_the_cpu_allocator_frees(tiny_training_step) -> None:
    """The timeline's live bytes peak where the CPU allocator's own calls (PyTorch's profiler) peak: to the byte
    but for the profiler's scalar temporaries. Ending a storage with the first tensor that held it (views outlive
    it) peaks 40% lower on this step."""
    from torch.profiler import ProfilerActivity, profile
    from torch.profiler._memory_profiler import Action, MemoryProfile

    growth = _load("allocator_growth")
    for length in (32, 128):
        peak, left = _live_peak(growth.allocation_timeline(tiny_training_step(length)))
        assert left == 0
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True, with_stack=True) as p:
            tiny_training_step(length)()
        live = truth = 0
        for _, action, _, size in MemoryProfile(p.profiler.kineto_results).timeline:
            live += size if action == Action.CREATE else -size if action == Action.DESTROY else 0
            truth = max(truth, live)
        assert truth - 256 <= peak <= truth, (peak, truth)


@pytest.mark.slow
def test_a_step_is_scaled_to_any_length_from_two(tiny_training_step) -> None:
    growth = _load("allocator_growth")
    short, long, other = (growth.allocation_timeline(tiny_training_step(n)) for n in (32, 64, 96))
    events = growth.sized_by_length(short, long, (32, 64))
    predicted = [round(e[2] + e[3] * 96) for e in events if e[0] == "alloc"]
    assert predicted == [e[2] for e in other if e[0] == "alloc"]
    with pytest.raises(ValueError, match="different ops"):
        growth.sized_by_length(short, long[:-1], (32, 64))


def test_outside_figures_are_marked_varied_where_most_steps_are_shorter_than_the_cap() -> None:
    """benchmarks/memory_accuracy.py reports a step's need apart from a long run's reserved high-water on varied
    lengths. The marking follows the data, not the errors: ms-swift's January runs drop longer samples (every step
    under the cap); its December runs cut them to the cap, so a step is shorter only where the sample is, which is
    most steps once the cap passes the dataset's median length. Every other source pads, packs or reports
    allocated memory."""
    import json

    growth = _load("allocator_growth")
    data = json.loads((BENCHMARKS / "data" / "published_memory.json").read_text(encoding="utf-8"))
    lengths = growth.dataset_lengths(0)
    for row in data["rows"]:
        if row["source"] == "swift":
            expected = True
        elif row["source"] == "swift-2023-12":
            expected = sum(n < row["seq"] for n in lengths) > len(lengths) / 2
        else:
            expected = False
        assert (row.get("lengths") == "varied") == expected, row
