"""Module and Parameter: how layers hold their weights.

A ``Parameter`` is a leaf Tensor that requires grad. A ``Module`` finds its parameters,
buffers (non-trained state such as batch-norm running statistics) and sub-modules by
looking at its own attributes, in the order they were assigned:

    class MLP(Module):
        def __init__(self):
            super().__init__()
            self.hidden = Linear(784, 500)       # a sub-module: its parameters are ours
            self.out = Linear(500, 784)

        def forward(self, x):
            return self.out(sigmoid(self.hidden(x)))

``state_dict()`` maps dotted names (``"hidden.weight"``) to NumPy arrays;
``load_state_dict`` checks names and shapes and says exactly what does not match.

Input dtype, one rule for every layer and model (``as_input``): data that is not a
floating Tensor (a NumPy/CuPy array of any dtype; an integer or boolean Tensor such as
uint8 pixels) becomes a constant Tensor in the module's dtype on its device; a floating
Tensor is used as given. Layers apply it to the first argument of ``module(x)``, models to
the first argument of the protocol methods (``DATA_METHODS``: loss, log_prob, the named
bounds, bits_per_dim), so an integer batch never silently runs a float32 model in float64.
A module whose input's integer dtype carries meaning (Embedding's labels, a classifier's
uint8 pixels in 0..255) sets ``own_input_rule = True`` and converts its input itself.

``repr(module)`` is a short summary, never an array: the class and its key sizes
(``extra_repr``), the parameter count, dtype and device (if it has parameters), then the sub-modules by
indentation, ``REPR_DEPTH`` levels deep, a run of identical siblings on one line
("(0-7): 8 x AffineCoupling(...)"), at most ``REPR_LINES`` lines:

    MLP(): 4,386 parameters, float32, cpu
      (hidden): Linear(784, 5, bias=True)
      (out): Linear(5, 2, bias=True)
"""
import functools
from collections import OrderedDict

from tinydgm import backend
from tinydgm.autodiff.core import Tensor

REPR_DEPTH = 3          # levels of sub-modules that repr shows
REPR_LINES = 30         # lines at most
DATA_METHODS = ("loss", "log_prob", "bits_per_dim", "elbo", "log_prob_estimate", "log_prob_bound",
                "log_prob_lower_bound")      # the protocol methods whose first argument is data


def as_input(module, x):
    """``x`` under the input rule (module docstring): arrays and integer or boolean Tensors
    as constant Tensors in the dtype and on the device of the module's first parameter;
    floating Tensors, anything else (lists, numbers: left to the method's own checks) and
    the input of a module without parameters unchanged. A tuple batch (x, labels, ...)
    converts x only (labels stay integers)."""
    if isinstance(x, Tensor) and backend.is_floating(x.dtype):
        return x                                          # the hot path: batches from train.fit
    if isinstance(x, tuple):
        return (as_input(module, x[0]),) + x[1:] if x else x
    if not (isinstance(x, Tensor) or backend.is_array(x)):
        return x
    like = next(iter(module.named_parameters()), (None, None))[1]
    if like is None or not backend.is_floating(like.dtype):
        return x
    data = x.data if isinstance(x, Tensor) else x
    return Tensor(backend.to_device(data, like.device).astype(like.dtype))


def _with_input_rule(method):
    @functools.wraps(method)
    def method_with_input_rule(self, *args, **kwargs):
        if args:
            args = (as_input(self, args[0]),) + args[1:]
        return method(self, *args, **kwargs)
    return method_with_input_rule


class Parameter(Tensor):
    """A trainable leaf Tensor; assigning one to a Module attribute registers it."""

    def __init__(self, data, requires_grad=True):
        if isinstance(data, Tensor):
            data = data.data
        super().__init__(data, requires_grad=requires_grad)

    def __repr__(self):
        return "Parameter(" + super().__repr__() + ")"


class Module:
    """Base class of layers and models: parameters, buffers, sub-modules, modes, devices."""

    own_input_rule = False      # True where the integer dtype means something (Embedding's labels,
                                # uint8 pixels in 0..255): the module converts its input itself

    def __init__(self):
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_buffers", [])

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        for name in DATA_METHODS:                 # every model's data passes the input rule
            if callable(cls.__dict__.get(name)) and not cls.own_input_rule:
                setattr(cls, name, _with_input_rule(cls.__dict__[name]))

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} does not define forward()")

    def __call__(self, *args, **kwargs):
        if args and not self.own_input_rule:
            args = (as_input(self, args[0]),) + args[1:]
        return self.forward(*args, **kwargs)

    def __setattr__(self, name, value):
        if "_buffers" not in self.__dict__:
            raise AttributeError(f"{type(self).__name__}: call super().__init__() before assigning attributes")
        object.__setattr__(self, name, value)

    # --- buffers: arrays saved in the state dict but not trained
    def register_buffer(self, name, array):
        """Keep ``array`` (a backend array) as ``self.name`` and in the state dict."""
        if name not in self._buffers:
            self._buffers.append(name)
        object.__setattr__(self, name, array)

    # --- traversal
    def named_children(self):
        for name, value in self.__dict__.items():
            if isinstance(value, Module):
                yield name, value

    def children(self):
        return [m for _, m in self.named_children()]

    def named_modules(self, prefix="", _seen=None):
        """(dotted name, module) pairs, self first; a module used twice is listed once."""
        _seen = set() if _seen is None else _seen
        if id(self) in _seen:
            return
        _seen.add(id(self))
        yield prefix, self
        for name, child in self.named_children():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name, _seen)

    def modules(self):
        return [m for _, m in self.named_modules()]

    def named_parameters(self, prefix=""):
        """(dotted name, Parameter) pairs, each parameter once, in assignment order."""
        seen = set()
        for module_name, module in self.named_modules(prefix):
            for name, value in module.__dict__.items():
                if isinstance(value, Parameter) and id(value) not in seen:
                    seen.add(id(value))
                    yield (f"{module_name}.{name}" if module_name else name), value

    def parameters(self):
        return [p for _, p in self.named_parameters()]

    def named_buffers(self, prefix=""):
        for module_name, module in self.named_modules(prefix):
            for name in module._buffers:
                yield (f"{module_name}.{name}" if module_name else name), getattr(module, name)

    # --- state
    def state_dict(self):
        """Parameters and buffers as NumPy copies, by dotted name."""
        state = OrderedDict((name, backend.to_numpy(p.data).copy()) for name, p in self.named_parameters())
        state.update((name, backend.to_numpy(b).copy()) for name, b in self.named_buffers())
        return state

    def load_state_dict(self, state, strict=True):
        """Copy arrays from ``state`` into the parameters and buffers (same dtype and device).

        Raises KeyError for missing or unexpected names (unless ``strict=False``) and
        ValueError for a shape mismatch, naming every offending key.
        """
        targets = dict(self.named_parameters())
        buffers = {name: None for name, _ in self.named_buffers()}
        known = set(targets) | set(buffers)
        missing = sorted(known - set(state))
        unexpected = sorted(set(state) - known)
        if strict and (missing or unexpected):
            parts = []
            if missing:
                parts.append(f"missing keys {missing}")
            if unexpected:
                parts.append(f"unexpected keys {unexpected}")
            raise KeyError(f"load_state_dict ({type(self).__name__}): " + "; ".join(parts))
        bad = []
        for name in known & set(state):
            current = targets[name].data if name in targets else self._buffer(name)
            if tuple(state[name].shape) != tuple(current.shape):
                bad.append(f"'{name}' has shape {tuple(state[name].shape)} in the state dict but "
                           f"{tuple(current.shape)} in the model")
        if bad:
            raise ValueError(f"load_state_dict ({type(self).__name__}): " + "; ".join(sorted(bad)))
        for name in known & set(state):
            if name in targets:
                p = targets[name]
                p.data = backend.to_device(state[name], p.device).astype(p.dtype, copy=True)
            else:
                module, attr = self._owner(name)
                old = getattr(module, attr)
                module.register_buffer(attr, backend.to_device(state[name], backend.device_of(old))
                                       .astype(old.dtype, copy=True))
        return self

    def _owner(self, dotted):
        *path, attr = dotted.split(".")
        module = self
        for part in path:
            module = getattr(module, part)
        return module, attr

    def _buffer(self, dotted):
        module, attr = self._owner(dotted)
        return getattr(module, attr)

    # --- modes and placement
    def train(self, mode=True):
        """Training mode (batch norm uses batch statistics); returns self."""
        for m in self.modules():
            object.__setattr__(m, "training", mode)
        return self

    def eval(self):
        """Evaluation mode (batch norm uses running statistics); returns self."""
        return self.train(False)

    def zero_grad(self):
        for p in self.parameters():
            p.grad = None

    def to(self, device=None, dtype=None):
        """Move parameters and buffers to ``device`` and/or cast them to ``dtype``, in place."""
        for p in self.parameters():
            data = p.data if device is None else backend.to_device(p.data, device)
            p.data = data if dtype is None else data.astype(dtype)
            p.grad = None
        for m in self.modules():
            for name in m._buffers:
                b = getattr(m, name)
                b = b if device is None else backend.to_device(b, device)
                if dtype is not None and backend.is_floating(b.dtype):
                    b = b.astype(dtype)
                object.__setattr__(m, name, b)
        return self

    def num_parameters(self):
        return sum(p.size for p in self.parameters())

    def extra_repr(self):
        """The key sizes and settings shown in repr (override; never an array)."""
        return ""

    def summary(self):
        """"N parameters, dtype, device" (several dtypes or devices are all listed)."""
        params = self.parameters()
        if not params:
            return "no parameters"
        dtypes = ", ".join(sorted({str(p.dtype) for p in params}))
        devices = ", ".join(sorted({p.device for p in params}))
        return f"{sum(p.size for p in params):,} parameters, {dtypes}, {devices}"

    def __repr__(self):
        head = f"{self._head()}: {self.summary()}" if self.parameters() else self._head()   # Tanh() stays Tanh()
        lines = [head] + self._child_lines(1)
        if len(lines) > REPR_LINES:
            lines = lines[:REPR_LINES - 1] + [f"  ... ({len(lines) - REPR_LINES + 1} more lines)"]
        return "\n".join(lines)

    def _head(self):
        return f"{type(self).__name__}({self.extra_repr()})"

    def _child_lines(self, depth):
        """One line per sub-module at ``depth`` followed by its own sub-modules (down to
        REPR_DEPTH; " ..." marks a cut), consecutive identical siblings merged."""
        groups = []                                     # [names, lines of the child's subtree]
        for name, child in self.named_children():
            below = child._child_lines(depth + 1) if depth < REPR_DEPTH else []
            cut = " ..." if depth >= REPR_DEPTH and child.children() else ""
            block = [child._head() + cut] + below
            if groups and groups[-1][1] == block:
                groups[-1][0].append(name)
            else:
                groups.append(([name], block))
        lines = []
        for names, block in groups:
            if len(names) == 1:
                label = names[0]
            elif all(n.isdigit() for n in names):
                label = f"{names[0]}-{names[-1]}"
            else:
                label = ", ".join(names)
            count = f"{len(names)} x " if len(names) > 1 else ""
            lines.append(f"{'  ' * depth}({label}): {count}{block[0]}")
            lines.extend(block[1:])
        return lines


class ModuleList(Module):
    """A list of modules whose parameters are registered (e.g. a stack of flow layers)."""

    def __init__(self, modules=()):
        super().__init__()
        for m in modules:
            self.append(m)

    def append(self, module):
        if not isinstance(module, Module):
            raise TypeError(f"{type(self).__name__}: item {len(self)} is a {type(module).__name__}, "
                            "not a Module")
        setattr(self, str(len(self)), module)
        return self

    def __iter__(self):
        return iter(self.children())

    def __len__(self):
        return len(self.children())

    def __getitem__(self, i):
        return self.children()[i]


class Sequential(ModuleList):
    """Modules applied one after the other."""

    def __init__(self, *layers):
        super().__init__(layers)

    def forward(self, x):
        for layer in self:
            x = layer(x)
        return x
