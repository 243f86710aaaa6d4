"""Glow builder: the whole multi-scale flow through the contract (invertibility, brute-force
log-det, gradcheck), its step structure and shapes, act-norm's data-dependent initialisation,
gradcheck of log_prob and sampling."""
import numpy as np
import pytest
from flow_contracts import assert_flow_transform

import tinydgm as td
from tinydgm.models.flows import (ActNormTransform, AffineCoupling, InvertibleConv1x1, MultiScale, Squeeze,
                                  image_glow)


def _randomise(flow, rng, scale=0.3):
    """A fresh Glow has identity couplings and permutation 1x1 convolutions: make both random."""
    for module in flow.modules():
        if isinstance(module, InvertibleConv1x1):
            for p in (module.lower, module.upper, module.log_s):
                p.data = scale * rng.standard_normal(p.shape)
        last = getattr(module, "last", None)
        if last is not None and hasattr(module, "tanh_scale"):
            last.weight.data = scale * rng.standard_normal(last.weight.shape)
            last.bias.data = scale * rng.standard_normal(last.bias.shape)


def _steps(flow):
    """Every step of flow (a Compose of three layers), level by level."""
    multiscale = flow.transform
    levels = list(multiscale.scales) + [multiscale.final]
    return [[t for t in level.transforms if not isinstance(t, Squeeze) and hasattr(t, "transforms")]
            for level in levels]


def _glow(event_shape=(2, 4, 4), n_scales=2, n_steps=2, seed=0):
    rng = np.random.default_rng(seed)
    flow = image_glow(event_shape, n_scales=n_scales, n_steps=n_steps, hidden_channels=4, rng=rng,
                      dtype="float64")
    _randomise(flow, rng)
    return flow, rng


def test_glow_is_a_multiscale_of_actnorm_conv1x1_coupling_steps():
    flow = image_glow((1, 28, 28), n_scales=2, n_steps=3, hidden_channels=4, rng=np.random.default_rng(0),
                      dtype="float64")
    assert isinstance(flow.transform, MultiScale)
    assert flow.transform.latent_shapes == [(2, 14, 14), (2, 14, 14)]
    steps = _steps(flow)
    assert [len(level) for level in steps] == [3, 3]
    for level, channels in zip(steps, (4, 8)):            # 1x28x28 -> 4x14x14 | split, 2x14x14 -> 8x7x7
        for step in level:
            kinds = [type(t) for t in step.transforms]
            assert kinds == [ActNormTransform, InvertibleConv1x1, AffineCoupling]
            assert step.transforms[1].num_channels == channels


@pytest.mark.parametrize("event_shape, n_scales", [((1, 4, 4), 2), ((2, 4, 4), 1)])
def test_glow_contract(event_shape, n_scales):
    flow, rng = _glow(event_shape, n_scales)
    x = rng.normal(size=(3,) + event_shape)
    assert_flow_transform(flow.transform, x)


def test_actnorm_data_dependent_initialisation():
    flow, rng = _glow((1, 4, 4), n_scales=1, n_steps=1)
    x = td.tensor(1.5 + 3.0 * rng.normal(size=(32, 1, 4, 4)), dtype="float64")
    actnorm = _steps(flow)[0][0].transforms[0]
    assert not bool(actnorm.norm.initialized)
    with td.no_grad():
        flow.log_prob(x)                                   # the first batch initialises every act-norm
        squeezed, _ = Squeeze()(x)
        y, log_det = actnorm(squeezed)
    y = y.numpy()
    np.testing.assert_allclose(y.mean(axis=(0, 2, 3)), 0, atol=1e-10)
    np.testing.assert_allclose(y.std(axis=(0, 2, 3)), 1, rtol=1e-5)
    # log|det| = H W sum_c log|s_c|, with s_c = 1 / std_c of the squeezed first batch
    std = squeezed.numpy().std(axis=(0, 2, 3))
    np.testing.assert_allclose(log_det.numpy(), -4 * np.log(std).sum(), rtol=1e-5)
    scale = actnorm.norm.scale.numpy().copy()
    with td.no_grad():
        flow.log_prob(td.tensor(rng.normal(size=(8, 1, 4, 4)), dtype="float64"))
    np.testing.assert_array_equal(actnorm.norm.scale.numpy(), scale)     # later batches do not re-initialise


def test_glow_log_prob_gradcheck_and_change_of_variables():
    flow, rng = _glow((1, 4, 4), n_scales=2, n_steps=1)
    x = td.tensor(rng.normal(size=(2, 1, 4, 4)), dtype="float64", requires_grad=True)
    with td.no_grad():
        z, log_det = flow.transform(x)
    expected = (-0.5 * z.numpy() ** 2 - 0.5 * np.log(2 * np.pi)).reshape(2, -1).sum(1) + log_det.numpy()
    np.testing.assert_allclose(flow.log_prob(x).numpy(), expected, rtol=1e-12)
    td.gradcheck(lambda x_: flow.log_prob(x_), [x])


def test_glow_sample_shape_and_inverse():
    flow, _ = _glow((1, 4, 4), n_scales=2, n_steps=1)
    with td.no_grad():
        flow.log_prob(td.tensor(np.random.default_rng(5).normal(size=(8, 1, 4, 4)), dtype="float64"))
    x = flow.sample(6, rng=np.random.default_rng(7))
    assert tuple(x.shape) == (6, 1, 4, 4) and x.dtype == np.float64 and not x.requires_grad
    z = np.random.default_rng(7).standard_normal((6, 1, 4, 4))
    with td.no_grad():
        z_back, _ = flow.transform(x)
    np.testing.assert_allclose(z_back.numpy(), z, rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("kwargs, match", [
    (dict(event_shape=(1, 4, 4), n_scales=3), "divisible by 8"),
    (dict(event_shape=(4, 4), n_scales=1), "event_shape must be"),
    (dict(event_shape=(1, 4, 4), n_steps=0), "n_steps must be"),
])
def test_glow_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        image_glow(**kwargs)
