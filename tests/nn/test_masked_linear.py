"""MADE masks and MaskedLinear: the autoregressive property read from the engine's
Jacobian (output d depends only on inputs earlier in the ordering), connection counts,
mask resampling, shapes in the (in, out) layout, derivatives and bad-input errors."""
import numpy as np
import pytest

import tinydgm as td
from contracts import with_params
from tinydgm.nn.masked_linear import MADEMasks, MaskedLinear, made_degrees, made_masks


def f64(a, requires_grad=True):
    return td.tensor(a, dtype="float64", requires_grad=requires_grad)


def build_layers(masks, rng):
    """MaskedLinear layers (float64) for a MADEMasks: hidden layers, output, direct."""
    layers = [MaskedLinear(m.shape[0], m.shape[1], rng=rng, dtype="float64") for m in masks.masks]
    direct = None
    if masks.direct_mask is not None:
        direct = MaskedLinear(*masks.direct_mask.shape, bias=False, rng=rng, dtype="float64")
    masks.apply(layers, direct)
    return layers, direct


def made_forward(layers, direct):
    """tanh hidden units (never exactly flat, so every allowed path shows in the Jacobian)."""
    def fn(x):
        h = x
        for layer in layers[:-1]:
            h = td.tanh(layer(h))
        y = layers[-1](h)
        return y if direct is None else y + direct(x)
    return fn


def dependency(masks, layers, direct, rng):
    """dep[j, d'] = output column j depends on input d' (from the engine's Jacobian)."""
    d = masks.n_inputs
    x = f64(rng.standard_normal((1, d)))
    jac = td.jacobian(made_forward(layers, direct), x)          # (1, K D, 1, D)
    return jac[0, :, 0, :] != 0


def allowed(ordering, k):
    """allowed[j, d'] = m^0(d') < m^0(d) for output column j = (copy, d)."""
    return np.tile(ordering[None, :] < ordering[:, None], (k, 1))


def paths(masks):
    """Input d' reaches output column j through some path of unmasked weights."""
    reach = masks.masks[0].astype(int)
    for m in masks.masks[1:]:
        reach = (reach @ m.astype(int)) > 0
    reach = reach.astype(bool)
    if masks.direct_mask is not None:
        reach = reach | masks.direct_mask
    return reach.T                                               # (K D, D)


# ----------------------------------------------------------------------------- autoregressive property

CASES = [
    # n_inputs, hidden_sizes, ordering, connectivity, direct, outputs_per_input
    (5, [8], "natural", "natural", False, 1),
    (5, [8, 6, 7], "natural", "natural", False, 1),
    (6, [10, 10], "random", "natural", False, 1),
    (6, [4, 9], "random", "random", False, 1),
    (6, [12, 12], "natural", "random", True, 1),
    (5, [9, 9], "random", "random", True, 2),
    (4, [], "random", "natural", False, 2),
]


@pytest.mark.parametrize("n_inputs, hidden, ordering, connectivity, direct, k", CASES)
def test_output_depends_only_on_earlier_inputs(n_inputs, hidden, ordering, connectivity, direct, k):
    rng = np.random.default_rng(1)
    masks = MADEMasks(n_inputs, hidden, ordering, connectivity, direct=direct, outputs_per_input=k, rng=rng)
    layers, direct_layer = build_layers(masks, rng)
    dep = dependency(masks, layers, direct_layer, rng)
    assert dep.shape == (k * n_inputs, n_inputs)
    assert not (dep & ~allowed(masks.ordering, k)).any(), "an output sees an input at or after it"
    np.testing.assert_array_equal(dep, paths(masks))       # exactly the paths the masks leave open
    if connectivity == "natural" or direct:
        # every degree occurs in every layer (or direct links): all earlier inputs are seen
        np.testing.assert_array_equal(dep, allowed(masks.ordering, k))


def test_explicit_ordering_is_respected():
    rng = np.random.default_rng(2)
    order = np.array([3, 1, 4, 2])
    masks = MADEMasks(4, [6, 6], ordering=order, rng=rng)
    layers, _ = build_layers(masks, rng)
    dep = dependency(masks, layers, None, rng)
    np.testing.assert_array_equal(dep, order[None, :] < order[:, None])
    np.testing.assert_array_equal(dep.sum(axis=1), order - 1)          # x_d sees m^0(d) - 1 inputs
    assert not dep[1].any()                                             # order 1 sees nothing


def test_single_input_is_unconditional():
    degrees = made_degrees(1, [3, 2])
    np.testing.assert_array_equal(degrees[1], 0)
    masks, direct = made_masks(degrees, direct=True)
    assert not masks[0].any() and not direct.any()


# ----------------------------------------------------------------------------- degrees, masks, counts

def test_degree_ranges():
    rng = np.random.default_rng(3)
    d = 7
    for _ in range(20):
        degrees = made_degrees(d, [5, 9, 3], "random", "random", rng)
        assert sorted(degrees[0].tolist()) == list(range(1, d + 1))
        for prev, m in zip(degrees[:-1], degrees[1:]):
            assert m.min() >= min(prev.min(), d - 1) and m.max() <= d - 1


def test_natural_degrees_are_evenly_spread():
    degrees = made_degrees(4, [7])
    np.testing.assert_array_equal(degrees[1], [1, 2, 3, 1, 2, 3, 1])


def test_mask_shapes_in_in_out_layout():
    masks, direct = made_masks(made_degrees(4, [7, 5], "random", "random", np.random.default_rng(0)),
                               direct=True, outputs_per_input=2)
    assert [m.shape for m in masks] == [(4, 7), (7, 5), (5, 8)]
    assert direct.shape == (4, 8) and direct.dtype == bool
    np.testing.assert_array_equal(masks[-1][:, :4], masks[-1][:, 4:])   # blocks: one per output parameter
    layers = [MaskedLinear(*m.shape, mask=m) for m in masks]
    assert [layer.weight.shape for layer in layers] == [m.shape for m in masks]


def test_three_input_example_of_the_docstring():
    degrees = made_degrees(3, [4])
    np.testing.assert_array_equal(degrees[1], [1, 2, 1, 2])
    (m1, mv), _ = made_masks(degrees)
    np.testing.assert_array_equal(m1, [[1, 1, 1, 1], [0, 1, 0, 1], [0, 0, 0, 0]])
    np.testing.assert_array_equal(mv, [[0, 1, 1], [0, 0, 1], [0, 1, 1], [0, 0, 1]])


@pytest.mark.parametrize("d, c", [(5, 1), (5, 3), (8, 2)])
def test_connection_counts_natural(d, c):
    """Natural ordering and connectivity with H = c (D - 1): every degree 1..D-1 occurs c
    times, so  #M^1 = c sum_m m = c D(D-1)/2,  #M^2 = c^2 D(D-1)/2,  #M^V = c D(D-1)/2,
    and the direct mask is the strictly lower triangle, D(D-1)/2."""
    h = c * (d - 1)
    (m1, m2, mv), direct = made_masks(made_degrees(d, [h, h]), direct=True)
    tri = d * (d - 1) // 2
    assert (m1.sum(), m2.sum(), mv.sum(), direct.sum()) == (c * tri, c * c * tri, c * tri, tri)


def test_connection_counts_any_connectivity():
    """Natural ordering: input d feeds unit k iff d <= m(k) (m(k) inputs) and unit k feeds
    output d iff d > m(k) (D - m(k) outputs)."""
    d = 6
    degrees = made_degrees(d, [9, 4], connectivity="random", rng=np.random.default_rng(4))
    (m1, m2, mv), _ = made_masks(degrees)
    assert m1.sum() == degrees[1].sum()
    assert mv.sum() == (d - degrees[2]).sum()
    assert m2.sum() == sum((degrees[1] <= m).sum() for m in degrees[2])


# ----------------------------------------------------------------------------- resampling

def test_fresh_resampling_changes_masks_and_keeps_the_property():
    rng = np.random.default_rng(5)
    masks = MADEMasks(6, [10, 10], "random", "random", direct=True, rng=rng)
    layers, direct = build_layers(masks, rng)
    seen = set()
    for _ in range(4):
        before = [m.copy() for m in masks.masks]
        masks.resample().apply(layers, direct)
        assert any(not np.array_equal(a, b) for a, b in zip(before, masks.masks))
        seen.add(tuple(masks.ordering.tolist()))
        dep = dependency(masks, layers, direct, rng)
        assert not (dep & ~allowed(masks.ordering, 1)).any()
        np.testing.assert_array_equal(dep, paths(masks))
    assert len(seen) > 1


def test_fixed_set_cycles_and_samples():
    masks = MADEMasks(5, [8], "random", "random", n_masks=3, rng=np.random.default_rng(6))
    first = [d.copy() for d in masks.degrees]
    assert masks.index == 0
    masks.resample()
    assert masks.index == 1 and not all(np.array_equal(a, b) for a, b in zip(first, masks.degrees))
    masks.resample().resample()
    assert masks.index == 0
    assert all(np.array_equal(a, b) for a, b in zip(first, masks.degrees))
    picks = {masks.resample(np.random.default_rng(s)).index for s in range(20)}
    assert picks == {0, 1, 2}
    with pytest.raises(IndexError, match="out of range for 3 mask sets"):
        masks.select(3)


def test_natural_masks_stay_fixed():
    masks = MADEMasks(4, [6], n_masks=2)
    a = [m.copy() for m in masks.masks]
    masks.resample()
    assert all(np.array_equal(x, y) for x, y in zip(a, masks.masks))


def test_masked_weights_keep_their_values_across_resampling():
    layer = MaskedLinear(3, 4, rng=np.random.default_rng(0), dtype="float64")
    w = layer.weight.numpy().copy()
    layer.set_mask(np.zeros((3, 4)))
    layer.set_mask(np.ones((3, 4)))
    np.testing.assert_array_equal(layer.weight.numpy(), w)


# ----------------------------------------------------------------------------- MaskedLinear

def test_masked_linear_forward(device):
    rng = np.random.default_rng(7)
    mask = rng.random((5, 3)) < 0.5
    layer = MaskedLinear(5, 3, mask=mask, rng=rng, dtype="float64", device=device)
    x = rng.standard_normal((4, 5))
    y = layer(td.tensor(x, device=device))
    assert y.device == device and layer.mask.dtype == np.float64
    w, b = layer.weight.numpy(), layer.bias.numpy()
    np.testing.assert_allclose(y.numpy(), x @ (w * mask) + b, rtol=1e-12, atol=1e-12)


def test_masked_linear_gradients():
    rng = np.random.default_rng(8)
    mask = rng.random((4, 3)) < 0.5
    layer = MaskedLinear(4, 3, mask=mask, rng=rng, dtype="float64")
    x = f64(rng.standard_normal((2, 4)))
    fn = lambda x, w, b: td.tanh(with_params(layer, x, weight=w, bias=b))  # noqa: E731
    td.gradcheck(fn, [x, layer.weight, layer.bias])
    td.gradgradcheck(fn, [x, layer.weight, layer.bias])
    layer.zero_grad()
    (layer(x) ** 2).sum().backward()
    assert (layer.weight.grad.numpy()[~mask] == 0).all()        # masked weights: zero gradient
    assert (layer.weight.grad.numpy()[mask] != 0).all()


def test_mask_is_saved_and_loaded():
    layer = MaskedLinear(3, 2, mask=np.array([[1, 0], [1, 1], [0, 0]]))
    other = MaskedLinear(3, 2)
    assert other.mask.all()
    other.load_state_dict(layer.state_dict())
    np.testing.assert_array_equal(other.mask, layer.mask)
    assert "connections=3" in repr(layer)


# ----------------------------------------------------------------------------- errors

def test_bad_mask_shape():
    layer = MaskedLinear(4, 3)
    with pytest.raises(ValueError, match=r"mask must have shape \(in_features, out_features\) = \(4, 3\), "
                                         r"got \(3, 4\) \(transposed\?"):
        layer.set_mask(np.ones((3, 4)))
    with pytest.raises(ValueError, match=r"got \(4,\)"):
        MaskedLinear(4, 3, mask=np.ones(4))
    with pytest.raises(ValueError, match="mask entries must be 0 or 1"):
        layer.set_mask(np.full((4, 3), 0.5))


def test_bad_degrees_arguments():
    with pytest.raises(ValueError, match=r"natural connectivity needs at least D - 1 = 4 units in hidden "
                                         r"layer 2 \(D = 5 inputs\), got 3"):
        made_degrees(5, [8, 3])
    made_degrees(5, [8, 3], connectivity="random")                    # allowed: random degrees
    with pytest.raises(ValueError, match="ordering must be"):
        made_degrees(3, [4], ordering="reversed")
    with pytest.raises(ValueError, match=r"permutation of 1..3"):
        made_degrees(3, [4], ordering=np.array([0, 1, 2]))
    with pytest.raises(ValueError, match=r"permutation of 1..3"):
        made_degrees(3, [4], ordering=np.array([1, 2]))
    with pytest.raises(ValueError, match="connectivity must be"):
        made_degrees(3, [4], connectivity="full")
    with pytest.raises(ValueError, match="n_inputs must be a positive int"):
        made_degrees(0, [4])
    with pytest.raises(ValueError, match=r"hidden_sizes\[1\] must be a positive int"):
        made_degrees(3, [4, 0])
    with pytest.raises(TypeError, match="hidden_sizes must be a list or tuple"):
        made_degrees(3, 4)
    with pytest.raises(ValueError, match="outputs_per_input must be a positive int"):
        made_masks(made_degrees(3, [4]), outputs_per_input=0)


def test_apply_errors():
    masks = MADEMasks(3, [4])
    with pytest.raises(ValueError, match="2 masks .* but 1 layers"):
        masks.apply([MaskedLinear(3, 4)])
    with pytest.raises(ValueError, match="direct=False"):
        masks.apply([MaskedLinear(3, 4), MaskedLinear(4, 3)], MaskedLinear(3, 3))
    with pytest.raises(ValueError, match="no fixed set"):
        masks.select(0)
    with pytest.raises(ValueError, match="input has 2 features"):
        MaskedLinear(3, 4)(td.tensor(np.ones((1, 2))))
