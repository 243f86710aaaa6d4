"""The flow API: Compose/Inverse bookkeeping, Flow.log_prob by change of variables, and the
brute-force log-det oracle, on a transform whose answers are known in closed form."""
import numpy as np
import pytest
from scipy import stats

import tinydgm as td
from tinydgm.models.flows import Compose, Flow, Inverse, Transform, brute_force_log_det
from tinydgm.nn.module import Parameter


class Affine(Transform):
    """z = a * x + b elementwise: log|det| = sum log|a| (closed form for checking)."""

    def __init__(self, a, b):
        super().__init__()
        self.a = Parameter(np.asarray(a, dtype=np.float64))
        self.b = Parameter(np.asarray(b, dtype=np.float64))

    def forward(self, x):
        return self.a * x + self.b, td.broadcast_to(td.log(td.abs(self.a)).sum(), (x.shape[0],))

    def inverse(self, z):
        return (z - self.b) / self.a, td.broadcast_to(-td.log(td.abs(self.a)).sum(), (z.shape[0],))


def _x(n=5, d=3, seed=0):
    return td.tensor(np.random.default_rng(seed).normal(size=(n, d)), dtype="float64")


def test_flow_log_prob_is_the_gaussian_it_defines():
    # z = a x + b with z ~ N(0, 1) means x ~ N(-b/a, 1/a^2)
    a, b = np.array([2.0, -0.5, 1.5]), np.array([0.3, 1.0, -2.0])
    flow = Flow(Affine(a, b), event_shape=(3,))
    x = _x()
    expected = stats.norm(-b / a, 1 / np.abs(a)).logpdf(x.numpy()).sum(axis=1)
    np.testing.assert_allclose(flow.log_prob(x).numpy(), expected, rtol=1e-12)
    np.testing.assert_allclose(flow.loss(x).item(), -expected.mean(), rtol=1e-12)
    np.testing.assert_allclose(flow.bits_per_dim(x).numpy(), -expected / (3 * np.log(2)), rtol=1e-12)


def test_compose_adds_log_dets_and_inverts_in_reverse_order():
    f = Compose([Affine([2.0, 3.0], [1.0, 0.0]), Affine([0.5, -1.0], [0.0, 2.0])])
    x = _x(4, 2)
    z, log_det = f(x)
    np.testing.assert_allclose(z.numpy(), ([2, 3] * x.numpy() + [1, 0]) * [0.5, -1] + [0, 2])
    np.testing.assert_allclose(log_det.numpy(), np.log(2 * 3 * 0.5 * 1) * np.ones(4))
    back, inv_log_det = f.inverse(z)
    np.testing.assert_allclose(back.numpy(), x.numpy(), rtol=1e-12)
    np.testing.assert_allclose(inv_log_det.numpy(), -log_det.numpy())
    np.testing.assert_allclose(brute_force_log_det(f, x), log_det.numpy(), rtol=1e-12)


def test_inverse_swaps_directions():
    t = Affine([2.0, 4.0], [0.0, 1.0])
    x = _x(3, 2)
    z, log_det = Inverse(t)(x)
    np.testing.assert_allclose(z.numpy(), t.inverse(x)[0].numpy())
    np.testing.assert_allclose(log_det.numpy(), -np.log(8.0) * np.ones(3))


def test_empty_compose_is_identity_with_zero_log_det():
    x = _x(3, 2)
    z, log_det = Compose([])(x)
    np.testing.assert_array_equal(z.numpy(), x.numpy())
    np.testing.assert_array_equal(log_det.numpy(), np.zeros(3))


def test_brute_force_log_det_catches_a_nonlinear_map():
    # z = x + sin(x) elementwise: log|det| = sum log(1 + cos x)
    x = td.tensor(np.random.default_rng(1).uniform(-1, 1, size=(4, 3)), dtype="float64")
    got = brute_force_log_det(lambda t: t + td.sin(t), x)
    np.testing.assert_allclose(got, np.log1p(np.cos(x.numpy())).sum(axis=1), rtol=1e-12)


def test_flow_sample_maps_base_draws_through_the_inverse():
    flow = Flow(Affine([2.0], [1.0]), event_shape=(1,))
    x = flow.sample(20000, rng=np.random.default_rng(0)).numpy()
    assert x.shape == (20000, 1)
    assert abs(x.mean() + 0.5) < 0.02 and abs(x.std() - 0.5) < 0.02


def test_flow_log_prob_gradcheck():
    flow = Flow(Affine([2.0, -0.7], [0.1, 0.2]), event_shape=(2,))
    x = _x(3, 2)
    x.requires_grad = True
    assert td.gradcheck(lambda t: flow.log_prob(t), (x,))


def test_errors_name_the_argument():
    flow = Flow(Affine([1.0, 1.0], [0.0, 0.0]), event_shape=(2,))
    with pytest.raises(ValueError, match=r"Flow.log_prob: x must have shape \(N, 2\), got \(4, 3\)"):
        flow.log_prob(_x(4, 3))
    with pytest.raises(TypeError, match="Compose: transforms\\[1\\] must be a Transform"):
        Compose([Affine([1.0], [0.0]), "nope"])
