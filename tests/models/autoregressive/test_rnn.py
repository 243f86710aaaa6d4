"""The RNN baseline p(x) = prod_t p(x_t | h_{t-1}): normalisation over all binary sequences
and, for the Gaussian and Gaussian-mixture outputs, by quadrature; causality from the
engine's Jacobian; the sampler against the exact distribution (chi-square); gradcheck and
gradgradcheck of log_prob; the mixture output against its formula; errors."""
import numpy as np
import pytest

import tinydgm as td
from contracts import all_binary, assert_normalised, chi_square_pvalue, dependency_matrix
from tinydgm.models.autoregressive.rnn import AutoregressiveRNN


def tiny_rnn(seed=0, **kw):
    args = dict(x_dim=2, hidden_size=4, phi_size=4, length=2, rng=np.random.default_rng(seed), dtype="float64")
    args.update(kw)
    return AutoregressiveRNN(**args)


def test_bernoulli_output_normalised_over_all_binary_sequences():
    model = tiny_rnn(output="bernoulli")
    log_p = assert_normalised(lambda a: model.log_prob(a.reshape(-1, 2, 2)).numpy(), 4, atol=1e-12)
    assert log_p.std() > 0.05


@pytest.mark.parametrize("n_components", [1, 3])
def test_gaussian_and_mixture_outputs_integrate_to_one(n_components):
    model = tiny_rnn(x_dim=1, n_components=n_components, seed=1)
    grid = np.linspace(-10, 10, 321)
    step = grid[1] - grid[0]
    x = np.stack(np.meshgrid(grid, grid, indexing="ij"), -1).reshape(-1, 2, 1)     # (x_1, x_2) on a grid
    p = np.exp(model.log_prob(x).numpy())
    assert abs(p.sum() * step ** 2 - 1) < 1e-6


def test_mixture_output_is_the_mixture_formula():
    model = tiny_rnn(x_dim=1, n_components=2, seed=2, length=1)
    x = np.array([[[0.3]], [[-1.2]]])
    params = model.decoder.net(td.tensor(np.zeros((2, 4)), dtype="float64")).numpy()
    logits, means, log_scales = params[:, :2], params[:, 2:4], params[:, 4:6]
    pi = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    sigma = np.exp(log_scales)
    density = (pi * np.exp(-0.5 * ((x[:, 0] - means) / sigma) ** 2) / (np.sqrt(2 * np.pi) * sigma)).sum(axis=1)
    np.testing.assert_allclose(model.log_prob(x).numpy(), np.log(density), rtol=1e-12)


def test_each_conditional_depends_only_on_the_past():
    model = tiny_rnn(length=4, seed=3)
    x = np.random.default_rng(4).standard_normal((2, 4, 2))
    dep = dependency_matrix(model.log_prob_steps, x)                    # (T, T x_dim)
    step_of_input = np.repeat(np.arange(4), 2)
    for t in range(4):
        assert not dep[t, step_of_input > t].any()
        assert dep[t, step_of_input <= t].all()                        # and sees all of it


def test_samples_follow_the_exact_distribution():
    model = tiny_rnn(output="bernoulli", seed=5)
    log_p = model.log_prob(all_binary(4).reshape(-1, 2, 2)).numpy()
    samples = model.sample(20000, rng=td.rng(6)).numpy()
    assert samples.shape == (20000, 2, 2)
    assert chi_square_pvalue(samples.reshape(-1, 4), log_p) > 0.001
    other = tiny_rnn(output="bernoulli", seed=7).log_prob(all_binary(4).reshape(-1, 2, 2)).numpy()
    assert chi_square_pvalue(samples.reshape(-1, 4), other) < 1e-6


@pytest.mark.parametrize("n_components", [1, 2])
def test_log_prob_gradcheck_and_gradgradcheck(n_components):
    model = tiny_rnn(hidden_size=3, phi_size=3, n_components=n_components, length=3, seed=8)
    x = td.tensor(np.random.default_rng(9).standard_normal((2, 3, 2)), dtype="float64", requires_grad=True)
    names = [(m, name) for m in model.modules() for name, v in m.__dict__.items() if isinstance(v, td.nn.Parameter)]
    params = [td.tensor(getattr(m, name).numpy(), dtype="float64", requires_grad=True) for m, name in names]

    def fn(x, *values):
        saved = [getattr(m, name) for m, name in names]
        for (m, name), v in zip(names, values):
            object.__setattr__(m, name, v)
        try:
            return model.log_prob(x)
        finally:
            for (m, name), v in zip(names, saved):
                object.__setattr__(m, name, v)
    td.gradcheck(fn, [x, *params])
    td.gradgradcheck(fn, [x, *params])


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match=r"x must have shape \(N, T, x_dim\) = \(N, T, 2\)"):
        tiny_rnn().log_prob(np.zeros((3, 2)))
    with pytest.raises(ValueError, match="NaN or inf"):
        tiny_rnn().log_prob(np.full((1, 2, 2), np.nan))
    with pytest.raises(ValueError, match=r"needs binary x \(0 or 1\), got values in \[0.0, 0.5\]"):
        tiny_rnn(output="bernoulli").log_prob(np.full((1, 2, 2), 0.5) * np.arange(2))
    with pytest.raises(ValueError, match='output must be "gaussian" or "bernoulli"'):
        tiny_rnn(output="poisson")
    with pytest.raises(ValueError, match="n_components"):
        tiny_rnn(output="bernoulli", n_components=2)
    assert tiny_rnn().sample(3, rng=td.rng(0), length=5).shape == (3, 5, 2)
