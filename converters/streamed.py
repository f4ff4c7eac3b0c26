"""Layer-streamed conversion: calibrate, factorise, sweep and measure one block at a time.

The whole-model path (:mod:`converters.convert`) keeps the base model in memory in float32: about
twice a bf16 checkpoint, and the fresh copy the written LoRA is measured on comes on top. Here the
peak is one block's float32 weights plus the calibration activations and, at the start and end, the
embedding / head matrix:

1. **capture**: the model's own forward runs up to the first block (embeddings, masks, rotary
   embeddings), recording each block's call arguments per batch;
2. **pass 1**, block by block: read the block's weights from the shards, run three streams of hidden
   states through it (fit samples and held-out samples with the adapter, held-out without), recording
   each adapted layer's input moments; read ``ΔW``, factorise; for a ``--sweep``, one more held-out
   stream per (rank, factorisation) with ``BA`` added to the weights; free the block;
3. **head**: the model's forward after the last block turns each stream's final hidden states into
   outputs, one sample at a time, into fidelity sums (:class:`FidelityAccumulator`);
4. **pass 2** (after the LoRA is written): PEFT loads the written folder onto a fresh meta model and
   the held-out stream runs through it block by block: the fidelity of exactly what was written.

The streams see the same batches as the whole-model path, so the results agree to float rounding
(``tests/test_convert_streamed.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from advisor.peft_files import PEFT_PREFIX

if TYPE_CHECKING:
    from pathlib import Path

    from converters.convert import ConvertOptions
    from converters.fidelity import Fidelity
    from converters.streamed_model import BlockCall, StreamedModel

ProgressFn = Callable[[str, int, int], None]


@dataclass
class Stream:
    """Hidden states of a set of batches between two blocks, and how each block is called on them."""

    batches: list[dict[str, Any]]
    hidden: list[Any]
    calls: list[list[BlockCall]]  # per batch, per block

    def masks(self) -> list[Any]:
        return [batch.get("attention_mask") for batch in self.batches]

    def copy(self) -> Stream:
        return Stream(self.batches, list(self.hidden), self.calls)


@dataclass
class PassOne:
    """What the first pass leaves: the factorised layers, final held-out hidden states, sweep fidelities."""

    layers: list[Any]
    start: Stream  # the held-out samples' input to the first block (pass 2 starts from it)
    original: Stream
    bare: Stream
    sweep: dict[tuple[int, str], Fidelity] = field(default_factory=dict)


def capture(model: StreamedModel, batches: list[dict[str, Any]]) -> Stream:
    """Each batch's input to the first block and every block's call arguments (outer weights read once)."""
    from converters.streamed_model import capture_block_calls

    hidden, calls = [], []
    with model.materialised(model.outer_for_capture()):
        for batch in batches:
            first, per_block = capture_block_calls(model, batch)
            hidden.append(first)
            calls.append(per_block)
    return Stream(batches, hidden, calls)


def _advance(model: StreamedModel, block: Any, index: int, stream: Stream, recorder: Any = None) -> None:
    """Run every batch of ``stream`` through block ``index`` (hidden states replaced in place)."""
    from converters.streamed_model import block_output

    for b, hidden in enumerate(stream.hidden):
        if recorder is not None:
            recorder.token_mask = stream.batches[b].get("attention_mask")
        stream.hidden[b] = block_output(model, stream.calls[b][index].run(block, hidden))


def _block_layers(model: StreamedModel, index: int) -> list[tuple[str, Any]]:
    from converters.deltas import tuner_layers

    prefix = PEFT_PREFIX + model.block_prefix(index)
    return [(name, module) for name, module in tuner_layers(model.peft_model) if name.startswith(prefix)]


def pass_one(
    model: StreamedModel,
    fit: Stream,
    held_out: Stream,
    rank: int | None,
    methods: list[str],
    options: ConvertOptions,
    *,
    causal_lm: bool,
    progress: ProgressFn,
) -> PassOne:
    """Calibrate, factorise and sweep block by block; then the head turns the held-out streams into fidelity.

    Per block, in the whole-model path's order: fit samples with the adapter (input moments to fit on),
    held-out samples with it (moments to judge on, and the adapter's outputs), held-out without it;
    ``ΔW`` and its factorisation; one held-out stream per swept (rank, factorisation) with ``BA`` added.
    """
    import torch

    from converters.convert import applied, factorise_delta
    from converters.deltas import layer_deltas, record_inputs, tuner_layers_disabled

    original, bare, start = held_out, held_out.copy(), held_out.copy()
    keys = [(r, m) for r in sorted(options.sweep) for m in methods]
    sweeps = {key: held_out.copy() for key in keys}
    layers: list[Any] = []
    total = len(model.blocks)
    peft_model = model.peft_model
    with torch.no_grad():
        for index in range(total):
            progress("streaming blocks: calibrate, factorise", index, total)
            block = model.blocks[index]
            adapted = _block_layers(model, index)
            with model.materialised(model.block_names[index]):
                with record_inputs(peft_model, adapted) as fit_recorder:
                    _advance(model, block, index, fit, fit_recorder)
                with record_inputs(peft_model, adapted) as eval_recorder:
                    _advance(model, block, index, original, eval_recorder)
                with peft_model.disable_adapter():
                    _advance(model, block, index, bare)
                mine = [
                    factorise_delta(
                        delta, rank, methods, fit_recorder.moments, eval_recorder.moments,
                        ridge=options.ridge, device=model.device,
                    )
                    for delta in layer_deltas(peft_model, layers=adapted)
                ]  # fmt: skip
                del fit_recorder, eval_recorder  # this block's moments: factorised, no longer needed
                modules = {name.removeprefix(PEFT_PREFIX): m.get_base_layer() for name, m in adapted}
                for key, stream in sweeps.items():
                    with applied(modules, mine, *key, options), tuner_layers_disabled(peft_model):
                        _advance(model, block, index, stream)
                layers += mine
    progress("streaming blocks: calibrate, factorise", total, total)
    result = PassOne(layers, start, original, bare)
    available = {m for layer in layers for m in layer.bases}
    sweeps = {key: stream for key, stream in sweeps.items() if key[1] in available}
    if sweeps:
        result.sweep = measure_outputs(model, original, bare, sweeps, causal_lm=causal_lm, progress=progress)
    return result


def measure_outputs(
    model: StreamedModel,
    original: Stream,
    bare: Stream,
    candidates: dict[Any, Stream],
    *,
    causal_lm: bool,
    progress: ProgressFn,
) -> dict[Any, Fidelity]:
    """Fidelity of each candidate stream: the head runs one sample at a time, logits are never kept."""
    import torch

    from converters.deltas import has_trained_heads
    from converters.fidelity import FidelityAccumulator
    from converters.streamed_model import uses_inputs_embeds

    sums = {key: FidelityAccumulator(causal_lm=causal_lm) for key in candidates}
    embeds = uses_inputs_embeds(model)
    # With a fully trained head (modules_to_save) the bare model's outputs need the base model's head: they
    # are computed in a call of their own with the adapter disabled. Otherwise every stream shares one call.
    apart = has_trained_heads(model.peft_model)
    samples = sum(int(h.shape[0]) for h in original.hidden)
    keys = list(candidates)
    done = 0
    with model.materialised(model.outer_for_tail(embeds)), torch.no_grad():
        row_bytes = _row_bytes(model, original, embeds)
        for b, batch in enumerate(original.batches):
            mask = batch.get("attention_mask")
            size = int(original.hidden[b].shape[0])
            # The head runs on several samples and streams at once (a half-precision head is upcast once
            # per call), in groups whose outputs stay under OUTPUT_BYTES.
            per_row = row_bytes(b)
            streams = 2 + len(keys)
            if streams * per_row <= OUTPUT_BYTES:
                step = OUTPUT_BYTES // (streams * per_row)
                spans = [(s0, keys) for s0 in range(0, size, step)]
            else:  # a long sweep: one sample at a time, its candidates in groups
                group = max(1, OUTPUT_BYTES // per_row - 2)
                spans = [(s0, keys[k0 : k0 + group]) for s0 in range(size) for k0 in range(0, len(keys), group)]
                step = 1
            for first, chosen in spans:
                progress("measuring outputs", done + first, samples)
                picked = list(range(first, min(size, first + step)))
                rows = [original] + ([] if apart else [bare]) + [candidates[key] for key in chosen]
                out = _head(model, batch, b, picked, rows, embeds)
                width = len(rows)
                if apart:
                    with model.peft_model.disable_adapter():
                        bare_out = _head(model, batch, b, picked, [bare], embeds)
                for n, j in enumerate(picked):
                    at = n * width
                    old = out[at : at + 1]
                    base = bare_out[n : n + 1] if apart else out[at + 1 : at + 2]
                    skip = 1 if apart else 2
                    sample_mask = mask[j : j + 1].cpu() if mask is not None else None
                    for i, key in enumerate(chosen):
                        sums[key].add(out[at + skip + i : at + skip + i + 1], old, base, sample_mask)
            done += size
    progress("measuring outputs", samples, samples)
    return {key: acc.result() for key, acc in sums.items()}


# How much head output (logits: tokens × vocabulary) one call may produce.
OUTPUT_BYTES = 128 * 1024 * 1024


def _row_bytes(model: StreamedModel, stream: Stream, embeds: bool) -> Callable[[int], int]:
    """Bytes of one sample's head output in batch ``b``, from one trial call on the first sample: logits grow
    with the batch's sequence length, a classifier's outputs do not."""
    trial = outer_outputs_of(model, {k: v[:1] for k, v in stream.batches[0].items()}, [stream.hidden[0][:1]], embeds)
    size, length = max(1, trial.numel() * 4), int(stream.hidden[0].shape[1])
    per_token = trial.dim() >= 3 and trial.shape[1] == length  # (sample, token, ...) outputs
    return lambda b: size * int(stream.hidden[b].shape[1]) // length if per_token else size


def _head(
    model: StreamedModel, batch: dict[str, Any], b: int, picked: list[int], rows: list[Stream], embeds: bool
) -> Any:
    """The model's outputs for samples ``picked`` of batch ``b`` of every stream in ``rows`` (sample-major)."""
    import torch

    hidden = [stream.hidden[b][j : j + 1] for j in picked for stream in rows]
    index = torch.tensor([j for j in picked for _ in rows])
    inputs = {k: v[index.to(v.device)] for k, v in batch.items()}
    return outer_outputs_of(model, inputs, hidden, embeds)


def outer_outputs_of(model: StreamedModel, inputs: dict[str, Any], hidden: list[Any], embeds: bool) -> Any:
    """The model's outputs (after the last block) for ``inputs`` whose final hidden states are ``hidden``."""
    import torch

    from converters.streamed_model import outer_outputs

    return outer_outputs(model, inputs, torch.cat(hidden), embeds)


def reloaded_fidelity(
    folder: Path,
    model: StreamedModel,
    first: PassOne,
    reopen: Callable[[Path], StreamedModel],
    *,
    causal_lm: bool,
    progress: ProgressFn,
) -> Fidelity:
    """Pass 2: PEFT loads the written LoRA onto a fresh meta model; the held-out samples stream through it."""
    import torch

    lora_model = reopen(folder)
    lora_model.block_returns_tuple = model.block_returns_tuple
    converted = first.start.copy()
    total = len(lora_model.blocks)
    with torch.no_grad():
        for index in range(total):
            progress("measuring the written LoRA block by block", index, total)
            with lora_model.materialised(lora_model.block_names[index]):
                _advance(lora_model, lora_model.blocks[index], index, converted)
    progress("measuring the written LoRA block by block", total, total)
    fidelity = measure_outputs(
        lora_model, first.original, first.bare, {"lora": converted}, causal_lm=causal_lm, progress=progress
    )
    return fidelity["lora"]
