"""The autoregressive property, checked two ways (Germain et al. 2015, MADE, sec. 3;
intro lecture eq. 42: p(x) = prod_d p(x_d | x_<d), so the outputs for x_d may depend on
x_<d only).

    dependency_matrix(fn, x)          dep[o, i]: output o moves with input i (engine Jacobian at x)
    mask_path_dependencies(masks)     dep[o, i]: a path of unmasked weights joins input i to output o
    check_autoregressive(dep, order)  every violation and every missing allowed dependency
    assert_autoregressive(fn, x, order)          the Jacobian check (any network, any framework
                                                  through tinydgm.interop)
    assert_autoregressive_masks(masks, order)    the exact check for masked networks

The Jacobian check sees only the paths that are active at x: a ReLU that is off cuts a
path, so an allowed dependency can look missing (never the other way round: a violation
found by the Jacobian is real). It sums |J| over a batch to make that unlikely, and its
report says so when it lists missing dependencies. The mask-path check is exact: output o
depends on input i for SOME weights exactly when the boolean product of the masks
M^1 M^2 ... M^V (plus the direct mask M^A) has a 1 at (i, o).

Outputs come in blocks of D (``outputs_per_input`` = K: columns [k D, (k + 1) D) are the
k-th parameter of every conditional, e.g. [mu | log_scale]); ``order[i]`` is the position
of input i in the ordering (MADE's m^0 - 1, or m^0 itself: only comparisons matter).
"""
from tinydgm import backend
from tinydgm.autodiff.core import Tensor
from tinydgm.autodiff.gradcheck import jacobian
from tinydgm.testing.arrays import cpu as _cpu, host as _host

__all__ = ["AutoregressiveError", "AutoregressiveReport", "dependency_matrix", "mask_path_dependencies",
           "check_autoregressive", "assert_autoregressive", "assert_autoregressive_masks"]

_SHOWN = 20          # violations listed in full in a message; the rest are counted


class AutoregressiveError(AssertionError):
    """An output depends on an input it must not see (or, with ``complete=True``, misses one
    it may see); the message lists every one of them."""


def dependency_matrix(fn, x):
    """dep[o, i] = True when output o of ``fn`` (flattened per example) depends on input i,
    from the engine's Jacobian of fn at the float64 batch ``x`` (N, *shape); |J| is summed
    over the batch so one unlucky zero (a ReLU that is off) does not hide a dependency."""
    xp = _cpu()
    x = Tensor(xp.asarray(_host(x), dtype="float64"), requires_grad=True)
    n = x.shape[0]
    with backend.default_dtype("float64"):
        jac = jacobian(lambda t: fn(t).reshape(n, -1), x)           # (N, O, N, *shape)
    jac = xp.abs(backend.to_numpy(jac).reshape(n, jac.shape[1], n, -1))
    per_example = xp.stack([jac[k, :, k, :] for k in range(n)])     # (N, O, I)
    return per_example.sum(axis=0) > 0


def mask_path_dependencies(masks, direct_mask=None):
    """dep[o, i] = True when a path of unmasked connections joins input i to output o.

    masks: [M^1, ..., M^L, M^V] in the (in, out) layout of tinydgm's Linear (a MADE's
    ``[layer.mask for layer in model.layers]``; transpose PyTorch's (out, in) masks);
    direct_mask: M^A (in, out) or None. Reachability is the boolean matrix product
    M^1 M^2 ... M^V, or-ed with M^A; returned as (outputs, inputs).
    """
    xp = _cpu()
    masks = [_host(m) != 0 for m in masks]
    if not masks:
        raise ValueError("mask_path_dependencies: masks must hold at least one (in, out) mask")
    reach = masks[0]
    for l, m in enumerate(masks[1:], 2):
        if m.shape[0] != reach.shape[1]:
            raise ValueError(f"mask_path_dependencies: mask {l} has shape {m.shape} (in, out) but the previous "
                             f"one has {reach.shape[1]} outputs" + (" (transposed? the layout is (in, out))"
                                                                     if m.shape[1] == reach.shape[1] else ""))
        reach = (reach.astype(xp.int64) @ m.astype(xp.int64)) > 0
    if direct_mask is not None:
        direct_mask = _host(direct_mask) != 0
        if direct_mask.shape != reach.shape:
            raise ValueError(f"mask_path_dependencies: direct_mask has shape {direct_mask.shape}, expected "
                             f"(inputs, outputs) = {reach.shape}")
        reach = reach | direct_mask
    return reach.T


class AutoregressiveReport:
    """What ``check_autoregressive`` found.

    violations: (output, input) pairs where the output depends on an input at or after its
    own position (forbidden). missing: (output, input) pairs where an allowed dependency
    is absent. dep: the (outputs, inputs) dependency matrix checked.
    """

    def __init__(self, dep, order, outputs_per_input, violations, missing, source):
        self.dep, self.order, self.outputs_per_input = dep, order, outputs_per_input
        self.violations, self.missing, self.source = violations, missing, source

    @property
    def ok(self):
        return not self.violations

    def _describe(self, pairs):
        d_in = len(self.order)
        by_output = {}
        for o, i in pairs:
            by_output.setdefault(o, []).append(i)
        lines = []
        for o, inputs in list(by_output.items())[:_SHOWN]:
            d = o % d_in
            block = "" if self.outputs_per_input == 1 else f", parameter block {o // d_in}"
            lines.append(f"  output {o} (input {d} at position {int(self.order[d])}{block}): inputs {inputs}")
        if len(by_output) > _SHOWN:
            lines.append(f"  ... and {len(by_output) - _SHOWN} more outputs")
        return "\n".join(lines)

    def message(self, complete=False):
        parts = []
        if self.violations:
            parts.append(f"{len(self.violations)} forbidden dependencies (an output sees an input at or after "
                         f"its own position):\n{self._describe(self.violations)}")
        if complete and self.missing:
            caveat = ("" if self.source == "masks" else
                      "\n  (from a point-wise Jacobian: a ReLU that is off at every example cuts a path, so an "
                      "allowed dependency can look missing; check masked networks exactly with "
                      "assert_autoregressive_masks, or use more or other examples)")
            parts.append(f"{len(self.missing)} allowed dependencies are missing:\n"
                         f"{self._describe(self.missing)}{caveat}")
        return "\n".join(parts)

    def __repr__(self):
        return (f"AutoregressiveReport({len(self.violations)} violations, {len(self.missing)} missing allowed "
                f"dependencies, dep {self.dep.shape})")


def check_autoregressive(dep, order, outputs_per_input=1, source="jacobian"):
    """Compare a dependency matrix dep (outputs, inputs) with the ordering: output o (input
    d = o mod D) may depend on input i exactly when order[i] < order[d]. Returns an
    AutoregressiveReport listing every violation and every missing allowed dependency."""
    xp = _cpu()
    order = xp.asarray(_host(order))
    d_in = len(order)
    if dep.shape != (d_in * outputs_per_input, d_in):
        raise AutoregressiveError(f"the function has {dep.shape[0]} outputs and {dep.shape[1]} inputs per example, "
                                  f"expected {d_in} x {outputs_per_input} outputs and {d_in} inputs "
                                  f"(order has {d_in} entries, outputs_per_input={outputs_per_input})")
    d_of_output = xp.arange(dep.shape[0]) % d_in
    allowed = order[None, :] < order[d_of_output][:, None]                  # (outputs, inputs)
    violations = [(int(o), int(i)) for o, i in zip(*xp.nonzero(dep & ~allowed))]
    missing = [(int(o), int(i)) for o, i in zip(*xp.nonzero(~dep & allowed))]
    return AutoregressiveReport(dep, order, outputs_per_input, violations, missing, source)


def assert_autoregressive(fn, x, order, outputs_per_input=1, complete=False):
    """Output block d of ``fn`` depends only on inputs strictly before d in ``order``, from
    the engine's Jacobian at the batch x (see ``dependency_matrix``). complete=True also
    requires every allowed dependency (mind the ReLU caveat of the module docstring).
    Raises AutoregressiveError listing every failure; returns the dependency matrix
    (outputs, inputs) (``check_autoregressive`` gives the full report without raising)."""
    report = check_autoregressive(dependency_matrix(fn, x), order, outputs_per_input, "jacobian")
    if report.violations or (complete and report.missing):
        raise AutoregressiveError(report.message(complete))
    return report.dep


def assert_autoregressive_masks(masks, order, outputs_per_input=1, direct_mask=None, complete=False):
    """The exact check for masked networks: path reachability through the masks (see
    ``mask_path_dependencies``) against the ordering. complete=True also requires a path
    for every allowed dependency (true of natural connectivity; random hidden degrees may
    leave some out by design). Raises AutoregressiveError listing every failure; returns
    the dependency matrix (outputs, inputs)."""
    report = check_autoregressive(mask_path_dependencies(masks, direct_mask), order, outputs_per_input, "masks")
    if report.violations or (complete and report.missing):
        raise AutoregressiveError(report.message(complete))
    return report.dep
