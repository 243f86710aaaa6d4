"""RealNVP builders: whole flows through the contract (incl. multi-scale), a 2-D density that
integrates to 1, short training on a toy and the MNIST reproduce() smoke run."""
import os

import numpy as np
import pytest
from flow_contracts import assert_flow_transform, density_on_grid_2d
from paths import DATA_DIR

import tinydgm as td
from tinydgm.models.flows import MultiScale, image_realnvp, toy_realnvp
from tinydgm.data.toy import sample_toy
from tinydgm.models.flows.realnvp import PAPER_CONFIG, reproduce

MNIST = str(DATA_DIR / "mnist.npz")


def _randomise_last_layers(flow, rng, scale):
    """A fresh RealNVP is the identity: give every conditioner a random last layer."""
    for module in flow.modules():
        last = getattr(module, "last", None)
        if last is not None and hasattr(module, "tanh_scale"):
            last.weight.data = scale * rng.standard_normal(last.weight.shape)
            last.bias.data = scale * rng.standard_normal(last.bias.shape)


def test_fresh_toy_realnvp_is_the_identity():
    flow = toy_realnvp(2, 4, rng=np.random.default_rng(0), dtype="float64")
    x = np.random.default_rng(1).normal(size=(5, 2))
    expected = (-0.5 * x ** 2 - 0.5 * np.log(2 * np.pi)).sum(1)
    np.testing.assert_allclose(flow.log_prob(td.tensor(x, dtype="float64")).numpy(), expected, rtol=1e-12)


@pytest.mark.parametrize("norm", [None, "actnorm", "batchnorm"])
def test_toy_realnvp_contract(norm):
    rng = np.random.default_rng(2)
    flow = toy_realnvp(2, 4, hidden=(16, 16), norm=norm, rng=rng, dtype="float64")
    _randomise_last_layers(flow, rng, 0.3)
    x = rng.normal(size=(3, 2))
    if norm == "batchnorm":
        flow.log_prob(td.tensor(rng.normal(size=(64, 2)), dtype="float64"))      # running statistics
        flow.eval()
    assert_flow_transform(flow.transform, x)


def test_2d_realnvp_density_integrates_to_one():
    # grid over [-12, 12]^2, spacing 0.06. The shifts t grow linearly with |x1| (ReLU MLPs), so the
    # random last layers are kept small (0.2) for the mass outside the box to be negligible (a
    # 1201^2 grid gives 1 - 1.4e-7). Tolerance 1e-3 (trapezoid error and tails).
    rng = np.random.default_rng(3)
    flow = toy_realnvp(2, 4, hidden=(16, 16), rng=rng, dtype="float64")
    _randomise_last_layers(flow, rng, 0.2)
    p, total, points = density_on_grid_2d(flow, 12, 401)
    assert abs(total - 1) < 1e-3, total
    base = np.exp(-0.5 * (points ** 2).sum(1)) / (2 * np.pi)
    assert np.abs(p.ravel() - base).max() > 1e-2          # not the base density


@pytest.mark.parametrize("conv1x1, norm", [(False, "actnorm"), (True, None)])
def test_image_realnvp_multiscale_contract(conv1x1, norm):
    rng = np.random.default_rng(4)
    flow = image_realnvp((1, 8, 8), n_scales=2, hidden_channels=4, n_blocks=1, norm=norm, conv1x1=conv1x1,
                         n_final=2, rng=rng, dtype="float64")
    _randomise_last_layers(flow, rng, 0.1)
    assert isinstance(flow.transform, MultiScale)
    assert flow.transform.latent_shapes == [(2, 4, 4), (4, 2, 2), (4, 2, 2)]
    assert_flow_transform(flow.transform, rng.normal(size=(2, 1, 8, 8)), gradcheck_params=False)


def test_image_realnvp_for_mnist_shapes():
    flow = image_realnvp(rng=np.random.default_rng(5), hidden_channels=4, n_blocks=1, dtype="float32")
    assert flow.transform.latent_shapes == [(2, 14, 14), (4, 7, 7), (4, 7, 7)]
    x = td.tensor(np.random.default_rng(6).normal(size=(2, 1, 28, 28)).astype(np.float32))
    log_p = flow.log_prob(x)
    assert log_p.shape == (2,) and log_p.dtype == np.float32 and np.isfinite(log_p.numpy()).all()
    assert flow.sample(2, rng=np.random.default_rng(0)).shape == (2, 1, 28, 28)


def test_training_on_eight_gaussians_improves_test_log_likelihood():
    rng = np.random.default_rng(7)
    flow = toy_realnvp(2, 4, hidden=(32, 32), rng=rng, dtype="float32")
    x_test = td.tensor(sample_toy("eight_gaussians", 2000, np.random.default_rng(12345)), dtype="float32")
    with td.no_grad():
        before = flow.log_prob(x_test).mean().item()
    optimizer = td.optim.Adam(flow.parameters(), lr=3e-3)
    losses = []
    for _ in range(100):                                  # maximum likelihood on fresh draws
        optimizer.zero_grad()
        loss = flow.loss(td.tensor(sample_toy("eight_gaussians", 256, rng), dtype="float32"))
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    with td.no_grad():
        after = flow.log_prob(x_test).mean().item()
    assert np.isfinite(losses).all()
    assert after > before + 0.5, (before, after)          # about -3.9 -> -2.6 nats
    x = flow.sample(500, rng=rng).numpy()
    assert np.isfinite(x).all() and np.abs(x).max() < 10


def test_paper_config_documents_the_set_up():
    assert PAPER_CONFIG["published"]["mnist_bits_per_dim"] == 1.06
    assert PAPER_CONFIG["preprocessing"]["logit_alpha"] == 0.05


@pytest.mark.skipif(not os.path.exists(MNIST), reason="shared/data/mnist.npz not found")
@pytest.mark.parametrize("dequantization", ["uniform", "variational"])
def test_reproduce_smoke(dequantization):
    n = 32 if dequantization == "uniform" else 8         # q(u|x) has its own CNNs: keep the smoke run short
    result = reproduce(dequantization, max_train=n, max_test=n, hidden_channels=4, n_blocks=1, batch_size=n,
                       data_path=MNIST, log=None)
    assert 1.0 < result["test_bits_per_dim"] < 12.0
    assert result["config"]["dequantization"] == dequantization and len(result["train_loss"]) == 1
    with pytest.raises(ValueError, match='"uniform" or "variational"'):
        reproduce("gaussian", data_path=MNIST)

