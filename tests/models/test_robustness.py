"""Bad input never poisons a model (issue 12, "Robustness"): a refused training step leaves
no trace, a checkpoint that does not fit changes nothing, the planar flow stays invertible
at extreme parameters, log-space densities stay finite at extreme scales, integer input
runs in the model's dtype, and the gated PixelCNN's receptive field is exact."""
import numpy as np
import pytest

import tinydgm as td
from tinydgm import nn, optim
from tinydgm.models.flows import Compose, Flow
from tinydgm.models.flows.image import ActNormTransform, BatchNormTransform
from tinydgm.train import TrainingError, fit

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
    from contracts import dependency_matrix
    h, w = size
    x = np.random.default_rng(0).random((2, 1, h, w))
    dep = dependency_matrix(lambda t: model.logits(t), x)          # (outputs, inputs)
    i, j = h - 1, w - 1 - (w // 2)                                   # a pixel with room on both sides
    rows, cols = np.divmod(np.flatnonzero(dep[i * w + j]), w)
    return int(i - rows.min()), int(j - cols.min()), int(cols.max() - j)


@pytest.mark.parametrize("n_layers, kernel_size, first_kernel_size", [(2, 3, 3), (3, 3, 5), (1, 5, 7), (2, 5, 3)])
def test_gated_pixelcnn_reach_is_exact(n_layers, kernel_size, first_kernel_size):
    from tinydgm.models import GatedPixelCNN
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
    from tinydgm.models.flows import PlanarFlow
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
