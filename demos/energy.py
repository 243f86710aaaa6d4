"""Energy-based models: Metropolis-Hastings chains, a neural EBM trained by persistent
contrastive divergence, and a restricted Boltzmann machine trained by CD-1.

    python demos/energy.py [--device cpu|cuda] [--quick] [--out DIR] [--seed N]

An energy-based model is known up to its normaliser (kuleshov-l12, "Energy based models"):

    p_theta(x) = exp(f_theta(x)) / Z(theta),      Z(theta) = integral of exp(f_theta(x)) dx

so sampling needs MCMC and learning replaces the model expectation in the likelihood's
gradient (kuleshov-l12, "Exponential families: moment matching")

    grad_theta log p_theta(x) = grad_theta f(x) - E_{x' ~ p_theta}[grad_theta f(x')]

by a Monte Carlo average over chains (contrastive divergence).

1. MCMC: random-walk Metropolis-Hastings on the 8-Gaussians density (kuleshov-l12,
   "Constructing MCMC chains with Metropolis-Hastings") -> mh_chains.png
2. A neural EBM on 8 Gaussians: f an MLP, trained by PCD with Langevin chains and a replay
   buffer (Du & Mordatch 2019); Z by a sum over a grid (2-D only), so the held-out
   log-likelihood can be shown beside the true density's -> ebm_density.png
3. A Bernoulli RBM on the embedded binarized images, trained by CD-1 (tomczak-dgm, "RBM:
   Training", "RBM: Contrastive Divergence"): its filters and Gibbs samples
   -> rbm_filters.png, rbm_samples.png
"""
import sys
import time
from pathlib import Path

import _common
from tinydgm import backend, data, evaluate, plot
from tinydgm.autodiff.core import no_grad, tensor
from tinydgm.autodiff.functional import expand_dims, logsumexp
from tinydgm.data.toy import eight_gaussians_centres, eight_gaussians_log_density, sample_toy
from tinydgm.kernels import mh
from tinydgm.models.energy.ebm import NeuralEBM
from tinydgm.models.energy.rbm import BernoulliRBM
from tinydgm.optim import Adam

EXTENT = (-4.0, 4.0, -4.0, 4.0)


def run(out_dir, seed, quick, device, log):
    return _common.collect({
        "mh": metropolis_hastings_chains(out_dir, seed, quick, device, log),
        "ebm": neural_ebm(out_dir, seed, quick, device, log),
        "rbm": restricted_boltzmann_machine(out_dir, seed, quick, device, log),
    })


# ============================================================================ 1. MCMC

def metropolis_hastings_chains(out_dir, seed, quick, device, log, n_chains=8, step_size=0.5, std=0.2):
    """Random-walk MH from the origin: propose x' = x + step_size eps, eps ~ N(0, I) (a
    symmetric Q, so log A = min(0, log P(x') - log P(x))), accept with probability A. P is
    the 8-Gaussians density up to its constant, which cancels in the ratio:

        log P(x) = logsumexp_k [ -|x - c_k|^2 / (2 std^2) ]     (+ const)

    All chains move at once (kernels.mh.metropolis_hastings_batched, on the device); the
    Numba kernel of kernels/mh.py runs the same rule one chain at a time on the CPU."""
    n_steps = 100 if quick else 400
    centres = tensor(eight_gaussians_centres(), dtype="float64", device=device)        # c_k, (8, 2)

    def log_p(x):
        sq = ((expand_dims(x, 1) - centres) ** 2).sum(axis=-1)                          # |x - c_k|^2, (C, 8)
        return logsumexp(-sq / (2 * std ** 2), axis=-1)

    x0 = backend.module_for_device(device).zeros((n_chains, 2))
    result = mh.metropolis_hastings_batched(log_p, x0, n_steps, backend.rng(seed), step_size=step_size)
    accept = float(result.accept_rate.mean())
    title = _common.title(f"random-walk Metropolis-Hastings on 8 Gaussians: {n_chains} chains of {n_steps} "
                          f"steps from the origin (step {step_size}, acceptance {accept:.2f})", quick)
    path = plot.chains_2d(lambda x: eight_gaussians_log_density(x.numpy()), backend.to_numpy(result.samples),
                          out_dir / "mh_chains.png", extent=EXTENT, title=title)
    log(f"energy: MH on 8 Gaussians, {n_chains} chains x {n_steps} steps, acceptance {accept:.2f}")
    return {"chains": n_chains, "steps": n_steps, "step_size": step_size, "acceptance": accept,
            "figures": {Path(path).name: title}}


# ============================================================================ 2. neural EBM

def neural_ebm(out_dir, seed, quick, device, log, batch_size=128):
    """f_theta an MLP on R^2 trained by PCD (Du & Mordatch's loss, NeuralEBM.loss):

        L = mean f(x_model) - mean f(x_data) + alpha (mean f(x_data)^2 + mean f(x_model)^2)

    whose gradient is minus the likelihood gradient above (x_model from Langevin chains
    x' = x + tau grad_x f(x) + sqrt(2 tau) eps, started in a replay buffer) plus a penalty
    that keeps f's scale in check."""
    # --- set-up: fresh data each step, the model, Adam without momentum (as Du & Mordatch)
    steps = 200 if quick else 1000
    rng = backend.rng(seed)
    model = NeuralEBM(2, rng=rng, device=device)
    model.rng = rng                                 # the chains' random numbers
    optimizer = Adam(model.parameters(), lr=5e-3, betas=(0.0, 0.999))
    x_test = sample_toy("eight_gaussians", 2000, backend.rng(seed + 1))
    ll_before = grid_log_likelihood(model, x_test)[0]

    # --- training loop: one PCD step per minibatch
    start = time.perf_counter()
    with _common.one_blas_thread():                 # tiny matrices: BLAS threads only add contention
        for _ in range(steps):
            x = tensor(sample_toy("eight_gaussians", batch_size, rng), dtype=model.dtype, device=device)
            optimizer.zero_grad()
            loss = model.loss(x)
            loss.backward()
            optimizer.step()
        seconds = time.perf_counter() - start
        samples = _common.host(model.sample(500, rng))

    # --- evaluation: Z summed on a grid gives a held-out log-likelihood; MMD^2 of the chains' samples
    ll, log_p = grid_log_likelihood(model, x_test)
    true_ll = float(eight_gaussians_log_density(x_test).mean())
    mmd = evaluate.mmd(samples, x_test[:500])
    meaningful = ll > ll_before
    result = (f"held-out log-likelihood {ll:.2f} (true density {true_ll:.2f}; before training {ll_before:.2f})"
              if meaningful else f"too short to fit (held-out log-likelihood {ll:.2f} vs {ll_before:.2f} "
                                 f"before training): not a result")
    title = _common.title(f"neural EBM on 8 Gaussians, {steps} PCD steps: exp(f) normalised on the grid, "
                          f"Langevin samples; {result}", quick)
    path = plot.density_2d(log_p, out_dir / "ebm_density.png", samples=samples, extent=EXTENT, title=title)
    log(f"energy: neural EBM, {steps} PCD steps in {seconds:.1f} s; held-out log-likelihood {ll_before:.2f} -> "
        f"{ll:.2f} (true density {true_ll:.2f}); MMD^2 of 500 samples to the data {mmd:.3f}")
    return {"steps": steps, "train_seconds": round(seconds, 3), "test_log_likelihood_before": ll_before,
            "test_log_likelihood": ll, "true_log_likelihood": true_ll, "mmd_to_data": mmd,
            "figures": {Path(path).name: title}}


def grid_log_likelihood(model, x, resolution=150):
    """Mean log p(x) with Z(theta) = integral of exp(f) replaced by its Riemann sum over the
    grid of EXTENT (the mass outside is ignored): log p(x) = f(x) - log Z. Returns the mean
    and the grid of log p for the figure."""
    xs, ys, log_f = plot.density_grid(model.f, EXTENT, resolution, dtype=model.dtype, device=model.device)
    cpu = backend.module_for_device("cpu")
    top = log_f.max()
    log_z = float(top + cpu.log(cpu.exp(log_f - top).sum() * (xs[1] - xs[0]) * (ys[1] - ys[0])))
    with no_grad():
        f_x = model.f(tensor(x, dtype=model.dtype, device=model.device)).numpy()
    return float(f_x.mean()) - log_z, log_f - log_z


# ============================================================================ 3. RBM

def restricted_boltzmann_machine(out_dir, seed, quick, device, log):
    """A Bernoulli RBM, E(v, h) = -b^T v - c^T h - v^T W h, trained by CD-1 with momentum:
    the positive phase at the data, the negative phase after one Gibbs sweep v -> h -> v'.
    Monitored by the pseudo-likelihood (the RBM's log-likelihood needs Z: see AIS in
    tinydgm.evaluate and the model's reproduce())."""
    # --- set-up: binarized images, visible biases at the data's log-odds (Hinton's guide)
    rng = backend.rng(seed)
    x = data.load_embedded_binarized("train", seed=seed)["x"].reshape(-1, 784).astype("float32")
    x_test = data.load_embedded_binarized("test", seed=seed)["x"].reshape(-1, 784).astype("float32")
    cpu = backend.module_for_device("cpu")
    p_on = cpu.clip(x.mean(axis=0), 1e-3, 1 - 1e-3)
    model = BernoulliRBM(784, 64 if quick else 200, rng=rng, dtype="float32", device=device)
    model.b.data[...] = backend.to_device(cpu.log(p_on / (1 - p_on)).astype("float32"), device)
    pl_before = float(model.pseudo_likelihood(x_test).mean())

    # --- training: CD-1, minibatches of 20, momentum 0.5
    epochs = 2 if quick else 30
    start = time.perf_counter()
    model.fit(x, epochs=epochs, batch_size=20, lr=0.05, k=1, persistent=False, momentum=0.5, rng=rng)
    seconds = time.perf_counter() - start

    # --- evaluation: pseudo-likelihood, filters (columns of W), Gibbs samples
    pl_after = float(model.pseudo_likelihood(x_test).mean())
    n_filters, sweeps = (64, 100) if quick else (100, 1000)
    figures = {}
    title = _common.title(f"Bernoulli RBM ({model.n_hidden} hidden units, CD-1, {epochs} epochs on binarized "
                          f"MNIST): the first {n_filters} filters (columns of W)", quick)
    figures[Path(plot.rbm_filters(model, out_dir / "rbm_filters.png", n=n_filters, title=title)).name] = title
    title = _common.title(f"Bernoulli RBM: p(v = 1 | h) after {sweeps} Gibbs sweeps of 36 chains", quick)
    figures[Path(plot.rbm_samples(model, out_dir / "rbm_samples.png", n=36, rng=rng, k=sweeps, scale=4,
                                  title=title)).name] = title
    log(f"energy: RBM with {model.n_hidden} hidden units, CD-1 for {epochs} epochs in {seconds:.1f} s; test "
        f"pseudo-log-likelihood {pl_before:.1f} -> {pl_after:.1f} nats/image")
    return {"hidden": model.n_hidden, "epochs": epochs, "train_seconds": round(seconds, 3),
            "pseudo_log_likelihood_before": pl_before, "pseudo_log_likelihood_after": pl_after, "figures": figures}


def main(argv=None):
    return _common.main(run, __doc__, argv, name="energy")


if __name__ == "__main__":
    sys.exit(main())
