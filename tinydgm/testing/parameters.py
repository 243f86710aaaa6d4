"""Swap a module's parameters for other tensors while a function runs: the checked inputs
of a gradcheck with respect to a layer's weights.

    gradcheck(lambda x, w: with_params(layer, x, weight=w), [x, w])
"""
import contextlib

__all__ = ["with_params", "swap_parameters", "swapped_weights"]


def with_params(layer, x, **params):
    """layer(x) with some attributes (parameters) replaced by the given tensors, restored after."""
    saved = {name: getattr(layer, name) for name in params}
    for name, value in params.items():
        setattr(layer, name, value)
    try:
        return layer(x)
    finally:
        for name, value in saved.items():
            setattr(layer, name, value)


def swap_parameters(module, values):
    """Set the module's parameters (dotted name -> Tensor) and return the saved originals,
    so that ``swap_parameters(module, saved)`` restores them."""
    saved = {}
    for name, value in values.items():
        owner, attr = module._owner(name)
        saved[name] = getattr(owner, attr)
        object.__setattr__(owner, attr, value)
    return saved


@contextlib.contextmanager
def swapped_weights(layers, weights, name="weight"):
    """Within the block, ``layers[i].<name>`` is ``weights[i]`` (checked inputs of a gradcheck of a
    whole model with respect to some of its layers' weights); the originals come back after."""
    saved = [getattr(layer, name) for layer in layers]
    for layer, w in zip(layers, weights):
        object.__setattr__(layer, name, w)
    try:
        yield
    finally:
        for layer, w in zip(layers, saved):
            object.__setattr__(layer, name, w)
