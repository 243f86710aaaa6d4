"""Pseudo-likelihood of an RBM (Besag 1975): a cheap monitor of training."""
from tinydgm import backend
from tinydgm.evaluate.exact import _is_tensor, _xp_softplus, rbm_free_energy

__all__ = ["rbm_pseudo_likelihood"]


def rbm_pseudo_likelihood(W, b, c, v, rng=None):
    """Log pseudo-likelihood, a cheap monitor of training (Besag 1975), per example (N,):

        PL(v) = sum_i log p(v_i | v_-i) = sum_i log sigmoid(F(v^(i)) - F(v))

    with v^(i) = v with unit i flipped. rng None: the exact sum over all D units (D free
    energies per example). rng given: scikit-learn's stochastic estimate D log sigmoid(F(v^(i))
    - F(v)) with one random unit i per example (unbiased for the sum)."""
    if _is_tensor(W):
        W, b, c = W.data, b.data, c.data
    xp = backend.get_array_module(W)
    v = xp.asarray(v, dtype=W.dtype)
    N, D = v.shape
    f = rbm_free_energy(W, b, c, v)
    if rng is not None:
        i = backend.to_device(rng.integers(0, D, size=N), backend.device_of(W))
        flipped = v.copy()
        rows = xp.arange(N)
        flipped[rows, i] = 1 - flipped[rows, i]
        return -D * _xp_softplus(xp, f - rbm_free_energy(W, b, c, flipped))
    total = xp.zeros(N, dtype=W.dtype)
    for i in range(D):
        flipped = v.copy()
        flipped[:, i] = 1 - flipped[:, i]
        total += -_xp_softplus(xp, f - rbm_free_energy(W, b, c, flipped))    # log sigmoid(F(v^(i)) - F(v))
    return total
