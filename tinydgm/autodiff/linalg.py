"""Linear algebra: ``matmul`` with batch dimensions and ``einsum``."""
import math
import string

from tinydgm import backend
from tinydgm.autodiff.core import Function

__all__ = ["matmul", "einsum"]


def _xp(x):
    return backend.xp_of(x)


class MatMul(Function):
    """C = A @ B for A (..., n, k), B (..., k, m); batch dimensions broadcast.

    dA = dC @ B^T,  dB = A^T @ dC, each summed back over broadcast batch dimensions.
    1-D operands are promoted as NumPy does (a vector is a row on the left, a column on
    the right) and the promotion is undone in the gradient.

    A stack of rows against one matrix (A (..., n, k), B (k, m): a layer applied to
    (S, N, features), as a VAE decoder on S samples per example) is one product of the
    rows flattened, (S N, k) @ (k, m), both ways: dB = A_flat^T @ dC_flat is one GEMM,
    where the batched form would run S small ones into an (S, k, m) array and sum it.
    """

    def forward(self, a, b):
        if a.ndim == 0 or b.ndim == 0:
            raise ValueError("matmul: operands must have at least one dimension, got shapes "
                             f"{a.shape} and {b.shape}")
        if a.shape[-1] != b.shape[-2 if b.ndim > 1 else 0]:
            raise ValueError(f"matmul: shapes {a.shape} and {b.shape} are not aligned")
        if a.ndim > 2 and b.ndim == 2:          # rows against one matrix: one GEMM
            return (a.reshape(_rows(a)) @ b).reshape(a.shape[:-1] + b.shape[-1:])
        return a @ b

    def backward(self, gy):
        a, b = self.inputs
        if a.ndim == 2 and b.ndim == 2:       # the common case, without the promotion bookkeeping
            ga = matmul(gy, b.T) if self.needs_input_grad[0] else None
            gb = matmul(a.T, gy) if self.needs_input_grad[1] else None
            return _in_dtype(ga, a), _in_dtype(gb, b)
        if a.ndim > 2 and b.ndim == 2:          # rows against one matrix: dB = A_flat^T @ dC_flat
            ga = matmul(gy, b.T) if self.needs_input_grad[0] else None
            gb = matmul(a.reshape(_rows(a)).T, gy.reshape(_rows(gy))) if self.needs_input_grad[1] else None
            return _in_dtype(ga, a), _in_dtype(gb, b)
        a2 = a if a.ndim > 1 else a.reshape(1, -1)
        b2 = b if b.ndim > 1 else b.reshape(-1, 1)
        batch = backend.broadcast_shapes(a2.shape[:-2], b2.shape[:-2])
        g2 = gy.reshape(batch + (a2.shape[-2], b2.shape[-1]))
        ga = gb = None
        if self.needs_input_grad[0]:
            ga = matmul(g2, _swap(b2))
            ga = ga.sum_to(a2.shape).reshape(a.shape) if ga.shape != a.shape else ga
        if self.needs_input_grad[1]:
            gb = matmul(_swap(a2), g2)
            gb = gb.sum_to(b2.shape).reshape(b.shape) if gb.shape != b.shape else gb
        return _in_dtype(ga, a), _in_dtype(gb, b)


def _rows(x):
    """The 2-D shape of x's rows: (product of the leading axes, last axis)."""
    return (math.prod(x.shape[:-1]), x.shape[-1])


def _in_dtype(g, x):
    """A gradient in its input's dtype (a float32 weight times a float64 batch computes in
    float64; the weight's gradient must still be float32)."""
    return g if g is None or g.dtype == x.dtype else g.astype(x.dtype)


def _swap(x):
    """Swap the last two axes."""
    axes = tuple(range(x.ndim - 2)) + (x.ndim - 1, x.ndim - 2)
    return x.transpose(axes)


def matmul(a, b):
    """Matrix product with NumPy's ``@`` semantics (batch dimensions broadcast)."""
    return MatMul()(a, b)


# ----------------------------------------------------------------------------- einsum

class Einsum(Function):
    """y = einsum("a,b,...->out", x_0, x_1, ...) on explicit subscripts (see ``einsum``).

    The product is linear in each operand, so the gradient of operand k contracts the
    output gradient with all the other operands into operand k's subscripts:

        dx_k = einsum("out,a,...(without k)->sub_k", dy, x_0, ...(without x_k))

    An index that appears only in operand k (summed out by the forward) is absent from
    every other term: dy is constant along it, so the gradient is broadcast back along
    it. An index that operand k broadcasts (size 1 against size n elsewhere) is summed
    back to size 1. The backward is itself an ``einsum`` of Tensors, so second
    derivatives work.
    """

    def __init__(self, terms, out):
        self.terms, self.out = terms, out

    def forward(self, *operands):
        spec = ",".join(self.terms) + "->" + self.out
        return _xp(operands[0]).einsum(spec, *operands, optimize=_optimize(operands))

    def backward(self, gy):
        grads = []
        for k, x in enumerate(self.inputs):
            grads.append(self._operand_grad(gy, k, x) if self.needs_input_grad[k] else None)
        return tuple(grads)

    def _operand_grad(self, gy, k, x):
        others = [(t, o) for i, (t, o) in enumerate(zip(self.terms, self.inputs)) if i != k]
        present = set(self.out).union(*(t for t, _ in others))
        kept = "".join(c for c in self.terms[k] if c in present)
        g = einsum(",".join([self.out] + [t for t, _ in others]) + "->" + kept,
                   gy, *(o for _, o in others))
        # back to operand k's layout: size 1 for the indices only operand k has
        shape = tuple(g.shape[kept.index(c)] if c in present else 1 for c in self.terms[k])
        g = g.reshape(shape)
        if g.shape != x.shape:      # sum where x broadcast (1 vs n), broadcast where only x had it
            g = g.sum_to(tuple(min(a, b) for a, b in zip(g.shape, x.shape))).broadcast_to(x.shape)
        return _in_dtype(g, x)


def _optimize(operands):
    """Let einsum plan a BLAS contraction path for big operands; for small ones the
    planning costs more than it saves."""
    return len(operands) > 1 and max(a.size for a in operands) >= 4096


def einsum(subscripts, *operands):
    """Einstein summation, differentiable in every operand, like ``numpy.einsum``.

    ``einsum("ij,jk->ik", a, b)`` is a @ b; ``"bij,bjk->bik"`` a batched product;
    ``"bi,bi->b"`` row-wise dot products; ``"i,j->ij"`` an outer product; ``"ij->"``
    a sum. Without ``->`` (implicit form) the output holds the indices that appear
    exactly once, in alphabetical order (``einsum("ij,jk", a, b)`` is a @ b). ``...``
    stands for broadcast leading dimensions, and a size-1 dimension broadcasts against
    the same index of another operand, as in NumPy.

    Not supported: an index repeated within one operand (traces ``"ii->"`` and
    diagonals ``"ii->i"``); write them with indexing instead. The error says so.
    """
    if not isinstance(subscripts, str):
        raise TypeError(f"einsum: subscripts must be a string, got {type(subscripts).__name__}")
    if not operands:
        raise ValueError("einsum: needs at least one operand")
    terms, out = _parse_subscripts(subscripts, [x.shape for x in operands])
    return Einsum(terms, out)(*operands)


def _parse_subscripts(subscripts, shapes):
    """(terms, out): one string of single-letter indices per operand and the output's,
    with ``...`` replaced by letters and the implicit output made explicit."""
    spec = subscripts.replace(" ", "")
    lhs, arrow, out = spec.partition("->")
    terms = lhs.split(",")
    if len(terms) != len(shapes):
        raise ValueError(f"einsum: subscripts {subscripts!r} name {len(terms)} operand(s) "
                         f"but {len(shapes)} were given")
    used = set(spec) - set(".,->")
    bad = sorted(c for c in used if c not in string.ascii_letters)
    if bad:
        raise ValueError(f"einsum: subscripts {subscripts!r} may only use letters, got {bad}")
    spare = [c for c in string.ascii_letters if c not in used]
    n_ellipsis = max((len(shape) - len(t.replace("...", "")) for t, shape in zip(terms, shapes)
                      if "..." in t), default=0)
    ell = "".join(spare[:n_ellipsis])          # letters standing for the "..." dimensions
    for k, (t, shape) in enumerate(zip(terms, shapes)):
        if "..." in t:
            n = len(shape) - len(t.replace("...", ""))
            t = t.replace("...", ell[len(ell) - n:] if n > 0 else "")
            terms[k] = t
        if "." in t or len(t) != len(shape):
            raise ValueError(f"einsum: operand {k} has shape {tuple(shape)} but its subscripts "
                             f"{lhs.split(',')[k]!r} name {len(t)} dimension(s)")
        repeated = sorted({c for c in t if t.count(c) > 1})
        if repeated:
            raise ValueError(f"einsum: index {repeated[0]!r} is repeated in operand {k} "
                             f"({lhs.split(',')[k]!r}); traces and diagonals are not supported")
    if arrow:
        out = out.replace("...", ell)
        if "." in out:
            raise ValueError(f"einsum: malformed output subscripts in {subscripts!r}")
        letters = "".join(terms)
        for c in out:
            if c not in letters:
                raise ValueError(f"einsum: output index {c!r} does not appear in any operand of {subscripts!r}")
            if out.count(c) > 1:
                raise ValueError(f"einsum: output index {c!r} is repeated in {subscripts!r}")
    else:
        letters = "".join(terms)
        out = ell + "".join(sorted(c for c in set(letters) if letters.count(c) == 1 and c not in ell))
    _check_sizes(terms, shapes, subscripts)
    return terms, out


def _check_sizes(terms, shapes, subscripts):
    """Every index has one size (or size 1, which broadcasts)."""
    sizes = {}
    for k, (t, shape) in enumerate(zip(terms, shapes)):
        for c, n in zip(t, shape):
            m = sizes.get(c, 1)
            if n != 1 and m != 1 and n != m:
                raise ValueError(f"einsum: index {c!r} has size {m} in one operand and {n} in operand {k} "
                                 f"(shapes {[tuple(s) for s in shapes]}, subscripts {subscripts!r})")
            sizes[c] = max(m, n)
