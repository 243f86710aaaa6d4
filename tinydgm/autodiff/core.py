"""The autodiff core: Tensor, Function, backward, no_grad and grad.

A ``Tensor`` wraps one backend array (``numpy.ndarray`` or ``cupy.ndarray``). Calling a
``Function`` on tensors runs its ``forward`` on the arrays and, when gradients are on and
an input requires them, records the call in a graph:

    y.creator = f,  f.inputs = (x0, x1, ...),  f.outputs = (weakref(y), ...)

``backward`` walks that graph from the output towards the leaves in decreasing
``generation`` (an iterative topological order: a chain of 10,000 ops needs no
recursion) and calls each ``Function.backward`` with the gradients of its outputs.
Backward passes are written with Tensor ops, so with ``create_graph=True`` the gradient
itself is a differentiable graph (second derivatives); without it they run under
``no_grad`` and record nothing.

Memory: a Function holds its inputs strongly and its outputs by weak reference, and a
Tensor holds its creator. Dropping the last output therefore frees the whole graph by
reference counting, with no cycle for the garbage collector to find.
"""
import contextlib
import heapq
import itertools
import weakref

from tinydgm import backend

# ----------------------------------------------------------------------------- modes

_grad_enabled = True
_debug = False


@contextlib.contextmanager
def _set_grad_enabled(flag):
    global _grad_enabled
    old, _grad_enabled = _grad_enabled, flag
    try:
        yield
    finally:
        _grad_enabled = old


def no_grad():
    """Context manager: ops inside record no graph (evaluation, sampling, updates)."""
    return _set_grad_enabled(False)


def enable_grad():
    """Context manager: record graphs again inside a ``no_grad`` block."""
    return _set_grad_enabled(True)


def is_grad_enabled():
    return _grad_enabled


def set_debug(flag=True):
    """Debug mode checks every gradient's shape and dtype against its input's, at every
    backward step, and names the Function that broke the contract."""
    global _debug
    _debug = bool(flag)


def is_debug():
    return _debug


# ----------------------------------------------------------------------------- Tensor

class Tensor:
    """An array with a gradient and the Function that created it."""

    __slots__ = ("data", "grad", "creator", "requires_grad", "generation", "name", "__weakref__")
    __array_ufunc__ = None      # ndarray (op) Tensor defers to Tensor's reflected operator
    __hash__ = object.__hash__  # == is elementwise, identity stays hashable

    def __init__(self, data, requires_grad=False, name=None):
        if not isinstance(data, backend.ARRAY_TYPES):
            raise TypeError(f"Tensor: data must be a numpy or cupy array, got {type(data).__name__}; "
                            "use tinydgm.tensor(...) to build one from array-like data")
        if requires_grad and not backend.is_floating(data.dtype):
            raise TypeError(f"Tensor: only floating tensors can require gradients, got dtype {data.dtype}")
        self.data = data
        self.grad = None
        self.creator = None
        self.requires_grad = requires_grad
        self.generation = 0
        self.name = name

    # --- properties of the array
    @property
    def shape(self):
        return self.data.shape

    @property
    def ndim(self):
        return self.data.ndim

    @property
    def size(self):
        return self.data.size

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def device(self):
        return backend.device_of(self.data)

    @property
    def is_leaf(self):
        return self.creator is None

    def __len__(self):
        return len(self.data)

    def __repr__(self):
        body = str(backend.to_numpy(self.data)).replace("\n", "\n       ")
        extra = ", requires_grad=True" if self.requires_grad else ""
        dev = ", device='cuda'" if self.device == "cuda" else ""
        return f"tensor({body}, dtype={self.dtype}{dev}{extra})"

    def __bool__(self):
        if self.size != 1:
            raise ValueError(f"the truth value of a tensor of shape {self.shape} is ambiguous; "
                             "use .any() / .all() on .data")
        return bool(self.data)

    # --- conversions
    def numpy(self):
        """A NumPy array (a copy from the GPU for CUDA tensors)."""
        return backend.to_numpy(self.data)

    def item(self):
        if self.size != 1:
            raise ValueError(f"item: only one-element tensors convert to a Python scalar, got shape {self.shape}")
        return self.data.item()

    def detach(self):
        """The same data, cut from the graph."""
        return Tensor(self.data)

    def to(self, device):
        """A copy on ``device`` ("cpu" or "cuda"); differentiable."""
        return F.to_device(self, device)

    def requires_grad_(self, flag=True):
        if flag and not backend.is_floating(self.dtype):
            raise TypeError(f"requires_grad_: only floating tensors can require gradients, got dtype {self.dtype}")
        self.requires_grad = flag
        return self

    def zero_grad(self):
        self.grad = None

    # --- gradients
    def backward(self, grad=None, retain_graph=False, create_graph=False):
        """Accumulate d(self)/d(leaf) into every leaf's ``.grad``.

        ``grad`` is the gradient flowing into ``self`` (ones for a one-element tensor).
        With ``create_graph=True`` the gradients are themselves differentiable and the
        graph is kept.
        """
        if not self.requires_grad:
            raise RuntimeError("backward: this tensor does not require grad and has no graph "
                               "(were its inputs created with requires_grad=True, outside no_grad()?)")
        grad = _initial_grad(self, grad, "backward")
        _run_backward([self], [grad], retain_graph or create_graph, create_graph, targets=None)

    # operators and methods are attached at the bottom of this file (see _METHODS)


def _initial_grad(y, grad, who):
    if grad is None:
        if y.size != 1:
            raise RuntimeError(f"{who}: grad can be created implicitly only for a one-element output, "
                               f"but the output has shape {y.shape}; pass grad= (the gradient flowing "
                               "into the output, same shape) or reduce the output with .sum()")
        return Tensor(backend.ones_like(y.data))
    if not isinstance(grad, Tensor):
        grad = Tensor(backend.as_array(grad, dtype=y.dtype, device=y.device))
    if grad.shape != y.shape:
        raise ValueError(f"{who}: grad has shape {grad.shape} but the output has shape {y.shape}")
    if grad.dtype != y.dtype:
        raise TypeError(f"{who}: grad has dtype {grad.dtype} but the output has dtype {y.dtype}")
    return grad


def tensor(data, requires_grad=False, dtype=None, device=None):
    """A new leaf Tensor from array-like ``data`` (copied).

    Python floats get the default dtype (float32 unless changed); arrays keep theirs,
    foreign ones too (a float64 PyTorch tensor stays float64; one that requires grad is
    refused: see tinydgm.interop). ``device`` is "cpu" (default) or "cuda".
    """
    if isinstance(data, Tensor):
        data = data.data
    elif _is_foreign_array(data):
        from tinydgm import interop
        data = interop.to_array(data, "tensor") if interop.is_torch_tensor(data) else backend.to_numpy(data)
    arr = backend.as_array(data, dtype=dtype, device=device)
    if arr is data:
        arr = arr.copy()
    return Tensor(arr, requires_grad=requires_grad)


def _is_foreign_array(data):
    """An array of another library (PyTorch, JAX, ...): it has a dtype and converts to
    NumPy. NumPy's own scalars are not foreign (they follow the Python-number rule)."""
    return (hasattr(data, "dtype") and hasattr(data, "__array__") and not backend.is_array(data)
            and not type(data).__module__.startswith("numpy"))


_PYTHON_NUMBERS = (int, float)


def as_tensor(x, like=None):
    """``x`` itself if it is a Tensor, else a constant Tensor.

    A Python scalar takes the dtype and device of ``like`` when ``like`` is floating, so
    that float32 tensors combined with Python numbers stay float32.
    """
    if isinstance(x, Tensor):
        return x
    if like is not None and type(x) in _PYTHON_NUMBERS:      # the hot path: x * 0.5, 1 - y
        return _wrap(backend.scalar_array(x, like.data), type(like.data))
    if like is not None and not backend.is_array(x):
        dtype = like.dtype if backend.is_floating(like.dtype) else None
        return Tensor(backend.as_array(x, dtype=dtype, device=like.device))
    return Tensor(backend.as_array(x))


# ----------------------------------------------------------------------------- Function

class Function:
    """One differentiable operation.

    Subclasses define ``forward(*arrays) -> array or tuple of arrays`` on backend
    arrays and ``backward(*grad_outputs) -> grad per input`` with Tensor ops (a
    gradient may be None for an input that needs none: see ``needs_input_grad``).
    Keep both side by side; cache in ``self`` only what does not depend on the inputs'
    values, or recompute it from ``self.inputs`` inside backward (second derivatives
    must see every dependence on the inputs).
    """
    generation = 0
    inputs = None
    outputs = None
    needs_input_grad = ()

    def __call__(self, *inputs):
        arrays = [x.data for x in inputs]
        kind = type(arrays[0])
        for a in arrays:
            if type(a) is not kind:
                _check_same_device(self, inputs)
        try:
            ys = self.forward(*arrays)
        except (ValueError, TypeError, IndexError) as err:
            message = str(err)
            if not message.startswith(self.name() + ":"):
                shapes = ", ".join(str(tuple(a.shape)) for a in arrays)
                message = f"{self.name()}: {message} (input shapes: {shapes})"
            raise type(err)(message) from None
        if type(ys) is tuple:
            outputs = tuple(_wrap(y, kind) for y in ys)
        else:
            outputs = (_wrap(ys, kind),)
        if _grad_enabled:
            needs = tuple([x.requires_grad for x in inputs])
            if True in needs:
                self._record(inputs, outputs, needs)
        return outputs[0] if type(ys) is not tuple else outputs

    def _record(self, inputs, outputs, needs):
        """Link the call into the graph: outputs -> self (strong), self -> outputs (weak)."""
        self.needs_input_grad = needs
        self.generation = generation = max([x.generation for x in inputs])
        for y in outputs:
            y.creator = self
            y.requires_grad = True
            y.generation = generation + 1
        self.inputs = inputs
        self.outputs = tuple([weakref.ref(y) for y in outputs])
        if len(outputs) > 1:
            self.output_meta = tuple([(y.shape, y.dtype) for y in outputs])

    def output(self, i=0):
        """The i-th output Tensor (alive whenever a gradient flows into it)."""
        return self.outputs[i]()

    @classmethod
    def name(cls):
        return cls.__name__.lower()

    def forward(self, *arrays):
        raise NotImplementedError(f"{self.name()}: forward is not defined")

    def backward(self, *grad_outputs):
        raise NotImplementedError(f"{self.name()}: backward is not defined")


_new_object = object.__new__


def _wrap(y, kind):
    """A fresh graph-less Tensor around a forward result (the hot path: no validation)."""
    if type(y) not in backend.ARRAY_TYPES:
        y = backend.ensure_array(y, kind)
    t = _new_object(Tensor)
    t.data, t.grad, t.creator, t.requires_grad, t.generation, t.name = y, None, None, False, 0, None
    return t


def _check_same_device(fn, inputs):
    devices = [x.device for x in inputs]
    if len(set(devices)) > 1:
        raise RuntimeError(f"{fn.name()}: inputs are on different devices {devices}; "
                           "move them with .to(device) first")


# ----------------------------------------------------------------------------- backward

_tiebreak = itertools.count()


def _run_backward(outputs, output_grads, retain_graph, create_graph, targets):
    """Propagate ``output_grads`` through the graph.

    targets is None: accumulate into the ``.grad`` of every leaf that requires grad.
    targets is a list of tensors: return their gradients, leave every ``.grad`` alone.
    """
    global _grad_enabled
    grads = {}      # id(tensor) -> [tensor, gradient so far]; the entry keeps the tensor (and its id) alive
    leaves = []     # leaf tensors that received a gradient
    pinned = {id(y) for y in outputs}          # gradients read but never consumed: roots and targets
    if targets is not None:
        pinned.update(id(t) for t in targets)
    heap, queued = [], set()
    for y, gy in zip(outputs, output_grads):
        _add(grads, y, gy, create_graph)
        f = y.creator
        if f is not None and f not in queued:
            queued.add(f)
            heapq.heappush(heap, (-f.generation, next(_tiebreak), f))
    needed = None if targets is None else _functions_leading_to(outputs, {id(t) for t in targets})

    previous, _grad_enabled = _grad_enabled, create_graph     # backward ops record a graph only if asked
    try:
        while heap:
            f = heapq.heappop(heap)[2]
            if needed is not None and f not in needed:
                continue
            if f.inputs is None:
                raise RuntimeError(f"{f.name()}: trying to backward through a graph a second time "
                                   "(its buffers were freed); pass retain_graph=True the first time")
            ys = [ref() for ref in f.outputs]     # alive until backward has run (self.output())
            gys = [_take(grads, y, pinned) for y in ys]
            if len(gys) == 1:
                if gys[0] is None:
                    continue
            elif all(g is None for g in gys):
                continue
            else:   # a multi-output op gets zeros for the outputs nothing depended on
                gys = [g if g is not None else Tensor(backend.zeros(shape, dtype, like=f.inputs[0].data))
                       for g, (shape, dtype) in zip(gys, f.output_meta)]
            gxs = f.backward(*gys)
            if type(gxs) is not tuple:
                gxs = (gxs,)
            for i, (x, gx) in enumerate(zip(f.inputs, gxs)):
                if gx is None or not x.requires_grad:
                    continue
                if _debug:
                    _check_grad(f, i, x, gx)
                if _add(grads, x, gx, create_graph) and x.creator is None:
                    leaves.append(x)
                c = x.creator
                if c is not None and c not in queued:
                    queued.add(c)
                    heapq.heappush(heap, (-c.generation, next(_tiebreak), c))
            if not retain_graph:
                _free(f)
    finally:
        _grad_enabled = previous

    if targets is not None:
        return [grads[id(t)][1] if id(t) in grads else None for t in targets]
    leaves.extend(y for y in outputs if y.creator is None)     # backward() called on a leaf itself
    shared = {id(g) for g in output_grads}          # the caller's tensors: never adopt them
    for x in leaves:
        if x.requires_grad:
            g = grads[id(x)][1]
            if x.grad is not None:
                x.grad = _accumulate(x.grad, g, create_graph)
            else:
                x.grad = g if create_graph else _own(g, shared)
    return None


def _add(grads, x, g, create_graph):
    """Add g to x's gradient so far; True when it is x's first."""
    entry = grads.get(id(x))
    if entry is None:
        grads[id(x)] = [x, g]
        return True
    entry[1] = _accumulate(entry[1], g, create_graph)
    return False


def _take(grads, y, pinned):
    """The gradient that flowed into output y (consumed unless y is a root or a target)."""
    if y is None:
        return None
    entry = grads.get(id(y)) if id(y) in pinned else grads.pop(id(y), None)
    return None if entry is None else entry[1]


def _accumulate(a, b, create_graph):
    if create_graph:
        return a + b
    return _wrap(a.data + b.data, type(a.data))


def _own(g, shared):
    """A gradient a leaf may keep as its ``.grad``: a fresh writeable array that no other
    leaf or caller holds (backward passes hand the same Tensor to several inputs, and
    broadcast views are read-only)."""
    data = g.data
    flags = data.flags
    if id(g) in shared or not flags.owndata or not getattr(flags, "writeable", True):
        return _wrap(data.copy(), type(data))
    shared.add(id(g))
    return g


def _check_grad(f, i, x, gx):
    if not isinstance(gx, Tensor):
        raise TypeError(f"{f.name()}.backward returned a {type(gx).__name__} for input {i}, expected a Tensor")
    if gx.shape != x.shape or gx.dtype != x.dtype:
        raise RuntimeError(f"{f.name()}.backward: gradient for input {i} has shape {gx.shape} and dtype "
                           f"{gx.dtype}, but the input has shape {x.shape} and dtype {x.dtype}")


def _free(f):
    """Drop f's inputs (and with them the arrays its backward needs) after its backward has run,
    but keep the graph's shape: which tensors went in (weakly) and which Functions made them, so
    that a later ``grad`` still finds every path and, when one runs through f, says that the
    graph was freed instead of calling an input unused."""
    f.freed_edges = tuple((weakref.ref(x), x.creator) for x in f.inputs)
    f.inputs = None


def _edges(f):
    """(input tensor or None once collected, its creator) for each input of f, freed or not."""
    if f.inputs is not None:
        return [(x, x.creator) for x in f.inputs]
    return [(ref(), creator) for ref, creator in f.freed_edges]


def _functions_leading_to(outputs, target_ids):
    """The Functions on some path from a target to an output (the rest need no backward)."""
    order, seen, stack = [], set(), [y.creator for y in outputs if y.creator is not None]
    while stack:
        f = stack.pop()
        if f in seen:
            continue
        seen.add(f)
        order.append(f)
        stack.extend(creator for _, creator in _edges(f) if creator is not None)
    needed = set()
    for f in sorted(order, key=lambda f: f.generation):   # inputs' creators come first
        if any((x is not None and id(x) in target_ids) or creator in needed for x, creator in _edges(f)):
            needed.add(f)
    return needed


def grad(outputs, inputs, grad_outputs=None, retain_graph=None, create_graph=False, allow_unused=False):
    """Gradients of ``outputs`` with respect to ``inputs``, like ``torch.autograd.grad``.

    Returns a tuple with one Tensor per input; ``.grad`` attributes are not touched.
    With ``create_graph=True`` the returned gradients can be differentiated again
    (gradient penalties, Langevin dynamics, score matching).
    """
    single_out = isinstance(outputs, Tensor)
    outputs = [outputs] if single_out else list(outputs)
    inputs = [inputs] if isinstance(inputs, Tensor) else list(inputs)
    if grad_outputs is None or isinstance(grad_outputs, Tensor):
        grad_outputs = [grad_outputs] * len(outputs) if grad_outputs is None else [grad_outputs]
    if len(grad_outputs) != len(outputs):
        raise ValueError(f"grad: {len(outputs)} outputs but {len(grad_outputs)} grad_outputs")
    for k, y in enumerate(outputs):
        if not y.requires_grad:
            raise RuntimeError(f"grad: output {k} does not require grad (no graph leads to it)")
    for k, x in enumerate(inputs):
        if not x.requires_grad:
            raise RuntimeError(f"grad: input {k} does not require grad")
    if retain_graph is None:
        retain_graph = create_graph
    seeds = [_initial_grad(y, g, "grad") for y, g in zip(outputs, grad_outputs)]
    found = _run_backward(outputs, seeds, retain_graph, create_graph, targets=inputs)
    for k, g in enumerate(found):
        if g is None and not allow_unused:
            raise RuntimeError(f"grad: input {k} (shape {inputs[k].shape}) is not used to compute the "
                               "outputs; pass allow_unused=True to get None for it")
    return tuple(found)


# ----------------------------------------------------------------------------- methods

from tinydgm.autodiff import functional as F  # noqa: E402  (ops need Tensor and Function above)

_METHODS = {
    "__add__": lambda a, b: F.add(a, b), "__radd__": lambda a, b: F.add(b, a),
    "__sub__": lambda a, b: F.sub(a, b), "__rsub__": lambda a, b: F.sub(b, a),
    "__mul__": lambda a, b: F.mul(a, b), "__rmul__": lambda a, b: F.mul(b, a),
    "__truediv__": lambda a, b: F.div(a, b), "__rtruediv__": lambda a, b: F.div(b, a),
    "__pow__": lambda a, b: F.pow(a, b), "__rpow__": lambda a, b: F.pow(b, a),
    "__matmul__": lambda a, b: F.matmul(a, b), "__rmatmul__": lambda a, b: F.matmul(b, a),
    "__neg__": lambda a: F.neg(a), "__pos__": lambda a: a, "__abs__": lambda a: F.abs(a),
    "__getitem__": lambda a, index: F.getitem(a, index),
    "__lt__": lambda a, b: F.less(a, b), "__le__": lambda a, b: F.less_equal(a, b),
    "__gt__": lambda a, b: F.greater(a, b), "__ge__": lambda a, b: F.greater_equal(a, b),
    "__eq__": lambda a, b: F.equal(a, b), "__ne__": lambda a, b: F.not_equal(a, b),
    "T": property(lambda a: F.transpose(a)),
}
for _name, _method in _METHODS.items():
    setattr(Tensor, _name, _method)

# x.exp(), x.sum(axis=1), x.reshape(2, 3), ... : the functional op of the same name.
for _name in F.TENSOR_METHODS:
    if hasattr(F, _name):
        setattr(Tensor, _name, getattr(F, _name))
