"""The shared contract every flow transform goes through (issue 6):

    assert_flow_transform(transform, x, rtol=1e-6)

checks, in float64 (the transform's parameters and x must be float64):

1. invertibility: inverse(forward(x)) == x to ``rtol`` relative (atol = rtol * max|x|, so
   entries near zero are judged on the scale of the data);
2. forward's log_det has shape (N,) and equals ``brute_force_log_det`` (the engine's
   Jacobian, slogdet per example) to ``logdet_rtol``;
3. inverse's log_det at z = forward(x) is minus forward's log_det;
4. gradcheck of a log_prob-like per-example value  -0.5 |z|^2 + log_det  through ``forward``
   with respect to x and every parameter of the transform (``gradcheck_params=False`` skips
   the parameters, e.g. for a very large flow).

Transforms with batch statistics (BatchNorm in training mode) couple the examples: put
them in evaluation mode before calling this. ActNorm initialises itself on the first batch
seen, which is x here.
"""
import numpy as np

import tinydgm as td
from tinydgm.models.flows import brute_force_log_det, sum_per_example

__all__ = ["assert_flow_transform", "swap_parameters"]


def _float64_tensor(x):
    if isinstance(x, td.Tensor):
        if x.dtype != np.float64:
            raise TypeError(f"assert_flow_transform: x must be float64, got {x.dtype}")
        return x
    return td.tensor(np.asarray(x, dtype=np.float64), dtype="float64")


def swap_parameters(module, values):
    """Context-free helper: set the module's parameters (dotted name -> Tensor) and return
    the saved originals, so ``swap_parameters(module, saved)`` restores them."""
    saved = {}
    for name, value in values.items():
        owner, attr = module._owner(name)
        saved[name] = getattr(owner, attr)
        object.__setattr__(owner, attr, value)
    return saved


def assert_flow_transform(transform, x, rtol=1e-6, logdet_rtol=1e-7, gradcheck_params=True):
    """Assert the flow-transform contract (see the module docstring) at the batch x."""
    x = _float64_tensor(x)
    for name, p in transform.named_parameters():
        if p.dtype != np.float64:
            raise TypeError(f"assert_flow_transform: parameter {name} must be float64, got {p.dtype}")
    n = x.shape[0]

    # 1. invertibility (also initialises data-dependent layers such as ActNorm on x)
    with td.no_grad():
        z, log_det = transform(x)
        x_back, inv_log_det = transform.inverse(z)
    x_np = x.numpy()
    assert tuple(x_back.shape) == tuple(x.shape), f"inverse returned shape {x_back.shape}, expected {x.shape}"
    scale = max(float(np.abs(x_np).max()), 1e-300)
    np.testing.assert_allclose(x_back.numpy(), x_np, rtol=rtol, atol=rtol * scale,
                               err_msg=f"{type(transform).__name__}: inverse(forward(x)) != x")

    # 2. log_det against the engine's Jacobian
    assert tuple(log_det.shape) == (n,), f"log_det must have shape ({n},), got {log_det.shape}"
    brute = brute_force_log_det(lambda t: transform(t)[0], x)
    np.testing.assert_allclose(log_det.numpy(), td.tensor(brute).numpy(), rtol=logdet_rtol, atol=1e-9,
                               err_msg=f"{type(transform).__name__}: log_det != brute-force log|det J|")

    # 3. inverse's log_det is minus forward's
    assert tuple(inv_log_det.shape) == (n,), f"inverse log_det must have shape ({n},), got {inv_log_det.shape}"
    np.testing.assert_allclose(inv_log_det.numpy(), -log_det.numpy(), rtol=logdet_rtol, atol=1e-9,
                               err_msg=f"{type(transform).__name__}: inverse log_det != -forward log_det")

    # 4. gradcheck of a log_prob-like value w.r.t. x and the parameters
    names = [name for name, _ in transform.named_parameters()] if gradcheck_params else []
    params = dict(transform.named_parameters())

    def log_prob_like(x_, *ps):
        saved = swap_parameters(transform, dict(zip(names, ps)))
        try:
            z_, log_det_ = transform(x_)
        finally:
            swap_parameters(transform, saved)
        return -0.5 * sum_per_example(z_ * z_) + log_det_

    inputs = [td.tensor(x_np, dtype="float64", requires_grad=True)]
    inputs += [td.tensor(params[name].numpy(), dtype="float64", requires_grad=True) for name in names]
    td.gradcheck(log_prob_like, inputs)


def density_on_grid_2d(flow, half_width, n):
    """(p, total, points): the flow's density on an n x n grid over [-half_width, half_width]^2
    (float64), its trapezoid integral, and the (n^2, 2) grid points: every 2-D flow's
    normalisation check."""
    xs = np.linspace(-half_width, half_width, n)
    gx, gy = np.meshgrid(xs, xs)
    points = np.stack([gx.ravel(), gy.ravel()], axis=1)
    with td.no_grad():
        p = np.exp(flow.log_prob(td.tensor(points, dtype="float64")).numpy()).reshape(gx.shape)
    return p, np.trapezoid(np.trapezoid(p, xs, axis=1), xs), points
