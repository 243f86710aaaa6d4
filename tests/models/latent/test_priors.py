"""The VAE priors (tinydgm/models/latent/priors.py): every log_prob normalises on a 2-D grid,
is gradient-checked (z and the prior's parameters, float64, first and second order) and
matches an independent computation (SciPy mixtures of the encoder's posteriors, the flow's
brute-force Jacobian); samples follow the density; each prior trains inside a VAE and the
VAE's ELBO with it is gradient-checked with the noise held fixed."""
import numpy as np
import pytest
from scipy import special, stats

import tinydgm as td
from flow_contracts import swap_parameters
from tinydgm.models.flows import brute_force_log_det, build_maf, toy_realnvp
from tinydgm.models.latent import (AggregatedPosterior, AutoregressivePrior, FlowPrior, MixtureOfGaussiansPrior,
                                   MLPDecoder, MLPEncoder, StandardNormalPrior, VAE, VampPrior)

N_DIMS = 3          # the encoders' input size


def perturb(module, scale, seed):
    """Move every parameter off its initial value (flows start as the identity)."""
    gen = np.random.default_rng(seed)
    for p in module.parameters():
        p.data = p.data + scale * gen.standard_normal(p.shape)
    return module


def small_encoder(seed=0, hidden=(4,)):
    gen = np.random.default_rng(seed)
    return MLPEncoder(N_DIMS, 2, hidden=hidden, activation="tanh", rng=gen, dtype="float64")


def make_prior(name, seed=0):
    gen = np.random.default_rng(seed)
    if name == "standard_normal":
        return StandardNormalPrior(2)
    if name == "mixture":
        return perturb(MixtureOfGaussiansPrior(2, 3, rng=gen, dtype="float64"), 0.3, seed)
    if name == "vamp":
        return VampPrior(small_encoder(seed), 4, init_std=1.0, rng=gen)
    if name == "realnvp":
        flow = toy_realnvp(2, n_couplings=2, hidden=(5,), activation="tanh", rng=gen, dtype="float64")
        return FlowPrior(perturb(flow, 0.3, seed))
    if name == "maf":
        return FlowPrior(perturb(build_maf(2, n_layers=2, hidden_sizes=(5,), rng=gen, dtype="float64"), 0.2, seed))
    if name == "autoregressive":
        return perturb(AutoregressivePrior(2, (5,), rng=gen, dtype="float64"), 0.3, seed)
    if name == "aggregated":
        return AggregatedPosterior(small_encoder(seed), gen.standard_normal((5, N_DIMS)))
    raise KeyError(name)


PRIORS = ["standard_normal", "mixture", "vamp", "realnvp", "maf", "autoregressive", "aggregated"]


def grid(half_width=14.0, step=0.04):
    g = np.arange(-half_width, half_width, step) + step / 2
    return np.stack(np.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2), step ** 2


def log_density_on(prior, points):
    with td.no_grad():
        return prior.log_prob(td.tensor(points, dtype="float64")).numpy()


# ----------------------------------------------------------------------------- densities

@pytest.mark.parametrize("name", PRIORS)
def test_log_prob_normalises_on_a_grid(name):
    prior = make_prior(name)
    points, area = grid()
    log_p = log_density_on(prior, points)
    assert abs(np.exp(log_p).sum() * area - 1) < 1e-3
    assert log_p.max() - log_p.min() > 5                       # a density that varies on the grid


@pytest.mark.parametrize("name", PRIORS)
def test_log_prob_sums_over_the_latent_axis_for_any_leading_axes(name):
    """z (S, N, L) -> (S, N), each entry the log-density of its row."""
    prior = make_prior(name)
    z = np.random.default_rng(1).standard_normal((3, 4, 2))
    with td.no_grad():
        batched = prior.log_prob(td.tensor(z, dtype="float64")).numpy()
    assert batched.shape == (3, 4)
    np.testing.assert_allclose(batched.ravel(), log_density_on(prior, z.reshape(-1, 2)), rtol=1e-12)


def gradcheck_inputs(prior, seed=2):
    z = td.tensor(np.random.default_rng(seed).standard_normal((3, 2)), dtype="float64", requires_grad=True)
    names = [name for name, _ in prior.named_parameters()]
    values = [td.tensor(p.numpy(), dtype="float64", requires_grad=True) for p in prior.parameters()]

    def log_prob(z, *params):
        saved = swap_parameters(prior, dict(zip(names, params)))
        try:
            return prior.log_prob(z)
        finally:
            swap_parameters(prior, saved)
    return log_prob, [z] + values


@pytest.mark.parametrize("name", PRIORS)
def test_log_prob_gradcheck_in_z_and_the_parameters(name):
    log_prob, inputs = gradcheck_inputs(make_prior(name))
    assert td.gradcheck(log_prob, inputs)


@pytest.mark.parametrize("name", PRIORS)
def test_log_prob_gradgradcheck(name):
    log_prob, inputs = gradcheck_inputs(make_prior(name))
    assert td.gradgradcheck(lambda *a: log_prob(*a).sum(), inputs)


def linear_encoder_posteriors(encoder, u):
    """mu, sigma of q(z|u) for an affine MLPEncoder, computed from its weights in NumPy."""
    layer = encoder.net[0]
    h = u.reshape(len(u), -1) @ layer.weight.numpy() + layer.bias.numpy()
    mu, log_var = h[:, :2], h[:, 2:]
    return mu, np.exp(0.5 * log_var)


def scipy_mixture_log_prob(mu, sigma, z):
    """log 1/K sum_k N(z; mu_k, diag(sigma_k^2)) in SciPy."""
    log_components = np.stack([stats.multivariate_normal(m, np.diag(s ** 2)).logpdf(z) for m, s in zip(mu, sigma)])
    return special.logsumexp(log_components, axis=0) - np.log(len(mu))


def test_vamp_prior_is_the_mixture_of_the_encoders_posteriors_at_the_pseudo_inputs():
    """p(z) = 1/K sum_k q(z | u_k) (Tomczak & Welling 2018), with q computed from the
    affine encoder's weights and the mixture in SciPy."""
    encoder = small_encoder(3, hidden=())
    prior = VampPrior(encoder, 5, init_mean=0.2, init_std=1.0, rng=np.random.default_rng(4))
    z = np.random.default_rng(5).standard_normal((7, 2)) * 2
    mu, sigma = linear_encoder_posteriors(encoder, prior.pseudo_inputs.numpy())
    np.testing.assert_allclose(log_density_on(prior, z), scipy_mixture_log_prob(mu, sigma, z), rtol=1e-10)
    u = np.random.default_rng(6).standard_normal((5, N_DIMS))
    from_data = VampPrior(encoder, 5, init=u)                        # the paper's "data" initialisation
    np.testing.assert_array_equal(from_data.pseudo_inputs.numpy(), u)
    mu, sigma = linear_encoder_posteriors(encoder, u)
    np.testing.assert_allclose(log_density_on(from_data, z), scipy_mixture_log_prob(mu, sigma, z), rtol=1e-10)


def test_aggregated_posterior_is_the_exact_mixture_over_the_data():
    encoder = small_encoder(7, hidden=())
    x = np.random.default_rng(8).standard_normal((6, N_DIMS))
    prior = AggregatedPosterior(encoder, x)
    z = np.random.default_rng(9).standard_normal((5, 2))
    mu, sigma = linear_encoder_posteriors(encoder, x)
    np.testing.assert_allclose(log_density_on(prior, z), scipy_mixture_log_prob(mu, sigma, z), rtol=1e-10)
    assert prior.n == 6 and prior.parameters() == encoder.parameters()       # nothing of its own to train


def test_mixture_prior_is_the_scipy_mixture():
    prior = make_prior("mixture")
    z = np.random.default_rng(1).standard_normal((6, 2))
    pi = special.softmax(prior.weights_logits.numpy())
    means, scales = prior.means.numpy(), np.exp(prior.log_scales.numpy())
    expected = np.log(sum(p * stats.multivariate_normal(m, np.diag(s ** 2)).pdf(z) for p, m, s in zip(pi, means, scales)))
    np.testing.assert_allclose(log_density_on(prior, z), expected, rtol=1e-10)
    one = MixtureOfGaussiansPrior(2, 1, init_std=0.0, dtype="float64")     # K = 1 at the origin: N(0, I)
    np.testing.assert_allclose(log_density_on(one, z), stats.norm().logpdf(z).sum(1), rtol=1e-12)


@pytest.mark.parametrize("name", ["realnvp", "maf"])
def test_flow_prior_is_the_change_of_variables_with_a_brute_force_jacobian(name):
    """log p(z) = log N(g(z); 0, I) + log |det J_g| (isachenko-l07 "Flows-based VAE prior"),
    J_g from the engine's full Jacobian."""
    prior = make_prior(name)
    z = td.tensor(np.random.default_rng(3).standard_normal((4, 2)), dtype="float64")
    with td.no_grad():
        g, _ = prior.flow.transform(z)
    log_det = brute_force_log_det(lambda t: prior.flow.transform(t)[0], z)
    expected = stats.norm().logpdf(g.numpy()).sum(1) + log_det
    np.testing.assert_allclose(log_density_on(prior, z.numpy()), expected, rtol=1e-10)


def test_autoregressive_prior_is_a_product_of_gaussian_conditionals():
    """log p(z) = sum_l log N(z_l; mu_l(z_<l), sigma_l^2): mu_1, sigma_1 do not depend on z,
    and (mu_2, sigma_2) depend on z_1 only."""
    prior = make_prior("autoregressive")
    z = np.random.default_rng(4).standard_normal((5, 2))
    with td.no_grad():
        out = prior.made(td.tensor(z, dtype="float64")).numpy()
        moved = prior.made(td.tensor(z + [0.0, 1.0], dtype="float64")).numpy()   # change z_2 only
    mu, sigma = out[:, :2], np.exp(out[:, 2:])
    np.testing.assert_allclose(moved, out, rtol=1e-12)                   # nothing reads z_2
    assert np.ptp(mu[:, 1]) > 1e-3 and np.ptp(mu[:, 0]) < 1e-12         # mu_2 reads z_1; mu_1 is a constant
    np.testing.assert_allclose(log_density_on(prior, z), stats.norm(mu, sigma).logpdf(z).sum(1), rtol=1e-10)


# ----------------------------------------------------------------------------- sampling

@pytest.mark.parametrize("name", PRIORS)
def test_samples_follow_the_density(name):
    """A chi-square test of 20000 draws on the cells of a coarse grid, the cell probabilities
    integrated from log_prob on a fine grid."""
    prior = make_prior(name)
    draws = prior.sample(20000, rng=np.random.default_rng(11)).numpy()
    assert draws.shape == (20000, 2)
    points, area = grid(half_width=12.0, step=0.05)
    p = np.exp(log_density_on(prior, points)) * area
    lo, hi = np.percentile(draws, [1, 99], axis=0)
    # coarse edges on the fine grid's lines, so that every fine cell lies in one coarse cell
    edges = [np.concatenate([[-np.inf], 0.05 * np.round(np.linspace(lo[d], hi[d], 7) / 0.05), [np.inf]])
             for d in range(2)]
    cell = lambda v: np.stack([np.searchsorted(edges[d], v[:, d]) - 1 for d in range(2)], 1) @ [8, 1]
    expected = np.bincount(cell(points), weights=p, minlength=64) * 20000 / p.sum()
    observed = np.bincount(cell(draws), minlength=64)
    keep = expected > 5
    chi2 = ((observed[keep] - expected[keep]) ** 2 / expected[keep]).sum()
    assert stats.chi2(keep.sum() - 1).sf(chi2) > 1e-3, (chi2, keep.sum())


def test_sampling_is_seeded_and_has_no_graph():
    for name in PRIORS:
        prior = make_prior(name)
        a = prior.sample(5, rng=np.random.default_rng(3))
        b = prior.sample(5, rng=np.random.default_rng(3))
        np.testing.assert_array_equal(a.numpy(), b.numpy())
        assert not a.requires_grad


# ----------------------------------------------------------------------------- inside a VAE

def binary_data(n, seed=0):
    gen = np.random.default_rng(seed)
    centres = (gen.random((2, N_DIMS)) < 0.5)
    rows = centres[gen.integers(0, 2, n)]
    flip = gen.random((n, N_DIMS)) < 0.1
    return (rows ^ flip).astype(np.float64)


def vae_with(name, seed=0):
    """A small Bernoulli VAE whose prior is ``name``; VampPrior and the aggregated posterior
    share the VAE's encoder."""
    gen = np.random.default_rng(seed)
    encoder = MLPEncoder(N_DIMS, 2, hidden=(4,), activation="tanh", rng=gen, dtype="float64")
    decoder = MLPDecoder(2, N_DIMS, hidden=(4,), activation="tanh", rng=gen, dtype="float64")
    if name == "vamp":
        prior = VampPrior(encoder, 3, init=binary_data(3, seed=9))
    elif name == "aggregated":
        prior = AggregatedPosterior(encoder, binary_data(4, seed=8))
    else:
        prior = make_prior(name, seed)
    return VAE(encoder, decoder, prior=prior, rng=np.random.default_rng(seed + 1))


@pytest.mark.parametrize("name", PRIORS)
def test_elbo_with_each_prior_gradcheck_with_the_noise_held_fixed(name):
    model = vae_with(name)
    x = binary_data(3, seed=2)
    eps = np.random.default_rng(3).standard_normal((2, 3, 2))
    names = [n for n, _ in model.named_parameters()]
    values = [td.tensor(p.numpy(), dtype="float64", requires_grad=True) for p in model.parameters()]

    def elbo(*params):
        saved = swap_parameters(model, dict(zip(names, params)))
        try:
            return model.elbo(x, eps=eps)
        finally:
            swap_parameters(model, saved)
    assert td.gradcheck(elbo, values)


@pytest.mark.parametrize("name", [n for n in PRIORS if n != "standard_normal"])
def test_each_prior_trains_with_the_vae(name):
    """A few Adam steps on the loss move the prior's own parameters (if any) and raise the ELBO
    (same noise before and after)."""
    model = vae_with(name)
    x = td.tensor(binary_data(32, seed=4), dtype="float64")
    eps = np.random.default_rng(5).standard_normal((50, 32, 2))
    before = model.elbo(x, eps=eps).numpy().mean()
    own = [p for p in model.prior.parameters() if all(p is not q for q in model.encoder.parameters())]
    start = [p.numpy().copy() for p in own]
    optimizer = td.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(30):
        optimizer.zero_grad()
        model.loss(x).backward()
        optimizer.step()
    assert model.elbo(x, eps=eps).numpy().mean() > before + 0.05
    assert all(not np.allclose(a, p.numpy()) for a, p in zip(start, own))
    assert (len(own) > 0) == (name != "aggregated")


def test_a_shared_encoder_is_counted_once():
    model = vae_with("vamp")
    count = sum(p.size for p in model.encoder.parameters()) + sum(p.size for p in model.decoder.parameters())
    assert model.num_parameters() == count + model.prior.pseudo_inputs.size
    assert len({id(p) for p in model.parameters()}) == len(model.parameters())


def test_vae_samples_through_a_learned_prior():
    model = vae_with("maf")
    draws = model.sample(6, rng=np.random.default_rng(0))
    assert draws.shape == (6, N_DIMS) and set(np.unique(draws.numpy())) <= {0.0, 1.0}


# ----------------------------------------------------------------------------- errors and repr

def test_bad_input_raises_clear_errors():
    encoder = small_encoder()
    with pytest.raises(ValueError, match=r"z must have shape \(\.\.\., 2\), got \(4, 3\)"):
        make_prior("mixture").log_prob(td.tensor(np.zeros((4, 3))))
    with pytest.raises(ValueError, match=r"z must have shape \(\.\.\., 2\)"):
        make_prior("realnvp").log_prob(td.tensor(np.zeros((4, 3))))
    with pytest.raises(ValueError, match=r"init must have shape \(K, \*event_shape\) = \(2, 3\), got \(2, 4\)"):
        VampPrior(encoder, 2, init=np.zeros((2, 4)))
    with pytest.raises(ValueError, match=r"x must have shape \(n, 3\) with n >= 1"):
        AggregatedPosterior(encoder, np.zeros((5, 2)))
    with pytest.raises(TypeError, match="must be a GaussianEncoder"):
        VampPrior(object(), 2)
    with pytest.raises(TypeError, match="flow must be a tinydgm.models.flows.Flow"):
        FlowPrior(MixtureOfGaussiansPrior(2, 2))
    with pytest.raises(ValueError, match="n_components must be a positive int"):
        MixtureOfGaussiansPrior(2, 0)
    with pytest.raises(ValueError, match="the prior's latent_dim 3 differs"):
        VAE(encoder, MLPDecoder(2, N_DIMS), prior=AutoregressivePrior(3))


def test_repr_is_short():
    assert repr(make_prior("mixture")).startswith("MixtureOfGaussiansPrior(latent_dim=2, n_components=3)")
    assert repr(make_prior("vamp")).startswith("VampPrior(latent_dim=2, n_pseudo_inputs=4)")
    assert repr(make_prior("aggregated")).startswith("AggregatedPosterior(latent_dim=2, n=5)")


@pytest.mark.parametrize("name", [n for n in PRIORS if n != "standard_normal"])
def test_elbo_and_samples_on_every_device(name, device):
    model = vae_with(name)
    x = binary_data(3, seed=2)
    eps = np.random.default_rng(3).standard_normal((2, 3, 2))
    expected = model.elbo(x, eps=eps).numpy()
    model.to(device)
    np.testing.assert_allclose(model.elbo(x, eps=eps).numpy(), expected, rtol=1e-10)
    assert model.prior.sample(4, rng=np.random.default_rng(0)).device == device
    assert model.sample(3, rng=np.random.default_rng(0)).device == device
