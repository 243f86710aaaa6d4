"""Exact checks for models of a few binary variables: normalisation over all 2^D states
and a chi-square goodness-of-fit test of a sampler's draws against the exact probabilities.

    all_binary(D)                     every binary vector, (2^D, D), in binary-counting order
    assert_normalised(log_prob, D)    sum_x p(x) over all 2^D vectors is 1
    chi_square_pvalue(samples, log_p) Pearson's test, X^2 = sum_b (O_b - E_b)^2 / E_b, with
                                      chi-square(B - 1) tails; bins with E_b < 5 pooled
"""
import itertools
import math

from tinydgm.testing.arrays import cpu as _cpu, host as _host

__all__ = ["all_binary", "assert_normalised", "chi_square_pvalue", "chi_square_sf"]


def all_binary(n_dims):
    """Every binary vector of length n_dims, shape (2**n_dims, n_dims), float64; row b is
    b written in binary (x_1 the most significant bit)."""
    return _cpu().array(list(itertools.product([0.0, 1.0], repeat=n_dims))).reshape(-1, n_dims)


def assert_normalised(log_prob_fn, n_dims, atol=1e-6):
    """The model's probabilities of all 2^D binary vectors sum to 1 (within atol); returns
    log p of every vector, in ``all_binary``'s order, as a float64 NumPy array."""
    x = all_binary(n_dims)
    log_p = _cpu().asarray(_host(log_prob_fn(x)), dtype="float64").reshape(-1)
    if log_p.shape != (len(x),):
        raise ValueError(f"assert_normalised: log_prob_fn returned {log_p.size} values for {len(x)} vectors")
    total = float(_cpu().exp(log_p).sum())
    assert abs(total - 1.0) < atol, f"probabilities of all 2^{n_dims} vectors sum to {total!r}, not 1"
    return log_p


def chi_square_sf(statistic, dof):
    """P(X >= statistic) for X ~ chi-square(dof): the regularised upper incomplete gamma
    Q(dof / 2, statistic / 2), by its series below a + 1 and its continued fraction above
    (Press et al., Numerical Recipes, sec. 6.2)."""
    if dof <= 0:
        raise ValueError(f"chi_square_sf: dof must be positive, got {dof}")
    a, x = 0.5 * dof, 0.5 * float(statistic)
    if x <= 0:
        return 1.0
    log_prefactor = -x + a * math.log(x) - math.lgamma(a)
    if x < a + 1:                                   # P(a, x) = e^-x x^a / Gamma(a) sum_n x^n / (a (a+1) ... (a+n))
        term = total = 1.0 / a
        n = 0
        while abs(term) > abs(total) * 1e-16 and n < 10000:
            n += 1
            term *= x / (a + n)
            total += term
        return max(0.0, 1.0 - total * math.exp(log_prefactor))
    tiny = 1e-300                                   # Lentz's method for the continued fraction of Q
    b = x + 1 - a
    c, d = 1.0 / tiny, 1.0 / b
    h = d
    for n in range(1, 10000):
        an = -n * (n - a)
        b += 2
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1.0 / d
        h *= d * c
        if abs(d * c - 1) < 1e-16:
            break
    return h * math.exp(log_prefactor)


def chi_square_pvalue(samples, log_p_all):
    """p-value of a chi-square goodness-of-fit test of binary ``samples`` (n, D) against the
    exact probabilities of all 2^D vectors (in ``all_binary``'s order); bins with expected
    count < 5 are pooled into one."""
    xp = _cpu()
    samples = xp.asarray(_host(samples)).astype(xp.int64)
    n, n_dims = samples.shape
    log_p_all = xp.asarray(_host(log_p_all), dtype="float64").reshape(-1)
    if log_p_all.shape != (2 ** n_dims,):
        raise ValueError(f"chi_square_pvalue: samples have D = {n_dims} so log_p_all needs 2^{n_dims} = "
                         f"{2 ** n_dims} entries, got {log_p_all.size}")
    index = samples @ (1 << xp.arange(n_dims - 1, -1, -1))
    observed = xp.bincount(index, minlength=2 ** n_dims).astype("float64")
    expected = n * xp.exp(log_p_all)
    small = expected < 5
    if small.any():
        observed = xp.append(observed[~small], observed[small].sum())
        expected = xp.append(expected[~small], expected[small].sum())
    expected *= observed.sum() / expected.sum()
    statistic = float(((observed - expected) ** 2 / expected).sum())
    return chi_square_sf(statistic, len(observed) - 1)
