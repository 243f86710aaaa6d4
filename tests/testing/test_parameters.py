"""tinydgm.testing.parameters: a layer's weights swapped for checked inputs while a function
runs, and the originals back afterwards, also when the function raises."""
import numpy as np
import pytest

import tinydgm as td
from tinydgm.nn import Linear
from tinydgm.testing import swap_parameters, swapped_weights, with_params


def test_swapped_weights_are_used_inside_and_restored_after_an_error():
    layers = [Linear(3, 2, dtype="float64"), Linear(2, 1, dtype="float64")]
    originals = [layer.weight for layer in layers]
    zeros = [td.tensor(np.zeros(layer.weight.shape)) for layer in layers]
    x = td.tensor(np.ones((4, 3)))
    with swapped_weights(layers, zeros):
        h = layers[0](x)
        assert np.array_equal(h.numpy(), np.broadcast_to(layers[0].bias.numpy(), (4, 2)))
    assert all(layer.weight is w for layer, w in zip(layers, originals))
    with pytest.raises(RuntimeError, match="inside"):
        with swapped_weights(layers, zeros):
            raise RuntimeError("inside")
    assert all(layer.weight is w for layer, w in zip(layers, originals))


def test_with_params_and_swap_parameters_restore_the_originals():
    layer = Linear(3, 2, dtype="float64")
    weight = layer.weight
    w = td.tensor(np.eye(3, 2))
    x = td.tensor(np.ones((1, 3)))
    y = with_params(layer, x, weight=w)
    np.testing.assert_allclose(y.numpy(), np.ones((1, 3)) @ np.eye(3, 2) + layer.bias.numpy())
    assert layer.weight is weight
    saved = swap_parameters(layer, {"weight": w})
    assert layer.weight is w and saved["weight"] is weight
    swap_parameters(layer, saved)
    assert layer.weight is weight
