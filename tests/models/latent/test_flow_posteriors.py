"""Flow posteriors for the VAE (tinydgm/models/latent/posteriors.py, the posterior path of vae.py,
the context input of IAFLayer and MADE): log q_K against the change-of-variables density with a
brute-force Jacobian, K = 0 against the plain VAE, the AF-prior = IAF-posterior equivalence
theorem of isachenko-l07 to float64 rounding, KL(q || p(z|x)) against a posterior known by
quadrature after short training, the importance-sampled log p(x) of a flow-posterior VAE against
the exact linear-Gaussian value, gradchecks of every new objective with the noise held fixed,
the per-example planar constraint, and bad input."""
import numpy as np
import pytest
from scipy import integrate, special

import tinydgm as td
from contracts import assert_autoregressive
from latent_helpers import with_parameters
from linear_vae_oracle import decoder_weights, exact_log_px, linear_vae, set_encoder_to_posterior
from tinydgm import optim
from tinydgm.autodiff.functional import concatenate
from tinydgm.distributions import Normal
from tinydgm.evaluate import importance_log_likelihood
from tinydgm.models.autoregressive import MADE
from tinydgm.models.flows import Compose, Flow, Inverse, brute_force_log_det
from tinydgm.models.flows.maf_iaf import IAFLayer
from tinydgm.models.latent import IWAE, FlowPrior, MLPDecoder, MLPEncoder, VAE
from tinydgm.models.latent.posteriors import IAFPosterior, PlanarPosterior, planar_u_hat
from tinydgm.nn.module import Module

D, L = 5, 2


def binary_data(n, seed=0):
    return (np.random.default_rng(seed).random((n, D)) < 0.4).astype(np.float64)


def planar(n_layers=3, seed=0, **kw):
    return PlanarPosterior(D, L, n_layers=n_layers, hidden=(4,), rng=np.random.default_rng(seed), dtype="float64",
                           **kw)


def iaf(n_layers=2, seed=0, context_dim=3, **kw):
    kw.setdefault("identity_init", False)              # random steps: every test below sees a real flow
    return IAFPosterior(D, L, n_layers=n_layers, hidden_sizes=(4,), context_dim=context_dim, hidden=(4,),
                        rng=np.random.default_rng(seed), dtype="float64", **kw)


POSTERIORS = {"planar": planar, "iaf": iaf}


def small_vae(posterior=None, seed=0, model=VAE, **kw):
    gen = np.random.default_rng(seed)
    encoder = MLPEncoder(D, L, hidden=(4,), activation="tanh", rng=gen, dtype="float64")
    decoder = MLPDecoder(L, D, hidden=(3,), activation="tanh", rng=gen, dtype="float64")
    return model(encoder, decoder, rng=np.random.default_rng(seed + 1), posterior=posterior, **kw)


# ----------------------------------------------------------------------------- log q_K by change of variables

@pytest.mark.parametrize("name", sorted(POSTERIORS))
def test_log_q_is_the_change_of_variables_density_with_a_brute_force_jacobian(name):
    """log q_K(z_K|x) = log q_0(z_0|x) - log|det dz_K/dz_0| with the determinant from the engine's
    full Jacobian of z_0 -> z_K (one x per row), and the VAE's log q_K (through its importance
    weights) is that number."""
    model = small_vae(POSTERIORS[name](), seed=2)
    x = binary_data(4, seed=3)
    eps = np.random.default_rng(4).standard_normal((1, 4, L)) * 1.5
    xt = td.tensor(x, dtype="float64")
    mu, log_var = model.encode(x)
    z0 = mu.numpy() + np.exp(0.5 * log_var.numpy()) * eps[0]
    z, log_det = model.posterior.transform(td.tensor(z0, dtype="float64"), xt)
    brute = brute_force_log_det(lambda t: model.posterior.transform(t, xt)[0], td.tensor(z0, dtype="float64"))
    np.testing.assert_allclose(log_det.numpy(), brute, rtol=1e-10, atol=1e-12)
    assert np.abs(brute).min() > 1e-3                            # the steps do change the volume
    log_q0 = Normal(mu, log_var=log_var).log_prob(td.tensor(z0, dtype="float64")).sum(axis=-1).numpy()
    log_qk = log_q0 - brute
    log_w = model.log_importance_weights(x, 1, eps=eps).numpy()[0]
    log_joint = model.decoder.log_prob(xt, z).numpy() + model.prior.log_prob(z).numpy()
    np.testing.assert_allclose(log_w, log_joint - log_qk, rtol=1e-12, atol=1e-12)
    # and the (S, N, L) path of the VAE gives the same z_K as the rows path
    z_sn, _ = model.posterior.transform(td.tensor(z0[None], dtype="float64"), xt)
    np.testing.assert_allclose(z_sn.numpy()[0], z.numpy(), rtol=1e-14)


@pytest.mark.parametrize("name", sorted(POSTERIORS))
def test_a_flow_of_zero_steps_gives_exactly_the_plain_vae_elbo(name):
    """K = 0: q_K = q_0, and the ELBO, the beta-objective and the importance weights are the plain
    VAE's with the Monte Carlo KL, bit for bit (the same noise, the same encoder and decoder);
    so is an IAF posterior at its identity initialisation (mu = alpha = 0)."""
    x = binary_data(6, seed=5)
    eps = np.random.default_rng(6).standard_normal((3, 6, L))
    flowed = small_vae(POSTERIORS[name](n_layers=0), seed=7, beta=2.5)
    plain = small_vae(None, seed=7, beta=2.5, kl="monte_carlo")
    assert flowed.kl == "monte_carlo"
    np.testing.assert_array_equal(flowed.elbo(x, eps=eps).numpy(), plain.elbo(x, eps=eps).numpy())
    np.testing.assert_array_equal(flowed.objective(x, eps=eps).numpy(), plain.objective(x, eps=eps).numpy())
    np.testing.assert_array_equal(flowed.log_importance_weights(x, 3, eps=eps).numpy(),
                                  plain.log_importance_weights(x, 3, eps=eps).numpy())
    if name == "iaf":                                   # IAF steps start as the identity: still the plain ELBO
        started = small_vae(iaf(n_layers=2, identity_init=True), seed=7, beta=2.5)
        np.testing.assert_array_equal(started.elbo(x, eps=eps).numpy(), plain.elbo(x, eps=eps).numpy())
    # a non-empty flow does change it (the comparison above is not vacuous)
    richer = small_vae(POSTERIORS[name](n_layers=2), seed=7)
    assert np.abs(richer.elbo(x, eps=eps).numpy() - plain.elbo(x, eps=eps).numpy()).min() > 1e-4


# ----------------------------------------------------------------------------- the equivalence theorem

class DecoderThroughInverse(Module):
    """p_B(x | z*) = p(x | f(z*)) with f = g^{-1}: the decoder of the posterior-flow VAE that
    defines the same generative model as the prior-flow VAE (f inverts the flow ``transform``,
    density direction z -> z*, sequentially: the IAF steps' slow direction)."""

    def __init__(self, decoder, transform):
        super().__init__()
        self.decoder, self.transform = decoder, transform
        self.latent_dim, self.event_shape = decoder.latent_dim, decoder.event_shape

    def log_prob(self, x, z_star):
        lead = tuple(z_star.shape[:-1])
        z, _ = self.transform.inverse(z_star.reshape(-1, self.latent_dim))       # z = f(z*)
        return self.decoder.log_prob(x, z.reshape(lead + (self.latent_dim,)))

    def check_data(self, x, who):
        self.decoder.check_data(x, who)


def equivalent_pair(seed=0, n_layers=3):
    """(A, B): A has the AF prior p_lambda(z) = N(g(z); 0, I) |det dg/dz|, B the IAF posterior g."""
    gen = np.random.default_rng(seed)
    encoder = MLPEncoder(D, L, hidden=(4,), activation="tanh", rng=gen, dtype="float64")
    decoder = MLPDecoder(L, D, hidden=(3,), activation="tanh", rng=gen, dtype="float64")
    posterior = IAFPosterior(D, L, n_layers=n_layers, hidden_sizes=(6,), context_dim=None, rng=gen,
                             dtype="float64", alpha_bound=3.0, identity_init=False)
    g = Compose([Inverse(layer) for layer in posterior.layers])    # g = T_K o ... o T_1, T_k = IAFLayer.inverse
    model_a = VAE(encoder, decoder, prior=FlowPrior(Flow(g, (L,))), rng=np.random.default_rng(1))
    model_b = VAE(encoder, DecoderThroughInverse(decoder, g), posterior=posterior, rng=np.random.default_rng(1))
    return model_a, model_b


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_af_prior_and_iaf_posterior_give_the_same_elbo_for_every_x_and_every_noise(seed):
    """The theorem of isachenko-l07 ("Flows-based VAE prior vs posterior"): a VAE with a flow
    prior is a VAE with a flow posterior.

    "Corresponding" means, with the same encoder q(z|x) = N(mu(x), sigma^2(x)) and the same noise
    eps, z = mu + sigma eps:
      A (AF prior): prior log p_lambda(z) = log N(g(z); 0, I) + log|det dg/dz|, with g the
        composition T_K o ... o T_1 of affine autoregressive steps T_k(z)_i = z_i
        exp(alpha_i(z_<i)) + mu_i(z_<i) (z_<i in step k's ordering, natural or reversed: an AF
        in the prior's density direction, one pass to evaluate, sequential to sample);
        decoder p(x|z).
      B (IAF posterior): the SAME steps applied to the encoder's sample, z* = g(z) (as IAF steps,
        one pass, parameters global: no context), log q(z*|x) = log q(z|x) - log|det dg/dz|;
        prior N(0, I); decoder p(x | g^{-1}(z*)) = the same decoder network after the inverse
        flow (computed sequentially), so that both define one generative model
        x ~ p(x | g^{-1}(z*)), z* ~ N(0, I).
    Then log p(x|z) + log p_lambda(z) - log q(z|x) = log p_B(x|z*) + log N(z*) - log q(z*|x)
    term by term, for every x and every eps: the per-sample importance weights, hence the ELBO
    and the IWAE bounds, agree to float64 rounding, and so do their gradients.
    """
    model_a, model_b = equivalent_pair(seed)
    gen = np.random.default_rng(10 + seed)
    x = binary_data(7, seed=11 + seed)
    eps = gen.standard_normal((5, 7, L)) * np.array([1.0, 3.0])      # includes far tails
    log_w_a = model_a.log_importance_weights(x, 5, eps=eps).numpy()
    log_w_b = model_b.log_importance_weights(x, 5, eps=eps).numpy()
    np.testing.assert_allclose(log_w_b, log_w_a, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(model_b.elbo(x, eps=eps).numpy(), model_a.elbo(x, eps=eps).numpy(),
                               rtol=1e-12, atol=1e-12)
    # not vacuous: the flow prior is far from N(0, I) (the ELBO under N(0, I) differs)
    plain = VAE(model_a.encoder, model_a.decoder, kl="monte_carlo")
    assert np.abs(plain.elbo(x, eps=eps).numpy() - model_a.elbo(x, eps=eps).numpy()).min() > 1e-3
    # the same objective means the same training: both models hold the same Parameter objects
    # (B's flow steps sit in its posterior and, inverted, in its decoder) and get equal gradients
    assert {id(p) for p in model_a.parameters()} == {id(p) for p in model_b.parameters()}
    grads = []
    for model in (model_a, model_b):
        model.zero_grad()
        (-model.elbo(x, eps=eps).sum()).backward()
        grads.append({id(p): (name, np.array(p.grad.numpy())) for name, p in model.named_parameters()})
    assert any(name.startswith("prior") for name, _ in grads[0].values())
    for key, (name, grad_a) in grads[0].items():
        np.testing.assert_allclose(grads[1][key][1], grad_a, rtol=1e-9, atol=1e-11, err_msg=name)


# ----------------------------------------------------------------------------- a known true posterior

SIGMA = np.array([1.0, 0.15])                 # p(x|z) = N(x; (z_1, z_2 + z_1^2), diag(SIGMA^2))


class BananaDecoder(Module):
    """A fixed toy decoder with a curved ("banana") posterior: p(z) = N(0, I),
    x | z ~ N((z_1, z_2 + z_1^2), diag(SIGMA^2)). No parameters."""
    latent_dim, event_shape = 2, (2,)

    def log_prob(self, x, z):
        z1, z2 = z[..., 0], z[..., 1]
        r1 = (x[:, 0] - z1) / SIGMA[0]
        r2 = (x[:, 1] - z2 - z1 * z1) / SIGMA[1]
        return -0.5 * (r1 * r1 + r2 * r2) - float(np.log(SIGMA).sum() + np.log(2 * np.pi))

    def check_data(self, x, who):
        pass


def banana_log_px(x):
    """log p(x) by quadrature: z_2 integrates in closed form, p(x) = int N(z_1; 0, 1) N(x_1; z_1,
    s_1^2) N(x_2; z_1^2, 1 + s_2^2) dz_1, then one adaptive 1-D quadrature per example."""
    out = []
    for x1, x2 in x:
        def density(z1):
            var2 = 1 + SIGMA[1] ** 2
            return np.exp(-0.5 * z1 ** 2 - 0.5 * ((x1 - z1) / SIGMA[0]) ** 2 - 0.5 * (x2 - z1 ** 2) ** 2 / var2) \
                / ((2 * np.pi) ** 1.5 * SIGMA[0] * np.sqrt(var2))
        value, err = integrate.quad(density, -12, 12, epsabs=0, epsrel=1e-12, limit=200)
        assert err < 1e-9 * value
        out.append(np.log(value))
    return np.array(out)


def banana_vae(posterior):
    encoder = MLPEncoder(2, 2, hidden=(16,), activation="tanh", rng=np.random.default_rng(0), dtype="float64")
    return VAE(encoder, BananaDecoder(), posterior=posterior, n_samples=8, kl="monte_carlo",
               rng=np.random.default_rng(1))


def kl_to_true_posterior(model, x, n_samples=2000):
    """Mean over x of KL(q(z|x) || p(z|x)) = log p(x) - ELBO(x), the ELBO from n_samples draws of
    fixed noise, and its Monte Carlo standard error."""
    eps = np.random.default_rng(99).standard_normal((n_samples, len(x), 2))
    with td.no_grad():
        log_w = model.log_importance_weights(x, n_samples, eps=eps).numpy()
    gap = banana_log_px(x)[None, :] - log_w                               # (S, N): log p(x) - log w
    return gap.mean(), gap.mean(axis=1).std() / np.sqrt(n_samples)


def test_richer_posteriors_come_closer_to_the_true_posterior():
    """Same encoder initialisation, same 300 Adam steps on the same 12 observations of the banana
    model: KL(q || p(z|x)) = log p(x) - ELBO, with log p(x) by quadrature, is measured for the
    diagonal Gaussian, 6 amortised planar steps and 2 IAF steps; both flows end clearly below
    the Gaussian (and every KL is >= 0 within its standard error, as it must be)."""
    gen = np.random.default_rng(5)
    z = gen.standard_normal((12, 2))
    x = np.stack([z[:, 0], z[:, 1] + z[:, 0] ** 2], axis=1) + SIGMA * gen.standard_normal((12, 2))
    models = {
        "gaussian": banana_vae(None),
        "planar": banana_vae(PlanarPosterior(2, 2, n_layers=6, hidden=(16,), rng=np.random.default_rng(2),
                                             dtype="float64")),
        "iaf": banana_vae(IAFPosterior(2, 2, n_layers=2, hidden_sizes=(16,), context_dim=8, hidden=(16,),
                                       rng=np.random.default_rng(2), dtype="float64")),
    }
    kl = {}
    for name, model in models.items():
        optimizer = optim.Adam(model.parameters(), lr=1e-2)
        for _ in range(300):
            optimizer.zero_grad()
            loss = model.loss(x)
            loss.backward()
            optimizer.step()
        kl[name] = kl_to_true_posterior(model, x)
    for name, (value, se) in kl.items():
        assert value > -3 * se, (name, kl)
    gauss, gauss_se = kl["gaussian"]
    for name in ("planar", "iaf"):
        value, se = kl[name]
        assert value < gauss - 0.1 and gauss - value > 5 * np.hypot(se, gauss_se), kl
    assert gauss > 0.3, kl                                               # the banana is far from Gaussian


# ----------------------------------------------------------------------------- the k-sample estimator

@pytest.mark.parametrize("name", sorted(POSTERIORS))
def test_importance_estimate_with_a_flow_posterior_hits_the_exact_log_px(name):
    """The k = 5000 estimator (tinydgm.evaluate.importance) on a linear-Gaussian VAE whose q_K is a
    flow posterior on top of the (diagonal) exact-posterior encoder: log 1/k sum w -> log p(x),
    known exactly. The flow moves q_K away from p(z|x) (the ELBO is loose), and its log-dets are
    large against the estimator's error, so a wrong log q_K (the log-det's sign, a missing term)
    would show."""
    kw = dict(n_layers=2, rng=np.random.default_rng(3), dtype="float64")
    posterior = PlanarPosterior(4, 2, hidden=(4,), **kw) if name == "planar" else \
        IAFPosterior(4, 2, hidden_sizes=(4,), context_dim=3, hidden=(4,), identity_init=False, **kw)
    model = linear_vae(4, 2, sigma=0.6, seed=4, posterior=posterior)
    set_encoder_to_posterior(model, 0.6)
    if name == "iaf":                                  # a mild IAF: small mu and alpha
        for layer in posterior.layers:
            out = layer.made.layers[-1]
            out.weight.data, out.bias.data = out.weight.data * 0.1, out.bias.data * 0.1
    x = np.random.default_rng(5).standard_normal((5, 4))
    W, b = decoder_weights(model)
    exact = exact_log_px(W, b, 0.6, x)
    estimate = importance_log_likelihood(model, x, k=5000, rng=np.random.default_rng(6))
    error, se = estimate.log_px.numpy() - exact, estimate.stderr.numpy()
    assert np.all(np.abs(error) < 5 * se + 1e-3), (error, se)
    gap = exact - model.elbo(x, n_samples=2000, rng=np.random.default_rng(7)).numpy()
    assert gap.min() > 0.05                                   # q_K is not the posterior: the ELBO is loose
    mu, log_var = model.encode(x)
    z0 = mu.numpy() + np.exp(0.5 * log_var.numpy()) * np.random.default_rng(8).standard_normal((200, 5, 2))
    _, log_det = posterior.transform(td.tensor(z0, dtype="float64"), td.tensor(x, dtype="float64"))
    assert np.abs(log_det.numpy()).mean() > 5 * np.median(se)
    np.testing.assert_allclose(model.log_prob_estimate(x, k=5000, rng=np.random.default_rng(6)).numpy(),
                               estimate.log_px.numpy(), rtol=1e-12)


# ----------------------------------------------------------------------------- gradients

def every_objective():
    x = binary_data(3, seed=7)
    eps = np.random.default_rng(8).standard_normal((2, 3, L))
    cases = {}
    for name, build in POSTERIORS.items():
        cases[f"{name}_elbo"] = (lambda b=build: small_vae(b()), lambda m: m.elbo(x, eps=eps))
        cases[f"{name}_beta_objective"] = (lambda b=build: small_vae(b(), beta=3.0), lambda m: m.objective(x, eps=eps))
        cases[f"{name}_iwae_bound"] = (lambda b=build: small_vae(b(), model=IWAE, k=2),
                                       lambda m: m.iwae_bound(x, eps=eps))
    cases["iaf_global_steps_elbo"] = (lambda: small_vae(iaf(context_dim=None)), lambda m: m.elbo(x, eps=eps))
    return cases


@pytest.mark.parametrize("case", sorted(every_objective()))
def test_every_new_objective_gradcheck_with_the_noise_held_fixed(case):
    build, objective = every_objective()[case]
    model = build()
    fn, inputs = with_parameters(model, lambda: objective(model))
    assert td.gradcheck(fn, inputs)


@pytest.mark.parametrize("case", sorted(every_objective()))
def test_every_new_objective_gradgradcheck(case):
    build, objective = every_objective()[case]
    model = build()
    fn, inputs = with_parameters(model, lambda: objective(model))
    assert td.gradgradcheck(fn, inputs)


@pytest.mark.parametrize("name", sorted(POSTERIORS))
def test_transform_gradcheck_in_the_base_sample(name):
    posterior = POSTERIORS[name]()
    x = td.tensor(binary_data(3, seed=1), dtype="float64")
    z0 = td.tensor(np.random.default_rng(2).standard_normal((2, 3, L)), dtype="float64", requires_grad=True)
    assert td.gradcheck(lambda t: posterior.transform(t, x), [z0])
    assert td.gradgradcheck(lambda t: posterior.transform(t, x), [z0])


# ----------------------------------------------------------------------------- the planar constraint

@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_the_planar_constraint_holds_for_every_example(dtype):
    """w_k^T u_hat_k >= -1 row by row (Rezende & Mohamed appendix A.1), also where the network
    puts w^T u far below -1 for some examples (softplus underflows) and far above for others;
    equal to m(w^T u) = -1 + softplus(w^T u) where that is representable; every per-example step
    then has a finite log-determinant. (In float32 the margin sqrt(eps) covers the rounding of
    w^T u_hat while |u_perp| |w| stays below about 1 / sqrt(eps), as for PlanarFlow: the scale
    of the stress is chosen inside that.)"""
    posterior = PlanarPosterior(D, L, n_layers=4, hidden=(4,), rng=np.random.default_rng(0), dtype=dtype)
    last = posterior.net[-1]
    scale = 300 if dtype == "float64" else 20
    last.weight.data = (last.weight.data * scale).astype(dtype)        # large, example-dependent u and w
    x = np.random.default_rng(1).standard_normal((64, D)) * 10
    xt = td.tensor(x, dtype=dtype)
    w_u_seen = []
    for u_hat, w, b in posterior.planar_parameters(xt):
        c = (w.numpy().astype(np.float64) * u_hat.numpy()).sum(axis=1)
        assert np.all(c > -1), c.min()
        w_u_seen.append(c)
    params = posterior.step_parameters(posterior.amortize(xt))
    for (u, w, _), c in zip(params, w_u_seen):
        w_u = (u.numpy().astype(np.float64) * w.numpy()).sum(axis=1)
        expected = np.maximum(-1 + np.logaddexp(0, w_u), -1 + np.sqrt(np.finfo(dtype).eps))
        ok = np.abs(w_u) < 30
        np.testing.assert_allclose(c[ok], expected[ok], rtol=1e-4 if dtype == "float32" else 1e-10, atol=1e-5)
    all_w_u = np.concatenate([(u.numpy().astype(np.float64) * w.numpy()).sum(axis=1) for u, w, _ in params])
    assert all_w_u.min() < -20 and all_w_u.max() > 20                   # the extremes were exercised
    z0 = td.tensor(np.random.default_rng(2).standard_normal((64, L)), dtype=dtype)
    _, log_det = posterior.transform(z0, xt)
    assert np.all(np.isfinite(log_det.numpy()))


def test_planar_u_hat_against_the_paper_formula():
    """u_hat = u + (m(w^T u) - w^T u) w / |w|^2 in float64 where the formula is exact enough."""
    gen = np.random.default_rng(3)
    u, w = gen.standard_normal((10, 3)), gen.standard_normal((10, 3))
    w_u = (w * u).sum(axis=1, keepdims=True)
    m = -1 + np.logaddexp(0, w_u)
    expected = u + (m - w_u) * w / (w * w).sum(axis=1, keepdims=True)
    u_hat, c = planar_u_hat(td.tensor(u, dtype="float64"), td.tensor(w, dtype="float64"))
    np.testing.assert_allclose(u_hat.numpy(), expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(c.numpy(), m[:, 0], rtol=1e-12)


# ----------------------------------------------------------------------------- IAF and MADE context

def test_made_context_feeds_every_hidden_layer_and_leaves_the_context_free_made_unchanged():
    """MADE(..., context_dim=C) draws its masked layers exactly as the context-free MADE (the
    context weights are drawn afterwards), gives the same outputs at h = 0, is still
    autoregressive in x, and every output that has hidden units depends on h."""
    plain = MADE(3, [8, 8], "gaussian", connectivity="natural", rng=np.random.default_rng(0), dtype="float64")
    ctx = MADE(3, [8, 8], "gaussian", connectivity="natural", rng=np.random.default_rng(0), dtype="float64",
               context_dim=2)
    for a, b in zip(plain.layers, ctx.layers):
        np.testing.assert_array_equal(a.weight.numpy(), b.weight.numpy())
    assert len(ctx.context_layers) == 2
    x = np.random.default_rng(1).standard_normal((6, 3))
    h = np.random.default_rng(2).standard_normal((6, 2))
    np.testing.assert_allclose(ctx(td.tensor(x, dtype="float64"), context=np.zeros((6, 2))).numpy(),
                               plain(td.tensor(x, dtype="float64")).numpy(), rtol=1e-14)
    assert_autoregressive(lambda t: ctx(t, context=td.tensor(h, dtype="float64")), x, [0, 1, 2],
                          outputs_per_input=2)
    jac = td.jacobian(lambda c: ctx(td.tensor(x, dtype="float64"), context=c),
                      td.tensor(h, dtype="float64", requires_grad=True))
    dep = np.abs(jac).sum(axis=(0, 2, 3))          # per output: mu_1..mu_3, log_scale_1..log_scale_3
    # the first variable's outputs have no hidden unit (they are biases: p(x_1) is unconditional in
    # a MADE), so they do not see h; every other output does
    assert np.all(dep[[1, 2, 4, 5]] > 0) and np.all(dep[[0, 3]] == 0), dep
    with pytest.raises(ValueError, match="context_dim=2"):
        ctx(td.tensor(x, dtype="float64"))
    with pytest.raises(ValueError, match="built without one"):
        plain(td.tensor(x, dtype="float64"), context=h)
    with pytest.raises(ValueError, match=r"\(6, 2\)"):
        ctx(td.tensor(x, dtype="float64"), context=h[:, :1])


def test_iaf_layer_with_a_context_is_invertible_with_its_log_det_and_gradients():
    """For a fixed h the context IAF step u -> x is invertible (the sequential forward undoes the
    one-pass inverse), its log-det is the brute-force Jacobian's, and it is gradient-checked in u,
    h and every parameter."""
    layer = IAFLayer(3, (8,), rng=np.random.default_rng(0), dtype="float64", context_dim=2)
    u = td.tensor(np.random.default_rng(1).standard_normal((5, 3)), dtype="float64")
    h = td.tensor(np.random.default_rng(2).standard_normal((5, 2)), dtype="float64")
    x, log_det = layer.inverse(u, context=h)
    u_back, log_det_back = layer.forward(x, context=h)
    np.testing.assert_allclose(u_back.numpy(), u.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(log_det_back.numpy(), -log_det.numpy(), rtol=1e-12)
    np.testing.assert_allclose(log_det.numpy(), brute_force_log_det(lambda t: layer.inverse(t, context=h), u),
                               rtol=1e-10)
    h_other = td.tensor(h.numpy() + 1.0, dtype="float64")
    assert np.abs(layer.inverse(u, context=h_other)[0].numpy() - x.numpy()).max() > 1e-3
    params = [td.tensor(p.numpy(), dtype="float64", requires_grad=True) for p in layer.parameters()]
    uu = td.tensor(u.numpy(), dtype="float64", requires_grad=True)
    hh = td.tensor(h.numpy(), dtype="float64", requires_grad=True)

    def inverse_of(u_in, h_in, *values):
        return with_parameters(layer, lambda: layer.inverse(u_in, context=h_in))[0](*values)

    def forward_of(x_in, h_in, *values):
        return with_parameters(layer, lambda: layer.forward(x_in, context=h_in))[0](*values)

    assert td.gradcheck(inverse_of, [uu, hh] + params)
    assert td.gradcheck(forward_of, [td.tensor(x.numpy(), dtype="float64", requires_grad=True), hh] + params)


# ----------------------------------------------------------------------------- bad input

def test_bad_configuration_and_input():
    with pytest.raises(ValueError, match="closed_form"):
        small_vae(planar(), kl="closed_form")
    with pytest.raises(ValueError, match="latent_dim 3"):
        small_vae(PlanarPosterior(D, 3, rng=np.random.default_rng(0), dtype="float64"))
    with pytest.raises(ValueError, match="reads examples of shape"):
        small_vae(PlanarPosterior(4, L, rng=np.random.default_rng(0), dtype="float64"))
    with pytest.raises(TypeError, match="transform"):
        small_vae(object())
    with pytest.raises(ValueError, match="n_layers"):
        PlanarPosterior(D, L, n_layers=-1)
    posterior = planar()
    with pytest.raises(ValueError, match=r"z_0 must have shape"):
        posterior.transform(td.tensor(np.zeros((2, 3)), dtype="float64"), td.tensor(binary_data(2), dtype="float64"))
    model = small_vae(planar())
    with pytest.raises(ValueError, match=r"eps must have shape"):
        model.elbo(binary_data(3), eps=np.zeros((2, 3, 3)))
    assert "posterior=PlanarPosterior" in repr(model) and len(repr(model)) < 2000


@pytest.mark.parametrize("name", sorted(POSTERIORS))
def test_reconstruct_decodes_the_flowed_latent(name):
    """reconstruct(x) = E[x | z_K] with z_0 = mu(x) pushed through the posterior's steps (not the
    decoder at mu(x) itself, which the flow has moved)."""
    model = small_vae(POSTERIORS[name](), seed=3)
    x = binary_data(4, seed=2)
    xt = td.tensor(x, dtype="float64")
    mu, _ = model.encode(x)
    z, _ = model.posterior.transform(mu, xt)
    np.testing.assert_allclose(model.reconstruct(x).numpy(), model.decoder.mean(z).numpy(), rtol=1e-14)
    assert np.abs(model.reconstruct(x).numpy() - model.decoder.mean(mu).numpy()).max() > 1e-4


@pytest.mark.parametrize("name", sorted(POSTERIORS))
def test_flow_posterior_elbo_matches_on_every_device(name, device):
    model = small_vae(POSTERIORS[name](), seed=4)
    x = binary_data(3, seed=5)
    eps = np.random.default_rng(0).standard_normal((2, 3, L))
    expected = model.elbo(x, eps=eps).numpy()
    model.to(device)
    np.testing.assert_allclose(model.elbo(x, eps=eps).numpy(), expected, rtol=1e-10)
    estimate = model.log_prob_estimate(x, k=20, rng=np.random.default_rng(1))
    assert estimate.device == device and np.all(np.isfinite(estimate.numpy()))
