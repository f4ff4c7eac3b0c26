"""Low-rank factorisation of one layer's weight update, plain or calibrated on the layer's inputs.

Every factorisation here is a *left projection*: pick an orthonormal basis ``U`` (out × k) and
set ``B = U``, ``A = Uᵀ ΔW``, so ``BA = U Uᵀ ΔW``. That covers both methods we offer:

- **plain**: ``U`` = the top left singular vectors of ``ΔW``; ``BA`` is then the truncated SVD,
  the best rank-k approximation in weight space (what ``peft.convert_to_lora`` computes).
- **calibrated**: ``U`` = the top left singular vectors of ``ΔW L`` with ``L Lᵀ = C + λI`` and
  ``C = E[x xᵀ]`` the layer's input second moment. ``U Uᵀ ΔW`` then minimises
  ``‖(ΔW − BA) X‖`` (plus a small ridge ``λ‖ΔW − BA‖²`` so directions the calibration data never
  visited are not thrown away), i.e. the error on the layer's *outputs*, which is what a user sees.

Because both are projections, nested truncations of one basis are the optimal (plain: exactly;
randomised: near-) factorisations at every smaller rank, so a rank sweep costs one factorisation
per layer, and every error figure of the sweep comes from a few traces instead of rebuilding
``BA``: ``‖(I − U_k U_kᵀ) Z‖² = ‖Z‖² − Σ_{i≤k} ‖u_iᵀ Z‖²`` for ``Z = ΔW`` (weight error) or
``Z = ΔW L_eval`` (output error on held-out inputs).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:  # torch is imported lazily: the advisor's recommend path never needs it
    import torch

Method = Literal["plain", "calibrated"]

# Randomised SVD pays off when the rank is well below the layer's size; near full rank the
# exact SVD is both faster and exact.
RANDOMIZED_MAX_FRACTION = 0.25
OVERSAMPLE = 8
POWER_ITERATIONS = 4
DEFAULT_RIDGE = 0.01


# What layer-input moments are kept in between calibration and factorisation (see InputMoments.add).
MOMENT_DTYPE = "float32"


@dataclass
class InputMoments:
    """The second moment of a layer's inputs, kept in the cheaper of two equivalent forms.

    While fewer rows than features were seen we keep the rows themselves (``C = XᵀX / n``);
    after that the ``in × in`` matrix. Either way ``sqrt_factor`` returns ``L`` with
    ``L Lᵀ = C`` (possibly rectangular), which is all the factorisation needs.
    """

    features: int
    rows: torch.Tensor | None = None
    gram: torch.Tensor | None = None
    count: int = 0

    def add(self, x: torch.Tensor) -> None:
        """Accumulate in float32 (half the memory of float64: an 8B model's all-linear adapter keeps
        ~130 distinct 4096² moments); :meth:`sqrt_factor` works in float64. Sums of float32 products
        over a few thousand tokens stay within ~1e-6 relative, far below the factorisation's own error
        (``tests/test_factorize.py`` compares both)."""
        import torch

        x = x.detach().reshape(-1, self.features).to(getattr(torch, MOMENT_DTYPE))
        self.count += x.shape[0]
        if self.gram is None:
            self.rows = x.cpu() if self.rows is None else torch.cat([self.rows, x.cpu()])
            if self.rows.shape[0] > self.features:
                self.gram = self.rows.T @ self.rows
                self.rows = None
        else:
            self.gram += (x.T @ x).cpu()

    def sqrt_factor(self) -> torch.Tensor:
        """``L`` (in × m) with ``L Lᵀ = C``: the scaled rows, or a Cholesky/eigen root of the gram."""
        import torch

        if self.count == 0:
            raise ValueError("no calibration inputs reached this layer")
        if self.gram is None:
            return (self.rows.to(torch.float64) / self.count**0.5).T
        cov = self.gram.to(torch.float64) / self.count
        try:
            return torch.linalg.cholesky(cov)
        except RuntimeError:  # singular (fewer distinct directions than features): use the PSD root
            vals, vecs = torch.linalg.eigh(cov)
            return vecs * vals.clamp_min(0).sqrt()

    def trace(self) -> float:
        if self.gram is not None:
            return float(self.gram.diagonal().double().sum()) / self.count
        return float((self.rows.double() ** 2).sum()) / self.count


@dataclass
class LayerBasis:
    """One layer's projection basis (columns sorted by importance) and its per-rank error curves."""

    basis: torch.Tensor  # out × k_max, orthonormal columns
    weight_norm2: float  # ‖ΔW‖²
    weight_captured2: torch.Tensor  # cumulative ‖U_kᵀ ΔW‖², length k_max
    energy_norm2: float  # ‖Z‖² of what the method ranks by (ΔW, or ΔW L for calibrated)
    energy_captured2: torch.Tensor  # cumulative, length k_max
    eval_norm2: float | None = None  # ‖ΔW L_eval‖² on held-out inputs
    eval_captured2: torch.Tensor | None = None

    @property
    def max_rank(self) -> int:
        return int(self.basis.shape[1])

    def retained_energy(self, rank: int) -> float:
        return _ratio(self.energy_captured2, self.energy_norm2, rank)

    def weight_error(self, rank: int) -> float:
        """Relative Frobenius error ``‖ΔW − BA‖ / ‖ΔW‖`` at ``rank``."""
        return (1.0 - _ratio(self.weight_captured2, self.weight_norm2, rank)) ** 0.5

    def output_error(self, rank: int) -> float | None:
        """Relative held-out output error ``‖(ΔW − BA) X‖ / ‖ΔW X‖`` at ``rank``."""
        if self.eval_captured2 is None or self.eval_norm2 is None:
            return None
        return (1.0 - _ratio(self.eval_captured2, self.eval_norm2, rank)) ** 0.5

    def rank_for_energy(self, threshold: float) -> int:
        """Smallest rank whose retained energy reaches ``threshold`` (within the basis we have)."""
        import torch

        if self.energy_norm2 <= 0:
            return 1
        fractions = self.energy_captured2 / self.energy_norm2
        index = int(torch.searchsorted(fractions, torch.tensor(threshold - 1e-12, dtype=fractions.dtype)))
        return min(index + 1, self.max_rank)

    def factors(self, delta: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(A, B)`` with ``A`` rank × in and ``B`` out × rank, in float32."""
        import torch

        u = self.basis[:, :rank].to(torch.float64)
        a = u.T @ delta.to(torch.float64)
        return a.float().contiguous(), u.float().contiguous()


def uniform_rank_for_energy(bases: list[LayerBasis], threshold: float) -> int:
    """The smallest single rank at which the *whole* update keeps ``threshold`` of its energy.

    For consumers that give every module one rank (vLLM pads to ``--max-lora-rank``), a per-layer rank
    costs the largest layer's rank everywhere while truncating the others early; one rank chosen over
    the whole model keeps more of the update at the same serving cost. Layers are weighted by the
    energy they carry, so a layer with a tiny update does not drive the rank up.
    """
    total = sum(b.energy_norm2 for b in bases)
    if total <= 0 or not bases:
        return 1
    for rank in range(1, max(b.max_rank for b in bases) + 1):
        kept = sum(float(b.energy_captured2[min(rank, b.max_rank) - 1]) for b in bases if b.energy_norm2 > 0)
        if kept >= (threshold - 1e-12) * total:
            return rank
    return max(b.max_rank for b in bases)


def _ratio(cumulative: torch.Tensor, total: float, rank: int) -> float:
    if total <= 0:
        return 1.0
    rank = max(0, min(rank, int(cumulative.shape[0])))
    captured = float(cumulative[rank - 1]) if rank else 0.0
    return min(max(captured / total, 0.0), 1.0)


def top_left_singular_vectors(matrix: torch.Tensor, rank: int, *, exact: bool | None = None) -> torch.Tensor:
    """Orthonormal ``out × rank`` basis of ``matrix``'s dominant left singular subspace.

    Randomised (Halko et al.: Gaussian sketch, power iterations with re-orthonormalisation) when
    ``rank`` is small next to the matrix, exact SVD otherwise. The sketch is seeded so the same
    adapter converts to the same bytes.
    """
    import torch

    rows, cols = matrix.shape
    full = min(rows, cols)
    rank = min(rank, full)
    if exact is None:
        exact = rank + OVERSAMPLE >= RANDOMIZED_MAX_FRACTION * full
    if exact:
        u, _, _ = torch.linalg.svd(matrix, full_matrices=False)
        return u[:, :rank]
    sketch = min(rank + OVERSAMPLE, full)
    generator = torch.Generator(device=matrix.device).manual_seed(0)
    omega = torch.randn(cols, sketch, dtype=matrix.dtype, device=matrix.device, generator=generator)
    q, _ = torch.linalg.qr(matrix @ omega)
    for _ in range(POWER_ITERATIONS):
        z, _ = torch.linalg.qr(matrix.T @ q)
        q, _ = torch.linalg.qr(matrix @ z)
    small = q.T @ matrix  # sketch × cols
    u_small, _, _ = torch.linalg.svd(small, full_matrices=False)
    return q @ u_small[:, :rank]


def shrinkage(fit: InputMoments, ridge: float = DEFAULT_RIDGE) -> float:
    """How far to pull the input second moment towards isotropy: ``C + λ·(tr C / d)·I``.

    With fewer calibration tokens than input features (a 1B model's 8192-wide MLP inputs from a
    few hundred prompts) ``C`` spans only the calibration rows, and a basis fitted to it ignores
    every other direction: measured on held-out inputs it was then worse than the plain SVD
    (Llama-3.2-1B shape, rank 256: 0.74 vs 0.66 layer-output error). The sample covariance's
    error scales like ``d / n``, so the shrinkage does too (Ledoit-Wolf in spirit), never less
    than ``ridge``: plenty of tokens keeps the calibrated fit, too few falls back towards plain.
    """
    return max(ridge, fit.features / max(fit.count, 1))


def layer_basis(
    delta: torch.Tensor,
    rank: int,
    *,
    method: Method = "plain",
    fit: InputMoments | None = None,
    held_out: InputMoments | None = None,
    ridge: float = DEFAULT_RIDGE,
    exact: bool | None = None,
) -> LayerBasis:
    """Factorise ``delta`` (out × in) up to ``rank`` and measure its error curves.

    ``fit`` is required for ``calibrated``; ``held_out`` (other inputs than ``fit``) adds the
    output-error curve, so a calibrated basis is never judged on the data it was fitted to.
    """
    import torch

    work = delta.detach().to(torch.float64)
    if method == "calibrated":
        if fit is None:
            raise ValueError("calibrated factorisation needs calibration inputs")
        root = fit.sqrt_factor().to(work.device)
        lam = shrinkage(fit, ridge) * fit.trace() / fit.features
        ranked = torch.cat([work @ root, (lam**0.5) * work], dim=1) if lam > 0 else work @ root
    else:
        ranked = work
    basis = top_left_singular_vectors(ranked, rank, exact=exact)
    weight_captured = torch.cumsum(((basis.T @ work) ** 2).sum(dim=1), 0).cpu()
    energy_captured = weight_captured if ranked is work else torch.cumsum(((basis.T @ ranked) ** 2).sum(dim=1), 0).cpu()
    result = LayerBasis(
        basis=basis,
        weight_norm2=float((work**2).sum()),
        weight_captured2=weight_captured,
        energy_norm2=float((ranked**2).sum()),
        energy_captured2=energy_captured,
    )
    if held_out is not None and held_out.count:
        z = work @ held_out.sqrt_factor().to(work.device)
        result.eval_norm2 = float((z**2).sum())
        result.eval_captured2 = torch.cumsum(((basis.T @ z) ** 2).sum(dim=1), 0).cpu()
    return result
