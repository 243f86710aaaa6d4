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
(A function of another framework enters through ``tinydgm.interop``.)

Before a disagreement is reported as a wrong derivative it is diagnosed:

- precision: an output that is not float64, or values at points eps/4 apart whose second
  differences are rounding noise larger than the tolerance (float32 work inside fn), raise
  ``PrecisionError`` ("precision too low"), not a wrong derivative;
- smoothness: a kink within the step (a ReLU switching between x - eps and x + eps) makes
  central differences average two one-sided slopes. If the step eps/2 agrees the check
  passes; if the one-sided differences (f(x + h) - f(x)) / h and (f(x) - f(x - h)) / h
  disagree and their gap does not shrink with h (it halves with h for a smooth fn), fn
  is "not smooth at this point": ``NotSmoothError``.

Both are GradcheckError subclasses. The entry-by-entry search stops after ``max_seconds``
and reports what it found by then. Inputs given as a dict {name: Tensor} are passed to fn
by keyword and named in messages (``input 'log_sigma'``), as are Tensors given a ``name``.
"""
import contextlib
import time

from tinydgm import backend
from tinydgm.autodiff.core import Tensor, grad

FLOAT64 = "float64"


NO_GRAPH = ("fn's output has no graph (requires_grad=False): it was not computed from the inputs with "
            "tinydgm ops (a td.tensor(...) built from NumPy values is a constant)")


class GradcheckError(AssertionError):
    """Raised when analytic and numerical derivatives disagree; the message names the
    input, the index, both values and the worst relative error."""


class NotSmoothError(GradcheckError):
    """fn has a kink (or a jump) within the finite-difference step at this point: central
    differences cannot check its derivative there."""


class PrecisionError(GradcheckError):
    """fn computes in less than float64 (or is too noisy) for central differences with
    this eps: the numeric derivative is rounding noise."""


# ----------------------------------------------------------------------------- helpers

def _as_tuple(x):
    return (x,) if isinstance(x, Tensor) or not isinstance(x, (tuple, list)) else tuple(x)


def _to_float64(inputs):
    """Float64 leaf copies of the inputs (non-floating inputs are passed through)."""
    out = []
    for x in (list(inputs.values()) if isinstance(inputs, dict) else _as_tuple(inputs)):
        if not isinstance(x, Tensor):
            x = Tensor(backend.as_array(x))
        if backend.is_floating(x.dtype):
            out.append(Tensor(x.data.astype(FLOAT64, copy=True), requires_grad=x.requires_grad))
        else:
            out.append(Tensor(x.data))
    return out


def _positional(fn, inputs):
    """(fn taking its inputs by position, input labels): a dict of inputs is passed to fn
    by keyword, and its names label the inputs in messages."""
    if not isinstance(inputs, dict):               # a named Tensor (Tensor(..., name="w")) is named too
        return fn, [repr(x.name) if isinstance(x, Tensor) and x.name else str(i)
                    for i, x in enumerate(_as_tuple(inputs))]
    names = list(inputs)
    for name in names:
        if not isinstance(name, str):
            raise TypeError(f"gradcheck: input names must be strings, got {name!r}")

    def by_keyword(*xs):
        return fn(**dict(zip(names, xs)))

    by_keyword.__qualname__ = getattr(fn, "__qualname__", repr(fn))
    return by_keyword, [repr(name) for name in names]


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


def _analytic_grads(fn, xs, checked, vs, labels):
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
            raise GradcheckError(f"gradcheck: gradient of input {labels[i]} has shape {g.shape} and dtype {g.dtype}, "
                                 f"expected {xs[i].shape} and {xs[i].dtype}")
        out.append(g.data)
    return out


def _values_along(fn, xs, i, direction, vs, steps):
    """<v, fn(x + t u)> for each t in steps (x = input i, u = direction)."""
    x = xs[i]
    original = x.data
    xp = backend.xp_of(original)
    values = []
    try:
        for t in steps:
            # xp.asarray: NumPy turns 0-d arithmetic into scalars, and a Tensor's data is an array
            x.data = original if t == 0 else xp.asarray(original + t * direction)
            values.append(_projected_value(fn, xs, vs))
    finally:
        x.data = original
    return values


def _central_difference(fn, xs, i, direction, vs, eps):
    plus, minus = _values_along(fn, xs, i, direction, vs, (eps, -eps))
    return (plus - minus) / (2 * eps)


def _close(a, n, atol, rtol):
    return abs(a - n) <= atol + rtol * abs(n)            # False for NaN


def _diagnose(fn, xs, i, direction, vs, eps, analytic, atol, rtol, where):
    """Why the central difference along ``direction`` disagrees with ``analytic``.

    Returns "ok" when the half step eps/2 agrees (a kink between eps/2 and eps), raises
    PrecisionError or NotSmoothError, or returns "wrong" (the derivative itself is wrong).
    """
    s = eps / 4
    f = dict(zip(range(-4, 5), _values_along(fn, xs, i, direction, vs, [k * s for k in range(-4, 5)])))
    scale = max(abs(v) for v in f.values()) if all(v == v for v in f.values()) else float("nan")
    if scale != scale:                                   # NaN: nothing more to learn here
        return "wrong"
    # rounding noise: second differences at spacing s are s^2 f'' (tiny) for a smooth float64 fn
    second = sorted(abs(f[k + 1] - 2 * f[k] + f[k - 1]) for k in range(-3, 4))
    noise = second[len(second) // 2] / (2 * s)           # the error it causes in a difference quotient
    n_eps = (f[4] - f[-4]) / (2 * eps)
    if noise > atol + rtol * abs(n_eps) and noise > 1e-8 * scale / eps:
        raise PrecisionError(
            f"gradcheck: precision too low for {where}: fn's values at points eps/4 apart are rounding noise "
            f"of about {noise * 2 * s:.3g} (on values of size {scale:.3g}), so central differences with "
            f"eps={eps} are noise (analytic {analytic:.6g}, numeric {n_eps:.6g}). Is something inside fn "
            "float32? Make every parameter and constant float64 (e.g. model.to(dtype='float64'))")
    n_half = (f[2] - f[-2]) / eps
    if _close(analytic, n_half, atol, rtol):
        return "ok"
    gap = abs((f[4] - f[0]) - (f[0] - f[-4])) / eps      # |right - left| one-sided quotients, h = eps
    gap_half = abs((f[2] - f[0]) - (f[0] - f[-2])) / (eps / 2)
    if gap_half > atol + rtol * abs(n_half) and gap_half > 0.75 * gap:
        right, left = (f[2] - f[0]) / (eps / 2), (f[0] - f[-2]) / (eps / 2)
        raise NotSmoothError(
            f"gradcheck: fn is not smooth at this point for {where}: the one-sided differences disagree "
            f"(left {left:.6g}, right {right:.6g} at step {eps / 2:g}) and do not converge as the step "
            f"shrinks, so a kink (e.g. a ReLU switching) or a jump lies within eps={eps} of x; analytic "
            f"{analytic:.6g}, central {n_eps:.6g}. Not a wrong derivative: check at another point, or with "
            "a smaller eps")
    return "wrong"


def _worst_entry(fn, xs, i, analytic, vs, eps, atol, rtol, label, max_seconds):
    """Element-by-element numeric gradient of <v, fn> for input i; the worst entry that is
    really wrong (disagreements at kinks are diagnosed), or None. Stops after max_seconds:
    then returns (found or None, entries checked)."""
    xp = backend.xp_of(xs[i].data)
    numeric = xp.full(xs[i].shape, float("nan"), dtype=FLOAT64)
    checked = xp.zeros(xs[i].shape, dtype=bool)
    flat, flat_checked = numeric.reshape(-1), checked.reshape(-1)
    started = time.perf_counter()
    done = xs[i].size
    for j in range(xs[i].size):
        if j > 0 and time.perf_counter() - started > max_seconds:
            done = j
            break
        e = xp.zeros(xs[i].size, dtype=FLOAT64)
        e[j] = 1.0
        flat[j] = _central_difference(fn, xs, i, e.reshape(xs[i].shape), vs, eps)
        flat_checked[j] = True
    while True:
        found = _worst(xp.where(checked, analytic, 0.0), xp.where(checked, numeric, 0.0), atol, rtol)
        if found is None:
            return None, done
        index, a, _, _ = found
        e = xp.zeros(xs[i].shape, dtype=FLOAT64)
        e[index] = 1.0
        where = f"input {label} (shape {xs[i].shape}) at index {index}"
        if _diagnose(fn, xs, i, e, vs, eps, a, atol, rtol, where) == "wrong":
            return found, done
        numeric[index] = analytic[index]                   # a kink between eps/2 and eps: fine at eps/2


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
              mode="fast", n_directions=2, seed=0, max_seconds=60.0):
    """Check ``fn``'s first derivatives at ``inputs`` against central differences.

    fn: a function of Tensors returning a Tensor or a tuple of Tensors.
    inputs: a Tensor, a sequence, or a dict {name: Tensor} (passed to fn by keyword, named
        in messages); those with ``requires_grad=True`` are checked.
    mode: "fast" (random projections v^T J u, then per-entry search on failure) or
        "full" (whole Jacobians, slow, for debugging).
    max_seconds: time cap of the entry-by-entry search after a failed projection.
    Returns True, or raises GradcheckError (NotSmoothError at a kink, PrecisionError for
    float32 work; returns False if raise_exception=False).
    """
    if mode not in ("fast", "full"):
        raise ValueError(f'gradcheck: mode must be "fast" or "full", got {mode!r}')
    fn, labels = _positional(fn, inputs)
    with _float64():
        xs = _to_float64(inputs)
        return _gradcheck(fn, xs, labels, eps, atol, rtol, raise_exception, mode, n_directions, seed,
                          max_seconds)


def _gradcheck(fn, xs, labels, eps, atol, rtol, raise_exception, mode, n_directions, seed, max_seconds,
               who="gradcheck"):
    checked = _checked_inputs(xs, who)
    try:
        if mode == "full":
            _full_check(fn, xs, checked, eps, atol, rtol, labels)
        else:
            _fast_check(fn, xs, checked, eps, atol, rtol, n_directions, seed, labels, max_seconds)
    except GradcheckError as err:
        if not raise_exception:
            return False
        message = str(err) if who == "gradcheck" else str(err).replace("gradcheck:", f"{who}:", 1)
        if not any(y.requires_grad for y in _outputs(fn, xs)):
            raise GradcheckError(f"{message}. {NO_GRAPH}") from None
        if message != str(err):
            raise type(err)(message) from None
        raise
    return True


def _check_float64_outputs(ys, labels, i):
    for k in _floating(ys):
        if ys[k].dtype != FLOAT64:
            raise PrecisionError(
                f"gradcheck: precision too low: output {k} of fn is {ys[k].dtype} inside a float64 check "
                f"(checking input {labels[i]}), so its central differences are rounding noise. Compute in "
                "float64: make every parameter and constant float64 (e.g. model.to(dtype='float64'))")


def _fast_check(fn, xs, checked, eps, atol, rtol, n_directions, seed, labels, max_seconds):
    gen = backend.rng(seed)
    ys = _outputs(fn, xs)
    vs = {k: _random_like(gen, ys[k]) for k in _floating(ys)}
    analytic = _analytic_grads(fn, xs, checked, vs, labels)
    for i, g in zip(checked, analytic):
        if xs[i].size == 0:
            continue
        for _ in range(n_directions):
            u = _random_like(gen, xs[i])
            a = float((g * u).sum())
            n = _central_difference(fn, xs, i, u, vs, eps)
            if _close(a, n, atol, rtol):
                continue
            _check_float64_outputs(ys, labels, i)
            where = f"input {labels[i]} (shape {xs[i].shape}) in a random direction"
            if _diagnose(fn, xs, i, u, vs, eps, a, atol, rtol, where) == "ok":
                continue
            found, done = _worst_entry(fn, xs, i, g, vs, eps, atol, rtol, labels[i], max_seconds)
            if found is None:
                capped = "" if done == xs[i].size else (
                    f"; the entry-by-entry search stopped after max_seconds={max_seconds} with {done} of "
                    f"{xs[i].size} entries checked, none of them wrong")
                # the projection was unlucky with rounding (or the wrong entries were not reached)
                raise GradcheckError(
                    f"gradcheck: input {labels[i]} (shape {xs[i].shape}): directional derivative "
                    f"analytic {a:.6g}, numeric {n:.6g} (atol={atol}, rtol={rtol}){capped}")
            capped = "" if done == xs[i].size else (
                f" (the worst of the first {done} of {xs[i].size} entries: the entry-by-entry search stopped "
                f"after max_seconds={max_seconds})")
            _raise_entry(labels[i], xs[i].shape, found, atol, rtol, suffix=capped)


def _raise_entry(i, shape, found, atol, rtol, output=None, suffix=""):
    index, a, n, rel = found
    where = f"input {i} (shape {shape})" if output is None else f"output {output[0]} index {output[1]}, {i}"
    raise GradcheckError(
        f"gradcheck: gradient of {where} is wrong at index {index}: analytic {a:.6g}, "
        f"numeric {n:.6g}, worst relative error {rel:.3g} (atol={atol}, rtol={rtol}){suffix}")


def _full_check(fn, xs, checked, eps, atol, rtol, labels):
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
                    f"gradcheck: d(output {k}{list(out_idx)})/d(input {labels[i]}{list(in_idx)}) is wrong: "
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
                  raise_exception=True, mode="fast", n_directions=2, seed=0, max_seconds=60.0):
    """Check second derivatives: gradcheck of  (x, v) -> grad(<v, fn(x)>, x, create_graph=True).

    ``grad_outputs`` (v) default to seeded random tensors; they are checked too, so both
    the Hessian-vector part and the dependence of the backward on v are verified.
    inputs may be a dict {name: Tensor} as for ``gradcheck``. Piecewise-linear networks
    (ReLU) have gradients that jump where a unit switches: a switch within eps of x is
    reported as NotSmoothError ("not smooth at this point"), not as a wrong derivative.
    """
    fn, labels = _positional(fn, inputs)
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

        labels = labels + [f"{n + k} (grad_output {k})" for k in range(len(vs))]
        return _gradcheck(first_derivative, xs + vs, labels, eps, atol, rtol, raise_exception, mode,
                          n_directions, seed, max_seconds, who="gradgradcheck")
