"""The public contracts of tinydgm.testing (issue 19): each one passes a correct model and
catches planted bugs, listing every failure."""
import numpy as np
import pytest
from scipy import stats

import tinydgm as td
from tinydgm.models.autoregressive.made import MADE
from tinydgm.models.flows import AffineCoupling, half_mask
from tinydgm.nn.conditioners import MLPConditioner
from tinydgm.testing import (AutoregressiveError, FlowContractError, all_binary, assert_autoregressive,
                             assert_autoregressive_masks, assert_flow_transform, assert_normalised,
                             check_autoregressive, chi_square_pvalue, chi_square_sf, dependency_matrix,
                             mask_path_dependencies)


def f64(a):
    return td.tensor(np.asarray(a, dtype=np.float64), dtype="float64")


def linear_map(A):
    """x -> x A^T: output o depends on input i exactly where A[o, i] != 0."""
    return lambda x: x @ f64(A).T


# ----------------------------------------------------------------------------- autoregressive

def test_every_violation_is_listed():
    A = np.tril(np.ones((5, 5)), k=-1)
    A[1, 3] = A[4, 4] = 1.0                          # two planted violations
    x = np.random.default_rng(0).standard_normal((3, 5))
    with pytest.raises(AutoregressiveError) as info:
        assert_autoregressive(linear_map(A), x, order=np.arange(5))
    message = str(info.value)
    assert "2 forbidden dependencies" in message
    assert "output 1 (input 1 at position 1): inputs [3]" in message
    assert "output 4 (input 4 at position 4): inputs [4]" in message
    report = check_autoregressive(dependency_matrix(linear_map(A), x), np.arange(5))
    assert report.violations == [(1, 3), (4, 4)] and report.missing == []


def test_missing_allowed_dependencies_are_listed_with_the_relu_caveat():
    A = np.tril(np.ones((4, 4)), k=-1)
    A[3, 0] = A[2, 1] = 0.0
    x = np.random.default_rng(0).standard_normal((3, 4))
    assert_autoregressive(linear_map(A), x, order=np.arange(4))             # complete=False: fine
    with pytest.raises(AutoregressiveError, match="2 allowed dependencies are missing") as info:
        assert_autoregressive(linear_map(A), x, order=np.arange(4), complete=True)
    assert "a ReLU that is off" in str(info.value) and "assert_autoregressive_masks" in str(info.value)


def test_the_mask_path_check_sees_what_dead_relus_hide():
    """Hidden units that are off at every example cut paths from the Jacobian; the masks
    still have them: the exact check passes where the point-wise one reports missing
    dependencies."""
    model = MADE(5, [12, 12], connectivity="natural", rng=np.random.default_rng(0), dtype="float64")
    model.layers[0].bias.data[:] = -100.0            # every first-layer unit off
    x = np.random.default_rng(1).random((4, 5))
    with pytest.raises(AutoregressiveError, match="allowed dependencies are missing"):
        assert_autoregressive(model.forward, x, model.ordering, complete=True)
    masks = [layer.mask for layer in model.layers]
    dep = assert_autoregressive_masks(masks, model.ordering, complete=True)
    assert dep.sum() == 10                           # 0 + 1 + 2 + 3 + 4 inputs for the 5 conditionals


def test_the_mask_path_check_catches_a_planted_mask_bug():
    model = MADE(5, [12], connectivity="natural", ordering=np.array([3, 1, 5, 2, 4]),
                 rng=np.random.default_rng(0), dtype="float64")
    masks = [np.array(layer.mask) for layer in model.layers]
    first = int(np.argmin(model.ordering))           # p(x_first) must see nothing
    masks[-1][:, first] = 1.0
    with pytest.raises(AutoregressiveError, match=f"output {first} \\(input {first} at position 1\\)"):
        assert_autoregressive_masks(masks, model.ordering)
    with pytest.raises(ValueError, match="transposed"):
        mask_path_dependencies([masks[0], masks[1].T.copy()[:, :12]])


def test_a_wrong_number_of_outputs_is_named():
    x = np.random.default_rng(0).standard_normal((2, 3))
    with pytest.raises(AutoregressiveError, match="6 outputs and 3 inputs.*expected 3 x 3"):
        assert_autoregressive(lambda t: td.concatenate([t, t], axis=1), x, np.arange(3), outputs_per_input=3)


# ----------------------------------------------------------------------------- discrete

def test_all_binary_counts_in_binary():
    x = all_binary(3)
    assert x.shape == (8, 3) and x.dtype == np.float64
    np.testing.assert_array_equal(x @ [4, 2, 1], np.arange(8))


def test_assert_normalised_catches_a_missing_state():
    log_p = np.log(np.full(8, 1 / 8))
    assert_normalised(lambda x: log_p, 3)
    with pytest.raises(AssertionError, match="sum to 0.875"):
        assert_normalised(lambda x: np.where(np.arange(8) == 5, -np.inf, log_p), 3)


@pytest.mark.parametrize("dof", [1, 2, 7, 30, 255])
def test_chi_square_tail_matches_scipy(dof):
    for statistic in [0.01, 0.7, dof, 3.0 * dof + 10, 10.0 * dof + 50]:
        assert chi_square_sf(statistic, dof) == pytest.approx(stats.chi2.sf(statistic, dof), rel=1e-10, abs=1e-300)


def test_chi_square_accepts_exact_draws_and_rejects_others():
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(16))
    states = all_binary(4)
    samples = states[rng.choice(16, size=3000, p=p)]
    assert chi_square_pvalue(samples, np.log(p)) > 1e-3
    q = p.copy()
    q[[0, 1]] = q[[1, 0]] if abs(q[0] - q[1]) > 0.02 else q[[0, 1]] * [1.5, 0.5]
    q /= q.sum()
    wrong = states[rng.choice(16, size=3000, p=q)]
    assert chi_square_pvalue(wrong, np.log(p)) < 1e-6


# ----------------------------------------------------------------------------- flows

def coupling(seed=0):
    rng = np.random.default_rng(seed)
    conditioner = MLPConditioner(4, 4, hidden=(8,), rng=rng, dtype="float64")
    conditioner.last.weight.data = 0.5 * rng.standard_normal(conditioner.last.weight.shape)   # not the identity
    conditioner.last.bias.data = 0.5 * rng.standard_normal(conditioner.last.bias.shape)
    return AffineCoupling(half_mask(4, dtype="float64"), conditioner)


class Broken:
    """A transform with two planted bugs: its inverse forgets the shift, and its forward
    log-det is off by a constant."""

    def __init__(self, inner):
        self.inner = inner

    def __call__(self, x):
        z, log_det = self.inner(x)
        return z, log_det + 0.1

    def inverse(self, z):
        x, log_det = self.inner.inverse(z)
        return x + 0.01, log_det

    def named_parameters(self):
        return iter(())


class PerDimension:
    """A correct transform whose log-dets come per dimension, (N, D), as some libraries return."""

    def __init__(self, scale):
        self.log_scale = f64(np.log(scale))

    def __call__(self, x):
        return x * self.log_scale.exp(), (self.log_scale + 0 * x)

    def inverse(self, z):
        return z * (-self.log_scale).exp(), (-self.log_scale + 0 * z)


def test_a_correct_coupling_passes():
    x = np.random.default_rng(1).standard_normal((5, 4))
    assert_flow_transform(coupling(), x)


def test_collect_lists_every_failure():
    x = np.random.default_rng(1).standard_normal((5, 4))
    with pytest.raises(FlowContractError, match="inverse") as info:            # the first one
        assert_flow_transform(Broken(coupling()), x, gradcheck_params=False)
    assert "broke" not in str(info.value)
    with pytest.raises(FlowContractError) as info:
        assert_flow_transform(Broken(coupling()), x, gradcheck_params=False, collect=True)
    message = str(info.value)
    assert "broke 3 of 4 flow-contract checks" in message
    assert "inverse(forward(x)) != x" in message and "log_det != brute-force" in message
    assert "inverse log_det != -forward log_det" in message


def test_log_dets_of_other_shapes_are_accepted_on_request():
    x = np.random.default_rng(1).standard_normal((5, 3))
    transform = PerDimension(np.array([0.5, 2.0, 3.0]))
    with pytest.raises(FlowContractError, match=r'must have shape \(5,\), got \(5, 3\).*log_det_shape="any"'):
        assert_flow_transform(transform, x, gradcheck_params=False)
    assert_flow_transform(transform, x, gradcheck_params=False, log_det_shape="any")
