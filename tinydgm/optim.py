"""Optimizers, gradient clipping and learning-rate schedules.

    opt = Adam(model.parameters(), lr=1e-3)
    schedule = WarmupLR(opt, warmup_steps=500, after=CosineLR(opt, total_steps=10_000))
    for batch in batches:
        opt.zero_grad()
        model.loss(batch).backward()
        clip_grad_norm_(model.parameters(), max_norm=5.0)
        opt.step()
        schedule.step()

An optimizer holds a flat list of parameters and one learning rate ``.lr`` (no parameter
groups); schedules set ``.lr``. Parameters whose ``.grad`` is None are left alone. Per-
parameter state (moments, step counts) is created at a parameter's first update, in its
dtype and on its device. ``state_dict()`` is a flat dict of NumPy arrays, Python numbers and
strings (``{"type": "Adam", "lr": 0.001, "m.0": array, "v.0": array, "t.0": 7, ...}``),
so it can be written into an ``.npz`` as it is; ``load_state_dict`` also takes what
``numpy.load`` gives back (0-d arrays for the numbers).

Scalar arithmetic (learning rates, bias corrections) is float64 Python; array updates run
in each parameter's dtype, so float32 parameters stay float32.
"""
import math

from tinydgm import backend
from tinydgm.autodiff.core import Tensor
from tinydgm.kernels.adam import adam_update

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "RMSProp", "Adagrad", "clip_grad_norm_", "clip_grad_value_",
           "LRSchedule", "StepLR", "CosineLR", "WarmupLR"]


# ----------------------------------------------------------------------------- helpers

def _param_list(params, who, unique=True):
    """The parameters as a list of Tensors; a clear error for anything else (and for a
    parameter listed twice when ``unique``: an optimizer would update it twice)."""
    if isinstance(params, Tensor):
        params = [params]
    try:
        params = list(params)
    except TypeError:
        raise TypeError(f"{who}: params must be an iterable of Parameters (e.g. model.parameters()), "
                        f"got a {type(params).__name__}") from None
    seen = set()
    for i, p in enumerate(params):
        if not isinstance(p, Tensor):
            raise TypeError(f"{who}: params[{i}] is a {type(p).__name__}, not a Parameter "
                            "(pass model.parameters(), not the model)")
        if unique and id(p) in seen:
            raise ValueError(f"{who}: params[{i}] appears more than once (it would be updated twice)")
        seen.add(id(p))
    return params


def _grad_array(p, i, who):
    """The backend array of parameter ``i``'s gradient, checked against the parameter."""
    g = p.grad.data if isinstance(p.grad, Tensor) else p.grad
    if g.shape != p.shape:
        raise ValueError(f"{who}: the gradient of params[{i}] has shape {g.shape} but the parameter "
                         f"has shape {p.shape}")
    if g.dtype != p.dtype:
        raise TypeError(f"{who}: the gradient of params[{i}] has dtype {g.dtype} but the parameter "
                        f"has dtype {p.dtype}")
    return g


def _on_device_of(array, p):
    """``array`` in ``p``'s dtype on ``p``'s device (a no-op unless the parameter was moved)."""
    if backend.device_of(array) != p.device:
        array = backend.to_device(array, p.device)
    return array if array.dtype == p.dtype else array.astype(p.dtype)


def _check_nonnegative(who, name, value):
    value = float(value)
    if not value >= 0.0 or math.isinf(value):       # also rejects nan
        raise ValueError(f"{who}: {name} must be a finite number >= 0, got {value}")
    return value


def _load_scalars(owner, state, names, who):
    """Copy the named Python scalars from ``state`` (0-d arrays from an .npz are fine)."""
    missing = [name for name in names if name not in state]
    if missing:
        raise KeyError(f"{who}.load_state_dict: missing keys {missing}")
    for name, kind in names.items():
        setattr(owner, name, kind(state[name]))


def _check_type(state, expected, who):
    if "type" not in state:
        raise KeyError(f"{who}.load_state_dict: missing key 'type' (is this an optimizer/schedule state dict?)")
    found = str(state["type"])
    if found != expected:
        raise ValueError(f"{who}.load_state_dict: the state dict is for {found}, not {expected}")


# ----------------------------------------------------------------------------- optimizers

class Optimizer:
    """Base class: a list of parameters, a learning rate and per-parameter state.

    Subclasses define ``_update(i, p, g)`` (update ``p.data`` in place from the gradient
    array ``g``) and list what they keep: ``_hyper`` (scalar hyperparameters and their
    types, saved in the state dict), ``_array_state`` and ``_scalar_state`` (per-parameter
    entries of ``self.state[i]``).
    """

    _hyper = {"lr": float}
    _array_state = ()
    _scalar_state = {}

    def __init__(self, params, lr):
        who = type(self).__name__
        self.params = _param_list(params, who)
        if not self.params:
            raise ValueError(f"{who}: got an empty list of parameters (does the model have any?)")
        self.lr = lr
        self.state = [{} for _ in self.params]      # state[i]: e.g. {"m": array, "v": array, "t": 3}

    @property
    def lr(self):
        return self._lr

    @lr.setter
    def lr(self, value):
        self._lr = _check_nonnegative(type(self).__name__, "lr", value)

    def zero_grad(self):
        """Forget all gradients (set them to None, so the next backward starts afresh)."""
        for p in self.params:
            p.grad = None

    def step(self):
        """Update every parameter that has a gradient."""
        for i, p in enumerate(self.params):
            if p.grad is not None:
                self._update(i, p, _grad_array(p, i, type(self).__name__))

    def _update(self, i, p, g):
        raise NotImplementedError(f"{type(self).__name__} does not define _update()")

    def _moment(self, i, name, p):
        """The state array ``name`` of parameter ``i``: zeros at first, on ``p``'s device."""
        array = self.state[i].get(name)
        array = backend.get_array_module(p.data).zeros_like(p.data) if array is None else _on_device_of(array, p)
        self.state[i][name] = array
        return array

    # --- state
    def state_dict(self):
        """A flat dict: "type", "n_params", the hyperparameters, and "<name>.<i>" for the
        state of parameter i (NumPy copies of arrays, Python numbers)."""
        state = {"type": type(self).__name__, "n_params": len(self.params)}
        state.update((name, kind(getattr(self, name))) for name, kind in self._hyper.items())
        for i, entries in enumerate(self.state):
            for name, value in entries.items():
                state[f"{name}.{i}"] = backend.to_numpy(value).copy() if backend.is_array(value) else value
        return state

    def load_state_dict(self, state):
        """Restore hyperparameters and per-parameter state from ``state_dict()`` (or from
        the arrays ``numpy.load`` gives back for it). Everything is checked before anything
        changes: the optimizer type, the number of parameters, the state names and shapes."""
        who = type(self).__name__
        _check_type(state, who, who)
        if "n_params" not in state:
            raise KeyError(f"{who}.load_state_dict: missing key 'n_params'")
        n = int(state["n_params"])
        if n != len(self.params):
            raise ValueError(f"{who}.load_state_dict: the state dict is for {n} parameters, "
                             f"this optimizer has {len(self.params)}")
        per_param = [{} for _ in self.params]
        known = {"type", "n_params", *self._hyper}
        unexpected = []
        for key, value in state.items():
            if key in known:
                continue
            name, _, index = key.rpartition(".")
            if not index.isdigit() or int(index) >= n or \
                    (name not in self._array_state and name not in self._scalar_state):
                unexpected.append(key)
                continue
            i = int(index)
            if name in self._scalar_state:
                per_param[i][name] = self._scalar_state[name](value)
                continue
            shape = tuple(value.shape)
            if shape != self.params[i].shape:
                raise ValueError(f"{who}.load_state_dict: '{key}' has shape {shape} but params[{i}] "
                                 f"has shape {self.params[i].shape}")
            per_param[i][name] = value
        if unexpected:
            raise KeyError(f"{who}.load_state_dict: unexpected keys {sorted(unexpected)}")
        _load_scalars(self, state, self._hyper, who)
        for i, p in enumerate(self.params):
            self.state[i] = {name: (backend.to_device(value, p.device).astype(p.dtype, copy=True)
                                    if name in self._array_state else value)
                             for name, value in per_param[i].items()}
        return self

    def __repr__(self):
        hyper = ", ".join(f"{name}={getattr(self, name)}" for name in self._hyper)
        return f"{type(self).__name__}({len(self.params)} parameters, {hyper})"


class SGD(Optimizer):
    """Stochastic gradient descent with momentum (Sutskever et al. 2013), in PyTorch's form:

        d <- g + weight_decay p                          (L2 penalty folded into the gradient)
        b <- d                                           at a parameter's first step,
        b <- momentum b + (1 - dampening) d              after it
        d <- d + momentum b    (nesterov)   or   d <- b  (classical momentum)
        p <- p - lr d

    With momentum = 0 this is plain SGD, p <- p - lr d. PyTorch's convention scales the
    velocity by lr at use instead of accumulating lr g (Sutskever et al.'s v <- mu v - lr g);
    the two agree while lr is constant. The Nesterov form is the look-ahead rewritten to
    need only the gradient at p (as in PyTorch and Bengio et al. 2013).
    """

    _hyper = {"lr": float, "momentum": float, "dampening": float, "weight_decay": float, "nesterov": bool}
    _array_state = ("momentum_buffer",)

    def __init__(self, params, lr, momentum=0.0, weight_decay=0.0, nesterov=False, dampening=0.0):
        super().__init__(params, lr)
        self.momentum = _check_nonnegative("SGD", "momentum", momentum)
        self.weight_decay = _check_nonnegative("SGD", "weight_decay", weight_decay)
        self.dampening = float(dampening)
        self.nesterov = bool(nesterov)
        if self.nesterov and (self.momentum <= 0.0 or self.dampening != 0.0):
            raise ValueError(f"SGD: nesterov=True needs momentum > 0 and dampening = 0, got "
                             f"momentum={self.momentum}, dampening={self.dampening}")

    def _update(self, i, p, g):
        d = g + self.weight_decay * p.data if self.weight_decay else g
        if self.momentum:
            b = self.state[i].get("momentum_buffer")
            if b is None:
                b = self.state[i]["momentum_buffer"] = d.copy()
            else:
                b = _on_device_of(b, p)
                b *= self.momentum
                b += (1.0 - self.dampening) * d
                self.state[i]["momentum_buffer"] = b
            d = d + self.momentum * b if self.nesterov else b
        p.data -= self.lr * d


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015, Algorithm 1), per parameter with its own step count t:

        g <- g + weight_decay p                          (L2 penalty, as in the paper's setting)
        m <- beta1 m + (1 - beta1) g
        v <- beta2 v + (1 - beta2) g^2
        m_hat = m / (1 - beta1^t),   v_hat = v / (1 - beta2^t)
        p <- p - lr m_hat / (sqrt(v_hat) + eps)

    Runs the fused kernel ``tinydgm.kernels.adam.adam_update`` (Numba on contiguous NumPy
    arrays, its vectorized twin otherwise, e.g. on CUDA). Note that with L2 the decay is
    rescaled by the adaptive denominator; ``AdamW`` decouples it.
    """

    _hyper = {"lr": float, "beta1": float, "beta2": float, "eps": float, "weight_decay": float}
    _array_state = ("m", "v")
    _scalar_state = {"t": int}
    _decoupled = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(params, lr)
        who = type(self).__name__
        beta1, beta2 = (float(b) for b in betas)
        for k, beta in ((1, beta1), (2, beta2)):
            if not 0.0 <= beta < 1.0:
                raise ValueError(f"{who}: beta{k} must be in [0, 1), got {beta}")
        self.beta1, self.beta2 = beta1, beta2
        self.eps = _check_nonnegative(who, "eps", eps)
        self.weight_decay = _check_nonnegative(who, "weight_decay", weight_decay)

    @property
    def betas(self):
        return self.beta1, self.beta2

    def _update(self, i, p, g):
        m, v = self._moment(i, "m", p), self._moment(i, "v", p)
        t = self.state[i]["t"] = self.state[i].get("t", 0) + 1
        adam_update(p.data, g, m, v, self.lr, self.beta1, self.beta2, self.eps, t,
                    weight_decay=self.weight_decay, decoupled=self._decoupled)


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter 2019, Algorithm 2):

        m, v, m_hat, v_hat as in Adam, from the raw gradient g
        p <- p - lr (m_hat / (sqrt(v_hat) + eps) + weight_decay p)

    The decay shrinks p by the factor (1 - lr weight_decay) whatever the gradient scale;
    the paper's schedule multiplier eta_t is folded into lr (PyTorch's convention).
    """

    _decoupled = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2):
        super().__init__(params, lr, betas, eps, weight_decay)


class RMSProp(Optimizer):
    """RMSProp (Tieleman & Hinton 2012, Coursera lecture 6.5), in PyTorch's form:

        g <- g + weight_decay p                          (L2 penalty folded into the gradient)
        s <- alpha s + (1 - alpha) g^2                   (running mean square, from s = 0)
        m <- alpha m + (1 - alpha) g,  s <- s - m^2      (centered only: a running variance)
        d = g / (sqrt(s) + eps)
        b <- momentum b + d,  d <- b                     (momentum > 0, from b = 0)
        p <- p - lr d

    Each step divides the gradient by a running estimate of its root mean square, so the
    step size is about lr whatever the gradient's scale. WGAN trains its critic with it
    (Arjovsky et al. 2017: momentum-based methods made the critic unstable).
    """

    _hyper = {"lr": float, "alpha": float, "eps": float, "weight_decay": float, "momentum": float,
              "centered": bool}
    _array_state = ("square_avg", "grad_avg", "momentum_buffer")

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False):
        super().__init__(params, lr)
        if not 0.0 <= float(alpha) < 1.0:
            raise ValueError(f"RMSProp: alpha must be in [0, 1), got {alpha}")
        self.alpha = float(alpha)
        self.eps = _check_nonnegative("RMSProp", "eps", eps)
        self.weight_decay = _check_nonnegative("RMSProp", "weight_decay", weight_decay)
        self.momentum = _check_nonnegative("RMSProp", "momentum", momentum)
        self.centered = bool(centered)

    def _update(self, i, p, g):
        xp = backend.get_array_module(g)
        if self.weight_decay:
            g = g + self.weight_decay * p.data
        s = self._moment(i, "square_avg", p)
        s *= self.alpha
        s += (1.0 - self.alpha) * g * g
        if self.centered:
            m = self._moment(i, "grad_avg", p)
            m += (1.0 - self.alpha) * (g - m)             # m <- alpha m + (1 - alpha) g
            root = xp.sqrt(s - m * m)
        else:
            root = xp.sqrt(s)
        d = g / (root + self.eps)
        if self.momentum:
            b = self._moment(i, "momentum_buffer", p)
            b *= self.momentum
            b += d
            d = b
        p.data -= self.lr * d


class Adagrad(Optimizer):
    """Adagrad (Duchi, Hazan & Singer 2011, "Adaptive subgradient methods", the diagonal
    update), in PyTorch's form:

        g <- g + weight_decay p                          (L2 penalty folded into the gradient)
        s <- s + g^2                                     (from s = initial_accumulator_value)
        p <- p - lr g / (sqrt(s) + eps)

    The sum of squared gradients only grows, so each parameter's step shrinks like
    1 / sqrt(number of steps) for steady gradients: a built-in decay, faster for often-
    and strongly-updated parameters. MADE was trained with it (Germain et al. 2015, lr 0.01).
    The MADE authors' code puts eps inside the root, lr g / sqrt(s + eps); the two differ
    only while s is of order eps.
    """

    _hyper = {"lr": float, "eps": float, "weight_decay": float, "initial_accumulator_value": float}
    _array_state = ("sum",)

    def __init__(self, params, lr=1e-2, eps=1e-10, weight_decay=0.0, initial_accumulator_value=0.0):
        super().__init__(params, lr)
        self.eps = _check_nonnegative("Adagrad", "eps", eps)
        self.weight_decay = _check_nonnegative("Adagrad", "weight_decay", weight_decay)
        self.initial_accumulator_value = _check_nonnegative("Adagrad", "initial_accumulator_value",
                                                            initial_accumulator_value)

    def _update(self, i, p, g):
        xp = backend.get_array_module(g)
        if self.weight_decay:
            g = g + self.weight_decay * p.data
        first = "sum" not in self.state[i]
        s = self._moment(i, "sum", p)
        if first and self.initial_accumulator_value:
            s += self.initial_accumulator_value
        s += g * g
        p.data -= self.lr * g / (xp.sqrt(s) + self.eps)


# ----------------------------------------------------------------------------- clipping

def _grads(params, who):
    """The gradient Tensors of ``params`` (a Tensor or an iterable of them), each once."""
    out, seen = [], set()
    for i, p in enumerate(_param_list(params, who, unique=False)):
        if p.grad is not None and id(p.grad) not in seen:     # a Tensor shared by two params: once
            seen.add(id(p.grad))
            _grad_array(p, i, who)
            out.append(p.grad)
    return out


def clip_grad_norm_(params, max_norm, norm_type=2.0):
    """Rescale gradients so that their joint norm is at most ``max_norm``; return the joint
    norm before clipping as a Python float:

        total = (sum_i ||g_i||_q^q)^(1/q)       (q = norm_type;  max_i ||g_i||_inf for q = inf)
        g_i <- g_i * max_norm / total           when total > max_norm

    so the clipped gradients have norm exactly ``max_norm`` (PyTorch divides by total + 1e-6).
    A non-finite total (an inf or nan gradient) is returned with the gradients left alone,
    for the caller to notice. Parameters without a gradient are skipped. Each gradient
    Tensor gets a new, scaled array (so gradients that share an array are scaled once each).
    """
    max_norm = _check_nonnegative("clip_grad_norm_", "max_norm", max_norm)
    q = float(norm_type)
    if not q > 0.0:
        raise ValueError(f"clip_grad_norm_: norm_type must be > 0 or inf, got {norm_type}")
    grads = _grads(params, "clip_grad_norm_")
    norms = [0.0]
    for g in grads:
        if g.size:
            xp = backend.xp_of(g.data)
            norms.append(float(xp.linalg.norm(g.data.reshape(-1), ord=q)))
    if math.isinf(q):
        total = max(norms)
    else:
        total = math.fsum(n ** q for n in norms) ** (1.0 / q)
    if math.isfinite(total) and total > max_norm:
        scale = max_norm / total
        for g in grads:
            g.data = g.data * scale
    return total


def clip_grad_value_(params, clip_value):
    """Clip every gradient entry to [-clip_value, clip_value] (parameters without a
    gradient are skipped)."""
    c = _check_nonnegative("clip_grad_value_", "clip_value", clip_value)
    for g in _grads(params, "clip_grad_value_"):
        g.data = backend.xp_of(g.data).clip(g.data, -c, c)


# ----------------------------------------------------------------------------- schedules

class LRSchedule:
    """Sets ``optimizer.lr`` from a closed-form function of the step count.

    ``step()`` advances the count by one (call it per epoch or per iteration, as the
    schedule's numbers mean) and sets ``optimizer.lr = get_lr()``. The base learning rate
    is the optimizer's lr when the schedule is made; the schedule sets lr at step 0 at once.
    Subclasses define ``lr_at(step)``. Setting ``optimizer.lr`` by hand is overridden at
    the next ``step()``.
    """

    _hyper = {}

    def __init__(self, optimizer, base_lr=None):
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{type(self).__name__}: expected an Optimizer, got a {type(optimizer).__name__}")
        self.optimizer = optimizer
        self.base_lr = optimizer.lr if base_lr is None else float(base_lr)
        self.last_step = 0
        optimizer.lr = self.get_lr()

    def lr_at(self, step):
        raise NotImplementedError(f"{type(self).__name__} does not define lr_at()")

    def get_lr(self):
        """The learning rate for the current step count."""
        return self.lr_at(self.last_step)

    def step(self):
        self.last_step += 1
        self.optimizer.lr = self.get_lr()
        return self.optimizer.lr

    def state_dict(self):
        state = {"type": type(self).__name__, "base_lr": self.base_lr, "last_step": self.last_step}
        state.update((name, kind(getattr(self, name))) for name, kind in self._hyper.items())
        return state

    def load_state_dict(self, state):
        """Restore the step count, base lr and settings; sets the optimizer's lr to match."""
        who = type(self).__name__
        _check_type(state, who, who)
        _load_scalars(self, state, {"base_lr": float, "last_step": int, **self._hyper}, who)
        self.optimizer.lr = self.get_lr()
        return self


class StepLR(LRSchedule):
    """lr_t = base_lr gamma^floor(t / step_size): decay by ``gamma`` every ``step_size`` steps."""

    _hyper = {"step_size": int, "gamma": float}

    def __init__(self, optimizer, step_size, gamma=0.1):
        if int(step_size) < 1:
            raise ValueError(f"StepLR: step_size must be >= 1, got {step_size}")
        self.step_size = int(step_size)
        self.gamma = _check_nonnegative("StepLR", "gamma", gamma)
        super().__init__(optimizer)

    def lr_at(self, step):
        return self.base_lr * self.gamma ** (step // self.step_size)


class CosineLR(LRSchedule):
    """Cosine annealing (Loshchilov & Hutter 2017, SGDR without restarts):

        lr_t = min_lr + (base_lr - min_lr) (1 + cos(pi t / T)) / 2    for t <= T,
        lr_t = min_lr                                                 for t > T  (T = total_steps)
    """

    _hyper = {"total_steps": int, "min_lr": float}

    def __init__(self, optimizer, total_steps, min_lr=0.0):
        if int(total_steps) < 1:
            raise ValueError(f"CosineLR: total_steps must be >= 1, got {total_steps}")
        self.total_steps = int(total_steps)
        self.min_lr = _check_nonnegative("CosineLR", "min_lr", min_lr)
        super().__init__(optimizer)

    def lr_at(self, step):
        progress = min(step, self.total_steps) / self.total_steps
        return self.min_lr + (self.base_lr - self.min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


class WarmupLR(LRSchedule):
    """Linear warm-up over the first W = ``warmup_steps`` steps, then ``after``:

        lr_t = base_lr (s + (1 - s) t / W)     for t < W   (s = start_factor, 0 by default)
        lr_t = after.lr_at(t - W)              for t >= W  (base_lr when ``after`` is None)

    ``after`` is a schedule on the same optimizer, made before this one; the warm-up ramps
    to its base lr and then drives it (its step count starts at 0 when the warm-up ends).
    Nested state is saved under "after." keys.
    """

    _hyper = {"warmup_steps": int, "start_factor": float}

    def __init__(self, optimizer, warmup_steps, after=None, start_factor=0.0):
        if int(warmup_steps) < 0:
            raise ValueError(f"WarmupLR: warmup_steps must be >= 0, got {warmup_steps}")
        if not 0.0 <= float(start_factor) <= 1.0:
            raise ValueError(f"WarmupLR: start_factor must be in [0, 1], got {start_factor}")
        if after is not None and (not isinstance(after, LRSchedule) or after.optimizer is not optimizer):
            raise ValueError("WarmupLR: after must be a schedule made on the same optimizer")
        self.warmup_steps, self.start_factor, self.after = int(warmup_steps), float(start_factor), after
        super().__init__(optimizer, None if after is None else after.base_lr)

    def lr_at(self, step):
        if step < self.warmup_steps:
            return self.base_lr * (self.start_factor + (1.0 - self.start_factor) * step / self.warmup_steps)
        return self.base_lr if self.after is None else self.after.lr_at(step - self.warmup_steps)

    def step(self):
        lr = super().step()
        if self.after is not None:
            self.after.last_step = max(0, self.last_step - self.warmup_steps)
        return lr

    def state_dict(self):
        state = super().state_dict()
        if self.after is not None:
            state.update((f"after.{key}", value) for key, value in self.after.state_dict().items())
        return state

    def load_state_dict(self, state):
        nested = {key[len("after."):]: value for key, value in state.items() if key.startswith("after.")}
        if bool(nested) != (self.after is not None):
            raise ValueError("WarmupLR.load_state_dict: the state dict " +
                             ("has an" if nested else "has no") + " 'after' schedule but this WarmupLR " +
                             ("has none" if nested else "has one"))
        if self.after is not None:
            self.after.load_state_dict(nested)
        return super().load_state_dict({k: v for k, v in state.items() if not k.startswith("after.")})
