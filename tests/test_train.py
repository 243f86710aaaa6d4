"""tinydgm.train.fit: reaches a closed-form MLE, history layout, determinism for a seed,
validation and callbacks, early stopping, NaN errors that keep the checkpoint, bit-identical
resume, silence without a progress bar, bad arguments."""
import math

import numpy as np
import pytest

import tinydgm as td
from tinydgm import checkpoint, nn
from tinydgm.data import batches
from tinydgm.optim import SGD, Adam, CosineLR, StepLR
from tinydgm.train import HISTORY_KEYS, TrainingError, fit


class Gaussian(nn.Module):
    """Diagonal Gaussian with learnable mean and log-sigma; loss = mean NLL (minus the
    constant D/2 log 2 pi), whose minimiser is mu = mean(x), sigma = std(x)."""

    def __init__(self, d=2, seed=0, dtype="float32"):
        super().__init__()
        rng = np.random.default_rng(seed)
        self.mu = nn.Parameter(td.tensor(rng.standard_normal(d), dtype=dtype))
        self.log_sigma = nn.Parameter(td.tensor(0.1 * rng.standard_normal(d), dtype=dtype))

    def loss(self, x):
        z = (x - self.mu) * td.exp(-self.log_sigma)
        return (self.log_sigma + 0.5 * z * z).sum(axis=1).mean()


class NoisyGaussian(Gaussian):
    """The same loss on jittered data x + 0.1 eps, eps drawn from the model's own ``rng``
    (the convention of docs/architecture.md), so the model's randomness is part of the run. Records the
    mode and grad state each loss was computed in."""

    def __init__(self, d=2, seed=0):
        super().__init__(d, seed)
        self.rng = np.random.default_rng(1000 + seed)
        self.calls = []

    def loss(self, x):
        self.calls.append((self.training, td.is_grad_enabled(), len(x)))
        eps = self.rng.standard_normal(x.shape).astype(np.float32)
        return super().loss(x + 0.1 * td.tensor(eps, device=x.device))


def _data(n=200, seed=0):
    return np.random.default_rng(seed).normal([1.0, -2.0], [0.5, 2.0], size=(n, 2))


def _state(model):
    return model.state_dict()


def _assert_same(history_a, history_b, model_a, model_b):
    """Bit-identical histories (all keys but wall-clock time) and parameters."""
    assert history_a.keys() == history_b.keys()
    for key in history_a:
        if key != "time":
            np.testing.assert_array_equal(history_a[key], history_b[key], err_msg=key)
    for (name, a), b in zip(_state(model_a).items(), _state(model_b).values()):
        np.testing.assert_array_equal(a, b, err_msg=name)


# ----------------------------------------------------------------------------- learning

def test_fit_reaches_the_gaussian_mle():
    x = _data(512)
    model = Gaussian(dtype="float64")
    optimizer = Adam(model.parameters(), lr=0.05)
    epochs, batch_size = 40, 64
    history = fit(model, x, optimizer, epochs, batch_size, seed=0, progress=False,
                  scheduler=CosineLR(optimizer, total_steps=epochs * 8), scheduler_interval="step")
    np.testing.assert_allclose(model.mu.numpy(), x.mean(0), atol=0.02)
    np.testing.assert_allclose(np.exp(model.log_sigma.numpy()), x.std(0), rtol=0.02)
    min_nll = np.log(x.std(0)).sum() + 1.0                          # sum_d log sigma_d + D/2 at the MLE
    full_loss = model.loss(td.tensor(x)).item()
    assert min_nll <= full_loss < min_nll + 1e-3
    assert history["epoch_loss"][-1] < history["epoch_loss"][0] - 0.5
    np.testing.assert_allclose(history["lr"][[0, -1]], [0.05, 0.05 * 0.5 * (1 + np.cos(np.pi * 319 / 320))])


def test_fit_on_tuple_data_logistic_regression():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((300, 2))
    y = (x @ np.array([2.0, -1.0]) + 0.3 * rng.standard_normal(300) > 0).astype(np.int64)

    class LogisticRegression(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(2, 1, rng=np.random.default_rng(0))
            self.seen = []

        def loss(self, batch):
            features, labels = batch
            self.seen.append((features.dtype, labels.dtype))
            logits = self.linear(features)[:, 0]
            return td.binary_cross_entropy_with_logits(logits, labels).mean()

    model = LogisticRegression()
    history = fit(model, (x, y), SGD(model.parameters(), lr=0.5), epochs=20, batch_size=50, seed=1,
                  progress=False, valid_data=(x[:100], y[:100]))
    # float64 features are cast to the model's dtype, integer labels stay integers
    assert set(model.seen) == {(np.dtype(np.float32), np.dtype(np.int64))}
    assert history["epoch_loss"][-1] < 0.5 * history["epoch_loss"][0]
    with td.no_grad():
        predicted = model.linear(td.tensor(x, dtype="float32")).numpy()[:, 0] > 0
    assert (predicted == y).mean() > 0.9


# ----------------------------------------------------------------------------- history

def test_history_keys_shapes_and_epoch_means():
    model = Gaussian()
    history = fit(model, _data(100), SGD(model.parameters(), lr=0.01), epochs=3, batch_size=32, seed=0,
                  progress=False)
    assert tuple(history) == HISTORY_KEYS
    assert {k: v.shape for k, v in history.items()} == {
        "loss": (12,), "lr": (12,), "epoch_loss": (3,), "valid_loss": (3,), "time": (3,)}
    assert all(v.dtype == np.float64 for v in history.values())
    np.testing.assert_allclose(history["epoch_loss"], history["loss"].reshape(3, 4).mean(1), rtol=1e-12)
    assert np.isnan(history["valid_loss"]).all() and (history["time"] > 0).all()
    assert (history["lr"] == 0.01).all()

    dropped = fit(Gaussian(), _data(100), SGD(model.parameters(), lr=0.01), epochs=2, batch_size=32,
                  drop_last=True, progress=False)
    assert dropped["loss"].shape == (6,)


def test_epoch_scheduler_sets_the_lr_each_step_uses():
    model = Gaussian()
    optimizer = SGD(model.parameters(), lr=0.1)
    history = fit(model, _data(40), optimizer, epochs=4, batch_size=20, seed=0, progress=False,
                  scheduler=StepLR(optimizer, step_size=2, gamma=0.5))
    np.testing.assert_array_equal(history["lr"], [0.1] * 4 + [0.05] * 4)


def test_gradient_clipping_bounds_each_update():
    model = Gaussian()
    before = np.concatenate([p.numpy() for p in model.parameters()])
    fit(model, _data(200) * 100, SGD(model.parameters(), lr=0.1), epochs=1, batch_size=200,
        clip_grad_norm=0.5, progress=False)
    after = np.concatenate([p.numpy() for p in model.parameters()])
    np.testing.assert_allclose(np.linalg.norm(after - before), 0.1 * 0.5, rtol=1e-5)


# ----------------------------------------------------------------------------- determinism

def _run(seed, epochs=3, **kwargs):
    model = NoisyGaussian()
    history = fit(model, _data(), Adam(model.parameters(), lr=0.05), epochs, 32, seed=seed, progress=False,
                  **kwargs)
    return model, history


def test_same_seed_gives_bit_identical_runs():
    model_a, history_a = _run(seed=7)
    model_b, history_b = _run(seed=7)
    _assert_same(history_a, history_b, model_a, model_b)
    model_c, history_c = _run(seed=8)
    assert not np.array_equal(history_a["loss"], history_c["loss"])


def test_model_generator_is_lent_and_given_back():
    model = NoisyGaussian()
    own = model.rng
    state = own.bit_generator.state
    rng = np.random.default_rng(5)
    seen = []
    model.loss = lambda x: seen.append(model.rng) or Gaussian.loss(model, x)
    fit(model, _data(), SGD(model.parameters(), lr=0.01), 1, 100, rng=rng, progress=False)
    assert seen and all(g is rng for g in seen)                        # drew from the run's generator
    assert model.rng is own and own.bit_generator.state == state       # its own is back, untouched


def test_default_generator_follows_td_seed(monkeypatch):
    monkeypatch.setattr(td.backend, "_default_generator", td.backend.default_generator())   # restored after
    td.seed(123)
    model_a, history_a = _run(seed=None)
    td.seed(123)
    model_b, history_b = _run(seed=None)
    _assert_same(history_a, history_b, model_a, model_b)


# ----------------------------------------------------------------------------- validation, callbacks

def test_validation_each_epoch_in_eval_mode_and_the_callback():
    x, x_valid = _data(96), _data(50, seed=1)
    model = NoisyGaussian()
    events = []

    def on_epoch_end(epoch, history, m):
        assert m is model and m.training                                  # back in train mode
        events.append((epoch, len(history["epoch_loss"]), history["valid_loss"][-1]))
        # validation: batches of 32 and 18 in eval mode without a graph, after 3 training steps
        assert model.calls[-2:] == [(False, False, 32), (False, False, 18)]
        assert model.calls[-3] == (True, True, 32)

    history = fit(model, x, SGD(model.parameters(), lr=0.01), 3, 32, seed=0, valid_data=x_valid,
                  on_epoch_end=on_epoch_end, progress=False)
    assert [e[:2] for e in events] == [(1, 1), (2, 2), (3, 3)]
    np.testing.assert_array_equal([e[2] for e in events], history["valid_loss"])
    assert np.isfinite(history["valid_loss"]).all()


def test_valid_loss_is_the_size_weighted_mean():
    x_valid = _data(50, seed=1)
    model = Gaussian(dtype="float64")
    history = fit(model, _data(64), SGD(model.parameters(), lr=0.01), 1, 32, seed=0, valid_data=x_valid,
                  valid_batch_size=16, progress=False)
    np.testing.assert_allclose(history["valid_loss"][0], model.loss(td.tensor(x_valid)).item(), rtol=1e-12)


def test_callback_returning_false_stops_and_checkpoints(tmp_path):
    path = tmp_path / "ckpt.npz"
    model = Gaussian()
    history = fit(model, _data(), SGD(model.parameters(), lr=0.01), 10, 50, seed=0, progress=False,
                  on_epoch_end=lambda epoch, h, m: epoch < 2, checkpoint_path=path, checkpoint_every=5)
    assert len(history["epoch_loss"]) == 2 and len(history["loss"]) == 8
    saved = checkpoint.load(path)
    assert saved.epoch == 2 and saved.step == 8
    np.testing.assert_array_equal(saved.history["loss"], history["loss"])


# ----------------------------------------------------------------------------- NaN

@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
@pytest.mark.parametrize("bad, shown", [(np.nan, "nan"), (1e30, "inf")])    # 1e30 ** 2 overflows float32
def test_nonfinite_loss_names_the_step_and_keeps_the_checkpoint(tmp_path, bad, shown):
    path = tmp_path / "ckpt.npz"
    x = _data(100)
    model = Gaussian()
    fit(model, x, SGD(model.parameters(), lr=0.01), 2, 20, seed=0, checkpoint_path=path, progress=False)
    good_bytes = path.read_bytes()
    good_state = _state(model)

    x[47] = bad                                 # with shuffle=False: the 3rd batch of an epoch
    model = Gaussian(seed=5)
    optimizer = SGD(model.parameters(), lr=0.01)
    with pytest.raises(TrainingError, match=rf"the loss is {shown} at epoch 3, step 13 \(batch 3 of 5") as err:
        fit(model, x, optimizer, 4, 20, resume=True, checkpoint_path=path, shuffle=False, progress=False)
    assert "ckpt.npz (epoch 2), is untouched" in str(err.value)
    assert (err.value.epoch, err.value.step) == (3, 13) and not math.isfinite(err.value.loss)
    assert len(err.value.history["loss"]) == 12                       # the two finite steps of epoch 3 ...
    assert path.read_bytes() == good_bytes                             # ... but the file is epoch 2's
    assert all(np.isfinite(p.numpy()).all() for p in model.parameters())   # no NaN update was taken

    restored = Gaussian(seed=9)
    assert checkpoint.load(path, restored).epoch == 2
    for name, value in _state(restored).items():
        np.testing.assert_array_equal(value, good_state[name])


def test_nan_in_the_first_epoch_without_checkpoint():
    x = _data(40)
    x[0] = np.nan
    model = Gaussian()
    with pytest.raises(TrainingError, match=r"epoch 1, step 1 .*checkpoint_path=None"):
        fit(model, x, SGD(model.parameters(), lr=0.01), 2, 10, shuffle=False, progress=False)


# ----------------------------------------------------------------------------- resume

def _resumable(seed):
    """Fresh objects, as a new process would make them: a model whose init differs from
    the checkpoint's, an Adam, a StepLR and a noisy loss drawing from the model's rng."""
    model = NoisyGaussian(seed=seed)
    optimizer = Adam(model.parameters(), lr=0.05)
    return model, optimizer, StepLR(optimizer, step_size=1, gamma=0.7)


@pytest.mark.parametrize("interval", ["epoch", "step"])
def test_resume_is_bit_identical_to_an_uninterrupted_run(tmp_path, interval):
    x, x_valid = _data(), _data(30, seed=1)
    common = dict(batch_size=32, valid_data=x_valid, scheduler_interval=interval, progress=False)

    model, optimizer, scheduler = _resumable(seed=0)
    straight = fit(model, x, optimizer, 4, seed=11, scheduler=scheduler, **common)

    path = tmp_path / "run" / "ckpt.npz"
    first, optimizer, scheduler = _resumable(seed=0)
    fit(first, x, optimizer, 2, seed=11, scheduler=scheduler, checkpoint_path=path, **common)
    resumed_model, optimizer, scheduler = _resumable(seed=3)
    resumed = fit(resumed_model, x, optimizer, 4, seed=999, scheduler=scheduler, checkpoint_path=path,
                  resume=True, **common)

    _assert_same(straight, resumed, model, resumed_model)
    assert checkpoint.load(path).epoch == 4
    # nothing left to do: resuming a finished run returns its history unchanged
    fresh, optimizer, _ = _resumable(seed=4)
    again = fit(fresh, x, optimizer, 4, 32, seed=1, checkpoint_path=path, resume=True, progress=False)
    np.testing.assert_array_equal(again["loss"], straight["loss"])


def test_fit_and_resume_on_device(tmp_path, device):
    """Batches follow the model to its device; checkpoints hold host arrays; resume stays exact."""
    x = _data(64)

    def run(epochs, seed, **kwargs):
        model = NoisyGaussian(seed=seed).to(device)
        optimizer = Adam(model.parameters(), lr=0.05)
        history = fit(model, x, optimizer, epochs, 16, seed=3, progress=False, valid_data=x[:20], **kwargs)
        assert model.mu.device == device
        return model, history

    model, straight = run(3, seed=0)
    run(1, seed=0, checkpoint_path=tmp_path / "c.npz")
    resumed_model, resumed = run(3, seed=1, checkpoint_path=tmp_path / "c.npz", resume=True)
    _assert_same(straight, resumed, model, resumed_model)
    assert straight["epoch_loss"][-1] < straight["epoch_loss"][0]


def test_resume_without_a_checkpoint_starts_afresh(tmp_path):
    model_a, history_a = _run(seed=2)
    model_b, history_b = _run(seed=2, checkpoint_path=tmp_path / "new.npz", resume=True)
    _assert_same(history_a, history_b, model_a, model_b)
    assert checkpoint.load(tmp_path / "new.npz").epoch == 3


# ----------------------------------------------------------------------------- output and errors

def test_progress_false_prints_nothing(capfd):
    model = Gaussian()
    fit(model, _data(), SGD(model.parameters(), lr=0.01), 2, 32, valid_data=_data(10), progress=False)
    assert capfd.readouterr() == ("", "")


def test_progress_bar_goes_to_stderr(capfd):
    model = Gaussian()
    fit(model, _data(), SGD(model.parameters(), lr=0.01), 2, 32, valid_data=_data(10), progress=True)
    out, err = capfd.readouterr()
    assert out == ""
    assert "epoch 1/2" in err and "epoch 2/2" in err and "loss=" in err and "valid=" in err


def _sgd(model):
    return SGD(model.parameters(), lr=0.01)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(epochs=0), ValueError, "epochs must be an integer >= 1, got 0"),
    (dict(batch_size=0), ValueError, "batch_size must be an integer >= 1, got 0"),
    (dict(batch_size=2.5), ValueError, "batch_size must be an integer"),
    (dict(batch_size=64, drop_last=True), ValueError, "drop_last=True with batch_size 64 but data has only 10"),
    (dict(data=np.zeros((0, 2))), ValueError, "data is empty"),
    (dict(data=(np.zeros((4, 2)), np.zeros(3))), ValueError, r"different numbers of examples \[4, 3\]"),
    (dict(data=[[1.0, 2.0]]), TypeError, "data\\[0\\] must be an array"),
    (dict(valid_data=np.zeros((0, 2))), ValueError, "valid_data is empty"),
    (dict(resume=True), ValueError, "resume=True needs checkpoint_path"),
    (dict(seed=1, rng=np.random.default_rng(1)), ValueError, "rng or seed, not both"),
    (dict(rng=np.random.RandomState(0)), TypeError, "rng must be a NumPy Generator"),
    (dict(scheduler_interval="batch"), ValueError, "scheduler_interval"),
    (dict(clip_grad_norm=0), ValueError, "clip_grad_norm must be a number > 0"),
    (dict(on_epoch_end=3), TypeError, "on_epoch_end must be callable"),
])
def test_bad_arguments(kwargs, error, match):
    model = Gaussian()
    args = dict(data=_data(10), epochs=1, batch_size=4)
    args.update(kwargs)
    with pytest.raises(error, match=match):
        fit(model, optimizer=_sgd(model), progress=False, **args)


def test_bad_models():
    class NoLoss(nn.Module):
        pass

    with pytest.raises(TypeError, match="has no loss"):
        fit(NoLoss(), _data(10), None, 1, 4)

    class VectorLoss(Gaussian):
        def loss(self, x):
            return x.sum(axis=1)

    model = VectorLoss()
    with pytest.raises(TypeError, match=r"must return a scalar Tensor, got a Tensor of shape \(4,\)"):
        fit(model, _data(10), _sgd(model), 1, 4, progress=False)


def test_batches_is_the_data_iterator():
    """fit's shuffling is tinydgm.data.batches with the run's generator: a model that
    records its batches sees exactly batches(x, 25, rng=default_rng(seed))."""
    x = _data(100)
    seen = []

    class Recorder(Gaussian):
        def loss(self, batch):
            seen.append(batch.numpy())
            return super().loss(batch)

    model = Recorder(dtype="float64")
    fit(model, x, _sgd(model), 2, 25, seed=4, progress=False)
    rng = np.random.default_rng(4)
    expected = [b for _ in range(2) for b in batches(x, 25, rng=rng)]
    assert len(seen) == len(expected) == 8
    for a, b in zip(seen, expected):
        np.testing.assert_array_equal(a, b)
