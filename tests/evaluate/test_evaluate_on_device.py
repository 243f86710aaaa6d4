"""The estimators and data transforms on the "cuda" device (a GPU, else the CuPy stand-in,
tinydgm.standin): each gives on the device what it gives on the CPU for the same data and
the same CPU generator. AIS and the RBM oracles, the pseudo-likelihood, importance-sampled
log-likelihoods and the bounds table, the minibatch iterator and the Tensor transforms."""
import numpy as np
import pytest

import tinydgm as td
from tinydgm import backend, evaluate
from tinydgm.data import transforms
from tinydgm.models.latent import VAE, MLPDecoder, MLPEncoder

TOL = dict(rtol=1e-9, atol=1e-10)


def _rbm(device, D=7, H=5, seed=0):
    rng = np.random.default_rng(seed)
    arrays = rng.normal(0, 0.5, (D, H)), rng.normal(0, 0.5, D), rng.normal(0, 0.5, H)
    return [backend.to_device(a, device) for a in arrays]


def _binary(n, d, seed=1):
    return (np.random.default_rng(seed).random((n, d)) < 0.4).astype(np.float64)


@pytest.mark.parametrize("name", ["rbm_ais", "dbm_ais"])
def test_ais_on_the_device_equals_the_cpu(name, cuda_device):
    def run(device):
        if name == "rbm_ais":
            return evaluate.rbm_ais(*_rbm(device), n_runs=20, betas=np.linspace(0, 1, 30),
                                    rng=td.rng(2))
        W1, b, c1 = _rbm(device, 6, 4, seed=3)
        W2, _, c2 = _rbm(device, 4, 3, seed=4)
        return evaluate.dbm_ais(W1, W2, b, c1, c2, n_runs=20, betas=np.linspace(0, 1, 30), rng=td.rng(2))
    cpu, dev = run("cpu"), run(cuda_device)
    assert isinstance(dev["log_w"], np.ndarray)
    np.testing.assert_allclose(dev["log_w"], cpu["log_w"], **TOL)
    assert dev["log_z"] == pytest.approx(cpu["log_z"], rel=1e-9)


def test_rbm_oracles_and_pseudo_likelihood_on_the_device(cuda_device):
    v = _binary(9, 7)
    results = {}
    for device in ("cpu", cuda_device):
        W, b, c = _rbm(device)
        v_dev = backend.to_device(v, device)
        log_z = evaluate.rbm_log_partition(W, b, c)
        tensors = [td.tensor(a, device=device) for a in (W, b, c)]
        results[device] = dict(
            log_z=float(log_z),
            log_z_tensor=evaluate.rbm_log_partition(*tensors).item(),
            log_p=backend.to_numpy(evaluate.rbm_log_likelihood(W, b, c, v_dev)),
            test_ll=evaluate.rbm_test_log_likelihood(W, b, c, v_dev, float(log_z), batch_size=4),
            pl=backend.to_numpy(evaluate.rbm_pseudo_likelihood(W, b, c, v_dev)),
            pl_stochastic=backend.to_numpy(evaluate.rbm_pseudo_likelihood(W, b, c, v_dev, rng=td.rng(5))))
        assert backend.device_of(evaluate.rbm_pseudo_likelihood(W, b, c, v_dev)) == device
    for key, expected in results["cpu"].items():
        np.testing.assert_allclose(results[cuda_device][key], expected, err_msg=key, **TOL)


def _vae(device):
    rng = td.rng(0)
    model = VAE(MLPEncoder((6,), 2, hidden=(8,), rng=rng, dtype="float64"),
                MLPDecoder(2, (6,), hidden=(8,), rng=rng, dtype="float64"), rng=rng)
    return model.to(device)


def test_importance_sampling_and_bounds_on_the_device(cuda_device):
    x = _binary(10, 6)
    got = {}
    for device in ("cpu", cuda_device):
        model = _vae(device)
        estimate = evaluate.importance_log_likelihood(model, td.tensor(x, device=device), k=40, batch_size=4,
                                                      chunk_size=16, rng=td.rng(3))
        assert estimate.log_px.device == device and estimate.stderr.device == device
        rows = evaluate.bounds_table(model, td.tensor(x, device=device), ks=(1, 5), n_repeats=2, batch_size=5,
                                     chunk_size=5, rng=td.rng(4))
        got[device] = (estimate.log_px.numpy(), estimate.stderr.numpy(), estimate.mean,
                       [row["nats"] for row in rows])
    for expected, value in zip(got["cpu"], got[cuda_device]):
        np.testing.assert_allclose(value, expected, **TOL)


def test_batches_and_tensor_transforms_on_the_device(cuda_device):
    x = np.random.default_rng(6).integers(0, 256, (10, 4)).astype(np.float64)
    out = {}
    for device in ("cpu", cuda_device):
        data = backend.to_device(x, device)
        batches = list(transforms.batches(data, 4, rng=td.rng(7)))
        assert all(backend.device_of(b) == device for b in batches) and [len(b) for b in batches] == [4, 4, 2]
        y = transforms.uniform_dequantize(td.tensor(data, device=device), rng=td.rng(8))
        z = transforms.logit_transform(y)
        back, log_det = transforms.inverse_logit_transform(z[0])
        assert y.device == z[0].device == z[1].device == back.device == log_det.device == device
        np.testing.assert_allclose(back.numpy(), y.numpy(), rtol=1e-12)           # the round trip
        out[device] = [backend.to_numpy(b) for b in batches] + [t.numpy() for t in (y, z[0], z[1], log_det)]
    for expected, value in zip(out["cpu"], out[cuda_device]):
        np.testing.assert_allclose(value, expected, **TOL)
