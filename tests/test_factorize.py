"""The factorisation numerics, on matrices whose answers are known."""

from __future__ import annotations

import pytest
import torch

from converters.factorize import InputMoments, layer_basis, top_left_singular_vectors


def _decaying(out: int, inp: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    u, _ = torch.linalg.qr(torch.randn(out, out, generator=g, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(inp, inp, generator=g, dtype=torch.float64))
    k = min(out, inp)
    s = torch.tensor([0.9**i for i in range(k)], dtype=torch.float64)
    return u[:, :k] * s @ v[:, :k].T


def _anisotropic_inputs(n: int, features: int, seed: int) -> torch.Tensor:
    """Activations like a real transformer's: a few directions carry most of the energy."""
    g = torch.Generator().manual_seed(seed)
    scales = torch.tensor([10.0 if i < 4 else 0.3 for i in range(features)], dtype=torch.float64)
    mix, _ = torch.linalg.qr(torch.randn(features, features, generator=g, dtype=torch.float64))
    return (torch.randn(n, features, generator=g, dtype=torch.float64) * scales) @ mix.T


def test_plain_basis_is_the_truncated_svd() -> None:
    delta = _decaying(48, 64)
    basis = layer_basis(delta, 8, exact=True)
    s = torch.linalg.svdvals(delta)
    expected = (s[8:] ** 2).sum().sqrt() / s.norm()  # Eckart–Young
    assert basis.weight_error(8) == pytest.approx(float(expected), rel=1e-9)
    a, b = basis.factors(delta, 8)
    assert float((delta.float() - b @ a).norm() / delta.norm()) == pytest.approx(float(expected), rel=1e-4)
    assert layer_basis(delta, 48, exact=True).weight_error(48) < 1e-7  # full rank: exact


def test_randomised_is_within_five_percent_of_exact() -> None:
    delta = _decaying(512, 768, seed=3)
    exact = layer_basis(delta, 16, exact=True).weight_error(16)
    fast = layer_basis(delta, 16, exact=False).weight_error(16)
    assert fast <= exact * 1.05


def test_energy_rank_is_the_smallest_rank_reaching_the_threshold() -> None:
    delta = _decaying(32, 32)
    basis = layer_basis(delta, 32, exact=True)
    rank = basis.rank_for_energy(0.9)
    assert basis.retained_energy(rank) >= 0.9 > basis.retained_energy(rank - 1)


def test_one_rank_for_the_whole_model_keeps_the_whole_updates_energy() -> None:
    from converters.factorize import uniform_rank_for_energy

    big = layer_basis(_decaying(32, 32, seed=1), 32, exact=True)
    small = layer_basis(_decaying(32, 32, seed=2) * 1e-3, 32, exact=True)  # carries almost no energy
    rank = uniform_rank_for_energy([big, small], 0.9)
    total = big.energy_norm2 + small.energy_norm2

    def kept(r: int) -> float:
        return (float(big.energy_captured2[r - 1]) + float(small.energy_captured2[r - 1])) / total

    assert kept(rank) >= 0.9 > kept(rank - 1)
    assert rank <= max(big.rank_for_energy(0.9), small.rank_for_energy(0.9))  # no padding to the worst layer


def test_float32_moments_give_the_float64_factorisation(monkeypatch: pytest.MonkeyPatch) -> None:
    """Moments are kept in float32 for memory; the calibrated basis and its error curves must not move."""
    from converters import factorize

    x = _anisotropic_inputs(4000, 96, seed=5)
    delta = _decaying(64, 96, seed=6)
    curves = {}
    for dtype in ("float32", "float64"):
        monkeypatch.setattr(factorize, "MOMENT_DTYPE", dtype)
        fit, held = InputMoments(96), InputMoments(96)
        for chunk in x[:3000].split(500):
            fit.add(chunk)
        held.add(x[3000:])
        basis = layer_basis(delta, 32, method="calibrated", fit=fit, held_out=held, exact=True)
        curves[dtype] = [basis.output_error(k) for k in (4, 8, 16, 32)]
    assert curves["float32"] == pytest.approx(curves["float64"], rel=1e-5)


def test_moments_in_row_and_gram_form_agree() -> None:
    x = _anisotropic_inputs(40, 16, seed=1)
    rows, gram = InputMoments(16), InputMoments(16)
    rows.add(x[:10])  # stays in row form (10 < 16 features)
    gram.add(x[:30])  # switches to the gram form
    assert rows.gram is None and gram.rows is None
    for moments, n in ((rows, 10), (gram, 30)):
        root = moments.sqrt_factor()
        expected = x[:n].T @ x[:n] / n
        assert torch.allclose(root @ root.T, expected, rtol=1e-6, atol=1e-5)  # float32 storage (see add)


def test_calibrated_beats_plain_on_held_out_outputs() -> None:
    delta = _decaying(64, 64, seed=2) + 0.05 * torch.randn(64, 64, dtype=torch.float64)
    samples = _anisotropic_inputs(600, 64, seed=5)  # one distribution, split into fit and held-out rows
    fit, held = InputMoments(64), InputMoments(64)
    fit.add(samples[:400])
    held.add(samples[400:])
    plain = layer_basis(delta, 4, method="plain", held_out=held)
    calibrated = layer_basis(delta, 4, method="calibrated", fit=fit, held_out=held)
    assert calibrated.output_error(4) < 0.5 * plain.output_error(4)
    assert calibrated.weight_error(4) >= plain.weight_error(4) - 1e-12  # it trades weight error for output error


def test_calibrated_full_rank_is_exact() -> None:
    delta = _decaying(24, 32, seed=4)
    fit = InputMoments(32)
    fit.add(_anisotropic_inputs(8, 32, seed=2))  # fewer samples than features: rank-deficient moments
    basis = layer_basis(delta, 24, method="calibrated", fit=fit)
    a, b = basis.factors(delta, 24)
    assert float((delta.float() - b @ a).norm() / delta.norm()) < 1e-5


def test_top_vectors_are_orthonormal() -> None:
    u = top_left_singular_vectors(_decaying(200, 300), 10, exact=False)
    assert torch.allclose(u.T @ u, torch.eye(10, dtype=u.dtype), atol=1e-10)


def test_few_calibration_tokens_do_not_make_calibrated_worse_than_plain() -> None:
    """Fewer tokens than input features: the moment matrix spans only the calibration rows.

    Without shrinkage the calibrated basis fits that subspace and loses to the plain SVD on
    held-out inputs (seen on a Llama-3.2-1B shape on GPU); with it, it stays level with plain.
    """
    torch.manual_seed(0)
    delta = torch.randn(64, 256, dtype=torch.float64)
    fit, held_out = InputMoments(256), InputMoments(256)
    fit.add(torch.randn(32, 256))
    held_out.add(torch.randn(4000, 256))

    def held_out_error(method: str) -> float:
        basis = layer_basis(delta, 8, method=method, fit=fit, held_out=held_out, exact=True)
        return 1 - float(basis.eval_captured2[-1]) / basis.eval_norm2

    assert held_out_error("calibrated") <= held_out_error("plain") * 1.02
