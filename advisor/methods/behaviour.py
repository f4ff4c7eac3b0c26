"""What each PEFT method can do, established by doing it on a tiny model.

Reading peft's source says which methods *have* a ``merge`` method; it cannot say that the merge
works (Lily's raises ``NotImplementedError``), that it reproduces the forward pass (PVeRA samples),
or that a method trains on a 4-bit base without a bitsandbytes wrapper of its own (OFT rotates the
input, so it does). So every capability the registry states is a small experiment here, run when
the registry is generated (``peft-advise methods --refresh``) and held by ``tests/test_capabilities.py``:

- ``peft_reload``: the saved folder, loaded with ``PeftModel.from_pretrained`` on a fresh base,
  reproduces the adapter (PEFT serves it as trained).
- ``merge``: ``merge_and_unload()`` succeeds and the merged model's outputs equal the adapted ones.
- ``peft_to_lora``: ``peft.convert_to_lora`` at full rank succeeds and reproduces the outputs.
- ``ours_to_lora``: our converter at full rank reproduces the outputs (fidelity ≥ 0.999).
- ``bnb-4bit`` / ``bnb-8bit``: the method wraps a bitsandbytes-quantised tiny Llama, the base stays
  quantised, the loss is finite and every trainable tensor gets a gradient.
- ``vllm_native`` / ``diffusers_native``: the saved adapter, unconverted, passes the consumer checks
  of :mod:`converters.consumers` (docs/lora-consumers.md, read from vLLM's and Diffusers' loaders),
  as saved or after a rewrite that changes no number (``check-lora --fix``).
- ``vllm_via_convert`` / ``diffusers_via_convert``: the full-rank LoRA our converter wrote passes
  those checks (a LoRA carrying a bias, say, is refused by vLLM).

Every claim keeps how it was established and, when false, why. Imports torch, peft and
transformers: never on the recommend path (the registry is read from JSON there).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import tempfile
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

# The probe model: a 2-layer Llama, small enough that probing all of peft's methods takes minutes.
PROBE_LLAMA: dict[str, Any] = {
    "vocab_size": 256,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 128,
    "attention_bias": True,  # biases, so that bias-tuning methods (BEFT) have something to tune
    "mlp_bias": True,
    "architectures": ["LlamaForCausalLM"],
}
PROBE_TOKENS = (5, 6, 7)  # token ids every probe input starts with (trainable tokens tune these)
# Methods whose forward needs a task id per row (multi-task prompt tuning, Poly).
TASK_ID_METHODS = frozenset({"MULTITASK_PROMPT_TUNING", "POLY"})

# Config arguments so that each method builds on the probe model's layer sizes (64 / 32 / 128).
PROBE_KWARGS: dict[str, dict[str, Any]] = {
    "ADALORA": {"total_step": 10, "init_r": 4, "target_r": 2},
    "BOFT": {"boft_block_size": 4},
    "OFT": {"r": 0, "oft_block_size": 16},
    "VBLORA": {"vector_length": 16, "num_vectors": 32},
    "ROAD": {"group_size": 16},
    "SHIRA": {"r": 2},
    "C3A": {"block_size": 16},
    "WAVEFT": {"n_frequency": 64},
    "HRA": {"r": 4},
    "LOHA": {"r": 4},
    "LOKR": {"r": 4},
    "LORA": {"r": 4},
    "PROMPT_TUNING": {"num_virtual_tokens": 4},
    "PREFIX_TUNING": {"num_virtual_tokens": 4},
    "P_TUNING": {"num_virtual_tokens": 4, "encoder_hidden_size": 64},
    "MULTITASK_PROMPT_TUNING": {"num_virtual_tokens": 4, "num_tasks": 1},
    "ADAPTION_PROMPT": {"adapter_len": 4, "adapter_layers": 1},
    "CARTRIDGE": {"num_virtual_tokens": 4},
}

# The seeded update put on every trainable tensor: a fresh adapter is usually an identity and would
# "merge" or "convert" perfectly without proving anything. RandLoRA's scaling makes 0.1 an update
# ~100x the base weight, where float32 rounding alone moves outputs by percents.
PROBE_NOISE: dict[str, float] = {"RANDLORA": 0.01}
DEFAULT_NOISE = 0.1

# Output agreement that counts as "the same model": relative to the adapter's own effect.
SAME_OUTPUTS = 1e-3
# On a quantised base the adapter's effect must point the way it does in full precision (cosine): the
# base weights are perturbed by quantisation, so the effect is not equal, but a method computing with
# packed 4-bit codes gives an unrelated one.
MIN_EFFECT_AGREEMENT = 0.5
FULL_RANK = 4096
CAPABILITIES = (
    "peft_reload",
    "merge",
    "peft_to_lora",
    "ours_to_lora",
    "vllm_native",
    "diffusers_native",
    "vllm_via_convert",
    "diffusers_via_convert",
    "bnb-4bit",
    "bnb-8bit",
)


@dataclass(frozen=True)
class Claim:
    """One capability of one method, with how it was established (``how``) and what was seen."""

    value: bool
    how: str  # "behaviour" (run on the probe model) or "not established" (the experiment could not run)
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def probe_targets(peft_type: str) -> dict[str, Any]:
    """Target modules on the probe Llama; IA³ gets one feed-forward (input-scaling) layer too."""
    if peft_type == "TRAINABLE_TOKENS":
        return {"target_modules": ["embed_tokens"], "token_indices": list(PROBE_TOKENS)}
    if peft_type == "IA3":
        return {"target_modules": ["q_proj", "v_proj", "down_proj"], "feedforward_modules": ["down_proj"]}
    if peft_type == "LN_TUNING":
        return {"target_modules": ["input_layernorm"]}
    return {"target_modules": ["q_proj", "v_proj"]}


def probe_config(peft_type: str, config_class: str, **overrides: Any) -> Any:
    """The peft config a probe (or a test) builds for ``peft_type`` on the probe Llama."""
    import peft

    cls = getattr(peft, config_class)
    kwargs: dict[str, Any] = {"task_type": "CAUSAL_LM", **PROBE_KWARGS.get(peft_type, {}), **overrides}
    fields = getattr(cls, "__dataclass_fields__", {})
    if "target_modules" in fields:
        kwargs = {**probe_targets(peft_type), **kwargs}
    return cls(**kwargs)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """peft and transformers warn a lot on a 2-layer random model; none of it is news here."""
    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        level = logging.root.manager.disable
        logging.disable(logging.WARNING)
        try:
            yield
        finally:
            logging.disable(level)


def save_probe_llama(folder: Path) -> Path:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(**PROBE_LLAMA)).save_pretrained(folder)
    return folder


def _error(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:240]}" if text else type(exc).__name__


def _inputs(peft_type: str) -> dict[str, Any]:
    import torch

    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(8, PROBE_LLAMA["vocab_size"], (2, 12), generator=generator)
    ids[:, : len(PROBE_TOKENS)] = torch.tensor(PROBE_TOKENS)
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    if peft_type in TASK_ID_METHODS:
        inputs["task_ids"] = torch.zeros(ids.shape[0], dtype=torch.long)
    return inputs


def _logits(model: Any, inputs: dict[str, Any]) -> Any:
    """Logits at the input's own positions (prompt methods prepend virtual tokens)."""
    import torch
    from peft import PeftModel

    if not isinstance(model, PeftModel):  # a merged or plain model takes no task ids
        inputs = {k: v for k, v in inputs.items() if k != "task_ids"}
    with torch.no_grad():
        logits = model(**inputs).logits.float()
    return logits[:, -inputs["input_ids"].shape[1] :]


def build_adapted(peft_type: str, config_class: str, base_dir: Path, *, seed: int = 0) -> Any:
    """The probe Llama with a ``peft_type`` adapter carrying a seeded, non-trivial update (eval mode)."""
    import peft
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    adapted = peft.get_peft_model(model, probe_config(peft_type, config_class))
    noise = PROBE_NOISE.get(peft_type, DEFAULT_NOISE)
    with torch.no_grad():
        for param in adapted.parameters():
            if param.requires_grad:
                param.add_(torch.randn_like(param) * noise)
    return adapted.eval()


def _same(reference: Any, other: Any, bare: Any) -> tuple[bool, str]:
    """Do ``other`` outputs equal ``reference``, relative to how far the adapter moved them from ``bare``?"""
    effect = float((reference - bare).norm())
    error = float((other - reference).norm())
    if not math.isfinite(error):
        return False, "the outputs are not finite"
    if effect < 1e-6:
        return False, "the adapter does not change the outputs on the probe model, so nothing is shown"
    ratio = error / effect
    return ratio <= SAME_OUTPUTS, f"output error {ratio:.2e} of the adapter's effect"


class MethodProbe:
    """All experiments for one method on one saved probe model (``base_dir``)."""

    def __init__(self, peft_type: str, config_class: str, kind: str, base_dir: Path, work: Path) -> None:
        self.peft_type = peft_type
        self.config_class = config_class
        self.kind = kind
        self.base_dir = base_dir
        self.work = work
        self.inputs = _inputs(peft_type)

    def run(self, registry: Any = None) -> dict[str, Claim]:
        with _quiet():
            try:
                adapted = build_adapted(self.peft_type, self.config_class, self.base_dir)
                adapted_logits = _logits(adapted, self.inputs)
                with adapted.disable_adapter():
                    bare_logits = _logits(adapted, self.inputs)
            except Exception as exc:
                why = f"the method could not be built and run on the probe Llama ({_error(exc)})"
                return {name: Claim(False, "not established", why) for name in CAPABILITIES}
            claims = {
                "merge": self._merge(adapted_logits, bare_logits),
                "peft_to_lora": self._peft_conversion(adapted_logits, bare_logits),
            }
            adapter_dir = self._save(adapted)
            claims["peft_reload"] = self._reload(adapter_dir, adapted_logits, bare_logits)
            claims["ours_to_lora"] = self._our_conversion(adapter_dir, registry)
            claims["vllm_native"] = self._consumer(adapter_dir, "vllm")
            claims["diffusers_native"] = self._consumer(adapter_dir, "diffusers")
            for target in ("vllm", "diffusers"):
                claims[f"{target}_via_convert"] = self._converted_for(
                    claims["ours_to_lora"], adapter_dir, registry, target
                )
            for bits in (4, 8):
                claims[f"bnb-{bits}bit"] = self._quantized(bits)
        return claims

    def _fresh(self) -> Any:
        """A new copy of the adapted model: merging and converting change the one they run on."""
        return build_adapted(self.peft_type, self.config_class, self.base_dir)

    def _reproduces(self, what: str, make: Callable[[], Any], adapted_logits: Any, bare_logits: Any) -> Claim:
        """Does the model ``make()`` returns give the adapted model's outputs? ``what`` names the step."""
        try:
            ok, seen = _same(adapted_logits, _logits(make(), self.inputs), bare_logits)
        except Exception as exc:
            return Claim(False, "behaviour", f"{what} fails: {_error(exc)}")
        if not ok:
            return Claim(False, "behaviour", f"{what} runs but changes the model: {seen}")
        return Claim(True, "behaviour", f"{what} reproduces the adapter ({seen})")

    def _merge(self, adapted_logits: Any, bare_logits: Any) -> Claim:
        return self._reproduces(
            "merge_and_unload()", lambda: self._fresh().merge_and_unload(), adapted_logits, bare_logits
        )

    def _peft_conversion(self, adapted_logits: Any, bare_logits: Any) -> Claim:
        import peft

        def converted() -> Any:
            adapted = self._fresh()
            config, state = peft.convert_to_lora(adapted, 1.0)  # a float: keep all of the update's energy
            lora = peft.get_peft_model(adapted.unload(), config)
            peft.set_peft_model_state_dict(lora, state)
            return lora.eval()

        return self._reproduces("peft.convert_to_lora at full rank", converted, adapted_logits, bare_logits)

    def _save(self, adapted: Any) -> Path:
        folder = self.work / f"{self.peft_type.lower()}-adapter"
        adapted.save_pretrained(folder)
        path = folder / "adapter_config.json"
        config = json.loads(path.read_text())
        config["base_model_name_or_path"] = str(self.base_dir)
        path.write_text(json.dumps(config))
        return folder

    def _reload(self, adapter_dir: Path, adapted_logits: Any, bare_logits: Any) -> Claim:
        import torch
        from peft import PeftModel
        from transformers import AutoModelForCausalLM

        def reloaded() -> Any:
            base = AutoModelForCausalLM.from_pretrained(self.base_dir, dtype=torch.float32)
            return PeftModel.from_pretrained(base, adapter_dir).eval()

        return self._reproduces("PeftModel.from_pretrained on the saved folder", reloaded, adapted_logits, bare_logits)

    def _our_conversion(self, adapter_dir: Path, registry: Any) -> Claim:
        if self.kind != "weight":
            return Claim(False, "behaviour", "it changes no layer weight, so there is no weight update to export")
        return self._conversion(adapter_dir, registry, "peft")

    def _conversion(self, adapter_dir: Path, registry: Any, target: str) -> Claim:
        from converters.convert import ConvertOptions, convert_adapter

        try:
            options = ConvertOptions(rank=FULL_RANK, factorization="plain", device="cpu", target=target)
            result = convert_adapter(str(adapter_dir), self.work / f"lora-for-{target}", options, registry=registry)
        except Exception as exc:
            return Claim(False, "behaviour", f"`convert --for {target}` fails: {_error(exc)}")
        fidelity = result.fidelity.fidelity
        if not fidelity >= 0.999:
            kept = f"at full rank the LoRA for {target} keeps {fidelity:.3f} of the adapter's effect"
            why = [n for n in result.notes if "dropped" in n][:1]  # e.g. the converter dropped LoRA biases for vLLM
            return Claim(False, "behaviour", kept + "".join(f" ({n})" for n in why))
        kept = f"full-rank LoRA for {target} keeps {fidelity:.4f} of the effect and passes its checks"
        return Claim(True, "behaviour", kept)

    def _converted_for(self, converted: Claim, adapter_dir: Path, registry: Any, target: str) -> Claim:
        """``convert --for TARGET`` at full rank: it must keep the effect *and* pass that consumer's checks
        (for vLLM the converter drops LoRA biases, so a bias-only method loses everything there)."""
        if not converted.value:
            return Claim(False, converted.how, f"no LoRA to serve: {converted.detail}")
        return self._conversion(adapter_dir, registry, target)

    def _consumer(self, adapter_dir: Path, target: str) -> Claim:
        """Loads as trained: the folder passes the consumer's checks as saved, or after a rewrite that
        changes no number (file names, key names, Diffusers' own file: ``check-lora --fix``)."""
        from converters.consumers import check_lora, fix_lora

        shown = Path("ADAPTER")  # findings quote the folder; a scratch path would leak into the registry
        report = check_lora(adapter_dir, target, shown_as=shown)
        if report.passed:
            return Claim(True, "behaviour", f"the saved adapter passes the {target} checks unconverted")
        first = next(f.message for f in report.findings if f.level == "error")
        if not report.fixable:
            return Claim(False, "behaviour", f"the saved adapter fails the {target} checks: {first}")
        fixed = self.work / f"{adapter_dir.name}-fixed-for-{target}"
        try:
            fix_lora(adapter_dir, fixed, target=target)
        except Exception as exc:
            return Claim(False, "behaviour", f"the saved adapter fails the {target} checks: {first} ({_error(exc)})")
        again = check_lora(fixed, target, shown_as=shown)
        if not again.passed:
            first = next(f.message for f in again.findings if f.level == "error")
            return Claim(False, "behaviour", f"even rewritten, the adapter fails the {target} checks: {first}")
        return Claim(True, "behaviour", f"passes the {target} checks after a lossless rewrite (check-lora --fix)")

    def _quantized(self, bits: int) -> Claim:
        try:
            import bitsandbytes  # noqa: F401
        except ImportError:
            return Claim(False, "not established", "bitsandbytes is not installed where the registry was made")
        try:
            self._train_step(self._fresh().train())
        except Exception as exc:
            why = f"a training step fails even on the full-precision probe model ({_error(exc)})"
            return Claim(False, "not established", why)
        try:
            return self._train_on_quantized(bits)
        except Exception as exc:
            return Claim(False, "behaviour", f"training on a {bits}-bit base fails: {_error(exc)}")

    def _train_step(self, adapted: Any) -> int:
        """One forward/backward; the number of trainable tensors that got a gradient (an error if none)."""
        import torch

        out = adapted(**self.inputs, labels=self.inputs["input_ids"])
        if not torch.isfinite(out.loss):
            raise ValueError("the loss is not finite")
        out.loss.backward()
        got = sum(1 for p in adapted.parameters() if p.requires_grad and p.grad is not None)
        if not got:
            raise ValueError("no trainable tensor gets a gradient")
        return got

    def _train_on_quantized(self, bits: int) -> Claim:
        import peft
        import torch
        from transformers import AutoModelForCausalLM, BitsAndBytesConfig

        quant = (
            BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_compute_dtype=torch.float32)
            if bits == 4
            else BitsAndBytesConfig(load_in_8bit=True)
        )
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_pretrained(
            self.base_dir, quantization_config=quant, device_map="cpu", dtype=torch.float32
        )
        adapted = peft.get_peft_model(model, probe_config(self.peft_type, self.config_class))
        quantised = [m for m in adapted.modules() if type(m).__module__.startswith("bitsandbytes")]
        if not quantised:
            return Claim(False, "behaviour", f"the base is no longer {bits}-bit once the adapter is attached")
        for layer in quantised:
            # On a CPU with AVX512-BF16, bitsandbytes repacks 4-bit weights in place into an inference-only
            # layout at the first eval-mode forward, and never back: methods that dequantize the base weight
            # then read the wrong layout, and a later backward fails. GPUs never take that path, so the probe
            # keeps the layout the user trains on, on every machine.
            if hasattr(layer, "support_avx512bf16_for_cpu"):
                layer.support_avx512bf16_for_cpu = False
        agreement = self._same_effect_as_full_precision(adapted)
        if agreement < MIN_EFFECT_AGREEMENT:
            return Claim(
                False,
                "behaviour",
                f"on a {bits}-bit base the same adapter weights change the outputs in another direction than "
                f"in full precision (cosine {agreement:.2f}), so what it learns there is not the same adapter",
            )
        got = self._train_step(adapted.train())
        return Claim(
            True,
            "behaviour",
            f"trains on a {bits}-bit base ({got} tensors get gradients; effect agrees with full precision, "
            f"cosine {agreement:.2f})",
        )

    def _same_effect_as_full_precision(self, quantised: Any) -> float:
        """Cosine between the adapter's effect on the quantised model and on the full-precision one, with the
        same adapter weights: finite losses and gradients alone would pass a method that reads packed 4-bit
        weights as numbers."""
        import torch
        from peft import get_peft_model_state_dict, set_peft_model_state_dict

        reference = self._fresh()
        with torch.no_grad():  # the adapter's whole saved state: weights and any shared random projections
            set_peft_model_state_dict(quantised, get_peft_model_state_dict(reference))
        quantised.eval()
        effects = []
        for model in (reference, quantised):
            adapted = _logits(model, self.inputs)
            with model.disable_adapter():
                effects.append((adapted - _logits(model, self.inputs)).flatten())
        return float(torch.nn.functional.cosine_similarity(effects[0], effects[1], dim=0))


def probe_methods(
    methods: list[tuple[str, str, str]],
    *,
    registry: Any = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> dict[str, dict[str, Claim]]:
    """Claims for every ``(peft_type, config_class, kind)``, each method in a scratch folder of its own.

    ``registry`` is handed to the converter so that it *tries* every method instead of trusting
    the claims being established.
    """
    results: dict[str, dict[str, Claim]] = {}
    with tempfile.TemporaryDirectory(prefix="peft-advisor-probe-") as scratch:
        base_dir = save_probe_llama(Path(scratch) / "probe-llama")
        for done, (peft_type, config_class, kind) in enumerate(methods):
            if progress:
                progress(peft_type, done, len(methods))
            work = Path(scratch) / peft_type.lower()
            work.mkdir()
            results[peft_type] = MethodProbe(peft_type, config_class, kind, base_dir, work).run(registry)
    return results
