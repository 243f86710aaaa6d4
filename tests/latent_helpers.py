"""Set-up shared by the latent-variable model tests (tests/models/latent/): running a model
on gradcheck's copies of its parameters, and the check that a bad batch is rejected and
changes nothing.

    with_parameter_values(model, values, fn)   fn() with the parameters swapped for ``values``
    with_parameters(model, fn)                 (call, inputs): fn as a function of float64 copies
    assert_bad_batch_rejected(model, calls, bad, message, fit_batch=None)
"""
import numpy as np
import pytest

import tinydgm as td


def with_parameter_values(model, values, fn):
    """fn() with the model's parameters (``named_parameters`` order, nested modules too)
    replaced by the Tensors ``values`` (gradcheck inputs); the Parameters are put back after."""
    owners = [model._owner(name) for name, _ in model.named_parameters()]
    saved = [getattr(module, attr) for module, attr in owners]
    try:
        for (module, attr), value in zip(owners, values):
            object.__setattr__(module, attr, value)
        return fn()
    finally:
        for (module, attr), old in zip(owners, saved):
            object.__setattr__(module, attr, old)


def with_parameters(model, fn):
    """fn() as a function of fresh float64 copies of the model's parameters (gradcheck's inputs)."""
    inputs = [td.tensor(p.numpy(), dtype="float64", requires_grad=True) for p in model.parameters()]
    return (lambda *values: with_parameter_values(model, values, fn)), inputs


def parameters_of(model):
    return [p.numpy().copy() for p in model.parameters()]


def assert_bad_batch_rejected(model, calls, bad, message, fit_batch=None):
    """Every call(bad) and one epoch of train.fit on ``fit_batch`` (``bad`` itself by default)
    raise a ValueError matching ``message``, and leave the parameters and their gradients as
    they were."""
    before = parameters_of(model)
    for call in calls:
        with pytest.raises(ValueError, match=message):
            call(bad)
    optimizer = td.optim.Adam(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match=message):
        td.train.fit(model, bad if fit_batch is None else fit_batch, optimizer, epochs=1, batch_size=3, seed=0,
                     progress=False)
    for a, b in zip(before, parameters_of(model)):
        np.testing.assert_array_equal(a, b)
    assert all(p.grad is None for p in model.parameters())
