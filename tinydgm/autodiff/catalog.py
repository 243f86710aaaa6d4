"""The op catalogue: every differentiable op of the engine with inputs in its smooth
domain, checked against finite differences to first and second order.

A product feature: ``python -m tinydgm gradcheck`` runs it and prints a table, the demo
draws it, and the tests run the same suite on every device.

    from tinydgm.autodiff import catalog
    for r in catalog.check_all(device="cpu", ops=["exp", "matmul"]):
        print(r.name, r.status, r.first_order_error, r.second_order_error)

Each ``Entry`` names one op (``op``, looked up lazily in ``tinydgm.autodiff.functional``
so that an op that does not exist yet is reported as "missing" instead of breaking the
import), a variant (``name``, e.g. ``"matmul[batched]"``), a function of Tensors and
``make_inputs(rng, device)``: float64 leaves with ``requires_grad=True`` (plus constant
index/mask tensors without it) in the op's smooth domain: positive arguments for ``log``
and ``sqrt``, values kept away from the kinks of ``relu``/``abs``/``clip``, distinct
values for ``max``/``maximum``/``max_pool2d`` so no tie flips under a finite-difference
step. ``smooth`` says whether second derivatives are meaningful; piecewise-linear ops
(``smooth=False``) have a zero second derivative almost everywhere and pass
``gradgradcheck`` trivially, but still must pass it (their backward has to be
differentiable with ``create_graph=True``).

The error figures of ``check_all`` are the worst entry of the full Jacobian,

    relative error = max_ij |J_engine - J_numeric|_ij / max(|J_numeric|_ij, atol),   atol = 1e-5

(``jacobian`` against ``numerical_jacobian``); the second-order figure is the same for the
Jacobian of the first derivative ``(x, v) -> grad(<v, f(x)>, x, create_graph=True)``.
Pass/fail comes from ``gradcheck`` and ``gradgradcheck`` themselves.
"""
import importlib
import math
import time
import zlib
from dataclasses import dataclass, field
from typing import Callable, Optional

from tinydgm import backend
from tinydgm.autodiff import functional
from tinydgm.autodiff.core import Tensor, grad, tensor
from tinydgm.autodiff.gradcheck import gradcheck, gradgradcheck, jacobian, numerical_jacobian

__all__ = ["Entry", "Result", "ENTRIES", "EXEMPT", "OP_MODULES", "entries", "public_ops",
           "check_entry", "check_all", "format_table", "MissingOpError"]

# The modules whose ``__all__`` lists the engine's ops (see functional.py).
OP_MODULES = ("elementwise", "reduce", "shape", "linalg", "conv_ops", "nade_ops")

# Public names of those modules that are not differentiable ops, and why.
EXEMPT = {
    "less": "comparison: returns a boolean Tensor, no gradient",
    "less_equal": "comparison: returns a boolean Tensor, no gradient",
    "greater": "comparison: returns a boolean Tensor, no gradient",
    "greater_equal": "comparison: returns a boolean Tensor, no gradient",
    "equal": "comparison: returns a boolean Tensor, no gradient",
    "not_equal": "comparison: returns a boolean Tensor, no gradient",
    "to_device": "moves data between devices: needs CPU and CUDA at once (tested with the device tests)",
}

ATOL = 1e-5


class MissingOpError(LookupError):
    """The catalogue names an op that tinydgm.autodiff.functional does not define."""


# ----------------------------------------------------------------------------- entries

@dataclass(frozen=True)
class Entry:
    """One catalogued op variant: ``fn(*make_inputs(rng, device))`` is what gets checked."""
    name: str
    op: str
    call: Callable = field(repr=False)          # call(op_function, *inputs) -> Tensor(s)
    make_inputs: Callable = field(repr=False)   # (rng, device) -> list of Tensors
    smooth: bool = True                         # second derivatives meaningful
    eps: float = 1e-6                           # finite-difference step

    def available(self):
        return callable(getattr(functional, self.op, None))

    def fn(self, *inputs):
        """Apply the op (looked up now, by name) to the inputs."""
        op = getattr(functional, self.op, None)
        if not callable(op):
            raise MissingOpError(f"{self.name}: tinydgm.autodiff.functional has no op {self.op!r}")
        return self.call(op, *inputs)


def _leaf(make):
    """An input maker: ``make(rng) -> numpy array`` as a float64 leaf that requires grad."""
    def leaf(rng, device):
        return tensor(make(rng), dtype="float64", device=device, requires_grad=True)
    return leaf


def _const(make):
    """A constant input (an index array or a mask): no gradient, on the device."""
    def const(rng, device):
        return tensor(make(rng), device=device)
    return const


def _inputs(*makers):
    def make_inputs(rng, device):
        return [m(rng, device) for m in makers]
    return make_inputs


def normal(*shape):
    return _leaf(lambda rng: rng.standard_normal(shape))


def uniform(low, high, *shape):
    return _leaf(lambda rng: rng.uniform(low, high, shape))


def away_from_zero(*shape, margin=0.2):
    """Values with |x| in [margin, margin + 1.3]: far from the kink at 0 of relu, abs, ..."""
    return _leaf(lambda rng: rng.choice([-1.0, 1.0], shape) * rng.uniform(margin, margin + 1.3, shape))


def distinct(*shape, gap=0.1):
    """A shuffled grid spaced ``gap`` apart (plus jitter below gap/4): no two values tie."""
    def make(rng):
        n = 1
        for s in shape:
            n *= s
        grid = (rng.permutation(n) - n / 2) * gap
        return (grid + rng.uniform(-gap / 4, gap / 4, n)).reshape(shape)
    return _leaf(make)


def _entry(name, call, make_inputs, smooth=True, eps=1e-6, op=None):
    return Entry(name, op or name.split("[")[0], call, make_inputs, smooth, eps)


def _gap_pair(shape_a, shape_b, gap=0.2):
    """Inputs a (shape_a) and b (shape_b, broadcasting to shape_a) with |a - b| >= gap
    everywhere: no tie flips under a finite-difference step."""
    def make_inputs(rng, device):
        b = rng.standard_normal(shape_b)
        a = b + rng.choice([-1.0, 1.0], shape_a) * rng.uniform(gap, 1.0, shape_a)
        return [tensor(x, dtype="float64", device=device, requires_grad=True) for x in (a, b)]
    return make_inputs


def _clip_inputs(rng, device):
    # values at least 0.15 away from the bounds -0.5 and 0.5
    x = rng.choice([-1.1, -0.0, 1.1], (3, 4)) + rng.uniform(-0.35, 0.35, (3, 4))
    return [tensor(x, dtype="float64", device=device, requires_grad=True)]


def _build():
    e = _entry
    return [
        # --- arithmetic (binary ops broadcast)
        e("add", lambda op, a, b: op(a, b), _inputs(normal(2, 3, 4), normal(3, 1))),
        e("sub", lambda op, a, b: op(a, b), _inputs(normal(3, 1), normal(2, 1, 4))),
        e("mul", lambda op, a, b: op(a, b), _inputs(normal(2, 3, 4), normal(4))),
        e("div", lambda op, a, b: op(a, b), _inputs(normal(3, 4), away_from_zero(3, 1, margin=0.5))),
        e("neg", lambda op, x: op(x), _inputs(normal(3, 4))),
        e("pow", lambda op, a, b: op(a, b), _inputs(uniform(0.5, 2.0, 3, 4), normal(4))),
        e("pow[scalar]", lambda op, x: op(x, 3.0), _inputs(normal(3, 4))),
        # --- math functions
        e("exp", lambda op, x: op(x), _inputs(normal(3, 4))),
        e("log", lambda op, x: op(x), _inputs(uniform(0.3, 3.0, 3, 4))),
        e("log1p", lambda op, x: op(x), _inputs(uniform(-0.5, 2.0, 3, 4))),
        e("expm1", lambda op, x: op(x), _inputs(normal(3, 4))),
        e("sqrt", lambda op, x: op(x), _inputs(uniform(0.3, 3.0, 3, 4))),
        e("square", lambda op, x: op(x), _inputs(normal(3, 4))),
        e("sin", lambda op, x: op(x), _inputs(normal(3, 4))),
        e("cos", lambda op, x: op(x), _inputs(normal(3, 4))),
        e("tanh", lambda op, x: op(x), _inputs(normal(3, 4))),
        e("abs", lambda op, x: op(x), _inputs(away_from_zero(3, 4)), smooth=False),
        # --- activations and stable fused ops
        e("sigmoid", lambda op, x: op(x), _inputs(normal(3, 4))),
        e("log_sigmoid", lambda op, x: op(x), _inputs(normal(3, 4))),
        e("softplus", lambda op, x: op(x), _inputs(normal(3, 4))),
        e("relu", lambda op, x: op(x), _inputs(away_from_zero(3, 4)), smooth=False),
        e("leaky_relu", lambda op, x: op(x, 0.1), _inputs(away_from_zero(3, 4)), smooth=False),
        e("elu", lambda op, x: op(x), _inputs(away_from_zero(3, 4))),
        e("maximum", lambda op, a, b: op(a, b), _gap_pair((2, 3), (3,)), smooth=False),
        e("minimum", lambda op, a, b: op(a, b), _gap_pair((2, 3), (2, 3)), smooth=False),
        e("clip", lambda op, x: op(x, -0.5, 0.5), _clip_inputs, smooth=False),
        e("where", lambda op, c, a, b: op(c, a, b),
          _inputs(_const(lambda rng: rng.standard_normal((3, 4)) > 0), normal(3, 4), normal(4))),
        e("binary_cross_entropy_with_logits", lambda op, z, t: op(z, t),
          _inputs(normal(3, 4), uniform(0.05, 0.95, 3, 4))),
        e("log1mexp", lambda op, x: op(x), _inputs(uniform(-3.0, -0.1, 3, 4))),
        # a round trip through float32: a large step keeps float32 rounding out of the differences
        # (the op is linear, so central differences are exact for any step)
        e("astype", lambda op, x: op(op(x, "float32"), "float64"), _inputs(normal(3, 4)), eps=1e-2),
        # --- reductions
        e("sum", lambda op, x: op(x, axis=1), _inputs(normal(2, 3, 4))),
        e("sum[all]", lambda op, x: op(x), _inputs(normal(2, 3))),
        e("mean", lambda op, x: op(x, axis=(0, 2), keepdims=True), _inputs(normal(2, 3, 4))),
        e("var", lambda op, x: op(x, axis=-1), _inputs(normal(3, 4))),
        e("max", lambda op, x: op(x, axis=1), _inputs(distinct(3, 4)), smooth=False),
        e("min", lambda op, x: op(x, axis=0, keepdims=True), _inputs(distinct(3, 4)), smooth=False),
        e("logsumexp", lambda op, x: op(x, axis=-1), _inputs(normal(3, 4))),
        e("softmax", lambda op, x: op(x, axis=-1), _inputs(normal(3, 4))),
        e("log_softmax", lambda op, x: op(x, axis=-1), _inputs(normal(3, 4))),
        e("cumsum", lambda op, x: op(x, axis=1), _inputs(normal(3, 4))),
        e("sum_to", lambda op, x: op(x, (3, 1)), _inputs(normal(2, 3, 4))),
        # --- shapes
        e("reshape", lambda op, x: op(x, (4, -1)), _inputs(normal(2, 3, 4))),
        e("transpose", lambda op, x: op(x, (1, 2, 0)), _inputs(normal(2, 3, 4))),
        e("expand_dims", lambda op, x: op(x, 1), _inputs(normal(3, 4))),
        e("squeeze", lambda op, x: op(x, 1), _inputs(normal(3, 1, 4))),
        e("broadcast_to", lambda op, x: op(x, (2, 3, 4)), _inputs(normal(3, 1))),
        e("concatenate", lambda op, a, b: op([a, b], axis=1), _inputs(normal(2, 3), normal(2, 2))),
        e("stack", lambda op, a, b: op([a, b], axis=1), _inputs(normal(2, 3), normal(2, 3))),
        e("split", lambda op, x: op(x, [1, 3], axis=1), _inputs(normal(2, 4))),
        e("flip", lambda op, x: op(x, axis=1), _inputs(normal(3, 4))),
        e("pad", lambda op, x: op(x, ((1, 0), (0, 2))), _inputs(normal(3, 4))),
        e("getitem[slice]", lambda op, x: op(x, (slice(1, None), slice(None, None, 2))),
          _inputs(normal(3, 5))),
        e("getitem[int-array]", lambda op, x, i: op(x, i.data),
          _inputs(normal(4, 3), _const(lambda rng: [0, 2, 0, 3, 2]))),   # repeats add up
        e("getitem[bool-mask]", lambda op, x, m: op(x, m.data),
          _inputs(normal(3, 4), _const(lambda rng: rng.standard_normal((3, 4)) > 0))),
        # --- linear algebra
        e("matmul[2d]", lambda op, a, b: op(a, b), _inputs(normal(3, 4), normal(4, 2))),
        e("matmul[batched]", lambda op, a, b: op(a, b), _inputs(normal(2, 3, 4), normal(2, 4, 2))),
        e("matmul[broadcast-batch]", lambda op, a, b: op(a, b), _inputs(normal(2, 1, 3, 4), normal(3, 4, 2))),
        e("matmul[vector-matrix-vector]", lambda op, a, b, c: op(op(a, b), c),
          _inputs(normal(4), normal(4, 3), normal(3))),
        e("matmul[matrix-vector]", lambda op, a, b: op(a, b), _inputs(normal(2, 3, 4), normal(4))),
        e("einsum[matmul]", lambda op, a, b: op("ij,jk->ik", a, b), _inputs(normal(3, 4), normal(4, 2))),
        e("einsum[batch-outer]", lambda op, a, b: op("bi,bj->bij", a, b), _inputs(normal(2, 3), normal(2, 4))),
        e("einsum[contract]", lambda op, a, b: op("ijk,jk->i", a, b), _inputs(normal(2, 3, 4), normal(3, 4))),
        # --- convolutions and pooling (NCHW)
        e("conv2d", lambda op, x, w, b: op(x, w, b), _inputs(normal(2, 2, 4, 4), normal(3, 2, 3, 3), normal(3))),
        e("conv2d[stride-padding]", lambda op, x, w: op(x, w, stride=2, padding=1),
          _inputs(normal(1, 2, 5, 5), normal(2, 2, 3, 3))),
        e("conv2d[dilation]", lambda op, x, w: op(x, w, dilation=2), _inputs(normal(1, 1, 5, 5), normal(2, 1, 2, 2))),
        e("conv2d[groups]", lambda op, x, w: op(x, w, groups=2), _inputs(normal(1, 4, 3, 3), normal(4, 2, 2, 2))),
        e("conv_transpose2d", lambda op, x, w, b: op(x, w, b, stride=2, padding=1),
          _inputs(normal(1, 2, 3, 3), normal(2, 3, 3, 3), normal(3))),
        e("avg_pool2d", lambda op, x: op(x, 2), _inputs(normal(1, 2, 4, 4))),
        e("max_pool2d", lambda op, x: op(x, 2), _inputs(distinct(1, 2, 4, 4)), smooth=False),
        e("upsample_nearest2d", lambda op, x: op(x, 2), _inputs(normal(1, 2, 2, 3))),
        # --- fused model ops
        e("nade_logits", lambda op, x, W, c, V: op(x, W, c, V),
          _inputs(normal(3, 5), normal(5, 4), normal(4), normal(5, 4))),
        e("nade_logits[binary-x]", lambda op, x, W, c, V: op(x, W, c, V),       # zeros: no new hidden state
          _inputs(_const(lambda rng: (rng.random((4, 6)) < 0.4).astype("float64")), normal(6, 3), normal(3),
                  normal(6, 3))),
    ]


ENTRIES = _build()


def entries(ops=None):
    """The catalogue entries, all or those whose variant name or op name is in ``ops``."""
    if ops is None:
        return list(ENTRIES)
    wanted = set(ops)
    known = {x.name for x in ENTRIES} | {x.op for x in ENTRIES}
    unknown = sorted(wanted - known)
    if unknown:
        raise ValueError(f"catalog: unknown op(s) {', '.join(unknown)}; known: "
                         + ", ".join(sorted({x.op for x in ENTRIES})))
    return [x for x in ENTRIES if x.name in wanted or x.op in wanted]


def public_ops():
    """Every name in the ``__all__`` of the op modules (functional.py re-exports them)."""
    names = []
    for module in OP_MODULES:
        names += list(importlib.import_module(f"tinydgm.autodiff.{module}").__all__)
    return names


def make_inputs(entry, device="cpu"):
    """The entry's inputs from a generator seeded by its name: the same data on every device."""
    return entry.make_inputs(backend.rng(zlib.crc32(entry.name.encode())), device)


# ----------------------------------------------------------------------------- checking

@dataclass
class Result:
    """The outcome of checking one entry. status: "passed", "failed", "missing" or "error"."""
    name: str
    op: str
    status: str
    first_order_error: Optional[float] = None
    second_order_error: Optional[float] = None
    seconds: float = 0.0
    message: str = ""
    smooth: bool = True

    @property
    def passed(self):
        return self.status == "passed"


def _outputs(fn, xs):
    ys = fn(*xs)
    return [ys] if isinstance(ys, Tensor) else list(ys)


def _relative_error(analytic, numeric):
    xp = backend.xp_of(numeric)
    if numeric.size == 0:
        return 0.0
    err = xp.abs(analytic - numeric) / xp.maximum(xp.abs(numeric), ATOL)
    return float(err.max())


def _jacobian_error(fn, xs, eps=1e-6):
    """Worst relative error of fn's Jacobian (every output, every input that requires grad)."""
    checked = [i for i, x in enumerate(xs) if x.requires_grad]

    def restricted(k):
        def f(*args):
            full = list(xs)
            for i, a in zip(checked, args):
                full[i] = a
            return _outputs(fn, full)[k]
        return f

    worst = 0.0
    points = [xs[i] for i in checked]
    for k, y in enumerate(_outputs(fn, xs)):
        if not backend.is_floating(y.dtype):
            continue
        analytic = jacobian(restricted(k), points)
        numeric = numerical_jacobian(restricted(k), points, eps=eps)
        for a, n in zip(analytic, numeric):
            error = _relative_error(a, n)
            worst = error if not error <= worst else worst     # NaN wins: max() would drop it
    return worst


def _first_derivative(fn, xs, vs):
    """(x, v) -> grad(<v, fn(x)>, x, create_graph=True), for the second-order error."""
    n = len(xs)

    def g(*args):
        inp, gos = list(args[:n]), args[n:]
        for i, x in enumerate(inp):   # numerical_jacobian passes plain copies: make them leaves
            if xs[i].requires_grad and not x.requires_grad:
                inp[i] = Tensor(x.data, requires_grad=True)
        checked = [inp[i] for i in range(n) if xs[i].requires_grad]
        pairs = [(y, v) for y, v in zip(_outputs(fn, inp), gos) if y.requires_grad]
        if not pairs:
            return tuple(Tensor(backend.zeros(x.shape, x.dtype, like=x.data)) for x in checked)
        gs = grad([y for y, _ in pairs], checked, grad_outputs=[v for _, v in pairs],
                  create_graph=True, allow_unused=True)
        return tuple(Tensor(backend.zeros(x.shape, x.dtype, like=x.data)) if gx is None else gx
                     for x, gx in zip(checked, gs))
    return g


def _second_order_error(fn, xs, rng, eps=1e-6):
    ys = [y for y in _outputs(fn, xs) if backend.is_floating(y.dtype)]
    xp = backend.xp_of(xs[0].data)
    vs = [Tensor(xp.asarray(rng.standard_normal(y.shape)), requires_grad=True) for y in ys]
    return _jacobian_error(_first_derivative(fn, xs, vs), list(xs) + vs, eps)


def check_entry(entry, device="cpu", second_order=True, errors=True):
    """Check one entry with gradcheck (and gradgradcheck); measure its Jacobian errors."""
    start = time.perf_counter()
    result = Result(entry.name, entry.op, "passed", smooth=entry.smooth)
    if not entry.available():
        result.status, result.message = "missing", f"tinydgm.autodiff.functional has no op {entry.op!r}"
        return result
    try:
        with backend.default_dtype("float64"):
            xs = make_inputs(entry, device)
            if not all(_finite(y) for y in _outputs(entry.fn, xs)):
                # NaN compares False against every tolerance: catch it before the checkers
                result.status, result.message = "failed", "non-finite values (NaN/inf) in the output"
                return _timed(result, start)
            ok = gradcheck(entry.fn, xs, eps=entry.eps, raise_exception=False)
            if ok and second_order:
                ok = gradgradcheck(entry.fn, xs, eps=entry.eps, raise_exception=False)
            if not ok:
                result.status = "failed"
                # rerun the failing check to get the checker's message
                try:
                    gradcheck(entry.fn, xs, eps=entry.eps)
                    gradgradcheck(entry.fn, xs, eps=entry.eps)
                except AssertionError as err:
                    result.message = str(err)
            if errors:
                result.first_order_error = _jacobian_error(entry.fn, xs, entry.eps)
                if second_order:
                    result.second_order_error = _second_order_error(entry.fn, xs, backend.rng(1), entry.eps)
                figures = [result.first_order_error, result.second_order_error]
                if result.passed and any(e is not None and not math.isfinite(e) for e in figures):
                    result.status, result.message = "failed", "non-finite derivatives (NaN/inf) in a Jacobian"
    except Exception as err:   # an op that raises is reported, not fatal to the catalogue
        result.status, result.message = "error", f"{type(err).__name__}: {err}"
    return _timed(result, start)


def _timed(result, start):
    result.seconds = time.perf_counter() - start
    return result


def _finite(y):
    return not backend.is_floating(y.dtype) or bool(backend.xp_of(y.data).isfinite(y.data).all())


def check_all(device="cpu", ops=None, second_order=True, errors=True, progress=None):
    """Check every catalogue entry (or those named in ``ops``) on ``device``.

    Returns a list of ``Result`` (name, status/passed, first- and second-order worst
    relative Jacobian errors, seconds). ``progress`` is an optional callback called with
    each Result as it is produced. Raises RuntimeError for a device that is not
    available (e.g. "cuda" without CuPy).
    """
    backend.module_for_device(device)   # fail early with the install hint
    results = []
    for entry in entries(ops):
        result = check_entry(entry, device, second_order, errors)
        results.append(result)
        if progress is not None:
            progress(result)
    return results


def _fmt(x):
    return "—" if x is None else f"{x:.1e}"


def format_table(results):
    """A Markdown table of results, one row per entry."""
    lines = ["| op | status | 1st-order rel. error | 2nd-order rel. error | smooth | time (s) |",
             "|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r.name} | {r.status} | {_fmt(r.first_order_error)} | "
                     f"{_fmt(r.second_order_error)} | {'yes' if r.smooth else 'no'} | {r.seconds:.2f} |")
    return "\n".join(lines)
