"""The contract every flow transform goes through (Rezende & Mohamed 2015; Dinh et al.
2017; intro lecture part II, the change of variables log p(x) = log p(z) + log |det dz/dx|):

    assert_flow_transform(transform, x)

checks, in float64:

1. invertibility: inverse(forward(x)) == x to ``rtol`` relative (atol = rtol * max|x|, so
   entries near zero are judged on the scale of the data);
2. forward's log_det has shape (N,) and equals ``brute_force_log_det`` (log |det J| from the
   engine's Jacobian, slogdet per example) to ``logdet_rtol``;
3. inverse's log_det at z = forward(x) is minus forward's log_det;
4. gradcheck of a log_prob-like per-example value  -0.5 |z|^2 + log_det  through ``forward``
   with respect to x and every parameter of the transform (``gradcheck_params=False``
   skips the parameters, e.g. for a very large flow, or a foreign one).

``transform(x) -> (z, log_det)`` and ``transform.inverse(z) -> (x, log_det)`` as in
tinydgm.models.flows; a PyTorch transform goes through ``tinydgm.interop.torch_transform``.
Other libraries return log-dets of other shapes: ``log_det_shape="any"`` accepts (N, 1)
and per-dimension (N, D, ...) log-dets and sums them per example. ``collect=True`` runs
every check and raises one error listing every failure (default: the first one raises).

Transforms with batch statistics (BatchNorm in training mode) couple the examples: put
them in evaluation mode first. ActNorm initialises itself on the first batch it sees,
which is x here.
"""
from tinydgm import backend
from tinydgm.autodiff.core import Tensor, no_grad
from tinydgm.autodiff.gradcheck import GradcheckError, gradcheck
from tinydgm.testing.arrays import cpu as _cpu, host as _host
from tinydgm.testing.parameters import swap_parameters

__all__ = ["FlowContractError", "assert_flow_transform", "density_on_grid_2d"]

FLOAT64 = "float64"


class FlowContractError(AssertionError):
    """A flow transform broke its contract; the message names every failed check."""


def _float64_tensor(x):
    if isinstance(x, Tensor):
        if x.dtype != FLOAT64:
            raise TypeError(f"assert_flow_transform: x must be float64, got {x.dtype}")
        return x
    return Tensor(_host(x).astype(FLOAT64))


def _per_example(log_det, n, what, shape_rule):
    """log_det as (N,): exactly that shape, or with shape_rule="any" summed over trailing axes."""
    shape = tuple(log_det.shape)
    if shape == (n,):
        return log_det
    if shape_rule == "any" and len(shape) >= 1 and shape[0] == n:
        return log_det.reshape(n, -1).sum(axis=1)
    hint = "" if shape_rule == "any" else ' (log_det_shape="any" accepts (N, 1) and per-dimension log-dets)'
    raise FlowContractError(f"{what} must have shape ({n},), got {shape}{hint}")


def _close(actual, desired, rtol, atol):
    """(ok, worst index, worst |actual - desired|)."""
    xp = _cpu()
    err = xp.abs(actual - desired)
    bad = ~(err <= atol + rtol * xp.abs(desired))
    worst = int(xp.argmax(xp.where(xp.isnan(err), xp.inf, err))) if err.size else 0
    return not bool(bad.any()), xp.unravel_index(worst, err.shape) if err.size else (), \
        float(err.reshape(-1)[worst]) if err.size else 0.0


def _check_close(name, actual, desired, rtol, atol):
    ok, index, worst = _close(actual, desired, rtol, atol)
    if not ok:
        index = tuple(int(i) for i in index)
        raise FlowContractError(
            f"{name}: largest difference {worst:.3g} at index {index} ({float(actual[index]):.6g} vs "
            f"{float(desired[index]):.6g}; rtol={rtol}, atol={atol:.3g})")


def _named_parameters(transform):
    named = getattr(transform, "named_parameters", None)
    return list(named()) if named is not None else []


def assert_flow_transform(transform, x, rtol=1e-6, logdet_rtol=1e-7, gradcheck_params=True, collect=False,
                          log_det_shape="(N,)"):
    """Assert the flow-transform contract (see the module docstring) at the batch x.

    collect: run every check and raise one FlowContractError naming every failure.
    log_det_shape: "(N,)" (tinydgm's) or "any" (sum trailing axes of (N, ...) log-dets).
    """
    from tinydgm.models.flows.base import brute_force_log_det, sum_per_example

    if log_det_shape not in ("(N,)", "any"):
        raise ValueError(f'assert_flow_transform: log_det_shape must be "(N,)" or "any", got {log_det_shape!r}')
    x = _float64_tensor(x)
    params = _named_parameters(transform)
    for name, p in params:
        if p.dtype != FLOAT64:
            raise TypeError(f"assert_flow_transform: parameter {name} must be float64, got {p.dtype}")
    n = x.shape[0]
    who = getattr(transform, "display_name", None) or type(transform).__name__
    failures = []

    def check(step):
        try:
            step()
        except (AssertionError, GradcheckError) as err:
            if not collect:
                raise
            failures.append(str(err))

    # 1. invertibility (also initialises data-dependent layers such as ActNorm on x)
    with no_grad():
        z, log_det = transform(x)
        x_back, inv_log_det = transform.inverse(z)
    x_np = x.numpy()
    scale = max(float(_cpu().abs(x_np).max()), 1e-300)

    def invertible():
        if tuple(x_back.shape) != tuple(x.shape):
            raise FlowContractError(f"{who}: inverse returned shape {tuple(x_back.shape)}, expected {tuple(x.shape)}")
        _check_close(f"{who}: inverse(forward(x)) != x", x_back.numpy(), x_np, rtol, rtol * scale)

    # 2. log_det against the engine's Jacobian
    def log_det_is_exact():
        forward_ld = _per_example(log_det, n, f"{who}: forward log_det", log_det_shape)
        brute = backend.to_numpy(brute_force_log_det(lambda t: transform(t)[0], x))
        _check_close(f"{who}: log_det != brute-force log|det J|", forward_ld.numpy(), brute, logdet_rtol, 1e-9)

    # 3. inverse's log_det is minus forward's
    def inverse_log_det():
        forward_ld = _per_example(log_det, n, f"{who}: forward log_det", log_det_shape)
        inverse_ld = _per_example(inv_log_det, n, f"{who}: inverse log_det", log_det_shape)
        _check_close(f"{who}: inverse log_det != -forward log_det", inverse_ld.numpy(), -forward_ld.numpy(),
                     logdet_rtol, 1e-9)

    # 4. gradcheck of a log_prob-like value w.r.t. x and the parameters
    names = [name for name, _ in params] if gradcheck_params else []
    values = dict(params)

    def log_prob_like(x_, *ps):
        saved = swap_parameters(transform, dict(zip(names, ps)))
        try:
            z_, log_det_ = transform(x_)
        finally:
            swap_parameters(transform, saved)
        return -0.5 * sum_per_example(z_ * z_) + _per_example(log_det_, n, f"{who}: log_det", log_det_shape)

    def gradients():
        inputs = {"x": Tensor(x_np.copy(), requires_grad=True)}
        inputs.update((name, Tensor(values[name].numpy().copy(), requires_grad=True)) for name in names)
        gradcheck(lambda **kw: log_prob_like(kw["x"], *(kw[name] for name in names)), inputs)

    for step in (invertible, log_det_is_exact, inverse_log_det, gradients):
        check(step)
    if failures:
        raise FlowContractError(f"{who} broke {len(failures)} of 4 flow-contract checks:\n"
                                + "\n".join(f"  - {f}" for f in failures))


def density_on_grid_2d(flow, half_width, n):
    """(p, total, points): the flow's density on an n x n grid over [-half_width, half_width]^2
    (float64), its trapezoid integral, and the (n^2, 2) grid points: every 2-D flow's
    normalisation check."""
    xp = _cpu()
    xs = xp.linspace(-half_width, half_width, n)
    gx, gy = xp.meshgrid(xs, xs)
    points = xp.stack([gx.ravel(), gy.ravel()], axis=1)
    with no_grad():
        p = xp.exp(flow.log_prob(Tensor(points.astype(FLOAT64))).numpy()).reshape(gx.shape)
    return p, xp.trapezoid(xp.trapezoid(p, xs, axis=1), xs), points
