"""Planar and radial flows: the flow contract (invertibility, log-det vs the brute-force
Jacobian, gradcheck) under random parameters, the invertibility constraints, and densities
that integrate to 1 in 1-D and 2-D."""
import numpy as np
import pytest
from flow_contracts import assert_flow_transform, density_on_grid_2d

import tinydgm as td
from tinydgm.models.flows import Compose, Flow, PlanarFlow, RadialFlow, planar_flow, radial_flow


def _randomise(transform, rng, scale):
    for p in transform.parameters():
        p.data = scale * rng.standard_normal(p.shape)


@pytest.mark.parametrize("cls", [PlanarFlow, RadialFlow])
@pytest.mark.parametrize("dim", [1, 2, 5])
def test_contract_under_random_parameters(cls, dim):
    rng = np.random.default_rng(dim)
    for scale in (0.3, 2.0):
        t = cls(dim, rng=rng, dtype="float64")
        _randomise(t, rng, scale)
        assert_flow_transform(t, rng.normal(size=(3, dim)) * 2)


def test_contract_of_a_stack_of_planar_and_radial_layers():
    rng = np.random.default_rng(1)
    layers = [PlanarFlow(3, 1.0, rng, "float64"), RadialFlow(3, 1.0, rng, "float64"),
              PlanarFlow(3, 1.0, rng, "float64")]
    assert_flow_transform(Compose(layers), rng.normal(size=(4, 3)))


def test_planar_constraint_w_dot_u_hat_at_least_minus_one():
    rng = np.random.default_rng(2)
    t = PlanarFlow(4, dtype="float64")
    values = []
    for _ in range(300):
        t.u.data = rng.standard_normal(4) * rng.choice([0.1, 1, 10])
        t.w.data = rng.standard_normal(4) * rng.choice([0.1, 1, 10])
        c = float((t.w * t.u_hat()).sum().item())
        values.append(c)
        # and w^T u_hat = max(m(w^T u), -1 + delta), m(a) = -1 + softplus(a), delta = sqrt(eps)
        w_u = float(t.w.numpy() @ t.u.numpy())
        delta = np.sqrt(np.finfo(np.float64).eps)
        np.testing.assert_allclose(c, max(-1 + np.logaddexp(0, w_u), -1 + delta), rtol=1e-9, atol=1e-12)
    assert min(values) >= -1 + delta - 1e-12   # the margin holds up to rounding of the w^T u_hat sum
    assert min(values) < -0.99            # the constraint is active for very negative w^T u


def test_planar_inverse_near_the_constraint_boundary():
    # w^T u very negative: c = w^T u_hat close to -1, the map is almost flat at a = 0
    rng = np.random.default_rng(3)
    t = PlanarFlow(2, dtype="float64")
    t.w.data = np.array([1.5, -0.5])
    t.u.data = -3.0 * t.w.data
    t.b.data = np.array(0.2)
    assert float((t.w * t.u_hat()).sum().item()) < -0.999
    x = td.tensor(rng.normal(size=(50, 2)) * 3, dtype="float64")
    z, log_det = t(x)
    back, inv_log_det = t.inverse(z)
    np.testing.assert_allclose(back.numpy(), x.numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(inv_log_det.numpy(), -log_det.numpy(), rtol=1e-6)


def test_radial_constraint_beta_at_least_minus_alpha():
    rng = np.random.default_rng(4)
    t = RadialFlow(3, dtype="float64")
    for _ in range(200):
        t.alpha_raw.data = np.array(rng.standard_normal() * 5)
        t.beta_raw.data = np.array(rng.standard_normal() * 5)
        alpha, beta = float(t.alpha().item()), float(t.beta().item())
        assert alpha > 0 and beta >= -alpha
    # the extreme contraction beta -> -alpha still inverts
    t.alpha_raw.data, t.beta_raw.data = np.array(0.5), np.array(-20.0)
    assert_flow_transform(t, rng.normal(size=(5, 3)) * 3, gradcheck_params=False)


def _grid_integral_1d(flow, lo, hi, n):
    x = np.linspace(lo, hi, n)
    with td.no_grad():
        p = np.exp(flow.log_prob(td.tensor(x[:, None], dtype="float64")).numpy())
    return np.trapezoid(p, x)


def test_1d_planar_and_radial_densities_integrate_to_one():
    # mass outside [-40, 40] is < 1e-20 (each layer moves points by at most |u_hat| resp. |beta|);
    # trapezoid error at spacing 1e-3 is ~1e-8: tolerance 1e-6
    rng = np.random.default_rng(5)
    for build in (planar_flow, radial_flow):
        flow = build(1, 6, init_std=1.0, rng=rng, dtype="float64")
        total = _grid_integral_1d(flow, -40, 40, 80001)
        assert abs(total - 1) < 1e-6, (build.__name__, total)


def test_2d_planar_density_integrates_to_one():
    # 2-D grid over [-12, 12]^2 with spacing 0.02; tolerance 1e-3 (grid error and negligible tails)
    rng = np.random.default_rng(6)
    flow = planar_flow(2, 6, init_std=1.0, rng=rng, dtype="float64")
    p, total, points = density_on_grid_2d(flow, 12, 1201)
    assert abs(total - 1) < 1e-3, total
    # and it is not the base density: the flow moved mass
    base = np.exp(-0.5 * (points ** 2).sum(1)) / (2 * np.pi)
    assert np.abs(p.ravel() - base).max() > 1e-2


def test_sampling_goes_through_the_numerical_inverse():
    rng = np.random.default_rng(7)
    flow = planar_flow(2, 4, init_std=1.0, rng=rng, dtype="float64")
    x = flow.sample(200, rng=np.random.default_rng(0))
    z, _ = flow.transform(x)
    expected = np.random.default_rng(0).standard_normal((200, 2))
    np.testing.assert_allclose(z.numpy(), expected, rtol=1e-8, atol=1e-8)


def test_log_prob_gradcheck_and_shape_errors():
    rng = np.random.default_rng(8)
    flow = Flow([PlanarFlow(2, 1.0, rng, "float64"), RadialFlow(2, 1.0, rng, "float64")], (2,))
    x = td.tensor(rng.normal(size=(4, 2)), dtype="float64", requires_grad=True)
    td.gradcheck(flow.log_prob, [x])
    with pytest.raises(ValueError, match=r"PlanarFlow: input must have shape \(N, 2\)"):
        PlanarFlow(2)(td.tensor(np.zeros((3, 3))))
    with pytest.raises(ValueError, match="dim must be a positive int"):
        RadialFlow(0)
