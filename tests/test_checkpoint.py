"""tinydgm.checkpoint: round trip of model, optimizer, schedule, random stream, config,
history and extra; atomic writes under failure; clear errors for files and models that do
not fit."""
import os

import numpy as np
import pytest

import tinydgm as td
from tinydgm import checkpoint, nn
from tinydgm.optim import SGD, Adam, StepLR


class Net(nn.Module):
    """Two Linear layers and a buffer (like batch norm's running mean)."""

    def __init__(self, d_in=3, d_hidden=4, seed=0):
        super().__init__()
        rng = np.random.default_rng(seed)
        self.hidden = nn.Linear(d_in, d_hidden, rng=rng)
        self.out = nn.Linear(d_hidden, 1, rng=rng)
        self.register_buffer("running_mean", rng.standard_normal(d_in).astype(np.float32))

    def loss(self, x):
        return (self.out(td.tanh(self.hidden(x))) ** 2).mean()


def _train_a_little(model, optimizer, scheduler, steps=3):
    x = td.tensor(np.random.default_rng(9).standard_normal((8, 3)), dtype="float32")
    for _ in range(steps):
        optimizer.zero_grad()
        model.loss(x).backward()
        optimizer.step()
        scheduler.step()
    return x


def _assert_state_equal(a, b):
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], np.ndarray):
            assert a[key].dtype == b[key].dtype, key
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
        else:
            assert type(a[key]) is type(b[key]) and a[key] == b[key], key


def test_round_trip_restores_everything(tmp_path):
    model = Net()
    optimizer = Adam(model.parameters(), lr=0.01)
    scheduler = StepLR(optimizer, step_size=2, gamma=0.5)
    x = _train_a_little(model, optimizer, scheduler)
    rng = np.random.default_rng(42)
    rng.standard_normal(5)                                  # an advanced stream
    history = {"loss": np.array([3.0, 2.5, 2.25]), "epoch_loss": np.array([2.5], dtype=np.float32)}
    config = {"hidden": 4, "name": "net", "betas": [0.9, 0.999], "nested": {"a": None, "b": True}}
    extra = {"fit": {"batch_size": 32}, 0: (1, 2.5, "x"), "array": np.arange(3), "scalar": np.float32(0.5)}
    path = checkpoint.save(tmp_path / "ckpt.npz", model, optimizer, scheduler, config=config, rng=rng,
                           step=12, epoch=3, history=history, extra=extra)
    assert path == os.fspath(tmp_path / "ckpt.npz")

    fresh = Net(seed=1)                                     # different weights and buffer
    fresh_optimizer = Adam(fresh.parameters(), lr=0.5)
    fresh_scheduler = StepLR(fresh_optimizer, step_size=7, gamma=0.9)
    ckpt = checkpoint.load(path, fresh, fresh_optimizer, fresh_scheduler)

    _assert_state_equal(model.state_dict(), fresh.state_dict())
    _assert_state_equal(optimizer.state_dict(), fresh_optimizer.state_dict())
    _assert_state_equal(scheduler.state_dict(), fresh_scheduler.state_dict())
    assert fresh_optimizer.lr == optimizer.lr
    assert ckpt.config == config and ckpt.step == 12 and ckpt.epoch == 3
    assert ckpt.history.keys() == history.keys()
    for key in history:
        assert ckpt.history[key].dtype == history[key].dtype
        np.testing.assert_array_equal(ckpt.history[key], history[key])
    assert ckpt.extra["fit"] == {"batch_size": 32} and ckpt.extra[0] == (1, 2.5, "x")
    np.testing.assert_array_equal(ckpt.extra["array"], np.arange(3))
    assert type(ckpt.extra["scalar"]) is np.float32 and ckpt.extra["scalar"] == np.float32(0.5)
    np.testing.assert_array_equal(ckpt.rng.standard_normal(10), rng.standard_normal(10))   # same stream

    # the restored pair takes the same next step, bit for bit
    for m, opt in ((model, optimizer), (fresh, fresh_optimizer)):
        opt.zero_grad()
        m.loss(x).backward()
        opt.step()
    _assert_state_equal(model.state_dict(), fresh.state_dict())


def test_archive_layout_is_plain_npz(tmp_path):
    model = Net()
    optimizer = SGD(model.parameters(), lr=0.1, momentum=0.9)
    _train_a_little(model, optimizer, StepLR(optimizer, 1))
    path = checkpoint.save(tmp_path / "c.npz", model, optimizer, config={"k": 1}, rng=np.random.default_rng(0))
    with np.load(path, allow_pickle=False) as archive:          # no pickles anywhere
        files = set(archive.files)
        assert str(archive["format"]) == checkpoint.FORMAT
        np.testing.assert_array_equal(archive["model/hidden.weight"], model.hidden.weight.numpy())
        assert archive["model/running_mean"].dtype == np.float32
        assert int(archive["epoch"]) == 0
    assert {"config", "rng", "step", "tree/optim", "model/out.bias"} <= files
    assert any(f.startswith("optim/") for f in files) and not any(f.startswith("sched/") for f in files)


def test_load_without_objects_and_other_bit_generators(tmp_path):
    model = Net()
    rng = np.random.Generator(np.random.Philox(7))
    rng.random(3)
    path = checkpoint.save(tmp_path / "c.npz", model, rng=rng)
    ckpt = checkpoint.load(path)
    _assert_state_equal(ckpt.model_state, model.state_dict())
    assert ckpt.optimizer_state is None and ckpt.scheduler_state is None and ckpt.extra is None
    assert ckpt.config == {} and ckpt.history == {}
    assert isinstance(ckpt.rng.bit_generator, np.random.Philox)
    np.testing.assert_array_equal(ckpt.rng.random(5), rng.random(5))
    assert checkpoint.load(checkpoint.save(tmp_path / "n.npz", model)).rng is None


# ----------------------------------------------------------------------------- atomicity

class _Boom(Exception):
    pass


@pytest.mark.parametrize("failure", [_Boom, KeyboardInterrupt])
def test_failed_save_leaves_the_old_checkpoint_byte_identical(tmp_path, monkeypatch, failure):
    model = Net()
    path = tmp_path / "ckpt.npz"
    checkpoint.save(path, model, step=1)
    before = path.read_bytes()

    real_savez = np.savez

    def savez_then_fail(file, **arrays):
        real_savez(file, **arrays)                  # a complete archive in the temp file ...
        file.write(b"half a write")
        raise failure("disk on fire")               # ... and then the process dies

    monkeypatch.setattr(np, "savez", savez_then_fail)
    model.out.bias.data += 1.0
    with pytest.raises(failure, match="disk on fire"):
        checkpoint.save(path, model, step=2)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["ckpt.npz"]     # no temporary file left behind
    monkeypatch.undo()
    assert checkpoint.load(path).step == 1


def test_failed_first_save_leaves_nothing(tmp_path, monkeypatch):
    def fail(file, **arrays):
        file.write(b"PK\x03\x04 partial")
        raise OSError("no space left on device")

    monkeypatch.setattr(np, "savez", fail)
    with pytest.raises(OSError, match="no space"):
        checkpoint.save(tmp_path / "sub" / "ckpt.npz", Net())
    assert os.listdir(tmp_path / "sub") == []


def test_unstorable_inputs_fail_before_touching_disk(tmp_path):
    path = tmp_path / "ckpt.npz"
    with pytest.raises(TypeError, match="config must be JSON-serialisable"):
        checkpoint.save(path, Net(), config={"f": print})
    with pytest.raises(TypeError, match="config must be a dict"):
        checkpoint.save(path, Net(), config=[1, 2])
    with pytest.raises(TypeError, match="rng must be a NumPy Generator"):
        checkpoint.save(path, Net(), rng=np.random.RandomState(0))
    with pytest.raises(TypeError, match="extra holds a set"):
        checkpoint.save(path, Net(), extra={"s": {1, 2}})
    assert os.listdir(tmp_path) == []


def test_saved_file_has_a_normal_mode(tmp_path):
    path = checkpoint.save(tmp_path / "ckpt.npz", Net())
    mask = os.umask(0)
    os.umask(mask)
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~mask


# ----------------------------------------------------------------------------- errors

def test_load_into_a_mismatched_model(tmp_path):
    path = checkpoint.save(tmp_path / "ckpt.npz", Net(d_in=3))
    with pytest.raises(checkpoint.CheckpointError, match=r"'hidden.weight' has shape \(3, 4\) in the state "
                                                         r"dict but \(5, 4\) in the model"):
        checkpoint.load(path, Net(d_in=5))
    other = Net()
    other.extra = nn.Linear(2, 2)
    with pytest.raises(checkpoint.CheckpointError,
                       match=r"does not fit the model.*missing keys \['extra.bias', 'extra.weight'\]"):
        checkpoint.load(path, other)
    with pytest.raises(checkpoint.CheckpointError, match="unexpected keys"):
        checkpoint.load(path, nn.Linear(3, 4))


def test_load_optimizer_state_that_was_not_saved_or_does_not_fit(tmp_path):
    model = Net()
    path = checkpoint.save(tmp_path / "ckpt.npz", model)
    with pytest.raises(checkpoint.CheckpointError, match="holds no optimizer state"):
        checkpoint.load(path, model, Adam(model.parameters()))
    optimizer = Adam(model.parameters())
    path = checkpoint.save(tmp_path / "adam.npz", model, optimizer)
    with pytest.raises(checkpoint.CheckpointError, match="does not fit the optimizer.*Adam"):
        checkpoint.load(path, model, SGD(model.parameters(), lr=0.1))


def test_load_errors_for_missing_and_foreign_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        checkpoint.load(tmp_path / "missing.npz")
    np.savez(tmp_path / "other.npz", weights=np.ones(3))
    with pytest.raises(checkpoint.CheckpointError, match=r"not a tinydgm checkpoint \(no 'format' entry"):
        checkpoint.load(tmp_path / "other.npz")
    (tmp_path / "junk.npz").write_bytes(b"this is not a zip file at all")
    with pytest.raises(checkpoint.CheckpointError, match="cannot be read as .npz"):
        checkpoint.load(tmp_path / "junk.npz")
    np.save(tmp_path / "single.npy", np.ones(3))
    with pytest.raises(checkpoint.CheckpointError, match="single .npy array"):
        checkpoint.load(tmp_path / "single.npy")
    good = checkpoint.save(tmp_path / "good.npz", Net())
    data = open(good, "rb").read()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 2])            # a truncated copy
    with pytest.raises(checkpoint.CheckpointError):
        checkpoint.load(tmp_path / "cut.npz")


def test_repr_is_a_short_summary_not_the_arrays(tmp_path):
    model = Net(d_in=300, d_hidden=200)                 # 60,000 weights: printing them would be pages
    optimizer = Adam(model.parameters(), lr=0.01)
    path = tmp_path / "ckpt.npz"
    checkpoint.save(path, model, optimizer, config={"hidden": 200}, rng=td.rng(0), step=12, epoch=3,
                    history={"loss": np.arange(12.0)})
    text = repr(checkpoint.load(path))
    n_values = sum(p.size for p in model.parameters()) + 300          # and the running-mean buffer
    assert text == (f"Checkpoint({str(path)!r}, epoch=3, step=12, model: 5 arrays, {n_values:,} values, float32; "
                    "with optimizer, rng; history {'loss': 12}; config keys ['hidden'])")
