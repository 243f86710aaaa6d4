"""Flow-GAN: the hybrid objective's gradient is the adversarial gradient plus lambda times the
MLE gradient (at fixed parameters and fixed z), every objective is gradient-checked (first and
second order, float64), and the flow's exact log-likelihood is untouched by the adversarial
machinery: the model's log_prob is the flow's, critic steps leave it bit for bit, and after
adversarial training the density still integrates to one."""
import numpy as np
import pytest

import tinydgm as td
from tinydgm.models import toy_realnvp
from tinydgm.models.adversarial import MLPDiscriminator
from tinydgm.models.hybrid.flowgan import FlowGAN, FlowGenerator

from flow_contracts import density_on_grid_2d, swap_parameters


def _model(objective="hybrid", seed=0, mle_weight=0.7, **kwargs):
    rng = np.random.default_rng(seed)
    flow = toy_realnvp(2, n_couplings=2, hidden=(8,), rng=rng, dtype="float64")
    for p in flow.parameters():        # the couplings start as the identity: give them a shape
        p.data = p.data + 0.3 * rng.standard_normal(p.shape)
    critic = MLPDiscriminator(2, (8,), rng=rng, dtype="float64")
    return FlowGAN(flow, critic, objective=objective, mle_weight=mle_weight, rng=seed, **kwargs)


def _batch(n=8, seed=1):
    rng = np.random.default_rng(seed)
    return td.tensor(rng.standard_normal((n, 2)) * [1.0, 0.5] + [1.0, -0.5], dtype="float64")


def _flow_grads(model, x, z, objective):
    model.objective = objective
    model.zero_grad()
    loss, _ = model.generator_objective(x, z)
    loss.backward()
    return {name: p.grad.numpy().copy() for name, p in model.flow.named_parameters()}


def test_hybrid_gradient_is_the_adversarial_plus_lambda_times_the_mle_gradient():
    model, x = _model(mle_weight=0.7), _batch()
    z = model.sample_latent(8, rng=3)
    mle, adv, hybrid = (_flow_grads(model, x, z, o) for o in ("mle", "adv", "hybrid"))
    for name in hybrid:
        np.testing.assert_allclose(hybrid[name], adv[name] + 0.7 * mle[name], rtol=1e-10, atol=1e-13,
                                   err_msg=name)
    # the two parts are different directions, so the sum is not trivially one of them
    flat = [np.concatenate([g[name].ravel() for name in hybrid]) for g in (mle, adv)]
    cosine = flat[0] @ flat[1] / np.linalg.norm(flat[0]) / np.linalg.norm(flat[1])
    assert abs(cosine) < 0.99


def test_objectives_are_the_nll_and_the_critics_score():
    model, x = _model(), _batch()
    z = model.sample_latent(8, rng=4)
    objective, parts = model.generator_objective(x, z)
    nll = -model.flow.log_prob(x).numpy().mean()
    with td.no_grad():
        x_fake, _ = model.flow.transform.inverse(z)
        adv = -model.critic(x_fake).numpy().mean()
    assert parts["nll"].item() == pytest.approx(nll, rel=1e-12)
    assert parts["adversarial"].item() == pytest.approx(adv, rel=1e-12)
    assert objective.item() == pytest.approx(adv + 0.7 * nll, rel=1e-12)


@pytest.mark.parametrize("objective", ["mle", "adv", "hybrid"])
def test_every_objective_is_gradient_checked(objective):
    model, x = _model(objective), _batch(6)
    z = model.sample_latent(6, rng=5)
    names = [name for name, _ in model.named_parameters() if name.startswith("generator")]

    def fn(*params):
        saved = swap_parameters(model, dict(zip(names, params)))
        try:
            return model.generator_objective(x, z)[0]
        finally:
            swap_parameters(model, saved)
    params = dict(model.named_parameters())
    inputs = [td.tensor(params[name].numpy(), dtype="float64", requires_grad=True) for name in names]
    assert td.gradcheck(fn, inputs)
    last = [i for i, name in enumerate(names) if ".transforms.1." in name]       # second order: last coupling

    def fn_last(*ps):
        values = list(inputs)
        for i, p in zip(last, ps):
            values[i] = p
        return fn(*[v if i in last else v.detach() for i, v in enumerate(values)])
    assert td.gradgradcheck(fn_last, [inputs[i] for i in last])


def test_critic_objective_with_the_penalty_is_gradient_checked():
    model, x = _model(), _batch(4)
    x_fake = model.sample(4, rng=6)
    names = [name for name, _ in model.named_parameters() if name.startswith("discriminator")]

    def fn(*params):
        saved = swap_parameters(model, dict(zip(names, params)))
        try:
            return sum(model.discriminator_terms(x, x_fake, rng=np.random.default_rng(7)).values())
        finally:
            swap_parameters(model, saved)
    params = dict(model.named_parameters())
    inputs = [td.tensor(params[name].numpy(), dtype="float64", requires_grad=True) for name in names]
    assert td.gradcheck(fn, inputs)
    fixed = [p.detach() for p in inputs[:-2]]          # second order (a third derivative of D) on the last layer
    assert td.gradgradcheck(lambda w, b: fn(*fixed, w, b), inputs[-2:])


# ----------------------------------------------------------------------------- the exact likelihood

def test_log_prob_is_the_flows_and_critic_steps_leave_it_unchanged():
    model, x = _model("adv"), _batch(20)
    expected = model.flow.log_prob(x).numpy()
    np.testing.assert_array_equal(model.log_prob(x).numpy(), expected)
    np.testing.assert_allclose(model.bits_per_dim(x).numpy(), -expected / (2 * np.log(2)), rtol=1e-14)
    critic_before = [p.numpy().copy() for p in model.critic.parameters()]
    for seed in range(3):
        model.discriminator_step(_batch(10, seed=seed + 10), rng=seed)
    assert any(not np.array_equal(a, p.numpy()) for a, p in zip(critic_before, model.critic.parameters()))
    np.testing.assert_array_equal(model.log_prob(x).numpy(), expected)           # bit for bit


def test_adversarial_training_keeps_an_exact_normalised_density():
    """After ADV and Hybrid steps (the flow moved by the critic's gradient) the model's density
    still integrates to one on a grid, and log_prob still equals the change of variables
    computed from the brute-force Jacobian: nothing adversarial enters the likelihood."""
    from tinydgm.models.flows import brute_force_log_det
    for objective in ("adv", "hybrid"):
        model = _model(objective, lr=3e-3, n_critic=2)
        before = [p.numpy().copy() for p in model.flow.parameters()]
        for step in range(10):
            report = model.train_step(_batch(16, seed=step))
        assert np.isfinite(report["nll"]) and "critic_loss" in report
        assert any(not np.array_equal(a, p.numpy()) for a, p in zip(before, model.flow.parameters()))
        _, total, _ = density_on_grid_2d(model, 12.0, 401)
        assert total == pytest.approx(1.0, abs=1e-4), objective
        x = _batch(5, seed=99)
        z, _ = model.flow.transform(x)
        log_det = brute_force_log_det(lambda t: model.flow.transform(t)[0], x)
        exact = -0.5 * (z.numpy() ** 2).sum(axis=1) - np.log(2 * np.pi) + td.tensor(log_det).numpy()
        np.testing.assert_allclose(model.log_prob(x).numpy(), exact, rtol=1e-10)


def test_mle_objective_trains_the_flow_alone_and_lowers_the_nll():
    model = _model("mle", lr=1e-2)
    critic_before = [p.numpy().copy() for p in model.critic.parameters()]
    x = _batch(64, seed=20)
    first = model.train_step(x)
    for _ in range(30):
        last = model.train_step(x)
    assert set(first) == {"generator_objective", "nll"}
    assert last["nll"] < first["nll"] - 0.2
    assert all(np.array_equal(a, p.numpy()) for a, p in zip(critic_before, model.critic.parameters()))


def test_sample_is_the_flows_inverse_of_the_latents():
    model = _model()
    z = model.sample_latent(5, rng=8)
    x = model.sample(5, rng=8)
    with td.no_grad():
        expected, _ = model.flow.transform.inverse(z)
    np.testing.assert_allclose(x.numpy(), expected.numpy(), rtol=1e-14)


# ----------------------------------------------------------------------------- errors

def test_clear_errors():
    rng = np.random.default_rng(0)
    flow = toy_realnvp(2, n_couplings=2, hidden=(4,), rng=rng)
    critic = MLPDiscriminator(2, (4,), rng=rng)
    with pytest.raises(ValueError, match="objective must be one of"):
        FlowGAN(flow, critic, objective="jsd")
    with pytest.raises(TypeError, match="flow must be a tinydgm Flow"):
        FlowGAN(critic, critic)
    with pytest.raises(ValueError, match="mle_weight"):
        FlowGAN(flow, critic, mle_weight=-1)
    with pytest.raises(ValueError, match="does not take"):
        FlowGAN(flow, MLPDiscriminator(3, (4,), rng=rng))
    model = FlowGAN(flow, critic, n_critic=3)
    with pytest.raises(ValueError, match="must split into n_critic = 3"):
        model.train_step(np.zeros((4, 2), dtype=np.float32))
    with pytest.raises(ValueError, match=r"x must have shape \(N, 2\)"):
        model.log_prob(np.zeros((4, 3), dtype=np.float32))
    with pytest.raises(ValueError, match=r"z must have shape \(N, 2\)"):
        FlowGenerator(flow)(td.tensor(np.zeros((3, 5))))


def test_act_norm_initialises_on_data_not_on_latents():
    """An image RealNVP with act-norm: building the FlowGAN leaves the flow untouched, and after
    the first adversarial round the act-norm layers hold the initialisation a first real batch
    gives them (as under maximum likelihood), not one from G(z)."""
    from tinydgm.models import image_realnvp
    from tinydgm.nn.norm import ActNorm

    def flow_and_critic():
        rng = np.random.default_rng(0)
        flow = image_realnvp((1, 4, 4), n_scales=1, hidden_channels=4, n_blocks=1, n_final=1, norm="actnorm",
                             rng=rng, dtype="float64")
        return flow, _FlatCritic(rng)
    x = np.random.default_rng(1).random((8, 1, 4, 4))
    reference, _ = flow_and_critic()
    with td.no_grad():
        expected = reference.log_prob(td.tensor(x, dtype="float64")).numpy()       # act-norm set from x
    flow, critic = flow_and_critic()
    model = FlowGAN(flow, critic, objective="adv", n_critic=2, rng=0)
    assert not any(bool(m.initialized) for m in flow.modules() if isinstance(m, ActNorm))
    model.train_step(x)
    for mine, theirs in zip([m for m in flow.modules() if isinstance(m, ActNorm)],
                            [m for m in reference.modules() if isinstance(m, ActNorm)]):
        assert bool(mine.initialized)
        np.testing.assert_allclose(mine.bias.numpy(), theirs.bias.numpy(), atol=1e-2)   # one small Adam step apart
    assert np.isfinite(expected).all()


class _FlatCritic(td.nn.Module):
    def __init__(self, rng):
        super().__init__()
        self.mlp = MLPDiscriminator(16, (8,), rng=rng, dtype="float64")

    def forward(self, x):
        return self.mlp(x.reshape(x.shape[0], -1))
