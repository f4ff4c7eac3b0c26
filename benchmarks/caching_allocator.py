"""PyTorch's CUDA caching allocator at its default settings, replayed on an allocation timeline.

``torch.cuda.max_memory_reserved`` and ``nvidia-smi`` show the segments the allocator has taken from the driver, not
the tensors alive at the worst moment. A segment is never returned while the program runs (unless a cudaMalloc
fails or the cache is emptied), and a freed block is reused only by a request it can hold, so what a long run
reserves depends on the order of the requests, not only on their largest set. This model follows
c10/cuda/CUDACachingAllocator.cpp with ``PYTORCH_CUDA_ALLOC_CONF`` unset (no ``max_split_size_mb``, no
``expandable_segments``, no garbage collection threshold):

- a request is rounded up to 512 bytes; up to 1 MiB it is served from the small pool, above from the large one;
- the smallest cached free block of its pool that holds it is taken (best fit), and split when what is left
  exceeds 1 MiB (large pool) or is at least 512 bytes (small pool);
- with none, a new segment is allocated: 2 MiB for a small request, 20 MiB for one under 10 MiB, else the request
  rounded up to 2 MiB;
- a freed block merges with free neighbours of its own segment only; segments never merge;
- when a new segment would pass ``capacity``, every wholly free segment is released first (what PyTorch does before
  it reports out-of-memory), and the request fails only if it still does not fit.

With ``expandable=True`` (``PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True``) each pool is one segment that grows
at its end: a request no free block holds maps pages (2 MiB in the small pool, 20 MiB in the large one) onto the
segment's free tail, or after its last block, so every free block can merge with its neighbours.

Used by ``benchmarks/allocator_growth.py``; no torch.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

MIN_BLOCK = 512
SMALL_SIZE = 1 << 20  # requests up to this come from the small pool
SMALL_BUFFER = 2 << 20  # a small pool segment
LARGE_BUFFER = 20 << 20  # the segment for a large request under MIN_LARGE_ALLOC
MIN_LARGE_ALLOC = 10 << 20
ROUND_LARGE = 2 << 20


def round_size(size: int) -> int:
    return MIN_BLOCK if size < MIN_BLOCK else MIN_BLOCK * -(-size // MIN_BLOCK)


def segment_size(size: int) -> int:
    """The cudaMalloc a request of (rounded) ``size`` makes when no cached block holds it."""
    if size <= SMALL_SIZE:
        return SMALL_BUFFER
    if size < MIN_LARGE_ALLOC:
        return LARGE_BUFFER
    return ROUND_LARGE * -(-size // ROUND_LARGE)


@dataclass(eq=False)
class Block:
    address: int
    size: int
    small: bool
    free: bool = True
    prev: Block | None = None
    next: Block | None = None

    def key(self) -> tuple[int, int]:
        return (self.size, self.address)


@dataclass
class CachingAllocator:
    capacity: int | None = None  # bytes the allocator may reserve (the card less what lives outside it)
    expandable: bool = False  # expandable_segments:True
    reserved: int = 0
    peak_reserved: int = 0
    allocated: int = 0
    peak_allocated: int = 0
    _pools: dict[bool, list[tuple[int, int, Block]]] = field(default_factory=lambda: {True: [], False: []})
    _next_address: int = 0
    _tails: dict[bool, Block | None] = field(default_factory=lambda: {True: None, False: None})

    def malloc(self, size: int) -> Block:
        size = round_size(size)
        small = size <= SMALL_SIZE
        pool = self._pools[small]
        index = bisect.bisect_left(pool, (size, -1))
        # best fit: the smallest cached block that holds it, else a new segment
        if index < len(pool):
            block = pool.pop(index)[2]
        elif self.expandable:
            block = self._grow(size, small)
        else:
            block = self._new_segment(segment_size(size), small)
        remaining = block.size - size
        if (remaining >= MIN_BLOCK) if small else (remaining > SMALL_SIZE):
            rest = Block(block.address + size, remaining, small, prev=block, next=block.next)
            if block.next is not None:
                block.next.prev = rest
            block.next, block.size = rest, size
            self._cache(rest)
            if self._tails[small] is block:
                self._tails[small] = rest
        block.free = False
        self.allocated += block.size
        self.peak_allocated = max(self.peak_allocated, self.allocated)
        return block

    def free(self, block: Block) -> None:
        self.allocated -= block.size
        block.free = True
        if block.prev is not None and block.prev.free:
            self._uncache(block.prev)
            block = self._merge(block.prev, block)
        if block.next is not None and block.next.free:
            self._uncache(block.next)
            block = self._merge(block, block.next)
        self._cache(block)

    def _merge(self, left: Block, right: Block) -> Block:
        """``right`` joins ``left``, its neighbour in the same segment (an expandable segment's tail moves too)."""
        left.size += right.size
        left.next = right.next
        if right.next is not None:
            right.next.prev = left
        if self._tails[left.small] is right:
            self._tails[left.small] = left
        return left

    def _new_segment(self, size: int, small: bool) -> Block:
        if self.capacity is not None and self.reserved + size > self.capacity:
            self._release_free_segments()
            if self.reserved + size > self.capacity:
                raise MemoryError(f"out of memory: {size} bytes more than the {self.capacity} the card holds")
        block = Block(self._next_address, size, small)
        self._next_address += size + ROUND_LARGE  # segments are never adjacent
        self.reserved += size
        self.peak_reserved = max(self.peak_reserved, self.reserved)
        return block

    def _grow(self, size: int, small: bool) -> Block:
        """expandable_segments: map pages onto the pool's segment, its free tail first."""
        granule = SMALL_BUFFER if small else LARGE_BUFFER
        tail = self._tails[small]
        if tail is not None and tail.free:
            self._uncache(tail)
            mapped = granule * -(-(size - tail.size) // granule)
            block = tail
            block.size += mapped
        else:
            mapped = granule * -(-size // granule)
            address = tail.address + tail.size if tail is not None else self._next_address
            block = Block(address, mapped, small, prev=tail)
            if tail is None:
                self._next_address += 1 << 50  # the pool's own address range
            else:
                tail.next = block
            self._tails[small] = block
        if self.capacity is not None and self.reserved + mapped > self.capacity:
            raise MemoryError(f"out of memory: {mapped} bytes more than the {self.capacity} the card holds")
        self.reserved += mapped
        self.peak_reserved = max(self.peak_reserved, self.reserved)
        return block

    def _release_free_segments(self) -> None:
        for small, pool in self._pools.items():
            whole = [entry for entry in pool if entry[2].prev is None and entry[2].next is None]
            for entry in whole:
                self.reserved -= entry[2].size
            self._pools[small] = [entry for entry in pool if entry not in whole]

    def _cache(self, block: Block) -> None:
        bisect.insort(self._pools[block.small], (*block.key(), block))

    def _uncache(self, block: Block) -> None:
        pool = self._pools[block.small]
        index = bisect.bisect_left(pool, block.key())
        while pool[index][2] is not block:
            index += 1
        pool.pop(index)


Event = tuple  # ("alloc", id, bytes) | ("free", id)


def replay(allocator: CachingAllocator, events: Iterable[Event], size_of: Callable[[Event], int]) -> None:
    """Serve one timeline's requests in order; every storage it allocates must be freed within it."""
    live: dict[int, Block] = {}
    for event in events:
        if event[0] == "alloc":
            live[event[1]] = allocator.malloc(size_of(event))
        elif event[1] in live:
            allocator.free(live.pop(event[1]))
    if live:
        raise ValueError(f"{len(live)} storages of the timeline are never freed within it")
