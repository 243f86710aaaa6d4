"""Two implementations of the same function, side by side in float64: values, gradients
and one Hessian-vector product, per output and per input.

    report = compare(ours.log_prob, from_torch(theirs.log_prob), {"x": x})
    print(report)                        # the table
    report.assert_close(rtol=1e-10)      # raises with the table when they differ

For each output y_k (k = 0..K-1) of both functions, with a random v_k and random u_i
drawn once from ``seed`` (the same for both sides):

    value      y_k
    gradient   g_ki = d<v_k, y_k>/dx_i                      (a vector-Jacobian product)
    hvp        h_ki = d/dx_i sum_j <g_kj, u_j>              (Hessian of <v_k, y_k> times u)

and the table lists, per row, the largest |a - b|, the largest |a| and their ratio.
Functions of another framework enter through tinydgm.interop.from_torch (a torch Module
passed directly is wrapped automatically).
"""
from tinydgm import backend
from tinydgm.autodiff.core import Tensor, grad
from tinydgm.testing.arrays import cpu as _cpu, host as _host

__all__ = ["Comparison", "compare"]

FLOAT64 = "float64"


def _as_function(fn):
    from tinydgm import interop
    return interop.from_torch(fn) if interop.is_torch_module(fn) else fn


def _as_outputs(ys):
    return list(ys) if isinstance(ys, (tuple, list)) else [ys]


class Comparison:
    """The rows of ``compare``: dicts with quantity ("value", "gradient", "hvp"), output,
    input, max_abs_diff, max_abs (the scale of side a) and rel (diff / scale)."""

    def __init__(self, rows, names):
        self.rows, self.names = rows, names

    def worst(self, quantity=None):
        rows = [r for r in self.rows if quantity is None or r["quantity"] == quantity]
        return max((r["max_abs_diff"] for r in rows), default=0.0)

    def failures(self, rtol=1e-10, atol=1e-12):
        """Rows where max |a - b| > atol + rtol max |a| (NaN counts as a failure)."""
        return [r for r in self.rows if not r["max_abs_diff"] <= atol + rtol * r["max_abs"]]

    def ok(self, rtol=1e-10, atol=1e-12):
        return not self.failures(rtol, atol)

    def assert_close(self, rtol=1e-10, atol=1e-12):
        """Raise AssertionError with the table (failing rows marked) unless every row agrees."""
        bad = self.failures(rtol, atol)
        if bad:
            raise AssertionError(f"{self.names[0]} and {self.names[1]} differ in {len(bad)} of {len(self.rows)} "
                                 f"rows (rtol={rtol}, atol={atol}):\n{self.table(rtol, atol)}")
        return self

    def table(self, rtol=1e-10, atol=1e-12):
        bad = {id(r) for r in self.failures(rtol, atol)}
        lines = [f"{'quantity':<9} {'output':<7} {'input':<14} {'max |a-b|':>10} {'max |a|':>10} {'rel':>10}"]
        for r in self.rows:
            lines.append(f"{r['quantity']:<9} {r['output']:<7} {r['input']:<14} {r['max_abs_diff']:>10.3g} "
                         f"{r['max_abs']:>10.3g} {r['rel']:>10.3g}" + ("  <- differs" if id(r) in bad else ""))
        return "\n".join(lines)

    def __str__(self):
        return self.table()

    def __repr__(self):
        return f"Comparison({len(self.rows)} rows, worst |a - b| {self.worst():.3g})"


def _leaves(inputs):
    """(names, float64 leaf Tensors) from a dict, a sequence or one array/Tensor; floating
    inputs require grad unless given as a Tensor with requires_grad=False (data)."""
    if isinstance(inputs, dict):
        names, values = [str(k) for k in inputs], list(inputs.values())
    else:
        values = list(inputs) if isinstance(inputs, (tuple, list)) else [inputs]
        names = [str(i) for i in range(len(values))]
    out = []
    for v in values:
        wants_grad = v.requires_grad if isinstance(v, Tensor) else True
        data = _host(v)
        if backend.is_floating(data.dtype):
            out.append((data.astype(FLOAT64), wants_grad))
        else:
            out.append((data, False))
    return names, out


def _evaluate(fn, arrays, vs, us, grads, hvp):
    """Values, gradients and HVPs of one side, as host arrays: values[k], g[k][i], h[k][i]."""
    xs = [Tensor(a.copy(), requires_grad=r) for a, r in arrays]
    checked = [i for i, (_, r) in enumerate(arrays) if r]
    ys = _as_outputs(fn(*xs))
    values = [y.numpy() for y in ys]
    gradients, hvps = [], []
    for k, y in enumerate(ys):
        if not (grads or hvp) or not y.requires_grad or not checked:
            gradients.append({}), hvps.append({})
            continue
        v = Tensor(vs[k])
        gs = grad((y * v).sum(), [xs[i] for i in checked], create_graph=hvp, retain_graph=True,
                  allow_unused=True)
        gradients.append({i: (_cpu().zeros(xs[i].shape) if g is None else g.numpy()) for i, g in zip(checked, gs)})
        if not hvp:
            hvps.append({})
            continue
        terms = [(g * Tensor(us[i])).sum() for i, g in zip(checked, gs) if g is not None and g.requires_grad]
        if not terms:
            hvps.append({i: _cpu().zeros(xs[i].shape) for i in checked})
            continue
        total = terms[0]
        for t in terms[1:]:
            total = total + t
        # retain_graph: the outputs share the forward graph, and the next output still needs it
        hs = grad(total, [xs[i] for i in checked], retain_graph=True, allow_unused=True)
        hvps.append({i: (_cpu().zeros(xs[i].shape) if h is None else h.numpy()) for i, h in zip(checked, hs)})
    return values, gradients, hvps


def _row(quantity, output, input_name, a, b):
    xp = _cpu()
    a, b = xp.asarray(a, dtype=FLOAT64), xp.asarray(b, dtype=FLOAT64)
    if a.shape != b.shape:
        raise ValueError(f"compare: {quantity} of output {output}" + (f" w.r.t. input {input_name}" if input_name
                                                                      else "") +
                         f" has shape {a.shape} on one side and {b.shape} on the other")
    diff = float(xp.abs(a - b).max()) if a.size else 0.0
    scale = float(xp.abs(a).max()) if a.size else 0.0
    return {"quantity": quantity, "output": output, "input": input_name or "-", "max_abs_diff": diff,
            "max_abs": scale, "rel": diff / scale if scale > 0 else diff}


def _check_outputs(ys_a, ys_b, names):
    if len(ys_a) != len(ys_b):
        raise ValueError(f"compare: {names[0]} returns {len(ys_a)} outputs but {names[1]} returns {len(ys_b)}")
    for k, (a, b) in enumerate(zip(ys_a, ys_b)):
        if tuple(a.shape) != tuple(b.shape):
            raise ValueError(f"compare: value of output {k} has shape {tuple(a.shape)} on one side ({names[0]}) and "
                             f"{tuple(b.shape)} on the other ({names[1]})")


def compare(fn_a, fn_b, inputs, grads=True, hvp=True, seed=0, names=("a", "b")):
    """Compare two implementations on the same float64 inputs (see the module docstring).

    fn_a, fn_b: functions of tinydgm Tensors returning a Tensor or a tuple of Tensors (wrap
        a PyTorch function with tinydgm.interop.from_torch; a torch Module is wrapped here).
    inputs: a dict {name: array or Tensor}, a sequence, or one array. Floating inputs are
        differentiated unless passed as a Tensor with requires_grad=False (data).
    grads, hvp: include the gradient rows and the Hessian-vector-product rows.
    Returns a Comparison (print it for the table; ``assert_close`` to require agreement).
    """
    fn_a, fn_b = _as_function(fn_a), _as_function(fn_b)
    input_names, arrays = _leaves(inputs)
    with backend.default_dtype(FLOAT64):
        gen = backend.rng(seed)
        probes = [_as_outputs(fn(*[Tensor(a.copy()) for a, _ in arrays])) for fn in (fn_a, fn_b)]
        _check_outputs(*probes, names)
        vs = [gen.standard_normal(y.shape) for y in probes[0]]
        us = [gen.standard_normal(a.shape) for a, _ in arrays]
        side_a = _evaluate(fn_a, arrays, vs, us, grads, hvp)
        side_b = _evaluate(fn_b, arrays, vs, us, grads, hvp)
    rows = []
    for k in range(len(side_a[0])):
        rows.append(_row("value", k, None, side_a[0][k], side_b[0][k]))
        for quantity, part, wanted in (("gradient", 1, grads), ("hvp", 2, hvp)):
            if not wanted:
                continue
            for i in sorted(set(side_a[part][k]) | set(side_b[part][k])):
                zeros = _cpu().zeros(arrays[i][0].shape)
                rows.append(_row(quantity, k, input_names[i], side_a[part][k].get(i, zeros),
                                 side_b[part][k].get(i, zeros)))
    return Comparison(rows, names)
