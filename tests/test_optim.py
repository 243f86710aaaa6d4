"""Optimizers, clipping and schedules against updates written out by hand, against
torch.optim where it is installed, on small minimisation problems, and through a state
dict round trip in an .npz file."""
import math

import numpy as np
import pytest

import tinydgm as td
from tinydgm.nn import Linear, Parameter
from tinydgm.optim import (SGD, Adagrad, Adam, AdamW, CosineLR, RMSProp, StepLR, WarmupLR, clip_grad_norm_,
                           clip_grad_value_)

STEPS = 4


def _params(*arrays, device="cpu"):
    return [Parameter(td.tensor(a.copy(), device=device)) for a in arrays]


def _set_grads(params, grads):
    for p, g in zip(params, grads):
        p.grad = None if g is None else td.tensor(np.array(g, dtype=p.dtype), device=p.device)


def _problem(seed=0, dtype=np.float64):
    """Two small parameters and STEPS gradients for each (independent of the parameters)."""
    rng = np.random.default_rng(seed)
    p0 = [rng.standard_normal((3, 2)).astype(dtype), rng.standard_normal(4).astype(dtype)]
    grads = [[rng.standard_normal(p.shape).astype(dtype) for p in p0] for _ in range(STEPS)]
    return p0, grads


def _run(opt_class, p0, grads, device="cpu", **kwargs):
    params = _params(*p0, device=device)
    opt = opt_class(params, **kwargs)
    for g in grads:
        _set_grads(params, g)
        opt.step()
    return [p.numpy() for p in params], opt


# ----------------------------------------------------------------------------- hand-computed updates

def _sgd_by_hand(p, grads, lr, momentum=0.0, weight_decay=0.0, nesterov=False, dampening=0.0):
    """PyTorch's SGD on one float, step by step."""
    b = None
    for g in grads:
        d = g + weight_decay * p
        if momentum:
            b = d if b is None else momentum * b + (1 - dampening) * d
            d = d + momentum * b if nesterov else b
        p = p - lr * d
    return p


def _adam_by_hand(p, grads, lr, beta1, beta2, eps, weight_decay=0.0, decoupled=False):
    """Kingma & Ba's Algorithm 1 on one float (L2 or decoupled decay)."""
    m = v = 0.0
    for t, g in enumerate(grads, start=1):
        if not decoupled:
            g = g + weight_decay * p
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        m_hat, v_hat = m / (1 - beta1 ** t), v / (1 - beta2 ** t)
        p = p - lr * m_hat / (math.sqrt(v_hat) + eps) - (lr * weight_decay * p if decoupled else 0.0)
    return p


def _elementwise(by_hand, p0, grads, **kwargs):
    """Apply a scalar rule to every entry of every parameter."""
    out = []
    for k, p in enumerate(p0):
        flat = [by_hand(float(p.flat[j]), [float(g[k].flat[j]) for g in grads], **kwargs)
                for j in range(p.size)]
        out.append(np.array(flat).reshape(p.shape))
    return out


SGD_CASES = [dict(), dict(weight_decay=0.1), dict(momentum=0.9), dict(momentum=0.9, weight_decay=0.05),
             dict(momentum=0.8, nesterov=True), dict(momentum=0.8, nesterov=True, weight_decay=0.1),
             dict(momentum=0.9, dampening=0.5)]


@pytest.mark.parametrize("kwargs", SGD_CASES)
def test_sgd_matches_hand_computed_updates(kwargs):
    p0, grads = _problem()
    got, _ = _run(SGD, p0, grads, lr=0.1, **kwargs)
    expected = _elementwise(_sgd_by_hand, p0, grads, lr=0.1, **kwargs)
    for a, b in zip(got, expected):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-14)


ADAM_HYPER = dict(lr=0.01, betas=(0.9, 0.99), eps=1e-8)


@pytest.mark.parametrize("opt_class, weight_decay", [(Adam, 0.0), (Adam, 0.1), (AdamW, 0.0), (AdamW, 0.1)])
def test_adam_and_adamw_match_algorithm_1(opt_class, weight_decay):
    p0, grads = _problem(1)
    got, _ = _run(opt_class, p0, grads, weight_decay=weight_decay, **ADAM_HYPER)
    expected = _elementwise(_adam_by_hand, p0, grads, lr=0.01, beta1=0.9, beta2=0.99, eps=1e-8,
                            weight_decay=weight_decay, decoupled=opt_class is AdamW)
    for a, b in zip(got, expected):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


def test_adam_l2_is_adam_on_the_penalised_gradient():
    """Adam(wd): g + wd p goes into the moments (feed that gradient to Adam(0) by hand)."""
    p0, grads = _problem(2)
    wd = 0.3
    with_l2, _ = _run(Adam, p0, grads, weight_decay=wd, **ADAM_HYPER)
    params = _params(*p0)
    opt = Adam(params, weight_decay=0.0, **ADAM_HYPER)
    for g in grads:
        _set_grads(params, [gk + wd * p.numpy() for gk, p in zip(g, params)])
        opt.step()
    for a, p in zip(with_l2, params):
        np.testing.assert_allclose(a, p.numpy(), rtol=1e-13)


def test_adamw_decay_is_decoupled_from_the_moments():
    """AdamW(wd): p_t = (1 - lr wd) p_{t-1} + (the step Adam(0) takes on the same gradients)."""
    p0, grads = _problem(3)
    lr, wd = ADAM_HYPER["lr"], 0.5
    plain = _params(*p0)
    decoupled = _params(*p0)
    opt_plain = Adam(plain, weight_decay=0.0, **ADAM_HYPER)
    opt_w = AdamW(decoupled, weight_decay=wd, **ADAM_HYPER)
    for g in grads:
        before_plain = [p.numpy().copy() for p in plain]
        before_w = [p.numpy().copy() for p in decoupled]
        for params, opt in ((plain, opt_plain), (decoupled, opt_w)):
            _set_grads(params, g)
            opt.step()
        for bp, bw, p, q in zip(before_plain, before_w, plain, decoupled):
            np.testing.assert_allclose(q.numpy(), (1 - lr * wd) * bw + (p.numpy() - bp), rtol=1e-12, atol=1e-15)
    # and the decay made a difference
    assert not np.allclose(plain[0].numpy(), decoupled[0].numpy())


def test_adam_keeps_a_step_count_per_parameter():
    """A parameter first updated at step 3 gets the bias correction of its own t = 1."""
    p0, grads = _problem(4)
    params = _params(*p0)
    opt = Adam(params, **ADAM_HYPER)
    for k, g in enumerate(grads):
        _set_grads(params, [g[0], g[1] if k >= 2 else None])
        opt.step()
    assert opt.state[0]["t"] == STEPS and opt.state[1]["t"] == STEPS - 2
    expected = _elementwise(_adam_by_hand, [p0[1]], [[g[1]] for g in grads[2:]], lr=0.01, beta1=0.9,
                            beta2=0.99, eps=1e-8)
    np.testing.assert_allclose(params[1].numpy(), expected[0], rtol=1e-12)


def _rmsprop_by_hand(p, grads, lr, alpha, eps, weight_decay=0.0, momentum=0.0, centered=False):
    """Tieleman & Hinton's RMSProp on one float (PyTorch's centered and momentum variants)."""
    s = m = b = 0.0
    for g in grads:
        g = g + weight_decay * p
        s = alpha * s + (1 - alpha) * g * g
        m = alpha * m + (1 - alpha) * g
        d = g / (math.sqrt(s - m * m if centered else s) + eps)
        b = momentum * b + d
        p = p - lr * (b if momentum else d)
    return p


RMSPROP_CASES = [dict(), dict(weight_decay=0.1), dict(momentum=0.9), dict(centered=True),
                 dict(centered=True, momentum=0.5, weight_decay=0.05)]


@pytest.mark.parametrize("kwargs", RMSPROP_CASES)
def test_rmsprop_matches_hand_computed_updates(kwargs):
    p0, grads = _problem(2)
    got, opt = _run(RMSProp, p0, grads, lr=0.01, alpha=0.9, eps=1e-6, **kwargs)
    expected = _elementwise(_rmsprop_by_hand, p0, grads, lr=0.01, alpha=0.9, eps=1e-6, **kwargs)
    for a, b in zip(got, expected):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    kept = {"square_avg"} | ({"grad_avg"} if kwargs.get("centered") else set()) | \
        ({"momentum_buffer"} if kwargs.get("momentum") else set())
    assert set(opt.state[0]) == kept                   # only the state the variant uses


def test_rmsprop_step_size_is_about_lr_whatever_the_gradient_scale():
    # first step from s = 0: d = g / (sqrt(1 - alpha) |g| + eps), the same for g and 1000 g
    steps = []
    for scale in (1e-3, 1.0, 1e3):
        p = Parameter(td.tensor(np.zeros(3)))
        opt = RMSProp([p], lr=0.01, alpha=0.99, eps=0.0)
        p.grad = td.tensor(scale * np.array([1.0, -2.0, 0.5]))
        opt.step()
        steps.append(p.numpy())
    expected = -0.01 / math.sqrt(1 - 0.99) * np.array([1.0, -1.0, 1.0])
    for step in steps:
        np.testing.assert_allclose(step, expected, rtol=1e-12)


def _adagrad_by_hand(p, grads, lr, eps, weight_decay=0.0, initial_accumulator_value=0.0):
    """Duchi et al.'s diagonal Adagrad on one float (PyTorch's placement of eps)."""
    s = initial_accumulator_value
    for g in grads:
        g = g + weight_decay * p
        s = s + g * g
        p = p - lr * g / (math.sqrt(s) + eps)
    return p


ADAGRAD_CASES = [dict(), dict(weight_decay=0.1), dict(initial_accumulator_value=0.5),
                 dict(eps=1e-3, weight_decay=0.05, initial_accumulator_value=0.1)]


@pytest.mark.parametrize("kwargs", ADAGRAD_CASES)
def test_adagrad_matches_hand_computed_updates(kwargs):
    p0, grads = _problem(3)
    kwargs = {"eps": 1e-10, **kwargs}
    got, opt = _run(Adagrad, p0, grads, lr=0.05, **kwargs)
    expected = _elementwise(_adagrad_by_hand, p0, grads, lr=0.05, **kwargs)
    for a, b in zip(got, expected):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    # the accumulator is the initial value plus the sum of the squared (penalised) gradients
    assert set(opt.state[0]) == {"sum"} and np.all(opt.state[0]["sum"] >= kwargs.get("initial_accumulator_value", 0))


def test_adagrad_steps_shrink_like_one_over_sqrt_t_for_a_constant_gradient():
    # s_t = t g^2, so step t moves p by lr g / (sqrt(t) |g|) = lr sign(g) / sqrt(t), whatever |g|
    for scale in (1e-3, 1.0, 1e3):
        p = Parameter(td.tensor(np.zeros(2)))
        opt = Adagrad([p], lr=0.1, eps=0.0)
        before = p.numpy().copy()
        for t in range(1, 6):
            p.grad = td.tensor(scale * np.array([2.0, -0.5]))
            opt.step()
            np.testing.assert_allclose(p.numpy() - before, -0.1 / math.sqrt(t) * np.array([1.0, -1.0]),
                                       rtol=1e-12)
            before = p.numpy().copy()


# ----------------------------------------------------------------------------- against torch.optim

def _torch_run(torch, torch_class, p0, A, c, steps, **kwargs):
    params = [torch.tensor(p.copy(), requires_grad=True) for p in p0]
    opt = torch_class(params, **kwargs)
    for _ in range(steps):
        opt.zero_grad()
        loss = sum(((torch.tensor(A) @ (p.reshape(-1) - torch.tensor(c[:p.numel()]))) ** 2).sum()
                   for p in params)
        loss.backward()
        opt.step()
    return [p.detach().numpy() for p in params]


def _our_run(opt_class, p0, A, c, steps, **kwargs):
    params = _params(*p0)
    opt = opt_class(params, **kwargs)
    for _ in range(steps):
        opt.zero_grad()
        loss = None
        for p in params:
            r = td.tensor(A) @ (p.reshape(-1) - td.tensor(c[:p.size]))
            term = (r ** 2).sum()
            loss = term if loss is None else loss + term
        loss.backward()
        opt.step()
    return [p.numpy() for p in params]


@pytest.mark.parametrize("name, kwargs", [
    ("SGD", dict(lr=0.01, momentum=0.9, weight_decay=0.1)),
    ("SGD", dict(lr=0.01, momentum=0.9, nesterov=True)),
    ("SGD", dict(lr=0.01, momentum=0.5, dampening=0.3)),
    ("Adam", dict(lr=0.05, betas=(0.8, 0.95), eps=1e-6, weight_decay=0.1)),
    ("AdamW", dict(lr=0.05, betas=(0.8, 0.95), eps=1e-6, weight_decay=0.2)),
    ("RMSprop", dict(lr=0.01, alpha=0.9, eps=1e-6)),
    ("RMSprop", dict(lr=0.01, alpha=0.99, eps=1e-8, weight_decay=0.1, momentum=0.9)),
    ("RMSprop", dict(lr=0.005, alpha=0.95, eps=1e-7, momentum=0.5, centered=True)),
    ("Adagrad", dict(lr=0.1)),
    ("Adagrad", dict(lr=0.05, eps=1e-6, weight_decay=0.1, initial_accumulator_value=0.3)),
])
def test_against_torch_optim(name, kwargs):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    p0 = [rng.standard_normal(4), rng.standard_normal((2, 2))]
    A, c = rng.standard_normal((4, 4)), rng.standard_normal(4)
    ours = _our_run({"SGD": SGD, "Adam": Adam, "AdamW": AdamW, "RMSprop": RMSProp, "Adagrad": Adagrad}[name],
                    p0, A, c, 5, **kwargs)
    theirs = _torch_run(torch, getattr(torch.optim, name), p0, A, c, 5, **kwargs)
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-13)


# ----------------------------------------------------------------------------- minimisation

def _rosenbrock(p):
    x, y = p[0], p[1]
    return (1 - x) ** 2 + 100 * (y - x * x) ** 2


def _quadratic(p):
    scales = td.tensor(np.array([1.0, 3.0, 10.0]))
    return (scales * (p - td.tensor(np.array([1.0, -2.0, 0.5]))) ** 2).sum()


@pytest.mark.parametrize("make, loss, start, target, steps, tol", [
    (lambda ps: SGD(ps, lr=0.02), _quadratic, [0.0, 0.0, 0.0], [1.0, -2.0, 0.5], 400, 1e-6),
    (lambda ps: SGD(ps, lr=0.02, momentum=0.9), _quadratic, [0.0, 0.0, 0.0], [1.0, -2.0, 0.5], 300, 1e-6),
    (lambda ps: SGD(ps, lr=0.02, momentum=0.9, nesterov=True), _quadratic, [0.0, 0.0, 0.0],
     [1.0, -2.0, 0.5], 300, 1e-6),
    (lambda ps: Adam(ps, lr=0.05), _quadratic, [0.0, 0.0, 0.0], [1.0, -2.0, 0.5], 1000, 1e-4),
    (lambda ps: Adam(ps, lr=0.02), _rosenbrock, [-1.5, 2.0], [1.0, 1.0], 3000, 1e-3),
    (lambda ps: SGD(ps, lr=1e-3, momentum=0.9), _rosenbrock, [-1.5, 2.0], [1.0, 1.0], 3000, 1e-3),
])
def test_optimizers_minimise(make, loss, start, target, steps, tol):
    p = Parameter(td.tensor(np.array(start)))
    opt = make([p])
    for _ in range(steps):
        opt.zero_grad()
        loss(p).backward()
        opt.step()
    np.testing.assert_allclose(p.numpy(), target, atol=tol)


# ----------------------------------------------------------------------------- state dict

def _model_and_batches(dtype="float32"):
    rng = np.random.default_rng(6)
    model = Linear(3, 2, rng=np.random.default_rng(7), dtype=dtype)
    unused = Parameter(td.tensor(np.ones(5, dtype=dtype)))      # never gets a gradient: no state
    batches = [(rng.standard_normal((8, 3)).astype(dtype), rng.standard_normal((8, 2)).astype(dtype))
               for _ in range(6)]
    return model, model.parameters() + [unused], batches


def _train(model, opt, batches):
    for x, y in batches:
        opt.zero_grad()
        ((model(td.tensor(x)) - td.tensor(y)) ** 2).mean().backward()
        opt.step()


@pytest.mark.parametrize("make", [
    lambda ps: SGD(ps, lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01),
    lambda ps: Adam(ps, lr=0.01, weight_decay=0.01),
    lambda ps: AdamW(ps, lr=0.01),
    lambda ps: RMSProp(ps, lr=0.01, momentum=0.9, centered=True, weight_decay=0.01),
    lambda ps: Adagrad(ps, lr=0.05, weight_decay=0.01, initial_accumulator_value=0.1),
])
def test_state_dict_round_trip_through_npz_is_bit_identical(make, tmp_path):
    model, params, batches = _model_and_batches()
    opt = make(params)
    _train(model, opt, batches[:3])
    opt.lr = opt.lr * 0.5                          # as a schedule would: must be saved too
    saved_model, saved_opt = model.state_dict(), opt.state_dict()
    for key, value in saved_opt.items():
        assert isinstance(value, (np.ndarray, int, float, str, bool)), (key, type(value))
        if isinstance(value, np.ndarray):
            assert value.dtype == np.float32
    np.savez(tmp_path / "opt.npz", **saved_opt)
    _train(model, opt, batches[3:])

    fresh_model, fresh_params, _ = _model_and_batches()
    fresh_model.load_state_dict(saved_model)
    fresh = make(fresh_params)
    with np.load(tmp_path / "opt.npz") as loaded:
        fresh.load_state_dict(dict(loaded))
    assert fresh.lr == opt.lr
    _train(fresh_model, fresh, batches[3:])
    for a, b in zip(model.parameters(), fresh_model.parameters()):
        assert a.dtype == b.dtype == np.float32
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert fresh.state[-1] == {}                   # the unused parameter still has no state


def test_state_dict_is_a_copy():
    p0, grads = _problem()
    _, opt = _run(Adam, p0, grads)
    state = opt.state_dict()
    state["m.0"][...] = 0.0
    assert np.any(opt.state[0]["m"] != 0.0)


def test_load_state_dict_errors():
    p0, grads = _problem()
    _, opt = _run(Adam, p0, grads)
    state = opt.state_dict()
    with pytest.raises(ValueError, match="for 2 parameters, this optimizer has 1"):
        Adam(_params(p0[0])).load_state_dict(state)
    with pytest.raises(ValueError, match=r"'m.0' has shape \(3, 2\) but params\[0\] has shape \(6,\)"):
        Adam(_params(p0[0].reshape(-1), p0[1])).load_state_dict(state)
    with pytest.raises(ValueError, match="state dict is for Adam, not SGD"):
        SGD(_params(*p0), lr=0.1).load_state_dict(state)
    with pytest.raises(KeyError, match="unexpected keys.*'q.0'"):
        Adam(_params(*p0)).load_state_dict({**state, "q.0": 1})
    with pytest.raises(KeyError, match="missing keys.*'beta2'"):
        Adam(_params(*p0)).load_state_dict({k: v for k, v in state.items() if k != "beta2"})
    target = Adam(_params(*p0), lr=0.5)
    with pytest.raises(ValueError):
        target.load_state_dict({**state, "m.1": np.zeros(7)})
    assert target.lr == 0.5 and target.state == [{}, {}]      # a failed load changes nothing


# ----------------------------------------------------------------------------- dtypes, devices, basics

@pytest.mark.parametrize("make", [lambda ps: SGD(ps, lr=0.1), lambda ps: SGD(ps, lr=0.1, momentum=0.9),
                                  lambda ps: Adam(ps), lambda ps: AdamW(ps),
                                  lambda ps: RMSProp(ps, momentum=0.9, centered=True),
                                  lambda ps: Adagrad(ps, initial_accumulator_value=0.1)])
def test_float32_parameters_stay_float32(make):
    p0, grads = _problem(dtype=np.float32)
    params = _params(*p0)
    opt = make(params)
    for g in grads:
        _set_grads(params, g)
        opt.step()
    assert all(p.dtype == np.float32 for p in params)
    assert all(v.dtype == np.float32 for s in opt.state for v in s.values() if hasattr(v, "dtype"))


@pytest.mark.parametrize("opt_class, kwargs", [(SGD, dict(lr=0.1, momentum=0.9)), (Adam, dict(lr=0.01))])
def test_same_updates_on_every_device(device, opt_class, kwargs):
    p0, grads = _problem(8)
    on_device, opt = _run(opt_class, p0, grads, device=device, **kwargs)
    on_cpu, _ = _run(opt_class, p0, grads, **kwargs)
    for a, b in zip(on_device, on_cpu):
        np.testing.assert_allclose(a, b, rtol=1e-12)
    assert all(td.backend.device_of(v) == device for s in opt.state for v in s.values() if hasattr(v, "shape"))


def test_zero_grad_and_missing_grads_are_skipped():
    p0, grads = _problem()
    params = _params(*p0)
    opt = SGD(params, lr=0.1, momentum=0.9)
    _set_grads(params, [grads[0][0], None])
    opt.step()
    np.testing.assert_array_equal(params[1].numpy(), p0[1])
    assert not np.array_equal(params[0].numpy(), p0[0])
    assert opt.state[1] == {}
    opt.zero_grad()
    assert all(p.grad is None for p in params)
    before = params[0].numpy().copy()
    opt.step()
    np.testing.assert_array_equal(params[0].numpy(), before)


def test_constructor_errors():
    p = _params(np.zeros(3))
    with pytest.raises(ValueError, match="SGD: got an empty list of parameters"):
        SGD([], lr=0.1)
    with pytest.raises(ValueError, match="Adam: got an empty list of parameters"):
        Adam(q for q in [])
    with pytest.raises(ValueError, match="lr must be a finite number >= 0, got -0.1"):
        SGD(p, lr=-0.1)
    with pytest.raises(ValueError, match="lr must be"):
        Adam(p, lr=float("nan"))
    opt = Adam(p)
    with pytest.raises(ValueError, match="lr must be"):
        opt.lr = -1.0
    with pytest.raises(ValueError, match="beta2 must be in"):
        Adam(p, betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="nesterov=True needs momentum > 0"):
        SGD(p, lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match=r"RMSProp: alpha must be in \[0, 1\), got 1.0"):
        RMSProp(p, alpha=1.0)
    with pytest.raises(ValueError, match="RMSProp: momentum must be a finite number >= 0, got -0.5"):
        RMSProp(p, momentum=-0.5)
    with pytest.raises(ValueError, match="Adagrad: eps must be a finite number >= 0, got -1e-10"):
        Adagrad(p, eps=-1e-10)
    with pytest.raises(ValueError, match="Adagrad: initial_accumulator_value must be a finite number >= 0, got -0.1"):
        Adagrad(p, initial_accumulator_value=-0.1)
    with pytest.raises(ValueError, match="Adagrad: weight_decay must be a finite number >= 0, got inf"):
        Adagrad(p, weight_decay=float("inf"))
    with pytest.raises(ValueError, match="Adagrad: lr must be a finite number >= 0, got -0.01"):
        Adagrad(p, lr=-0.01)
    with pytest.raises(TypeError, match="not a Parameter"):
        SGD([np.zeros(3)], lr=0.1)
    with pytest.raises(TypeError, match="iterable of Parameters"):
        SGD(Linear(2, 2), lr=0.1)
    with pytest.raises(ValueError, match="appears more than once"):
        SGD(p + p, lr=0.1)


def test_gradient_dtype_mismatch_is_reported():
    p = _params(np.zeros(3, dtype=np.float32))
    p[0].grad = td.tensor(np.ones(3))                 # float64
    with pytest.raises(TypeError, match=r"gradient of params\[0\] has dtype float64"):
        Adam(p).step()


# ----------------------------------------------------------------------------- clipping

@pytest.mark.parametrize("norm_type", [1.0, 2.0, 3.0, math.inf])
def test_clip_grad_norm(norm_type):
    rng = np.random.default_rng(9)
    params = _params(np.zeros((3, 4)), np.zeros(5), np.zeros(2), np.zeros((0, 3)))
    grads = [rng.standard_normal(p.shape) for p in params]
    _set_grads(params, grads[:2] + [None, grads[3]])       # params[2] has no gradient
    flat = np.concatenate([grads[0].ravel(), grads[1].ravel()])
    expected = np.abs(flat).max() if math.isinf(norm_type) else (np.abs(flat) ** norm_type).sum() ** (1 / norm_type)
    max_norm = 0.5 * expected
    total = clip_grad_norm_(params, max_norm, norm_type)
    assert isinstance(total, float)
    assert total == pytest.approx(expected, rel=1e-12)
    clipped = np.concatenate([params[0].grad.numpy().ravel(), params[1].grad.numpy().ravel()])
    np.testing.assert_allclose(clipped, flat * max_norm / expected, rtol=1e-12)
    assert np.linalg.norm(clipped, norm_type) == pytest.approx(max_norm, rel=1e-12)
    assert params[2].grad is None
    # below the threshold nothing changes
    assert clip_grad_norm_(params, 10 * max_norm, norm_type) == pytest.approx(max_norm, rel=1e-12)
    np.testing.assert_array_equal(params[0].grad.numpy().ravel(), clipped[:12])


def test_clip_grad_norm_float32_and_nonfinite():
    params = _params(np.zeros(3, dtype=np.float32), np.zeros(1, dtype=np.float32))
    _set_grads(params, [[3.0, 0.0, 0.0], [4.0]])
    assert clip_grad_norm_(params, 1.0) == pytest.approx(5.0)
    assert params[0].grad.dtype == np.float32
    np.testing.assert_allclose(params[0].grad.numpy(), [0.6, 0.0, 0.0], rtol=1e-6)
    _set_grads(params, [[np.inf, 1.0, 0.0], [4.0]])
    assert clip_grad_norm_(params, 1.0) == math.inf
    np.testing.assert_array_equal(params[1].grad.numpy(), [4.0])     # left for the caller to see
    assert clip_grad_norm_([], 1.0) == 0.0
    with pytest.raises(ValueError, match="max_norm must be"):
        clip_grad_norm_(params, -1.0)


def test_clip_grad_value():
    params = _params(np.zeros(4), np.zeros(2, dtype=np.float32), np.zeros(1))
    _set_grads(params, [[-3.0, -0.5, 0.2, 7.0], [2.0, -2.0], None])
    clip_grad_value_(params, 1.0)
    np.testing.assert_array_equal(params[0].grad.numpy(), [-1.0, -0.5, 0.2, 1.0])
    np.testing.assert_array_equal(params[1].grad.numpy(), [1.0, -1.0])
    assert params[1].grad.dtype == np.float32 and params[2].grad is None


# ----------------------------------------------------------------------------- schedules

def _lrs(schedule, n):
    out = [schedule.optimizer.lr]
    for _ in range(n):
        schedule.step()
        out.append(schedule.optimizer.lr)
        assert schedule.get_lr() == out[-1]
    return out


def _optimizer(lr=0.1):
    return SGD(_params(np.zeros(2)), lr=lr)


def test_step_lr():
    got = _lrs(StepLR(_optimizer(), step_size=3, gamma=0.5), 9)
    np.testing.assert_allclose(got, [0.1 * 0.5 ** (t // 3) for t in range(10)], rtol=1e-15)


def test_cosine_lr():
    got = _lrs(CosineLR(_optimizer(), total_steps=8, min_lr=0.01), 11)
    expected = [0.01 + 0.09 * 0.5 * (1 + math.cos(math.pi * min(t, 8) / 8)) for t in range(12)]
    np.testing.assert_allclose(got, expected, rtol=1e-14)
    assert got[0] == 0.1 and got[4] == pytest.approx(0.055) and got[8:] == [0.01] * 4


def test_warmup_then_cosine():
    opt = _optimizer()
    got = _lrs(WarmupLR(opt, warmup_steps=4, after=CosineLR(opt, total_steps=6)), 12)
    warm = [0.1 * t / 4 for t in range(4)]
    cos = [0.05 * (1 + math.cos(math.pi * min(t, 6) / 6)) for t in range(9)]
    np.testing.assert_allclose(got, warm + cos, rtol=1e-14, atol=1e-17)


def test_warmup_alone_with_start_factor():
    got = _lrs(WarmupLR(_optimizer(), warmup_steps=5, start_factor=0.2), 7)
    expected = [0.1 * (0.2 + 0.8 * t / 5) for t in range(5)] + [0.1] * 3
    np.testing.assert_allclose(got, expected, rtol=1e-14)


def test_schedule_state_round_trip_through_npz(tmp_path):
    def make():
        opt = _optimizer()
        return WarmupLR(opt, warmup_steps=3, after=StepLR(opt, step_size=2, gamma=0.3))
    reference = make()
    full = _lrs(reference, 10)
    schedule = make()
    _lrs(schedule, 4)
    np.savez(tmp_path / "schedule.npz", **schedule.state_dict())
    resumed = make()
    with np.load(tmp_path / "schedule.npz") as loaded:
        resumed.load_state_dict(dict(loaded))
    assert resumed.optimizer.lr == full[4]
    assert _lrs(resumed, 6) == full[4:]
    with pytest.raises(ValueError, match="state dict is for WarmupLR, not StepLR"):
        StepLR(_optimizer(), 2).load_state_dict(schedule.state_dict())
    with pytest.raises(ValueError, match="has an 'after' schedule but this WarmupLR has none"):
        WarmupLR(_optimizer(), 3).load_state_dict(schedule.state_dict())
    with pytest.raises(ValueError, match="has no 'after' schedule but this WarmupLR has one"):
        make().load_state_dict(WarmupLR(_optimizer(), 3).state_dict())


def test_schedule_errors():
    with pytest.raises(ValueError, match="step_size must be >= 1"):
        StepLR(_optimizer(), 0)
    with pytest.raises(ValueError, match="total_steps must be >= 1"):
        CosineLR(_optimizer(), 0)
    with pytest.raises(ValueError, match="same optimizer"):
        WarmupLR(_optimizer(), 3, after=CosineLR(_optimizer(), 5))
    with pytest.raises(TypeError, match="expected an Optimizer"):
        StepLR(object(), 2)
