"""Dequantization: the uniform and variational bounds against the exact discrete
log-likelihood (closed form in 1-D, quadrature in 2-D), the exact log q of the conditional
flow (brute-force Jacobian, closed form), the logit pre-processing and bits/dim."""
import math

import numpy as np
import pytest
from scipy import stats

import tinydgm as td
from tinydgm.models.flows import (DequantizedFlow, Flow, LogitTransform, MAFLayer, Reverse, Transform,
                                  UniformDequantization, VariationalDequantization, brute_force_log_det,
                                  build_maf)
from tinydgm.nn.module import Parameter

from flow_contracts import assert_flow_transform, swap_parameters


class Affine(Transform):
    """z = (x - mu) / sigma elementwise: the flow of N(mu, sigma^2) (closed forms for checking)."""

    def __init__(self, mu, sigma):
        super().__init__()
        self.mu = Parameter(np.asarray(mu, dtype=np.float64))
        self.log_sigma = Parameter(np.log(np.asarray(sigma, dtype=np.float64)))

    def forward(self, x):
        return (x - self.mu) * td.exp(-self.log_sigma), td.broadcast_to(-self.log_sigma.sum(), (x.shape[0],))

    def inverse(self, z):
        return z * td.exp(self.log_sigma) + self.mu, td.broadcast_to(self.log_sigma.sum(), (z.shape[0],))


def _randomise(module, seed, scale=0.3):
    rng = np.random.default_rng(seed)
    for p in module.parameters():
        p.data = p.data + scale * rng.normal(size=p.shape)


def _gaussian_exact_log_P(x, mu, sigma):
    """log P(x) = log int_x^{x+1} N(y; mu, sigma^2) dy."""
    return np.log(stats.norm.cdf((x + 1 - mu) / sigma) - stats.norm.cdf((x - mu) / sigma))


def _gaussian_uniform_bound(x, mu, sigma):
    """E_{u ~ U[0,1)} log N(x + u; mu, sigma^2), E (x + u - mu)^2 = (x - mu)^2 + (x - mu) + 1/3."""
    d = x - mu
    return -np.log(sigma) - 0.5 * np.log(2 * np.pi) - (d * d + d + 1 / 3) / (2 * sigma ** 2)


# ----------------------------------------------------------------------------- the logit transform

def test_logit_transform_follows_the_flow_contract():
    y = np.random.default_rng(0).uniform(0, 256, size=(5, 6))
    assert_flow_transform(LogitTransform(0.05, 256), y)
    assert_flow_transform(LogitTransform(1e-6, 4), np.random.default_rng(1).uniform(0, 4, size=(4, 3)))


def test_logit_transform_values():
    y = np.array([[0.0, 128.0, 255.5]])
    w, _ = LogitTransform(0.05, 256)(td.tensor(y, dtype="float64"))
    s = 0.05 + 0.9 * y / 256
    np.testing.assert_allclose(w.numpy(), np.log(s / (1 - s)), rtol=1e-13)


def test_bits_per_dim_is_the_lectures_formula():
    # -(log p(w) + log_det_[0,1) - D log 256) / (D ln 2) with the uniform bound's log q = 0
    flow = build_maf(3, n_layers=2, hidden_sizes=(8,), rng=np.random.default_rng(2), dtype="float64")
    alpha = 0.05
    model = DequantizedFlow(flow, UniformDequantization(256, dtype="float64"), LogitTransform(alpha, 256))
    x = np.random.default_rng(3).integers(0, 256, size=(4, 3))
    bpd = model.bits_per_dim(x, rng=np.random.default_rng(4)).numpy()
    y = x + np.random.default_rng(4).random(x.shape)                   # the same draw of u
    s = alpha + (1 - 2 * alpha) * y / 256
    w = np.log(s / (1 - s))
    log_p = flow.log_prob(td.tensor(w, dtype="float64")).numpy()
    log_det_01 = (np.log(1 - 2 * alpha) - np.log(s) - np.log(1 - s)).sum(axis=1)
    expected = -(log_p + log_det_01 - 3 * np.log(256)) / (3 * np.log(2))
    np.testing.assert_allclose(bpd, expected, rtol=1e-12)


# ----------------------------------------------------------------------------- q(u|x)

@pytest.mark.parametrize("event_shape", [(3,), (2, 4, 4)])
def test_q_conditional_flow_log_det_equals_brute_force(event_shape):
    q = VariationalDequantization(event_shape, n_levels=4, n_couplings=2, hidden=(8,), hidden_channels=4,
                                  rng=np.random.default_rng(5), dtype="float64")
    _randomise(q, 6)
    rng = np.random.default_rng(7)
    x = td.tensor(rng.integers(0, 4, size=(3,) + event_shape), dtype="float64")
    eps = td.tensor(rng.normal(size=(3,) + event_shape), dtype="float64")
    u, log_det = q.transform(eps, x)
    assert ((u.numpy() > 0) & (u.numpy() < 1)).all()
    np.testing.assert_allclose(log_det.numpy(), brute_force_log_det(lambda e: q.transform(e, x)[0], eps),
                               rtol=1e-10)


def test_q_without_couplings_is_a_logit_normal():
    # u = sigmoid(mu(x) + exp(s(x)) eps): log q(u|x) = log N(logit u; mu, e^{2s}) - log u - log(1 - u)
    q = VariationalDequantization((3,), n_levels=8, n_couplings=0, hidden=(6,), rng=np.random.default_rng(8),
                                  dtype="float64")
    _randomise(q, 9)
    x = np.random.default_rng(10).integers(0, 8, size=(5, 3))
    y, log_q = q(x, rng=np.random.default_rng(11))
    u = y.numpy() - x
    mu, s = (t.numpy() for t in q.affine(td.tensor(x / 8 - 0.5, dtype="float64")))
    expected = (stats.norm.logpdf(np.log(u / (1 - u)), mu, np.exp(s)) - np.log(u) - np.log1p(-u)).sum(axis=1)
    np.testing.assert_allclose(log_q.numpy(), expected, rtol=1e-10)


@pytest.mark.parametrize("deq", [UniformDequantization(5, dtype="float64"),
                                 VariationalDequantization((4,), n_levels=5, rng=np.random.default_rng(0),
                                                           dtype="float64")])
def test_dequantized_values_stay_in_their_cell_and_are_seeded(deq):
    x = np.random.default_rng(12).integers(0, 5, size=(50, 4))
    y1, log_q1 = deq(x, rng=np.random.default_rng(13))
    y2, log_q2 = deq(x, rng=np.random.default_rng(13))
    u = y1.numpy() - x
    assert ((u >= 0) & (u < 1)).all() and u.std() > 0.1
    np.testing.assert_array_equal(y1.numpy(), y2.numpy())
    np.testing.assert_array_equal(log_q1.numpy(), log_q2.numpy())
    if isinstance(deq, UniformDequantization):
        np.testing.assert_array_equal(log_q1.numpy(), np.zeros(50))


# ----------------------------------------------------------------------------- the bounds

def test_uniform_bound_monte_carlo_matches_its_closed_form_and_lies_below_log_P():
    mu, sigma = 1.3, 0.7
    model = DequantizedFlow(Flow(Affine([mu], [sigma]), (1,)), UniformDequantization(4, dtype="float64"))
    x = np.array([[0], [1], [2], [3]])
    estimate, standard_error = _monte_carlo(model, x, 20000, seed=14)
    exact_bound = _gaussian_uniform_bound(x[:, 0], mu, sigma)
    assert (np.abs(estimate - exact_bound) < 4 * standard_error).all(), (estimate, exact_bound, standard_error)
    assert (standard_error < 0.02).all()
    assert (exact_bound < _gaussian_exact_log_P(x[:, 0], mu, sigma)).all()


def _monte_carlo(model, x, n_samples, seed):
    """Mean and standard error of the one-draw bound over n_samples draws per example (one batch)."""
    with td.no_grad():
        draws = model.log_prob_lower_bound(np.repeat(x, n_samples, axis=0), rng=np.random.default_rng(seed))
    draws = draws.numpy().reshape(len(x), n_samples)
    return draws.mean(axis=1), draws.std(axis=1) / np.sqrt(n_samples)


def _legendre_unit(n):
    nodes, weights = np.polynomial.legendre.leggauss(n)
    return (nodes + 1) / 2, weights / 2


def test_bounds_lie_below_the_exact_discrete_log_likelihood_in_2d():
    # a non-Gaussian 2-D MAF; exact log P(x) = log int_{[0,1)^2} p(x + u) du by 48 x 48 Gauss-Legendre
    transform = [MAFLayer(2, (12,), rng=np.random.default_rng(15), dtype="float64"), Reverse(),
                 MAFLayer(2, (12,), rng=np.random.default_rng(16), dtype="float64")]
    flow = Flow(transform, (2,))
    _randomise(flow, 17, scale=0.5)
    nodes, weights = _legendre_unit(48)
    uu, vv = np.meshgrid(nodes, nodes)
    ww = np.outer(weights, weights).ravel()
    cells = np.array([[0, 0], [1, 0], [0, 1], [2, 1], [1, 2]])
    exact, uniform = [], []
    with td.no_grad():
        for cell in cells:
            points = np.stack([uu.ravel(), vv.ravel()], axis=1) + cell
            log_p = flow.log_prob(td.tensor(points, dtype="float64")).numpy()
            exact.append(np.log((ww * np.exp(log_p)).sum()))
            uniform.append((ww * log_p).sum())                      # E_u log p(x + u), by quadrature
    exact, uniform = np.array(exact), np.array(uniform)
    assert (uniform < exact).all()
    uniform_mc, standard_error = _monte_carlo(DequantizedFlow(flow, UniformDequantization(3, dtype="float64")),
                                              cells, 20000, seed=18)
    assert (np.abs(uniform_mc - uniform) < 4 * standard_error).all(), (uniform_mc, uniform, standard_error)
    q = VariationalDequantization((2,), n_levels=3, n_couplings=1, hidden=(8,), rng=np.random.default_rng(19),
                                  dtype="float64")
    _randomise(q, 20)
    variational, standard_error = _monte_carlo(DequantizedFlow(flow, q), cells, 20000, seed=21)
    assert (variational < exact + 4 * standard_error).all(), (variational, exact, standard_error)


def test_variational_bound_improves_on_the_uniform_bound():
    # p = N(1.7, 0.4^2): inside a cell the density is far from flat, so U[0,1) is a poor q
    mu, sigma = 1.7, 0.4
    flow = Flow(Affine([mu], [sigma]), (1,))
    q = VariationalDequantization((1,), n_levels=4, n_couplings=1, hidden=(16,), rng=np.random.default_rng(22),
                                  dtype="float64")
    model = DequantizedFlow(flow, q)
    x = np.array([[1], [2]] * 32)
    optimizer = td.optim.Adam(list(q.parameters()), lr=2e-2)            # only q learns
    gen = np.random.default_rng(23)
    for _ in range(150):
        loss = -model.log_prob_lower_bound(x, rng=gen).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    variational, standard_error = _monte_carlo(model, np.array([[1], [2]]), 20000, seed=24)
    uniform = _gaussian_uniform_bound(np.array([1, 2]), mu, sigma)
    exact = _gaussian_exact_log_P(np.array([1, 2]), mu, sigma)
    # gaps to log P: uniform 0.08 and 0.78 nats, variational about 0.03 after 150 steps
    assert (exact - variational < 0.5 * (exact - uniform)).all(), (variational, uniform, exact)
    assert (variational < exact + 4 * standard_error).all(), (variational, exact, standard_error)


def test_importance_weighted_bound_is_tighter_for_the_same_draws():
    q = VariationalDequantization((2,), n_levels=3, rng=np.random.default_rng(24), dtype="float64")
    model = DequantizedFlow(Flow(Affine([1.0, 1.5], [0.5, 0.8]), (2,)), q)
    x = np.array([[0, 1], [2, 2]])
    mean = model.log_prob_lower_bound(x, rng=np.random.default_rng(25), n_samples=8).numpy()
    iw = model.log_prob_lower_bound(x, rng=np.random.default_rng(25), n_samples=8, importance=True).numpy()
    assert (iw >= mean).all() and (iw > mean + 1e-6).any()


def test_bound_gradcheck_wrt_q_and_flow_parameters():
    q = VariationalDequantization((2,), n_levels=4, n_couplings=1, hidden=(5,), rng=np.random.default_rng(26),
                                  dtype="float64")
    _randomise(q, 27)
    model = DequantizedFlow(Flow(Affine([1.0, 2.0], [0.7, 1.2]), (2,)), q, LogitTransform(0.05, 4))
    x = np.array([[0, 3], [2, 1]])
    names = ["dequantization.affine.layers.0.weight", "dequantization.couplings.0.last.weight", "flow.transform.mu"]
    params = dict(model.named_parameters())

    def bound(*values):
        saved = swap_parameters(model, dict(zip(names, values)))
        try:
            return model.log_prob_lower_bound(x, rng=np.random.default_rng(28))
        finally:
            swap_parameters(model, saved)

    inputs = [td.tensor(params[n].numpy(), dtype="float64", requires_grad=True) for n in names]
    assert td.gradcheck(bound, inputs)


def test_sample_gives_discrete_values_in_range():
    flow = Flow(Affine([1.5, 1.0], [1.0, 0.5]), (2,))
    model = DequantizedFlow(flow, UniformDequantization(4))
    x = model.sample(500, rng=np.random.default_rng(29)).numpy()
    assert x.shape == (500, 2) and set(np.unique(x)) <= {0.0, 1.0, 2.0, 3.0}
    assert abs((x[:, 0] == 1).mean() - (stats.norm.cdf(0.5) - stats.norm.cdf(-0.5))) < 0.06


def test_loss_is_minus_the_mean_bound_in_nats():
    model = DequantizedFlow(Flow(Affine([1.0], [1.0]), (1,)), UniformDequantization(3, rng=np.random.default_rng(30),
                                                                                    dtype="float64"))
    x = np.array([[0], [1], [2]])
    loss = model.loss(x).item()
    model.dequantization.rng = np.random.default_rng(30)
    bound = model.log_prob_lower_bound(x).numpy()
    assert math.isclose(loss, -bound.mean(), rel_tol=1e-12)


def test_errors():
    with pytest.raises(ValueError, match=r"UniformDequantization: x must hold integers in \{0, ..., 3\}"):
        UniformDequantization(4)(np.array([[0, 4]]))
    with pytest.raises(ValueError, match="integers"):
        UniformDequantization(4)(np.array([[0.5, 1.0]]))
    with pytest.raises(ValueError, match=r"VariationalDequantization: x must have shape \(N, 3\), got \(2, 2\)"):
        VariationalDequantization((3,), n_levels=4)(np.zeros((2, 2), dtype=int))
    with pytest.raises(ValueError, match="alpha must be in"):
        LogitTransform(0.5)
    with pytest.raises(TypeError, match="DequantizedFlow: flow must be a Flow"):
        DequantizedFlow(Affine([0.0], [1.0]), UniformDequantization())


def test_logit_inverse_log_det_is_finite_where_sigmoid_saturates():
    # float32 sigmoid(20) rounds to 1: log(1 - s) would be -inf; log_sigmoid(-w) is not
    t = LogitTransform(alpha=0.05)
    w = td.tensor(np.array([[-30.0, 0.0, 20.0, 40.0]], dtype=np.float32))
    _, log_det = t.inverse(w)
    assert np.isfinite(log_det.numpy()).all()
    w64 = td.tensor(np.array([[-30.0, 0.0, 20.0, 40.0]]), dtype="float64")
    expected = -(4 * (np.log(0.9) - np.log(256)) - np.sum(-np.logaddexp(0, -w64.numpy()) - np.logaddexp(0, w64.numpy())))
    np.testing.assert_allclose(t.inverse(w64)[1].numpy(), [expected], rtol=1e-12)
