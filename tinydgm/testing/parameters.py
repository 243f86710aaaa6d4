"""Swap a module's parameters for other tensors while a function runs: the checked inputs
of a gradcheck with respect to a layer's weights.

    gradcheck(lambda x, w: with_params(layer, x, weight=w), [x, w])
"""
__all__ = ["with_params", "swap_parameters"]


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
