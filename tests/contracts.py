"""Shared test contracts (docs/architecture.md: every autoregressive model through the same
Jacobian-sparsity test, every sampler through the same exact-distribution test)."""
import itertools

import numpy as np
from scipy import stats

import tinydgm as td


def dependency_matrix(fn, x):
    """dep[o, i] = True when output o of ``fn`` (flattened per example) depends on input i,
    from the engine's Jacobian of fn at the float64 batch ``x`` (N, *shape); summed over
    the batch so one unlucky zero does not hide a dependency."""
    x = td.tensor(np.asarray(x, dtype=np.float64), dtype="float64", requires_grad=True)
    n = x.shape[0]
    jac = td.jacobian(lambda t: fn(t).reshape(n, -1), x)             # (N, O, N, *shape)
    jac = np.abs(jac.reshape(n, jac.shape[1], n, -1))
    per_example = np.stack([jac[k, :, k, :] for k in range(n)])        # (N, O, I)
    return per_example.sum(axis=0) > 0


def assert_autoregressive(fn, x, order, outputs_per_input=1):
    """Output block d depends only on inputs that come strictly before d in ``order``
    (order[i] = position of input i; outputs are grouped per input, outputs_per_input each)."""
    dep = dependency_matrix(fn, x)
    order = np.asarray(order)
    d_in = len(order)
    assert dep.shape[0] == d_in * outputs_per_input, \
        f"fn has {dep.shape[0]} outputs per example, expected {d_in} x {outputs_per_input}"
    for o in range(dep.shape[0]):
        d = o % d_in                      # outputs come in blocks of D: (mu_1..mu_D, s_1..s_D, ...)
        allowed = order < order[d]
        bad = np.flatnonzero(dep[o] & ~allowed)
        assert bad.size == 0, f"output {o} (input {d}, position {order[d]}) depends on inputs {bad.tolist()}"
    return dep


def all_binary(n_dims):
    """Every binary vector of length n_dims, shape (2**n_dims, n_dims), float64."""
    return np.array(list(itertools.product([0.0, 1.0], repeat=n_dims)))


def assert_normalised(log_prob_fn, n_dims, atol=1e-6):
    """The model's probabilities of all 2^D binary vectors sum to 1."""
    log_p = np.asarray(log_prob_fn(all_binary(n_dims)), dtype=np.float64)
    total = np.exp(log_p).sum()
    assert abs(total - 1.0) < atol, f"probabilities of all 2^{n_dims} vectors sum to {total}"
    return log_p


def chi_square_pvalue(samples, log_p_all):
    """p-value of a chi-square goodness-of-fit test of binary ``samples`` (n, D) against the
    exact probabilities of all 2^D vectors (in all_binary's order); bins with expected
    count < 5 are pooled."""
    samples = np.asarray(samples).astype(np.int64)
    n, n_dims = samples.shape
    index = samples @ (1 << np.arange(n_dims - 1, -1, -1))
    observed = np.bincount(index, minlength=2 ** n_dims).astype(np.float64)
    expected = n * np.exp(np.asarray(log_p_all, dtype=np.float64))
    small = expected < 5
    if small.any():
        observed = np.append(observed[~small], observed[small].sum())
        expected = np.append(expected[~small], expected[small].sum())
    expected *= observed.sum() / expected.sum()
    return stats.chisquare(observed, expected).pvalue


def with_params(layer, x, **params):
    """layer(x) with some parameters replaced by the given tensors (the checked inputs)."""
    saved = {name: getattr(layer, name) for name in params}
    for name, value in params.items():
        setattr(layer, name, value)
    try:
        return layer(x)
    finally:
        for name, value in saved.items():
            setattr(layer, name, value)
