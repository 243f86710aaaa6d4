"""The linear autoencoder of eq. 19: gradient descent recovers the principal subspace of
the SVD (Baldi & Hornik 1989), reaches the minimum 1/2 sum of the discarded eigenvalues,
principal angles against scipy, gradient checks, and bad input."""
import numpy as np
import pytest
from scipy import linalg

import tinydgm as td
from tinydgm.models.latent.linear_autoencoder import LinearAutoencoder, principal_angles
from tinydgm.train import fit


def _centred_data(n=256, d=6, seed=0):
    """Centred data whose covariance has a clear gap after the second eigenvalue."""
    rng = np.random.default_rng(seed)
    basis, _ = np.linalg.qr(rng.standard_normal((d, d)))
    scales = np.array([3.0, 2.0, 0.5, 0.4, 0.3, 0.2])[:d]
    x = rng.standard_normal((n, d)) * scales @ basis.T
    return x - x.mean(axis=0)


def test_gradient_descent_recovers_the_principal_subspace():
    x = _centred_data()
    model = LinearAutoencoder(6, 2, rng=td.rng(0), dtype="float64")
    start = model.loss(x).item()
    # full-batch Adam: plain gradient descent on eq. 19 with per-parameter step sizes
    fit(model, x, td.optim.Adam(model.parameters(), lr=0.02), epochs=800, batch_size=len(x), seed=0, progress=False)
    _, singular_values, Vt = np.linalg.svd(x, full_matrices=False)
    top = Vt[:2].T                                                       # the top-2 principal directions
    angles = principal_angles(model.subspace(), top)
    assert angles.max() < 0.01, f"principal angles {angles}"
    # the minimum of eq. 19 is half the variance left out: 1/2 sum_{j > K} lambda_j
    minimum = 0.5 * (singular_values[2:] ** 2).sum() / len(x)
    assert start > 2 * minimum
    assert model.loss(x).item() == pytest.approx(minimum, rel=2e-3)
    # and V W acts as the identity on that subspace (its parts along the low-variance
    # directions, which the data hardly constrain, shrink slowly and are not checked)
    np.testing.assert_allclose(model.V.numpy() @ model.W.numpy() @ top, top, atol=0.01)


def test_principal_angles_match_scipy():
    rng = np.random.default_rng(1)
    A, B = rng.standard_normal((7, 3)), rng.standard_normal((7, 2))
    np.testing.assert_allclose(principal_angles(A, B), np.sort(linalg.subspace_angles(A, B)), atol=1e-7)
    np.testing.assert_allclose(principal_angles(A, A @ rng.standard_normal((3, 3))), 0.0, atol=1e-6)
    e1, e2 = np.eye(3)[:, :1], np.eye(3)[:, 1:2]
    np.testing.assert_allclose(principal_angles(e1, e2), [np.pi / 2])


def test_forward_encode_decode_and_loss_are_eq_19():
    model = LinearAutoencoder(4, 2, rng=td.rng(2), dtype="float64")
    x = np.random.default_rng(3).standard_normal((5, 4))
    W, V = model.W.numpy(), model.V.numpy()
    np.testing.assert_allclose(model.encode(x).numpy(), x @ W.T)
    np.testing.assert_allclose(model(x).numpy(), x @ W.T @ V.T)
    np.testing.assert_allclose(model.loss(x).item(), 0.5 * ((x - x @ W.T @ V.T) ** 2).sum() / 5)


def test_gradcheck_loss():
    model = LinearAutoencoder(4, 2, rng=td.rng(4), dtype="float64")
    x = td.tensor(np.random.default_rng(5).standard_normal((3, 4)), dtype="float64", requires_grad=True)
    W = td.tensor(model.W.numpy(), dtype="float64", requires_grad=True)
    V = td.tensor(model.V.numpy(), dtype="float64", requires_grad=True)

    def loss(x, W, V):
        object.__setattr__(model, "W", W)
        object.__setattr__(model, "V", V)
        return model.loss(x)

    saved = model.W, model.V
    try:
        td.gradcheck(loss, [x, W, V])
        td.gradgradcheck(loss, [x, W, V])
    finally:
        object.__setattr__(model, "W", saved[0])
        object.__setattr__(model, "V", saved[1])


def test_bad_input():
    model = LinearAutoencoder(3, 1)
    with pytest.raises(ValueError, match=r"shape \(N, D\) = \(N, 3\), got \(2, 4\)"):
        model.loss(np.zeros((2, 4)))
    with pytest.raises(ValueError, match="NaN"):
        model.loss(np.array([[0.0, np.nan, 1.0]]))
    with pytest.raises(ValueError, match="n_latent must be a positive int"):
        LinearAutoencoder(3, 0)
