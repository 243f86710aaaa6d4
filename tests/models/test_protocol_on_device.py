"""Every model of the protocol table (tests/models/protocol_cases.py) on the "cuda" device:
a real GPU where there is one, else the CuPy stand-in (tinydgm.standin), so the CUDA path
of every family runs in CI. Each check runs the same seeded computation on the CPU and on
the device and compares: the loss and its gradients, log p(x) (or its bound) and bits per
dimension, the samples (drawn from the same CPU
generator), one short epoch of train.fit, and a checkpoint saved on one device and loaded
on the other. New models join by getting a protocol case."""
import math

import numpy as np
import pytest

import tinydgm as td
from tinydgm import checkpoint, optim
from tinydgm.train import fit

from protocol_cases import BATCH_SIZE, CASES, N, build, data_of

LOSS_CASES = [case for case in CASES if case.step == "loss"]
# float64 everywhere; a GPU's exp, log and reductions round differently from NumPy's
TOL = dict(rtol=1e-7, atol=1e-9)


def _pair(case, device):
    """The same model (same initial parameters) on the CPU and on ``device``."""
    return build(case), build(case).to(device)


def _seeded(model, seed):
    """Fix every source of randomness a loss or a step may read (model.rng, td.seed)."""
    td.seed(seed)
    if hasattr(model, "rng"):
        model.rng = td.rng(seed)


def _numpy(tensor):
    return tensor.numpy().astype(np.float64)


def _loss(model, case, device, seed=3):
    _seeded(model, seed)
    return model.loss(td.tensor(data_of(case), dtype="float64", device=device))


@pytest.mark.parametrize("case", LOSS_CASES, ids=repr)
def test_loss_and_gradients_on_the_device_equal_the_cpus(case, cuda_device):
    cpu, dev = _pair(case, cuda_device)
    expected, got = _loss(cpu, case, "cpu"), _loss(dev, case, cuda_device)
    assert got.device == cuda_device and got.shape == () and math.isfinite(got.item())
    np.testing.assert_allclose(got.item(), expected.item(), **TOL)
    expected.backward()
    got.backward()
    for (name, p_cpu), p_dev in zip(cpu.named_parameters(), dev.parameters()):
        assert p_dev.device == cuda_device and p_dev.grad.device == cuda_device, name
        np.testing.assert_allclose(_numpy(p_dev.grad), _numpy(p_cpu.grad), err_msg=name, **TOL)


@pytest.mark.parametrize("case", [c for c in CASES if c.likelihood is not None], ids=repr)
def test_likelihood_and_bits_per_dim_on_the_device_equal_the_cpus(case, cuda_device):
    cpu, dev = _pair(case, cuda_device)
    results = []
    for model, device in ((cpu, "cpu"), (dev, cuda_device)):
        x = td.tensor(data_of(case), dtype="float64", device=device)
        kwargs = dict(case.likelihood_kwargs, **({"rng": td.rng(7)} if case.needs_rng else {}))
        with td.no_grad():
            log_p = getattr(model, case.likelihood)(x, **kwargs)
            bits = model.bits_per_dim(x, **kwargs) if case.bits else log_p
        assert log_p.device == device and bits.device == device and log_p.shape == (N,)
        results.append((_numpy(log_p), _numpy(bits)))
    (log_p_cpu, bits_cpu), (log_p_dev, bits_dev) = results
    np.testing.assert_allclose(log_p_dev, log_p_cpu, **TOL)
    np.testing.assert_allclose(bits_dev, bits_cpu, **TOL)


@pytest.mark.parametrize("case", [c for c in CASES if c.samples], ids=repr)
def test_samples_on_the_device_equal_the_cpus(case, cuda_device):
    cpu, dev = _pair(case, cuda_device)
    for model in (cpu, dev):
        _seeded(model, 4)
        model.sample(2, rng=td.rng(10), **case.sample_kwargs)     # act-norm initialises itself here
    expected = cpu.sample(5, rng=td.rng(11), **case.sample_kwargs)
    got = dev.sample(5, rng=td.rng(11), **case.sample_kwargs)
    assert isinstance(got, td.Tensor) and got.device == cuda_device and got.shape == expected.shape
    assert got.dtype == expected.dtype and got.creator is None
    np.testing.assert_allclose(_numpy(got), _numpy(expected), **TOL)


def _one_epoch(model, case):
    _seeded(model, 5)
    if case.step == "loss":
        return fit(model, data_of(case), case.optimizer(model.parameters()), epochs=1, batch_size=BATCH_SIZE,
                   seed=0, progress=False)["loss"]
    x = data_of(case)
    device = model.parameters()[0].device
    for start in range(0, N, BATCH_SIZE):
        model.train_step(td.tensor(x[start:start + BATCH_SIZE], dtype="float64", device=device), rng=td.rng(start))
    return []


@pytest.mark.parametrize("case", CASES, ids=repr)
def test_training_on_the_device_follows_the_cpu(case, cuda_device):
    cpu, dev = _pair(case, cuda_device)
    expected, got = _one_epoch(cpu, case), _one_epoch(dev, case)
    np.testing.assert_allclose(got, expected, **TOL)
    for (name, p_cpu), p_dev in zip(cpu.named_parameters(), dev.parameters()):
        assert p_dev.device == cuda_device, name
        np.testing.assert_allclose(_numpy(p_dev), _numpy(p_cpu), err_msg=name, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("case", LOSS_CASES, ids=repr)
def test_checkpoint_moves_between_devices(case, cuda_device, tmp_path):
    """Saved on the device, loaded on the CPU (and back): the same parameters and Adam
    moments, each on the device of the model it was loaded into."""
    cpu, dev = _pair(case, cuda_device)
    opt_dev = optim.Adam(dev.parameters(), lr=1e-2)
    _loss(dev, case, cuda_device).backward()
    opt_dev.step()
    checkpoint.save(tmp_path / "dev.npz", dev, opt_dev)
    opt_cpu = optim.Adam(cpu.parameters(), lr=1e-2)
    checkpoint.load(tmp_path / "dev.npz", cpu, opt_cpu)
    for (name, p_cpu), p_dev in zip(cpu.named_parameters(), dev.parameters()):
        assert p_cpu.device == "cpu", name
        np.testing.assert_array_equal(p_cpu.numpy(), p_dev.numpy(), err_msg=name)

    back, opt_back = build(case).to(cuda_device), None
    opt_back = optim.Adam(back.parameters(), lr=1e-2)
    checkpoint.save(tmp_path / "cpu.npz", cpu, opt_cpu)
    checkpoint.load(tmp_path / "cpu.npz", back, opt_back)
    for (name, p_back), p_dev in zip(back.named_parameters(), dev.parameters()):
        assert p_back.device == cuda_device, name
        np.testing.assert_array_equal(p_back.numpy(), p_dev.numpy(), err_msg=name)
    # the restored moments live on the device too: a step there works and matches the CPU's
    for model, opt, device in ((cpu, opt_cpu, "cpu"), (back, opt_back, cuda_device)):
        opt.zero_grad()
        _loss(model, case, device).backward()
        opt.step()
    for (name, p_cpu), p_back in zip(cpu.named_parameters(), back.parameters()):
        assert p_back.device == cuda_device, name
        np.testing.assert_allclose(_numpy(p_back), _numpy(p_cpu), err_msg=name, rtol=1e-6, atol=1e-8)
