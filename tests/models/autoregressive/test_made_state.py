"""A MADE's state holds everything that defines its distribution (issue 19): degrees and
ordering of every mask set travel with the weights and masks, so a MADE built with any seed
becomes the saved one; degrees can be given (MADE.from_degrees); weights in another
framework's layout load through MADE.load_weights, which refuses square-layer accidents."""
import numpy as np
import pytest

import tinydgm as td
from tinydgm.models.autoregressive.made import MADE
from tinydgm.nn import Module
from tinydgm.nn.masked_linear import made_degrees, made_masks

from contracts import all_binary, assert_autoregressive, assert_normalised, chi_square_pvalue

D = 4


def made(seed, hidden=(12, 12), **kwargs):
    kwargs.setdefault("ordering", "random")
    kwargs.setdefault("connectivity", "random")
    model = MADE(D, list(hidden), rng=np.random.default_rng(seed), dtype="float64", **kwargs)
    rng = np.random.default_rng(100 + seed)
    for layer in model.layers:                       # sharp conditionals: a wrong mask shows
        layer.weight.data = 3.0 * layer.weight.data
        layer.bias.data = layer.bias.data + rng.standard_normal(layer.bias.shape)
    return model


def log_p_all(model, n_masks=None):
    with td.no_grad():
        return model.log_prob(all_binary(D), n_masks=n_masks).numpy()


CONFIGS = [dict(), dict(direct=True), dict(n_masks=3), dict(resample_every_step=True),
           dict(output="gaussian", direct=True)]


@pytest.mark.parametrize("kwargs", CONFIGS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_state_round_trips_into_a_made_built_with_another_seed(seed, kwargs):
    saved = made(seed, **kwargs)
    if kwargs.get("n_masks"):
        saved.resample_masks()                       # the current set is not the first one
    loaded = made(seed + 10, **kwargs)
    assert not np.array_equal(loaded.ordering, saved.ordering) or \
        not all(np.array_equal(a, b) for a, b in zip(loaded.masks.degrees, saved.masks.degrees))
    loaded.load_state_dict(saved.state_dict())

    state_a, state_b = saved.state_dict(), loaded.state_dict()
    assert list(state_a) == list(state_b)
    for key in state_a:
        np.testing.assert_array_equal(state_a[key], state_b[key], err_msg=key)
    assert "mask_degrees_0" in state_a and "mask_index" in state_a
    np.testing.assert_array_equal(loaded.ordering, saved.ordering)
    for a, b in zip(loaded.masks.degrees, saved.masks.degrees):
        np.testing.assert_array_equal(a, b)
    x = np.random.default_rng(3).standard_normal((5, D)) if kwargs.get("output") else all_binary(D)
    with td.no_grad():
        np.testing.assert_array_equal(loaded.log_prob(x).numpy(), saved.log_prob(x).numpy())
        if kwargs.get("n_masks"):
            np.testing.assert_array_equal(loaded.log_prob(x, n_masks=3).numpy(), saved.log_prob(x, n_masks=3).numpy())
    for method in ("fast", "naive"):
        np.testing.assert_array_equal(loaded.sample(50, rng=np.random.default_rng(7), method=method).numpy(),
                                      saved.sample(50, rng=np.random.default_rng(7), method=method).numpy())
    if kwargs.get("n_masks"):                        # the loaded model cycles on from the same set
        saved.resample_masks(), loaded.resample_masks()
        np.testing.assert_array_equal(loaded.ordering, saved.ordering)


@pytest.mark.parametrize("seed", [0, 1])
def test_samplers_follow_the_exact_distribution_after_a_load(seed):
    saved = made(seed)
    loaded = made(seed + 10)
    loaded.load_state_dict(saved.state_dict())
    log_p = assert_normalised(lambda x: loaded.log_prob(x).numpy(), D)
    np.testing.assert_allclose(log_p, log_p_all(saved), rtol=0, atol=1e-12)
    for method in ("fast", "naive"):
        samples = loaded.sample(4000, rng=np.random.default_rng(seed), method=method).numpy()
        assert chi_square_pvalue(samples, log_p) > 1e-3, method


def test_the_sampler_check_catches_stale_degrees():
    """Why the degrees must travel: weights and masks alone (the old state) leave the fast
    sampler on the old degrees, and the chi-square test rejects its draws."""
    saved, stale = made(0), made(10)
    assert not np.array_equal(saved.ordering, stale.ordering)
    for a, b in zip(stale.layers, saved.layers):     # what loading used to do: arrays only
        a.weight.data, a.bias.data = b.weight.data.copy(), b.bias.data.copy()
        a.set_mask(b.mask)
    log_p = log_p_all(saved)
    np.testing.assert_allclose(log_p_all(stale), log_p, atol=1e-12)     # log p itself agrees ...
    samples = stale.sample(4000, rng=np.random.default_rng(0), method="fast").numpy()
    assert chi_square_pvalue(samples, log_p) < 1e-6                      # ... the stale sampler does not


def test_masks_that_do_not_follow_the_degrees_are_refused_and_nothing_changes():
    saved, other = made(0), made(10)
    state = saved.state_dict()
    state["mask_degrees_0"] = other.state_dict()["mask_degrees_0"]     # another ordering
    target = made(20)
    before = target.state_dict()
    with pytest.raises(ValueError, match=r"'layers\.\d\.mask' does not follow the degrees in the state dict"):
        target.load_state_dict(state)
    for key, value in target.state_dict().items():
        np.testing.assert_array_equal(value, before[key], err_msg=key)
    samples = target.sample(10, rng=np.random.default_rng(0)).numpy()     # still usable
    assert samples.shape == (10, D)


def test_a_state_dict_without_degrees_loads_only_when_its_masks_fit():
    saved = made(0)
    old = {k: v for k, v in saved.state_dict().items() if not k.startswith("mask_")}
    same = made(0)
    same.load_state_dict(old)                        # the same degrees: fine
    np.testing.assert_allclose(log_p_all(same), log_p_all(saved), atol=1e-12)
    with pytest.raises(ValueError, match="holds no degrees"):
        made(10).load_state_dict(old)


class Holder(Module):
    """A parent module (as a flow or a prior holds its MADE)."""

    def __init__(self, seed):
        super().__init__()
        self.made = made(seed)


def test_a_load_through_a_parent_module_restores_the_degrees_too():
    saved, loaded = Holder(0), Holder(10)
    loaded.load_state_dict(saved.state_dict())       # Module.load_state_dict, not MADE's
    np.testing.assert_array_equal(loaded.made.ordering, saved.made.ordering)
    np.testing.assert_array_equal(loaded.made.sample(20, rng=np.random.default_rng(1)).numpy(),
                                  saved.made.sample(20, rng=np.random.default_rng(1)).numpy())


# ----------------------------------------------------------------------------- given degrees

def test_from_degrees_builds_the_masks_of_those_degrees():
    degrees = made_degrees(5, [7, 6], ordering=np.array([2, 5, 1, 4, 3]), connectivity="random",
                           rng=np.random.default_rng(4))
    model = MADE.from_degrees(degrees, direct=True, dtype="float64")
    assert model.hidden_sizes == [7, 6] and model.n_inputs == 5
    masks, direct = made_masks(degrees, direct=True)
    for layer, mask in zip(model.layers, masks):
        np.testing.assert_array_equal(layer.mask != 0, mask)
    np.testing.assert_array_equal(model.direct_layer.mask != 0, direct)
    np.testing.assert_array_equal(model.ordering, degrees[0])
    assert_autoregressive(model.forward, np.random.default_rng(0).random((4, 5)), model.ordering)


@pytest.mark.parametrize("degrees, match", [
    ([np.array([1, 2, 2]), np.array([1, 2])], "permutation of 1..3"),
    ([np.array([1, 2, 3]), np.array([1, 5])], r"must lie in 0\.\.2"),
    ([np.array([1.0, 2.0, 3.0]), np.array([1, 2])], "integer array"),
])
def test_from_degrees_refuses_bad_degrees(degrees, match):
    with pytest.raises(ValueError, match=match):
        MADE.from_degrees(degrees)


def test_any_number_of_outputs_per_input():
    degrees = made_degrees(5, [16, 16], ordering="random", connectivity="natural", rng=np.random.default_rng(0))
    model = MADE.from_degrees(degrees, output=None, outputs_per_input=3, dtype="float64")
    x = np.random.default_rng(1).standard_normal((4, 5))
    assert model(td.tensor(x, dtype="float64")).shape == (4, 15)
    dep = assert_autoregressive(model.forward, x, model.ordering, outputs_per_input=3)
    last = int(np.argmax(model.ordering))
    assert [int(dep[k * 5 + last].sum()) for k in range(3)] == [4, 4, 4]     # every block sees x_<d
    with pytest.raises(ValueError, match="output=None"):
        model.log_prob(x)
    with pytest.raises(ValueError, match="outputs_per_input=3"):
        MADE(5, [8], output="bernoulli", outputs_per_input=3)


# ----------------------------------------------------------------------------- another framework's layout

def foreign(model, seed=0, masked=False):
    """Weights, biases and masks as PyTorch's nn.Linear stores them: (out, in)."""
    rng = np.random.default_rng(seed)
    weights = [rng.standard_normal((l.out_features, l.in_features)) for l in model.layers]
    if masked:
        weights = [w * (l.mask.T != 0) for w, l in zip(weights, model.layers)]
    biases = [rng.standard_normal(l.out_features) for l in model.layers]
    masks = [(l.mask.T != 0).astype(np.float64) for l in model.layers]
    return weights, biases, masks


def test_load_weights_in_the_out_in_layout():
    model = made(0, hidden=(12, 12))
    weights, biases, masks = foreign(model)
    model.load_weights(weights, biases, layout="out_in", masks=masks)
    for layer, w, b in zip(model.layers, weights, biases):
        np.testing.assert_array_equal(layer.weight.data, w.T)
        np.testing.assert_array_equal(layer.bias.data, b)


def test_a_non_square_layer_in_the_wrong_layout_is_named():
    model = made(0, hidden=(12, 12))
    weights, biases, _ = foreign(model)
    with pytest.raises(ValueError, match=r"weights\[0\] has shape \(12, 4\).*fits layout='out_in'"):
        model.load_weights(weights, biases)
    with pytest.raises(ValueError, match=r"look like the \(out, in\) layout.*load_weights"):
        model.load_state_dict({**model.state_dict(), "layers.0.weight": weights[0]})


def test_a_square_layer_that_fits_only_by_accident_is_refused():
    model = made(0, hidden=(12, 12))                 # layers.1 is 12 x 12
    weights, biases, masks = foreign(model)
    in_out, masks_in_out = [w.T for w in weights], [m.T for m in masks]
    in_out[1], masks_in_out[1] = weights[1], masks[1]    # one transpose forgotten: the square layer's
    with pytest.raises(ValueError, match=r"masks\[1\] \(a square layer\) equals this MADE's mask only transposed"):
        model.load_weights(in_out, biases, layout="in_out", masks=masks_in_out)
    weights, biases, _ = foreign(model, masked=True)  # no masks given: weights stored masked
    in_out = [w.T for w in weights]
    in_out[1] = weights[1]
    with pytest.raises(ValueError, match=r"weights\[1\] \(square.*only when transposed"):
        model.load_weights(in_out, biases, layout="in_out")


def test_masks_of_other_degrees_are_named():
    model, other = made(0), made(10)
    weights, biases, masks = foreign(other)
    with pytest.raises(ValueError, match=r"masks\[0\] differs from this MADE's mask.*from_degrees"):
        model.load_weights(weights, biases, layout="out_in", masks=masks)


def test_state_round_trips_on_the_device(device):
    saved = made(0, n_masks=3, direct=True).to(device)
    saved.resample_masks()                           # degree buffers written on the device
    loaded = made(10, n_masks=3, direct=True).to(device)
    loaded.load_state_dict(saved.state_dict())
    np.testing.assert_array_equal(loaded.ordering, saved.ordering)
    for method in ("fast", "naive"):
        np.testing.assert_array_equal(loaded.sample(30, rng=np.random.default_rng(3), method=method).numpy(),
                                      saved.sample(30, rng=np.random.default_rng(3), method=method).numpy())
    on_cpu = made(20, n_masks=3, direct=True)
    on_cpu.load_state_dict(saved.state_dict())       # host arrays: loads on the CPU too
    x = td.tensor(all_binary(D), dtype="float64")
    with td.no_grad():
        np.testing.assert_allclose(on_cpu.log_prob(x, n_masks=3).numpy(),
                                   saved.log_prob(x.to(device), n_masks=3).numpy(), rtol=1e-12)
