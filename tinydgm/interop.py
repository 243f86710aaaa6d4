"""The bridge to other frameworks: a function of PyTorch tensors as a tinydgm function.

    from tinydgm.interop import from_torch
    log_prob = from_torch(their_model.log_prob)          # Tensor -> Tensor, differentiable
    td.gradcheck(log_prob, [x]); td.gradgradcheck(log_prob, [x]); td.jacobian(log_prob, x)

Values go through NumPy; derivatives come from the other framework's own autograd, to
any order: the call is a tinydgm ``Function`` whose backward is again such a Function,
computing the vector-Jacobian product g -> J^T g with ``torch.autograd.grad(...,
create_graph=True)``. The backward of that one is the vector-Jacobian product of the
vector-Jacobian product, and so on, so ``gradgradcheck``, Hessian-vector products and
the tinydgm.testing contracts see PyTorch's derivatives exactly as PyTorch computes them.

PyTorch is imported only when a bridge function is called: tinydgm does not depend on it.
Arrays keep their dtype (float64 stays float64) and come back to the device of the
inputs (via the host for CUDA arrays).

    from_torch(fn, params=None)        fn(*tensors) -> tensor or tuple; with ``params`` (dotted
                                       names of a torch Module's parameters) the returned
                                       function takes those parameters as extra inputs
    torch_transform(forward, inverse)  a flow transform for tinydgm.testing.assert_flow_transform
    to_array(t)                        a NumPy array from a torch tensor (``td.tensor`` uses it)
"""
import contextlib

from tinydgm import backend
from tinydgm.autodiff.core import Function, Tensor

__all__ = ["from_torch", "torch_transform", "to_array", "is_torch_tensor", "is_torch_module"]


def _torch():
    try:
        import torch
    except ImportError:
        raise ImportError("tinydgm.interop: PyTorch is not installed (pip install torch); tinydgm itself does "
                          "not need it, only this bridge does") from None
    return torch


def is_torch_tensor(obj):
    """True for a torch.Tensor (checked without importing torch)."""
    return any(c.__module__.startswith("torch") and c.__name__ == "Tensor" for c in type(obj).__mro__)


def is_torch_module(obj):
    """True for a torch.nn.Module instance (checked without importing torch)."""
    return any(c.__module__.startswith("torch.nn") and c.__name__ == "Module" for c in type(obj).__mro__)


def to_array(t, who="to_array"):
    """A NumPy copy of the torch tensor ``t``, in its own dtype. A tensor that requires grad
    is refused: tinydgm cannot follow PyTorch's graph (use ``t.detach()`` for the values,
    or ``from_torch`` to differentiate through a PyTorch function)."""
    if getattr(t, "requires_grad", False):
        raise TypeError(f"{who}: the torch tensor (shape {tuple(t.shape)}, {t.dtype}) requires grad; tinydgm "
                        "cannot follow PyTorch's graph. Pass t.detach() for its values, or wrap the PyTorch "
                        "function with tinydgm.interop.from_torch to differentiate through it")
    return t.detach().cpu().numpy().copy()


def _to_torch(array):
    return _torch().from_numpy(backend.to_numpy(array).copy())


def _outputs_tuple(ys, name):
    single = not isinstance(ys, (tuple, list))
    ys = (ys,) if single else tuple(ys)
    for k, y in enumerate(ys):
        if not is_torch_tensor(y):
            raise TypeError(f"from_torch: {name} must return torch tensors, but its output {k} is a "
                            f"{type(y).__name__}")
    return single, ys


def _floating(t):
    return t.dtype.is_floating_point


class TorchCall(Function):
    """One call of a PyTorch function: forward runs it on the input arrays, backward is the
    TorchCall of its vector-Jacobian product (so every order of derivative is PyTorch's)."""

    def __init__(self, fn, name):
        self.fn, self.fn_name = fn, name

    def forward(self, *arrays):
        torch = _torch()
        with torch.enable_grad():          # fn may differentiate inside (a score, a gradient penalty)
            single, ys = _outputs_tuple(self.fn(*[_to_torch(a) for a in arrays]), self.fn_name)
        device = backend.device_of(arrays[0]) if arrays else "cpu"
        out = tuple(backend.to_device(y.detach().cpu().numpy().copy(), device) for y in ys)
        return out[0] if single else out

    def backward(self, *grad_outputs):
        n = len(self.inputs)
        wanted = [i for i in range(n) if self.needs_input_grad[i]]
        vjp = TorchCall(_vjp(self.fn, n, wanted, self.fn_name), f"d({self.fn_name})")
        grads = vjp(*self.inputs, *grad_outputs)
        grads = (grads,) if isinstance(grads, Tensor) else grads
        out = [None] * n
        for i, g in zip(wanted, grads):
            out[i] = g
        return tuple(out)


def _vjp(fn, n, wanted, name):
    """(x_1..x_n, g_1..g_K) -> J^T g for the inputs in ``wanted``, by torch.autograd.grad
    with create_graph=True (so that it can be differentiated in turn)."""

    def vector_jacobian_product(*args):
        torch = _torch()
        # fresh leaves at the outermost level; inside a higher-order call x already carries
        # the outer graph and must stay connected to it
        xs = [x if x.requires_grad else x.detach().requires_grad_(_floating(x)) for x in args[:n]]
        gs = args[n:]
        with torch.enable_grad():
            _, ys = _outputs_tuple(fn(*xs), name)
            pairs = [(y, g) for y, g in zip(ys, gs) if y.requires_grad]
            targets = [xs[i] for i in wanted]
            if pairs:
                grads = torch.autograd.grad([y for y, _ in pairs], targets, [g for _, g in pairs],
                                            create_graph=True, allow_unused=True)
            else:
                grads = [None] * len(targets)
        return tuple(torch.zeros_like(x) if g is None else g for x, g in zip(targets, grads))

    return vector_jacobian_product


@contextlib.contextmanager
def _parameters_replaced(module, names, values):
    """Inside: the module's parameters ``names`` are the tensors ``values`` (the
    stateless call of torch.func.functional_call, for any method of the module)."""
    saved = []
    try:
        for name, value in zip(names, values):
            owner_name, _, attr = name.rpartition(".")
            owner = module.get_submodule(owner_name) if owner_name else module
            saved.append((owner, attr, owner._parameters.pop(attr)))
            setattr(owner, attr, value)
        yield
    finally:
        for owner, attr, original in reversed(saved):
            delattr(owner, attr)
            owner._parameters[attr] = original


def _owner_module(fn):
    if is_torch_module(fn):
        return fn
    owner = getattr(fn, "__self__", None)
    return owner if is_torch_module(owner) else None


def from_torch(fn, params=None, name=None):
    """A tinydgm function that calls the PyTorch function ``fn`` (see the module docstring).

    fn: a callable of torch tensors returning a tensor or a tuple of tensors (a torch Module,
        its bound method such as ``model.log_prob``, or any function).
    params: None, or dotted names of parameters of fn's Module (fn a Module or its bound
        method): the returned function then takes them after the inputs,
        ``g(*inputs, *param_values)``, and differentiates with respect to them too.
    Returns ``g(*tensors) -> Tensor or tuple of Tensors``, differentiable to any order.
    """
    name = name or getattr(fn, "__qualname__", None) or type(fn).__name__
    if params is not None:
        module = _owner_module(fn)
        if module is None:
            raise TypeError("from_torch: params= needs fn to be a torch.nn.Module or a bound method of one, "
                            f"got {type(fn).__name__}")
        params = list(params)
        known = dict(module.named_parameters())
        unknown = [p for p in params if p not in known]
        if unknown:
            raise KeyError(f"from_torch: {type(module).__name__} has no parameters {unknown}; it has "
                           f"{sorted(known)}")
        inner, n_params = fn, len(params)

        def fn(*args):
            with _parameters_replaced(module, params, args[len(args) - n_params:]):
                return inner(*args[:len(args) - n_params])

    def tinydgm_fn(*inputs):
        for k, x in enumerate(inputs):
            if not isinstance(x, Tensor):
                raise TypeError(f"from_torch({name}): input {k} must be a tinydgm Tensor, got "
                                f"{type(x).__name__} (td.tensor(...) makes one)")
        return TorchCall(fn, name)(*inputs)

    tinydgm_fn.__qualname__ = f"from_torch({name})"
    return tinydgm_fn


class TorchTransform:
    """A PyTorch flow transform seen as a tinydgm one: ``t(x) -> (z, log_det)`` and
    ``t.inverse(z) -> (x, log_det)`` as Tensors, derivatives from PyTorch; no parameters
    are exposed (``named_parameters()`` is empty: check them through ``from_torch(...,
    params=...)``)."""

    def __init__(self, forward, inverse, name=None):
        self.display_name = name or getattr(forward, "__qualname__", type(forward).__name__)
        self._forward = from_torch(forward, name=f"{self.display_name}.forward")
        self._inverse = from_torch(inverse, name=f"{self.display_name}.inverse")

    def __call__(self, x):
        return self._forward(x)

    def forward(self, x):
        return self._forward(x)

    def inverse(self, z):
        return self._inverse(z)

    def named_parameters(self):
        return iter(())

    def __repr__(self):
        return f"TorchTransform({self.display_name})"


def torch_transform(forward, inverse=None, name=None):
    """Wrap a PyTorch transform for the flow contract. ``forward`` and ``inverse`` are
    callables returning (output, log_det); or pass one object with ``forward`` and
    ``inverse`` methods (e.g. an nflows-style Transform) as ``forward``."""
    if inverse is None:
        obj = forward
        if not (hasattr(obj, "forward") and hasattr(obj, "inverse")):
            raise TypeError("torch_transform: pass forward and inverse callables, or one object with forward "
                            f"and inverse methods; got {type(obj).__name__}")
        return TorchTransform(obj.forward, obj.inverse, name or type(obj).__name__)
    return TorchTransform(forward, inverse, name)
