"""Shape ops: reshape, transpose, expand_dims, squeeze, broadcast_to, concatenate, stack,
split, flip, pad and indexing (``__getitem__``, whose backward scatter-adds).

Each backward is the adjoint of its forward: reshape back, apply the inverse
permutation, sum over broadcast axes, split what was concatenated, slice the padding
off, scatter-add what was gathered. The adjoints are Tensor ops too, so second
derivatives flow through them.
"""
import itertools
import operator

from tinydgm import backend
from tinydgm.autodiff.core import Function, Tensor, as_tensor

__all__ = ["reshape", "transpose", "broadcast_to", "expand_dims", "squeeze", "concatenate",
           "stack", "split", "flip", "pad", "getitem"]


def _xp(x):
    return backend.xp_of(x)


def _shape_arg(shape):
    """Accept both f(x, (2, 3)) and f(x, 2, 3)."""
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        return tuple(shape[0])
    return tuple(shape)


def normalize_axis(axis, ndim, op):
    """``axis`` (None, an int or a sequence of ints, negatives allowed) as a sorted tuple
    of non-negative ints; a clear error, naming ``op``, when one is out of range or repeated."""
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if not isinstance(axis, (tuple, list)) else tuple(axis)
    out = []
    for a in axes:
        a = operator.index(a)
        if not -ndim <= a < ndim:
            raise ValueError(f"{op}: axis {a} is out of range for a tensor with {ndim} dimensions")
        out.append(a % ndim)
    if len(set(out)) != len(out):
        raise ValueError(f"{op}: repeated axis in {axis}")
    return tuple(sorted(out))


def _one_axis(axis, ndim, op):
    """A single axis as a non-negative int (``axis`` must be an int)."""
    if isinstance(axis, (tuple, list)) or axis is None:
        raise TypeError(f"{op}: axis must be an int, got {axis!r}")
    return normalize_axis(axis, ndim, op)[0]


# ----------------------------------------------------------------------------- reshape, transpose

class Reshape(Function):
    def __init__(self, shape):
        self.shape = shape

    def forward(self, x):
        try:
            return x.reshape(self.shape)
        except ValueError:
            raise ValueError(f"reshape: cannot reshape tensor of shape {x.shape} "
                             f"into shape {self.shape}") from None

    def backward(self, gy):
        x, = self.inputs
        return reshape(gy, x.shape)


def reshape(x, *shape):
    """``x`` with a new shape (one entry may be -1); ``reshape(x, 2, 3)`` or ``reshape(x, (2, 3))``."""
    shape = _shape_arg(shape)
    if x.shape == shape:
        return x
    return Reshape(shape)(x)


class Transpose(Function):
    def __init__(self, axes):
        self.axes = axes

    def forward(self, x):
        if self.axes is not None and sorted(self.axes) != list(range(x.ndim)):
            raise ValueError(f"transpose: axes {self.axes} are not a permutation of the axes of a "
                             f"tensor of shape {x.shape}")
        return x.transpose(self.axes)

    def backward(self, gy):
        if self.axes is None:
            return transpose(gy)
        inverse = tuple(sorted(range(len(self.axes)), key=lambda i: self.axes[i]))
        return transpose(gy, inverse)


def transpose(x, *axes):
    """Permute the axes (reverse them by default); ``x.T`` reverses them.

    The gradient is transposed by the inverse permutation."""
    axes = _shape_arg(axes) if axes else None
    if axes is not None:
        axes = tuple(a % x.ndim if -x.ndim <= a < x.ndim else a for a in axes)
    return Transpose(axes)(x)


def expand_dims(x, axis):
    """``x`` with new size-1 axes inserted at ``axis`` (an int or a tuple, positions in the
    result, as in NumPy). A reshape, so its gradient is a reshape back."""
    axes = normalize_axis(axis, x.ndim + (len(axis) if isinstance(axis, (tuple, list)) else 1),
                          "expand_dims")
    rest = iter(x.shape)
    shape = tuple(1 if i in axes else next(rest) for i in range(x.ndim + len(axes)))
    return reshape(x, shape)


def squeeze(x, axis=None):
    """``x`` without size-1 axes: all of them (``axis=None``) or those in ``axis``."""
    if axis is None:
        axes = tuple(i for i, n in enumerate(x.shape) if n == 1)
    else:
        axes = normalize_axis(axis, x.ndim, "squeeze")
        for a in axes:
            if x.shape[a] != 1:
                raise ValueError(f"squeeze: cannot squeeze axis {a} of a tensor of shape {x.shape}: "
                                 f"its size is {x.shape[a]}, not 1")
    return reshape(x, tuple(n for i, n in enumerate(x.shape) if i not in axes))


# ----------------------------------------------------------------------------- broadcasting

class BroadcastTo(Function):
    def __init__(self, shape):
        self.shape = shape

    def forward(self, x):
        try:
            return _xp(x).broadcast_to(x, self.shape)
        except ValueError:
            raise ValueError(f"broadcast_to: cannot broadcast a tensor of shape {x.shape} "
                             f"to shape {self.shape}") from None

    def backward(self, gy):
        x, = self.inputs
        return gy.sum_to(x.shape)


def broadcast_to(x, *shape):
    """``x`` broadcast to ``shape`` (a read-only view); the gradient is summed back (``sum_to``)."""
    shape = _shape_arg(shape)
    if x.shape == shape:
        return x
    return BroadcastTo(shape)(x)


# ----------------------------------------------------------------------------- joining and splitting

class Concatenate(Function):
    """Join tensors along ``axis``; the gradient is ``gy`` split at the same offsets."""

    def __init__(self, axis):
        self.axis = axis

    def forward(self, *xs):
        return _xp(xs[0]).concatenate(xs, axis=self.axis)

    def backward(self, gy):
        offsets = list(itertools.accumulate(x.shape[self.axis] for x in self.inputs[:-1]))
        parts = split(gy, offsets, axis=self.axis)
        return tuple(part.astype(x.dtype) if need else None
                     for part, x, need in zip(parts, self.inputs, self.needs_input_grad))


def _as_tensors(tensors, op):
    tensors = list(tensors)
    if not tensors:
        raise ValueError(f"{op}: need at least one tensor")
    first = next((t for t in tensors if isinstance(t, Tensor)), None)
    return [as_tensor(t, like=first) for t in tensors]


def concatenate(tensors, axis=0):
    """Join a sequence of tensors along an existing ``axis``; shapes must agree elsewhere."""
    tensors = _as_tensors(tensors, "concatenate")
    first = tensors[0]
    if first.ndim == 0:
        raise ValueError("concatenate: zero-dimensional tensors cannot be concatenated "
                         "(use stack, or reshape them to shape (1,))")
    axis = _one_axis(axis, first.ndim, "concatenate")
    for i, t in enumerate(tensors[1:], 1):
        if t.ndim != first.ndim:
            raise ValueError(f"concatenate: tensor {i} has {t.ndim} dimensions (shape {t.shape}) but "
                             f"tensor 0 has {first.ndim} (shape {first.shape})")
        if any(n != m for k, (n, m) in enumerate(zip(t.shape, first.shape)) if k != axis):
            raise ValueError(f"concatenate: tensor {i} has shape {t.shape} but tensor 0 has shape "
                             f"{first.shape}; all dimensions except axis {axis} must match")
    return Concatenate(axis)(*tensors)


def stack(tensors, axis=0):
    """Join tensors of one shape along a new ``axis`` (expand_dims each, then concatenate)."""
    tensors = _as_tensors(tensors, "stack")
    shape = tensors[0].shape
    for i, t in enumerate(tensors[1:], 1):
        if t.shape != shape:
            raise ValueError(f"stack: all tensors must have the same shape, but tensor 0 has shape "
                             f"{shape} and tensor {i} has shape {t.shape}")
    axis = _one_axis(axis, len(shape) + 1, "stack")
    return concatenate([expand_dims(t, axis) for t in tensors], axis=axis)


class Split(Function):
    """Slices ``x[start:stop]`` along ``axis``, one output per (start, stop) in ``bounds``.

    Backward: when the slices tile the axis in order (every ``split`` with sorted,
    in-range indices) the gradient is the concatenation of the output gradients;
    otherwise (NumPy allows unsorted indices, so slices may overlap) each output
    gradient is padded back into place and the pieces are added.
    """

    def __init__(self, bounds, axis):
        self.bounds, self.axis = bounds, axis

    def forward(self, x):
        lead = (slice(None),) * self.axis
        return tuple(x[lead + (slice(start, stop),)] for start, stop in self.bounds)

    def backward(self, *gys):
        x, = self.inputs
        n = x.shape[self.axis]
        stops = [stop for _, stop in self.bounds]
        starts = [start for start, _ in self.bounds]
        if starts[0] == 0 and stops[-1] == n and starts[1:] == stops[:-1]:
            return concatenate(gys, axis=self.axis)
        gx = None
        for (start, stop), g in zip(self.bounds, gys):
            if stop > start:
                widths = [(0, 0)] * x.ndim
                widths[self.axis] = (start, n - stop)
                piece = pad(g, widths)
                gx = piece if gx is None else gx + piece
        return gx if gx is not None else Tensor(backend.zeros(x.shape, x.dtype, like=x.data))


def split(x, indices_or_sections, axis=0):
    """Split ``x`` along ``axis`` into a tuple of tensors, like ``numpy.split``.

    indices_or_sections: an int N (N equal parts; the axis length must be divisible by N)
    or a sequence of split indices (``[2, 5]`` gives ``x[:2], x[2:5], x[5:]``).
    Outputs that receive no gradient count as zeros.
    """
    axis = _one_axis(axis, x.ndim, "split")
    n = x.shape[axis]
    if isinstance(indices_or_sections, Tensor):
        indices_or_sections = indices_or_sections.data
    if backend.is_array(indices_or_sections):
        indices_or_sections = backend.to_numpy(indices_or_sections).tolist()
    if isinstance(indices_or_sections, (tuple, list)):
        points = [0] + [operator.index(i) for i in indices_or_sections] + [n]
        bounds = []
        for start, stop in zip(points[:-1], points[1:]):
            start, stop, _ = slice(start, stop).indices(n)   # Python slicing: wrap, clip
            bounds.append((start, stop if stop > start else start))
    else:
        sections = operator.index(indices_or_sections)
        if sections <= 0:
            raise ValueError(f"split: the number of sections must be positive, got {sections}")
        if n % sections:
            raise ValueError(f"split: axis {axis} of a tensor of shape {x.shape} (size {n}) cannot be "
                             f"split into {sections} equal sections")
        step = n // sections
        bounds = [(k * step, (k + 1) * step) for k in range(sections)]
    return Split(tuple(bounds), axis)(x)


# ----------------------------------------------------------------------------- flip and pad

class Flip(Function):
    """Reverse the order along ``axes``; the gradient is flipped back (flip is its own adjoint)."""

    def __init__(self, axes):
        self.axes = axes

    def forward(self, x):
        return x[tuple(slice(None, None, -1) if i in self.axes else slice(None) for i in range(x.ndim))]

    def backward(self, gy):
        return flip(gy, self.axes)


def flip(x, axis=None):
    """Reverse the order of elements along ``axis`` (all axes by default), like ``numpy.flip``."""
    axes = normalize_axis(axis, x.ndim, "flip")
    if not axes:
        return x
    return Flip(axes)(x)


def _pad_widths(pad_width, ndim):
    """NumPy's pad_width forms (n, (n,), (before, after), ((before, after),),
    ((b0, a0), ..., (b_ndim-1, a_ndim-1))) as one (before, after) pair per axis."""
    def pair(p):
        if isinstance(p, (tuple, list)):
            if len(p) == 1:
                return (operator.index(p[0]),) * 2
            if len(p) == 2:
                return operator.index(p[0]), operator.index(p[1])
            raise ValueError(f"pad: a pad width must be n or (before, after), got {p!r}")
        return (operator.index(p),) * 2

    if hasattr(pad_width, "tolist"):
        pad_width = pad_width.tolist()
    if not isinstance(pad_width, (tuple, list)) or not any(isinstance(p, (tuple, list)) for p in pad_width):
        widths = [pair(pad_width)] * ndim                          # n, (n,) or (before, after)
    elif len(pad_width) == 1:
        widths = [pair(pad_width[0])] * ndim                       # ((before, after),)
    elif len(pad_width) == ndim:
        widths = [pair(p) for p in pad_width]                      # one pair per axis
    else:
        raise ValueError(f"pad: pad_width {pad_width!r} does not match a tensor with {ndim} dimensions")
    if any(w < 0 for p in widths for w in p):
        raise ValueError(f"pad: pad widths must be non-negative, got {pad_width!r}")
    return tuple(widths)


class Pad(Function):
    """Constant padding; the gradient slices the padding off."""

    def __init__(self, widths, constant_values):
        self.widths, self.constant_values = widths, constant_values

    def forward(self, x):
        return _xp(x).pad(x, self.widths, mode="constant", constant_values=self.constant_values)

    def backward(self, gy):
        x, = self.inputs
        return getitem(gy, tuple(slice(before, before + n) for (before, _), n in zip(self.widths, x.shape)))


def pad(x, pad_width, mode="constant", constant_values=0):
    """Pad ``x`` with constants, like ``numpy.pad`` in ``mode="constant"`` (the only mode).

    pad_width: n, (before, after) or one (before, after) per axis, as in NumPy.
    The constant gets no gradient.
    """
    if mode != "constant":
        raise ValueError(f'pad: only mode="constant" is supported, got mode={mode!r}')
    widths = _pad_widths(pad_width, x.ndim)
    if all(w == (0, 0) for w in widths):
        return x
    if isinstance(constant_values, Tensor):
        constant_values = constant_values.item()
    return Pad(widths, constant_values)(x)


# ----------------------------------------------------------------------------- indexing

def _index_on(index, x):
    """The index as a tuple whose arrays live on ``x``'s device.

    Tensors (integer indices, boolean masks) are unwrapped and lists become arrays;
    slices, ints, None and Ellipsis pass through. Also says whether an integer index
    array is present (its entries may repeat, so the backward must scatter-add).
    """
    xp = _xp(x.data)
    items = index if isinstance(index, tuple) else (index,)
    out, repeats = [], False
    for item in items:
        if isinstance(item, Tensor):
            item = item.data
        elif isinstance(item, list):
            item = xp.asarray(item) if item else xp.asarray(item, dtype=xp.intp)
        if backend.is_array(item):
            if backend.device_of(item) != x.device:
                item = backend.to_device(item, x.device)
            if item.dtype.kind in "iu":
                repeats = True
            elif item.dtype.kind != "b":
                raise IndexError("getitem: index arrays must be integers or booleans, "
                                 f"got dtype {item.dtype}")
        out.append(item)
    if repeats:     # scatter-add: a mask is its nonzero() positions (NumPy's rule), as integer arrays
        out = [part for item in out for part in
               (item.nonzero() if backend.is_array(item) and item.dtype.kind == "b" and item.ndim else (item,))]
    return tuple(out), repeats


class GetItem(Function):
    """y = x[index]. Backward: scatter-add gy into zeros of x's shape (``GetItemGrad``)."""

    def __init__(self, index, repeats):
        self.index, self.repeats = index, repeats

    def forward(self, x):
        return x[self.index]

    def backward(self, gy):
        x, = self.inputs
        return GetItemGrad(self.index, self.repeats, x.shape)(gy)


class GetItemGrad(Function):
    """gx = zeros(shape); gx[index] += gy, adding repeated integer indices.

    The adjoint of ``x[index]``, and its own adjoint is ``getitem`` again, so the
    gradient of a gradient through indexing works. Basic indices (slices, ints,
    None, Ellipsis, boolean masks) touch every entry at most once: plain assignment.
    """

    def __init__(self, index, repeats, shape):
        self.index, self.repeats, self.shape = index, repeats, shape

    @classmethod
    def name(cls):
        return "getitem_grad"

    def forward(self, gy):
        xp = _xp(gy)
        gx = xp.zeros(self.shape, dtype=gy.dtype)
        if self.repeats:
            backend.scatter_add(xp, gx, self.index, gy)
        else:
            gx[self.index] = gy
        return gx

    def backward(self, ggx):
        return GetItem(self.index, self.repeats)(ggx)


def getitem(x, index):
    """``x[index]`` with NumPy's rules: ints, slices (negative steps too), None, Ellipsis,
    integer index arrays/lists/Tensors and boolean masks.

    The gradient puts ``gy`` back where the entries came from; an entry picked several
    times (``x[[0, 0, 1]]``) gets the sum of its gradients.
    """
    index, repeats = _index_on(index, x)
    return GetItem(index, repeats)(x)
