"""Bad input never poisons a model (issue 12, "Robustness"): a refused training step leaves
no trace, a checkpoint that does not fit changes nothing, the planar flow stays invertible
at extreme parameters, log-space densities stay finite at extreme scales, integer input
runs in the model's dtype, and the gated PixelCNN's receptive field is exact."""
import numpy as np
import pytest

import tinydgm as td
from tinydgm import nn, optim
from tinydgm.distributions import (DiscretizedLogistic, DiscretizedLogisticMixture, MixtureOfGaussians, Normal,
                                   kl_divergence)
from tinydgm.models import GatedPixelCNN
from tinydgm.models.flows import Compose, Flow, PlanarFlow
from tinydgm.models.flows.image import ActNormTransform, BatchNormTransform
from tinydgm.train import TrainingError, fit

from contracts import dependency_matrix
from protocol_cases import CASES, build, data_of


# ----------------------------------------------------------------------------- 1. a refused step leaves no trace

def _arrays_of(value):
    """The arrays inside a module attribute (an array, a tuple or dict of them), copied."""
    if isinstance(value, td.Tensor):
        return [value.numpy().copy()]
    if isinstance(value, np.ndarray):
        return [value.copy()]
    if isinstance(value, (tuple, list)):
        return [a for v in value for a in _arrays_of(v)]
    if isinstance(value, dict):
        return [a for v in value.values() for a in _arrays_of(v)]
    return []


def _everything(model, optimizer, rng):
    """Every piece of state a step could touch: parameters and buffers, every other array a
    module holds (persistent chains), flags, the optimizer's state and the generator."""
    modules = {}
    for name, module in model.named_modules():
        modules[name] = {attr: _arrays_of(value) for attr, value in vars(module).items() if _arrays_of(value)}
        modules[name]["training"] = module.training
    return {"state_dict": model.state_dict(), "modules": modules, "optimizer": optimizer.state_dict(),
            "rng": rng.bit_generator.state}


def _assert_same(before, after, where=""):
    if isinstance(before, dict):
        assert set(before) == set(after), f"{where}: keys {sorted(before)} became {sorted(after)}"
        for key in before:
            _assert_same(before[key], after[key], f"{where}/{key}")
    elif isinstance(before, (list, tuple)):
        assert len(before) == len(after), f"{where}: length changed"
        for i, (b, a) in enumerate(zip(before, after)):
            _assert_same(b, a, f"{where}[{i}]")
    elif isinstance(before, np.ndarray):
        np.testing.assert_array_equal(after, before, err_msg=f"{where} changed")
    else:
        assert before == after, f"{where}: {before!r} became {after!r}"


def _norm_flow(kind):
    layer = {"actnorm": ActNormTransform, "batchnorm": BatchNormTransform}[kind](3, dtype="float64")
    return Flow(Compose([layer]), (3,))


class _NormLayers(nn.Module):
    """The bare layers of tinydgm.nn.norm under a loss that is finite for finite data."""

    def __init__(self):
        super().__init__()
        self.batch_norm = nn.BatchNorm(3, dtype="float64")
        self.act_norm = nn.ActNorm(3, dtype="float64")

    def loss(self, x):
        y = self.act_norm(self.batch_norm(x))
        return (y * y).mean() + self.act_norm.log_det(x).mean()


def _poisoned(x):
    bad = x.copy()
    bad.reshape(len(x), -1)[1, 0] = np.nan
    return bad


LAYER_MODELS = {"ActNormTransform": lambda: _norm_flow("actnorm"),
                "BatchNormTransform": lambda: _norm_flow("batchnorm"),
                "nn.BatchNorm+nn.ActNorm": _NormLayers}


@pytest.mark.parametrize("name", sorted(LAYER_MODELS))
def test_refused_first_step_leaves_norm_layers_untouched_and_trainable(name):
    """A NaN in the very first batch: act-norm must not initialise itself from it nor
    batch-norm's running statistics absorb it; afterwards training on clean data gives the
    same bits as a twin that never saw the bad batch."""
    x = np.random.default_rng(0).normal(2.0, 3.0, (16, 3))
    model, twin = LAYER_MODELS[name](), LAYER_MODELS[name]()
    opt, twin_opt = optim.Adam(model.parameters(), lr=1e-2), optim.Adam(twin.parameters(), lr=1e-2)
    rng = td.rng(1)
    before = _everything(model, opt, rng)
    with pytest.raises(TrainingError):
        fit(model, _poisoned(x), opt, epochs=1, batch_size=8, rng=rng, shuffle=False, progress=False)
    _assert_same(before, _everything(model, opt, rng), name)

    fit(model, x, opt, epochs=2, batch_size=8, rng=rng, shuffle=False, progress=False)
    fit(twin, x, twin_opt, epochs=2, batch_size=8, rng=td.rng(1), shuffle=False, progress=False)
    for (key, a), b in zip(model.state_dict().items(), twin.state_dict().values()):
        assert np.isfinite(a).all(), key
        np.testing.assert_array_equal(a, b, err_msg=key)


FIT_CASES = [case for case in CASES if case.step == "loss"]


@pytest.mark.parametrize("case", FIT_CASES, ids=repr)
def test_refused_step_restores_every_state_of_every_model(case):
    """Every model of the protocol table: after one clean epoch (optimizer moments, running
    statistics, chains exist), a batch with a NaN is refused (TrainingError, or a ValueError
    from the model's own input check) and nothing changed: parameters, buffers, flags,
    persistent chains, optimizer state, the generator."""
    model = build(case)
    x = data_of(case, seed=1)[:16]
    opt = case.optimizer(model.parameters())
    rng = td.rng(2)
    fit(model, x, opt, epochs=1, batch_size=8, rng=rng, shuffle=False, progress=False)
    before = _everything(model, opt, rng)
    with pytest.raises((TrainingError, ValueError)):
        fit(model, _poisoned(x), opt, epochs=2, batch_size=8, rng=rng, shuffle=False, progress=False)
    _assert_same(before, _everything(model, opt, rng), case.name)


def test_norm_layers_outside_fit_keep_their_state_on_a_bad_batch():
    """Without fit to undo anything (e.g. a first log_prob on bad data): act-norm does not
    initialise itself from a batch with a NaN (an explicit initialize says why), and
    batch-norm's running statistics move only for the features whose statistics are finite."""
    x = np.random.default_rng(3).normal(2.0, 3.0, (16, 3))
    act = nn.ActNorm(3, dtype="float64")
    assert not np.isfinite(act(td.tensor(_poisoned(x))).numpy()).all()
    assert not bool(act.initialized)
    np.testing.assert_array_equal(act.scale.numpy(), np.ones(3))
    with pytest.raises(ValueError, match=r"ActNorm\(3\): the initialising batch .* NaN"):
        act.initialize(td.tensor(_poisoned(x)))
    act(td.tensor(x))                                   # the first finite batch initialises it
    assert bool(act.initialized)
    np.testing.assert_allclose(act(td.tensor(x)).numpy().std(axis=0), 1, rtol=1e-5)

    norm = nn.BatchNorm(3, dtype="float64")
    norm(td.tensor(_poisoned(x)))                        # feature 0 holds the NaN
    expected = 0.1 * x[:, 1:].mean(axis=0)
    np.testing.assert_array_equal(norm.running_mean[0], 0.0)
    np.testing.assert_array_equal(norm.running_var[0], 1.0)
    np.testing.assert_allclose(norm.running_mean[1:], expected, rtol=1e-12)


# ----------------------------------------------------------------------------- 2. checkpoint.load: all or nothing

class _Net(nn.Module):
    def __init__(self, seed):
        super().__init__()
        self.linear = nn.Linear(3, 2, rng=np.random.default_rng(seed), dtype="float64")
        self.norm = nn.BatchNorm(2, dtype="float64")

    def loss(self, x):
        return (self.norm(self.linear(x)) ** 2).mean()


def _trained(seed, steps=2):
    model = _Net(seed)
    opt = optim.Adam(model.parameters(), lr=0.1)
    schedule = optim.StepLR(opt, step_size=1, gamma=0.5)
    fit(model, np.random.default_rng(seed).standard_normal((8, 3)), opt, epochs=steps, batch_size=4, seed=seed,
        scheduler=schedule, progress=False)
    return model, opt, schedule


@pytest.mark.parametrize("mismatch", ["optimizer type", "optimizer size", "no optimizer state", "scheduler"])
def test_checkpoint_load_that_does_not_fit_changes_nothing(tmp_path, mismatch):
    """The model's part of the file fits, the optimizer's (or scheduler's) does not: load
    raises and the model, optimizer and scheduler are exactly as before the call."""
    saved_model, saved_opt, saved_schedule = _trained(seed=0)
    path = tmp_path / "ckpt.npz"
    td.checkpoint.save(path, saved_model, None if mismatch == "no optimizer state" else saved_opt,
                       saved_schedule if mismatch != "no optimizer state" else None)
    model, opt, schedule = _trained(seed=1, steps=3)
    if mismatch == "optimizer type":
        opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    elif mismatch == "optimizer size":
        opt = optim.Adam(model.parameters()[:1], lr=0.1)
    elif mismatch == "scheduler":
        schedule = optim.CosineLR(opt, total_steps=10)
    before = (model.state_dict(), opt.state_dict(), schedule.state_dict(), opt.lr)
    with pytest.raises(td.checkpoint.CheckpointError):
        td.checkpoint.load(path, model, opt, schedule)
    _assert_same(before, (model.state_dict(), opt.state_dict(), schedule.state_dict(), opt.lr), mismatch)


# ----------------------------------------------------------------------------- 6. the gated PixelCNN's exact reach

def _measured_reach(model, size):
    """(up, left, right) of the pixels that the logits at the bottom-right-most interior
    pixel depend on, from the engine's Jacobian (tests/contracts.py)."""
    h, w = size
    x = np.random.default_rng(0).random((2, 1, h, w))
    dep = dependency_matrix(lambda t: model.logits(t), x)          # (outputs, inputs)
    i, j = h - 1, w - 1 - (w // 2)                                   # a pixel with room on both sides
    rows, cols = np.divmod(np.flatnonzero(dep[i * w + j]), w)
    return int(i - rows.min()), int(j - cols.min()), int(cols.max() - j)


@pytest.mark.parametrize("n_layers, kernel_size, first_kernel_size", [(2, 3, 3), (3, 3, 5), (1, 5, 7), (2, 5, 3)])
def test_gated_pixelcnn_reach_is_exact(n_layers, kernel_size, first_kernel_size):
    model = GatedPixelCNN(channels=3, n_layers=n_layers, kernel_size=kernel_size, first_kernel_size=first_kernel_size,
                          dtype="float64", rng=np.random.default_rng(1))
    up, left, right = model.reach()
    size = (up + 3, left + right + 5)                              # larger than the receptive field
    assert _measured_reach(model, size) == (up, left, right)
    if (n_layers, kernel_size, first_kernel_size) == (2, 3, 3):
        assert (up, left, right) == (3, 3, 2)                     # 2 layers of 3x3: 3 up, 3 left, 2 right


# ----------------------------------------------------------------------------- 3. the planar constraint in floating point

@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("w_dot_u", [-1e8, -1e6, -1e4, -40.0, 30.0])
def test_planar_flow_stays_invertible_at_extreme_parameters(dtype, w_dot_u):
    """w^T u far below -1: u_hat must satisfy w^T u_hat > -1 as the arrays hold it (not
    only in exact arithmetic), so the map is increasing along w, its log-det finite and the
    inverse recovers x."""
    rng = np.random.default_rng(4)
    t = PlanarFlow(5, dtype=dtype)
    w = rng.standard_normal(5)
    u = w_dot_u * w / (w @ w) + rng.standard_normal(5)
    t.w.data, t.u.data, t.b.data = w.astype(dtype), u.astype(dtype), np.asarray(0.3, dtype=dtype)
    u_hat = t.u_hat().numpy().astype(np.float64)
    w_stored = t.w.numpy().astype(np.float64)
    margin = {"float32": 1e-4, "float64": 1e-9}[dtype]
    assert w_stored @ u_hat > -1 + margin, f"w^T u_hat = {w_stored @ u_hat!r}"
    x = td.tensor(rng.normal(size=(200, 5)) * 2, dtype=dtype)
    with td.no_grad():
        z, log_det = t(x)
        back, inv_log_det = t.inverse(z)
    assert np.isfinite(log_det.numpy()).all() and np.isfinite(back.numpy()).all()
    # one-to-one along w: a = w^T x + b -> w^T z + b is strictly increasing
    a_in = x.numpy().astype(np.float64) @ w_stored
    a_out = z.numpy().astype(np.float64) @ w_stored
    order = np.argsort(a_in)
    assert (np.diff(a_out[order]) > 0).all()
    # the inverse, where it is well conditioned (slope exp(log_det) >= 0.1; where the map
    # is almost flat, down to delta, it amplifies rounding by up to 1 / delta)
    ok = log_det.numpy() > np.log(0.1)
    assert ok.sum() > 20
    tol = 1e-3 if dtype == "float32" else 1e-8
    np.testing.assert_allclose(inv_log_det.numpy()[ok], -log_det.numpy()[ok], rtol=tol, atol=tol)
    np.testing.assert_allclose(back.numpy()[ok], x.numpy()[ok], rtol=tol, atol=tol * max(1.0, np.abs(u_hat).max()))


# ----------------------------------------------------------------------------- 4. log-space densities at extreme scales

# log sigma far beyond what exp reaches in each dtype, both ways (float32: exp overflows at 88.7)
EXTREME_LOG_SCALES = {"float32": [-250.0, -100.0, -89.0, 89.0, 100.0, 250.0],
                      "float64": [-800.0, -710.0, 710.0, 800.0]}
EXTREME = [(dtype, s) for dtype, scales in EXTREME_LOG_SCALES.items() for s in scales]


def _grads_are_numbers(value, *params):
    value.sum().backward()
    for p in params:
        assert not np.isnan(p.grad.numpy()).any(), "a NaN gradient"


def _param(values, dtype):
    return td.tensor(np.asarray(values, dtype=dtype), dtype=dtype, requires_grad=True)


@pytest.mark.parametrize("dtype, log_scale", EXTREME)
def test_normal_log_forms_stay_finite_at_extreme_scales(dtype, log_scale):
    """log N(x | mu, sigma^2) from log_var or log_scale: at x = mu it is -log(2 pi)/2 - log sigma
    (finite however small sigma is); elsewhere it is finite or, where the true value is
    beyond the dtype, -inf; never NaN, nor NaN gradients."""
    mu = np.array([0.5, 0.5, -2.0], dtype=dtype)
    x = np.array([0.5, 0.75, 1.0], dtype=dtype)                      # x = mu, then x != mu
    for kind, value in (("log_scale", log_scale), ("log_var", 2 * log_scale)):
        m, s = _param(mu, dtype), _param([value] * 3, dtype)
        log_p = Normal(m, **{kind: s}).log_prob(x)
        got = log_p.numpy()
        assert log_p.dtype == dtype and not np.isnan(got).any(), (kind, got)
        np.testing.assert_allclose(got[0], -0.5 * np.log(2 * np.pi) - log_scale, rtol=1e-6)
        if log_scale > 0:                                            # a very wide Gaussian: all finite
            np.testing.assert_allclose(got, -0.5 * np.log(2 * np.pi) - log_scale, rtol=1e-6)
        else:                                                        # a spike: -inf off its centre
            assert (got[1:] == -np.inf).all(), got
        _grads_are_numbers(log_p, m, s)
        np.testing.assert_allclose(s.grad.numpy()[0], -1.0 if kind == "log_scale" else -0.5, rtol=1e-6)
        assert m.grad.numpy()[0] == 0


@pytest.mark.parametrize("dtype, log_scale", EXTREME)
def test_mixture_and_kl_stay_finite_at_extreme_scales(dtype, log_scale):
    means = np.array([[0.5], [3.0]], dtype=dtype)
    mog = MixtureOfGaussians(np.zeros(2, dtype=dtype), means, np.full((2, 1), log_scale, dtype=dtype))
    log_p = mog.log_prob(np.array([[0.5]], dtype=dtype)).numpy()
    weight = 0.5 if log_scale < 0 else 1.0          # a spike at 0.5 and one at 3; or two equal, very wide bumps
    np.testing.assert_allclose(log_p, np.log(weight) - 0.5 * np.log(2 * np.pi) - log_scale, rtol=1e-6)
    p = Normal(_param([0.5, 0.5], dtype), log_scale=_param([log_scale, 0.0], dtype))
    kl = kl_divergence(p, Normal(np.array([0.5, 0.5], dtype=dtype), log_scale=np.array([log_scale, 0.0], dtype=dtype)))
    np.testing.assert_array_equal(kl.numpy(), 0.0)                   # KL(p || p) = 0, not NaN


@pytest.mark.parametrize("dtype, log_scale", EXTREME)
def test_discretized_logistics_stay_finite_at_extreme_scales(dtype, log_scale):
    """Three levels -1, 0, 1 (half-width h = 1/2). A very narrow logistic centred on a bin
    edge puts half its mass in each neighbour; centred on a level, all of it. A very wide
    one puts mass 2h / (4 s) (its density at the centre times the bin width) in the middle
    bin: log mass = log(2h) - log s - log 4, finite although 2h / s underflows."""
    x = np.array([0.0, 0.0, 1.0], dtype=dtype)
    mean = _param([0.5, 0.0, 1.0], dtype)                           # a bin edge, a level, the top level
    s = _param([log_scale] * 3, dtype)
    for dist in (DiscretizedLogistic(mean, s, n_bins=3),
                 DiscretizedLogisticMixture(td.tensor(np.zeros((3, 1), dtype=dtype)), mean.reshape(3, 1),
                                            s.reshape(3, 1), n_bins=3)):
        mean.grad = s.grad = None
        log_p = dist.log_prob(x)
        got = log_p.numpy()
        assert log_p.dtype == dtype and not np.isnan(got).any(), got
        if log_scale < 0:
            np.testing.assert_allclose(got, [np.log(0.5), 0.0, 0.0], atol=1e-6)
        else:
            np.testing.assert_allclose(got[:2], np.log(1.0) - log_scale - np.log(4), rtol=1e-6)
            np.testing.assert_allclose(got[2], np.log(0.5), rtol=1e-6)          # the top bin: half the mass
        assert np.isfinite(dist.entropy().numpy()).all()
        _grads_are_numbers(log_p, mean, s)


@pytest.mark.parametrize("log_scale", [-3.0, 2.0, 25.0, 60.0])
def test_discretized_logistic_gradients_on_both_sides_of_the_width_series(log_scale):
    """Gradcheck (and second order) of the bin masses where 2h / s is ordinary and where it
    is below 1e-8 (the log-space series branch), in float64."""
    rng = np.random.default_rng(5)
    x = td.tensor(rng.integers(0, 3, 6) - 1.0, dtype="float64")
    mean = td.tensor(rng.normal(0, 0.7, 6), dtype="float64", requires_grad=True)
    s = td.tensor(log_scale + 0.1 * rng.standard_normal(6), dtype="float64", requires_grad=True)
    fn = lambda m, ls: DiscretizedLogistic(m, ls, n_bins=3).log_prob(x)                      # noqa: E731
    assert td.gradcheck(fn, [mean, s])
    assert td.gradgradcheck(fn, [mean, s])


# ----------------------------------------------------------------------------- 5. integer input runs in the model's dtype

def _likelihood_or_loss(model, case, x):
    td.seed(7)                                      # the same draws for every input (chains, eps)
    kwargs = dict(case.likelihood_kwargs)
    if case.needs_rng:
        kwargs["rng"] = np.random.default_rng(7)
    if case.likelihood is None:
        return model.loss(x)
    return getattr(model, case.likelihood)(x, **kwargs)


@pytest.mark.parametrize("case", [c for c in CASES if c.step == "loss"], ids=repr)
def test_integer_input_runs_in_the_models_dtype(case):
    """Every model of the protocol table, cast to float32: the same whole-number batch as an
    int64 array, an int64 Tensor, a bool/uint8 array where it is binary, or a float64 array
    gives exactly what the float32 Tensor gives (docs/architecture.md: one input rule)."""
    def fresh():                                     # persistent chains must not carry over between inputs
        return build(case).to(dtype="float32")

    values = np.rint(data_of(case)[:4])
    reference = _likelihood_or_loss(fresh(), case, td.tensor(values, dtype="float32"))
    inputs = {"int64 array": values.astype(np.int64), "int64 Tensor": td.tensor(values.astype(np.int64)),
              "float64 array": values}
    if set(np.unique(values)) <= {0.0, 1.0}:
        inputs["uint8 array"] = values.astype(np.uint8)
    for name, x in inputs.items():
        got = _likelihood_or_loss(fresh(), case, x)
        assert got.dtype == reference.dtype, f"{name}: {got.dtype}, the model's dtype gives {reference.dtype}"
        np.testing.assert_allclose(got.numpy(), reference.numpy(), rtol=1e-6, atol=1e-6, err_msg=name)


def test_integer_input_to_layers_runs_in_their_dtype():
    """nn layers take the same rule through module(x); Embedding keeps its integer labels."""
    linear = nn.Linear(3, 2, dtype="float32", rng=np.random.default_rng(0))
    x = np.array([[1, 0, 2], [0, 1, 1]])
    expected = linear(td.tensor(x, dtype="float32")).numpy()
    for given in (x, td.tensor(x), x.astype(bool).astype(np.uint8) * 1, x.astype(np.float64)):
        y = linear(given)
        assert y.dtype == np.float32
    np.testing.assert_array_equal(linear(x).numpy(), expected)
    np.testing.assert_array_equal(linear(td.tensor(x)).numpy(), expected)
    assert linear(td.tensor(x, dtype="float64")).dtype == np.float64      # a floating Tensor: the caller's choice
    embedding = nn.Embedding(4, 2, dtype="float32", rng=np.random.default_rng(0))
    np.testing.assert_array_equal(embedding(np.array([3, 1])).numpy(), embedding.weight.numpy()[[3, 1]])
