"""Gradient checking: the engine's derivatives against central finite differences.

A product feature, not only a test helper: use it as an oracle for your own ops.

    gradcheck(fn, inputs)        first derivatives of fn at inputs
    gradgradcheck(fn, inputs)    second derivatives (the gradient of the gradient)
    jacobian(fn, x)              the full Jacobian from the engine (one backward per output)
    numerical_jacobian(fn, x)    the full Jacobian from central differences

Everything runs in float64 (inputs are copied to float64, and new tensors made inside
``fn`` default to float64 while checking). The fast mode compares a projection
v^T J u with a random output projection v and random input directions u, per input:

    analytic  = <grad_x <v, fn(x)>, u>
    numeric   = (<v, fn(x + eps u)> - <v, fn(x - eps u)>) / (2 eps)

A random v, never all ones: an all-ones output gradient hides backward bugs that only
permute entries (a transpose or flip whose backward forgets its permutation). When a
projection disagrees, the check falls back to element-by-element differences for that
input and reports the worst entry. ``mode="full"`` compares whole Jacobians instead,
for debugging.

fn must be written with tinydgm ops on its Tensor inputs: one that returns a NumPy array
or a Python float raises TypeError (the engine cannot differentiate NumPy), and a
failure whose output has no graph (e.g. ``td.tensor`` of a NumPy result) says so.
"""
import contextlib

from tinydgm import backend
from tinydgm.autodiff.core import Tensor, grad

FLOAT64 = "float64"


NO_GRAPH = ("fn's output has no graph (requires_grad=False): it was not computed from the inputs with "
            "tinydgm ops (a td.tensor(...) built from NumPy values is a constant)")


class GradcheckError(AssertionError):
    """Raised when analytic and numerical derivatives disagree; the message names the
    input, the index, both values and the worst relative error."""


# ----------------------------------------------------------------------------- helpers

def _as_tuple(x):
    return (x,) if isinstance(x, Tensor) or not isinstance(x, (tuple, list)) else tuple(x)


def _to_float64(inputs):
    """Float64 leaf copies of the inputs (non-floating inputs are passed through)."""
    out = []
    for x in _as_tuple(inputs):
        if not isinstance(x, Tensor):
            x = Tensor(backend.as_array(x))
        if backend.is_floating(x.dtype):
            out.append(Tensor(x.data.astype(FLOAT64, copy=True), requires_grad=x.requires_grad))
        else:
            out.append(Tensor(x.data))
    return out


def _describe(value):
    """What a function returned, for error messages: type, and shape and dtype for arrays."""
    kind = type(value)
    package = kind.__module__.split(".")[0]
    name = kind.__name__ if package == "builtins" else f"{package}.{kind.__name__}"
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        return f"a {name} of shape {tuple(value.shape)} and dtype {value.dtype}"
    return f"a {name} ({value!r})" if isinstance(value, (int, float, complex)) else f"a {name}"


def _not_a_tensor(fn, who, value, output=None, expected="a Tensor"):
    """The TypeError for a fn that returned something other than Tensors (e.g. a NumPy array)."""
    name = getattr(fn, "__qualname__", None) or repr(fn)
    got = "it returned" if output is None else f"its output {output} is"
    return TypeError(
        f"{who}: fn {name!r} must return {expected}, but {got} {_describe(value)}. "
        "The engine can only differentiate what it computed: write fn with tinydgm ops on its Tensor "
        "inputs (td.exp, td.matmul, x.sum(), ...). Wrapping the result in td.tensor(...) is NOT enough: "
        "that Tensor has no graph back to the inputs (NumPy work inside fn, .numpy() or .data, cuts it)")


def _outputs(fn, xs, who="gradcheck"):
    ys = fn(*xs)
    if isinstance(ys, Tensor):
        return [ys]
    if not isinstance(ys, (tuple, list)):
        raise _not_a_tensor(fn, who, ys, expected="a Tensor or a tuple of Tensors")
    for k, y in enumerate(ys):
        if not isinstance(y, Tensor):
            raise _not_a_tensor(fn, who, y, output=k, expected="Tensors")
    return list(ys)


def _single_output(fn, xs, who):
    """fn(*xs) for the Jacobian functions: exactly one Tensor."""
    y = fn(*xs)
    if not isinstance(y, Tensor):
        raise _not_a_tensor(fn, who, y, expected="one Tensor")
    return y


def _floating(ys):
    return [k for k, y in enumerate(ys) if backend.is_floating(y.dtype)]


def _projected_value(fn, xs, vs):
    """<v, fn(xs)> as a Python float.

    Graphs stay on: fn may itself differentiate (gradgradcheck checks a gradient)."""
    ys = _outputs(fn, xs)
    return sum(float((ys[k].data * v).sum()) for k, v in vs.items())


def _random_like(gen, x):
    xp = backend.xp_of(x.data)
    return xp.asarray(gen.standard_normal(x.shape))


def _analytic_grads(fn, xs, checked, vs):
    ys = _outputs(fn, xs)
    terms = [(ys[k] * Tensor(v)).sum() for k, v in vs.items() if ys[k].requires_grad]
    if not terms:
        return [backend.zeros(xs[i].shape, FLOAT64, like=xs[i].data) for i in checked]
    total = terms[0]
    for t in terms[1:]:
        total = total + t
    gs = grad(total, [xs[i] for i in checked], allow_unused=True)
    out = []
    for i, g in zip(checked, gs):
        if g is None:
            out.append(backend.zeros(xs[i].shape, FLOAT64, like=xs[i].data))
            continue
        if g.shape != xs[i].shape or g.dtype != xs[i].dtype:
            raise GradcheckError(f"gradcheck: gradient of input {i} has shape {g.shape} and dtype {g.dtype}, "
                                 f"expected {xs[i].shape} and {xs[i].dtype}")
        out.append(g.data)
    return out


def _central_difference(fn, xs, i, direction, vs, eps):
    x = xs[i]
    original = x.data
    xp = backend.xp_of(original)
    try:
        # xp.asarray: NumPy turns 0-d arithmetic into scalars, and a Tensor's data is an array
        x.data = xp.asarray(original + eps * direction)
        plus = _projected_value(fn, xs, vs)
        x.data = xp.asarray(original - eps * direction)
        minus = _projected_value(fn, xs, vs)
    finally:
        x.data = original
    return (plus - minus) / (2 * eps)


def _worst_entry(fn, xs, i, analytic, vs, eps, atol, rtol):
    """Element-by-element numeric gradient of <v, fn> for input i; the worst entry."""
    xp = backend.xp_of(xs[i].data)
    numeric = xp.zeros(xs[i].shape, dtype=FLOAT64)
    flat = numeric.reshape(-1)
    for j in range(xs[i].size):
        e = xp.zeros(xs[i].size, dtype=FLOAT64)
        e[j] = 1.0
        flat[j] = _central_difference(fn, xs, i, e.reshape(xs[i].shape), vs, eps)
    return _worst(analytic, numeric, atol, rtol)


def _worst(analytic, numeric, atol, rtol):
    """(index, analytic, numeric, relative error) of the worst entry, or None if all agree."""
    xp = backend.xp_of(numeric)
    err = xp.abs(analytic - numeric)
    bad = ~(err <= atol + rtol * xp.abs(numeric))       # NaN or inf count as wrong
    if not bool(bad.any()):
        return None
    rel = err / xp.maximum(xp.abs(numeric), atol)
    j = int(xp.argmax(xp.where(bad, rel, -1.0)))
    index = tuple(int(k) for k in backend.to_numpy(xp.asarray(xp.unravel_index(j, numeric.shape))))
    return index, float(analytic.reshape(-1)[j]), float(numeric.reshape(-1)[j]), float(rel.reshape(-1)[j])


@contextlib.contextmanager
def _float64():
    with backend.default_dtype(FLOAT64):
        yield


def _checked_inputs(xs, who):
    checked = [i for i, x in enumerate(xs) if x.requires_grad]
    if not checked:
        raise ValueError(f"{who}: no input requires grad; create the inputs you want checked with "
                         "requires_grad=True")
    return checked


# ----------------------------------------------------------------------------- gradcheck

def gradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-3, raise_exception=True,
              mode="fast", n_directions=2, seed=0):
    """Check ``fn``'s first derivatives at ``inputs`` against central differences.

    fn: a function of Tensors returning a Tensor or a tuple of Tensors.
    inputs: a Tensor or a sequence; those with ``requires_grad=True`` are checked.
    mode: "fast" (random projections v^T J u, then per-entry search on failure) or
        "full" (whole Jacobians, slow, for debugging).
    Returns True, or raises GradcheckError (returns False if raise_exception=False).
    """
    if mode not in ("fast", "full"):
        raise ValueError(f'gradcheck: mode must be "fast" or "full", got {mode!r}')
    with _float64():
        xs = _to_float64(inputs)
        checked = _checked_inputs(xs, "gradcheck")
        try:
            if mode == "full":
                _full_check(fn, xs, checked, eps, atol, rtol)
            else:
                _fast_check(fn, xs, checked, eps, atol, rtol, n_directions, seed)
        except GradcheckError as err:
            if not raise_exception:
                return False
            if not any(y.requires_grad for y in _outputs(fn, xs)):
                raise GradcheckError(f"{err}. {NO_GRAPH}") from None
            raise
    return True


def _fast_check(fn, xs, checked, eps, atol, rtol, n_directions, seed):
    gen = backend.rng(seed)
    ys = _outputs(fn, xs)
    vs = {k: _random_like(gen, ys[k]) for k in _floating(ys)}
    analytic = _analytic_grads(fn, xs, checked, vs)
    for i, g in zip(checked, analytic):
        if xs[i].size == 0:
            continue
        for _ in range(n_directions):
            u = _random_like(gen, xs[i])
            a = float((g * u).sum())
            n = _central_difference(fn, xs, i, u, vs, eps)
            if not abs(a - n) <= atol + rtol * abs(n):      # "not <=" also fails NaN
                found = _worst_entry(fn, xs, i, g, vs, eps, atol, rtol)
                if found is None:   # the projection was unlucky with rounding: report it as is
                    raise GradcheckError(
                        f"gradcheck: input {i} (shape {xs[i].shape}): directional derivative "
                        f"analytic {a:.6g}, numeric {n:.6g} (atol={atol}, rtol={rtol})")
                _raise_entry(i, xs[i].shape, found, atol, rtol)


def _raise_entry(i, shape, found, atol, rtol, output=None):
    index, a, n, rel = found
    where = f"input {i} (shape {shape})" if output is None else f"output {output[0]} index {output[1]}, {i}"
    raise GradcheckError(
        f"gradcheck: gradient of {where} is wrong at index {index}: analytic {a:.6g}, "
        f"numeric {n:.6g}, worst relative error {rel:.3g} (atol={atol}, rtol={rtol})")


def _full_check(fn, xs, checked, eps, atol, rtol):
    ys = _outputs(fn, xs)
    for k in _floating(ys):
        def fk(*args, k=k):
            return _outputs(fn, args)[k]
        for i in checked:
            ja = jacobian(fk, xs, _input=i)
            jn = numerical_jacobian(fk, xs, eps=eps, _input=i)
            found = _worst(ja, jn, atol, rtol)
            if found is not None:
                index, a, n, rel = found
                out_idx, in_idx = index[:ys[k].ndim], index[ys[k].ndim:]
                raise GradcheckError(
                    f"gradcheck: d(output {k}{list(out_idx)})/d(input {i}{list(in_idx)}) is wrong: "
                    f"analytic {a:.6g}, numeric {n:.6g}, worst relative error {rel:.3g} "
                    f"(atol={atol}, rtol={rtol})")


# ----------------------------------------------------------------------------- Jacobians

def jacobian(fn, x, _input=None):
    """The Jacobian of ``fn`` (one Tensor output) at ``x``, from the engine.

    x: a Tensor or a tuple of Tensors. Returns a backend array of shape
    ``y.shape + x.shape`` (a tuple of them for a tuple of inputs), in x's dtype.
    One backward pass per output entry: meant for small functions and for checking.
    """
    single = isinstance(x, Tensor)
    xs = [Tensor(t.data, requires_grad=backend.is_floating(t.dtype)) for t in _as_tuple(x)]
    wanted = [_input] if _input is not None else [i for i, t in enumerate(xs) if t.requires_grad]
    y = _single_output(fn, xs, "jacobian")
    xp = backend.xp_of(y.data)
    jacs = [xp.zeros(y.shape + xs[i].shape, dtype=xs[i].dtype) for i in wanted]
    if y.requires_grad:
        for j in range(y.size):
            onehot = xp.zeros(y.size, dtype=y.dtype)
            onehot[j] = 1
            gs = grad(y, [xs[i] for i in wanted], grad_outputs=Tensor(onehot.reshape(y.shape)),
                      retain_graph=True, allow_unused=True)
            for jac, g in zip(jacs, gs):
                if g is not None:
                    jac.reshape((y.size,) + jac.shape[y.ndim:])[j] = g.data
    if _input is not None:
        return jacs[0]
    return jacs[0] if single else tuple(jacs)


def numerical_jacobian(fn, x, eps=1e-6, _input=None):
    """The Jacobian of ``fn`` (one Tensor output) at ``x`` by central differences, in float64.

    Same layout as ``jacobian``: shape ``y.shape + x.shape``.
    """
    single = isinstance(x, Tensor)
    with _float64():
        xs = _to_float64(x)
        wanted = [_input] if _input is not None else [i for i, t in enumerate(xs)
                                                      if backend.is_floating(t.dtype)]
        y0 = _single_output(fn, xs, "numerical_jacobian")
        xp = backend.xp_of(y0.data)
        jacs = []
        for i in wanted:
            x = xs[i]
            jac = xp.zeros((x.size,) + y0.shape, dtype=FLOAT64)
            original = x.data
            flat = original.reshape(-1)
            for j in range(x.size):
                step = xp.zeros(x.size, dtype=FLOAT64)
                step[j] = eps
                x.data = (flat + step).reshape(x.shape)
                plus = fn(*xs).data
                x.data = (flat - step).reshape(x.shape)
                minus = fn(*xs).data
                jac[j] = (plus - minus) / (2 * eps)
            x.data = original
            # (x.size, *y.shape) -> (*y.shape, *x.shape)
            jacs.append(xp.moveaxis(jac, 0, -1).reshape(y0.shape + x.shape))
    if _input is not None:
        return jacs[0]
    return jacs[0] if single else tuple(jacs)


# ----------------------------------------------------------------------------- second order

def gradgradcheck(fn, inputs, grad_outputs=None, eps=1e-6, atol=1e-5, rtol=1e-3,
                  raise_exception=True, mode="fast", n_directions=2, seed=0):
    """Check second derivatives: gradcheck of  (x, v) -> grad(<v, fn(x)>, x, create_graph=True).

    ``grad_outputs`` (v) default to seeded random tensors; they are checked too, so both
    the Hessian-vector part and the dependence of the backward on v are verified.
    """
    with _float64():
        xs = _to_float64(inputs)
        checked = _checked_inputs(xs, "gradgradcheck")
        ys = _outputs(fn, xs, "gradgradcheck")
        floating = _floating(ys)
        if grad_outputs is None:
            gen = backend.rng(seed + 1)
            vs = [Tensor(_random_like(gen, ys[k]), requires_grad=True) for k in floating]
        else:
            vs = _to_float64(grad_outputs)
            for v in vs:
                v.requires_grad = True
        n = len(xs)

        def first_derivative(*args):
            inp, gos = args[:n], args[n:]
            outs = _outputs(fn, inp)
            outs = [outs[k] for k in floating]
            pairs = [(y, v) for y, v in zip(outs, gos) if y.requires_grad]
            gs = grad([y for y, _ in pairs], [inp[i] for i in checked],
                      grad_outputs=[v for _, v in pairs], create_graph=True, allow_unused=True)
            return tuple(g for g in gs if g is not None)

        return gradcheck(first_derivative, xs + vs, eps=eps, atol=atol, rtol=rtol,
                         raise_exception=raise_exception, mode=mode, n_directions=n_directions, seed=seed)
