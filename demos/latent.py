"""Latent-variable models: PPCA and factor analysis on a 3-D toy, a VAE with a 2-D latent
space on the embedded binarized images (its manifold and reconstructions), the IWAE bounds
of that VAE against k, the semi-supervised M2's class-conditional grid, and the same VAE
with four priors (N(0, I), a mixture of Gaussians, a VampPrior, a flow) and their ELBO surgery.

    python demos/latent.py [--device cpu|cuda] [--quick] [--out DIR] [--seed N]

Every model here explains x by an unobserved z (tomczak-dgm, "Latent variable models";
intro lecture part II):

    p(x) = integral of p(z) p(x | z) dz,      p(z) = N(0, I)

1. Linear-Gaussian models (intro lecture eqs. 6-8, "My second generative model";
   tomczak-dgm, "Factor Analysis"): p(x|z) = N(W z + b, Psi), so p(x) = N(b, W W^T + Psi)
   and its log-likelihood is exact. PPCA (Psi = sigma^2 I, Tipping & Bishop's closed form)
   and factor analysis (diagonal Psi, EM) on 3-D points near a line with one noisy axis
   -> latent_ppca_fa.png
2. A VAE (Kingma & Welling 2014; intro lecture eqs. 20-35): Gaussian encoder q(z|x),
   Bernoulli decoder p(x|z), z = mu + sigma * eps (eq. 33), trained on the ELBO (eq. 28-35,
   the KL to N(0, I) in closed form, eq. 30) with a 2-D z, so the latent space can be drawn:
   the test images' codes and the decoded grid of z -> vae_manifold.png; test images and
   their reconstructions -> vae_reconstructions.png
3. The IWAE bounds (Burda et al. 2016; intro lecture part II, "Importance weighted
   autoencoders"): F_k = E[log 1/k sum_i p(x, z_i) / q(z_i|x)] of the same VAE for k from 1 to
   1000, rising from the ELBO towards log p(x) -> iwae_bounds.png
4. M2 (Kingma et al. 2014; intro lecture eqs. 36-38, "Semi-supervised learning with VAE"):
   a classifier q(y|x), q(z|x, y) and p(x|y, z) trained on 10 labels per class and the rest
   of the images unlabelled (the sum over classes in U(x) done exactly), with a 2-D z; its
   test accuracy and the class-conditional grid (z fixed per row, the class per column), read
   by the shipped MNIST classifier -> m2_class_grid.png
5. VAE priors (tomczak-dgm "DGM: Variational Auto-Encoder": learnable prior, VampPrior;
   isachenko-l07 "ELBO surgery", "Optimal VAE prior", "Flows-based VAE prior"): the same
   2-D VAE with N(0, I), a learned mixture of Gaussians, a VampPrior and a RealNVP prior. The
   average KL splits as KL(q_agg || p) + I_q[x, z] (Hoffman & Johnson 2016), and only the
   first term depends on the prior, which the aggregated posterior q_agg sets to 0. Each
   prior's density beside its encoder's posterior means -> vae_priors_latent.png; decoded
   prior samples, one row per prior -> vae_priors_samples.png; the ELBO-surgery table ->
   vae_priors_elbo_surgery.md (and summary.json)
"""
import math
import statistics
import sys
import time
from pathlib import Path

import _common
from tinydgm import backend, data, plot
from tinydgm.autodiff.core import no_grad, tensor
from tinydgm.evaluate import bounds_table, classifier_probs
from tinydgm.models.latent import M2, VAE, MLPDecoder, MLPEncoder, class_conditional_grid, paper_alpha
from tinydgm.models.latent import semi_supervised_data
from tinydgm.models.latent.elbo_surgery import elbo_surgery_table, format_elbo_surgery_table
from tinydgm.models.latent.priors import AggregatedPosterior, FlowPrior, MixtureOfGaussiansPrior, VampPrior
from tinydgm.models.flows.realnvp import toy_realnvp
from tinydgm.models.latent.linear_gaussian import PPCA, fit_toy_3d
from tinydgm.optim import Adam
from tinydgm.train import fit


def run(out_dir, seed, quick, device, log):
    with _common.one_blas_thread():                  # small matrices: BLAS threads only add contention
        linear_gaussian = linear_gaussian_toy(out_dir, seed, quick, log)
        images = binarized_images(seed, quick)
        vae_part, vae = vae_on_images(out_dir, images, seed, quick, device, log)
        return _common.collect({
            "linear_gaussian": linear_gaussian,
            "vae": vae_part,
            "iwae_bounds": iwae_bounds(out_dir, vae, images, seed, quick, log),
            "m2": m2_semi_supervised(out_dir, images, seed, quick, device, log),
            "priors": vae_priors(out_dir, images, seed, quick, device, log),
        })


# ============================================================================ 1. PPCA and FA

def linear_gaussian_toy(out_dir, seed, quick, log):
    """x = W z + b + eps, z ~ N(0, 1), eps ~ N(0, diag(0.05, 0.05, 2)): one latent factor and
    one noisy axis. PPCA must put the same noise sigma^2 on every axis, so its line W leans
    towards the noisy one (the top principal direction of the data); FA gives each axis its
    own variance psi_d and finds the generating line (``fit_toy_3d``). Both log-likelihoods
    are exact: log p(x) = log N(x | b, W W^T + Psi)."""
    cpu = backend.module_for_device("cpu")
    toy = fit_toy_3d(n=500, seed=seed)               # CPU, float64: closed form (PPCA) and EM (FA)
    x, ppca, fa = toy["x"], toy["ppca"], toy["fa"]
    true_w = toy["true_W"][:, 0]
    # the same PPCA by EM (Tipping & Bishop eqs. 29-30) must reach the closed form's likelihood
    ppca_em = PPCA(3, 1, rng=backend.rng(seed), dtype="float64").fit(x, method="em")
    with no_grad():
        ll = {name: float(model.log_prob(x).mean().item()) for name, model in
              (("PPCA", ppca), ("FA", fa), ("PPCA (EM)", ppca_em))}
    fits = {}
    for name, model in (("PPCA", ppca), ("FA", fa)):
        w = model.W.numpy()[:, 0]
        cosine = abs(float(w @ true_w)) / float(cpu.linalg.norm(w) * cpu.linalg.norm(true_w))
        fits[name] = {"W": w, "b": model.b.numpy(), "psi": model.psi.numpy(), "log_likelihood": ll[name],
                      "angle_to_true_W_degrees": math.degrees(math.acos(min(1.0, cosine)))}
    log(f"latent: PPCA / FA on the 3-D toy: mean log p(x) {ll['PPCA']:.3f} / {ll['FA']:.3f} nats; angle of W "
        f"to the generating line {fits['PPCA']['angle_to_true_W_degrees']:.1f} / "
        f"{fits['FA']['angle_to_true_W_degrees']:.1f} degrees; PPCA by EM {ll['PPCA (EM)']:.4f}")
    title = _common.title(
        f"One latent factor, 500 points in 3-D, true noise variances (0.05, 0.05, 2): exact mean log p(x) PPCA "
        f"{ll['PPCA']:.3f}, FA {ll['FA']:.3f} nats; angle of W to the true line PPCA "
        f"{fits['PPCA']['angle_to_true_W_degrees']:.1f} deg, FA {fits['FA']['angle_to_true_W_degrees']:.1f} deg",
        quick)
    path = plot_linear_gaussian(toy, fits, title, out_dir / "latent_ppca_fa.png")
    return {"log_likelihood": ll, "angle_to_true_W_degrees": {k: v["angle_to_true_W_degrees"] for k, v in fits.items()},
            "noise_variances": {"true": toy["true_psi"], **{k: v["psi"] for k, v in fits.items()}},
            "ppca_em_iterations": len(ppca_em.log_likelihood_history) - 1,
            "figures": {path: title}}


def plot_linear_gaussian(toy, fits, title, path):
    """Two projections of the data with each model's line b + t W (t in [-3, 3] latent
    standard deviations), and the noise variances per axis."""
    cpu = backend.module_for_device("cpu")
    x, t = toy["x"], cpu.linspace(-3, 3, 2)
    lines = [("generating line", toy["true_W"][:, 0], toy["true_b"], "black", "-"),
             ("PPCA", fits["PPCA"]["W"], fits["PPCA"]["b"], "tab:orange", "--"),
             ("FA", fits["FA"]["W"], fits["FA"]["b"], "tab:blue", ":")]
    fig = _common.figure(13, 4.6)
    for idx, (i, j) in enumerate(((0, 2), (0, 1))):
        ax = fig.add_subplot(1, 3, idx + 1)
        ax.scatter(x[:, i], x[:, j], s=4, c="0.6", linewidths=0, label="data")
        for name, w, b, colour, style in lines:
            ax.plot(b[i] + t * w[i], b[j] + t * w[j], style, color=colour, lw=2, label=name)
        ax.set_xlabel(f"x{i + 1}")
        ax.set_ylabel(f"x{j + 1}" + (" (the noisy axis)" if j == 2 else ""))
        ax.set_title(f"x{i + 1} against x{j + 1}", fontsize=10)
        ax.legend(fontsize=8, loc="upper left")
    ax = fig.add_subplot(1, 3, 3)
    axes = cpu.arange(3)
    for k, (name, psi, colour) in enumerate((("true", toy["true_psi"], "black"), ("PPCA sigma^2", fits["PPCA"]["psi"],
                                                                                   "tab:orange"),
                                             ("FA psi_d", fits["FA"]["psi"], "tab:blue"))):
        ax.bar(axes + (k - 1) * 0.27, psi, width=0.27, color=colour, label=name)
    ax.set_xticks(axes, ["x1", "x2", "x3"])
    ax.set_ylabel("noise variance")
    ax.set_title("diag(Psi) per axis", fontsize=10)
    ax.legend(fontsize=8)
    _common.suptitle(fig, title, fontsize=11)
    return _common.save(fig, path)


# ============================================================================ 2. the VAE

def binarized_images(seed, quick):
    """The embedded MNIST subset, binarized once (a static binarization), as (N, 784) floats,
    with the labels (M2 and the latent scatter use them)."""
    train = data.load_embedded_binarized("train", seed=seed)
    test = data.load_embedded_binarized("test", seed=seed)
    n_train, n_test = (300, 100) if quick else (len(train["x"]), len(test["x"]))
    cpu = backend.module_for_device("cpu")
    return {"x_train": train["x"][:n_train].reshape(n_train, 784).astype("float32"),
            "y_train": train["y"][:n_train].astype(cpu.int64),
            "x_test": test["x"][:n_test].reshape(n_test, 784).astype("float32"),
            "y_test": test["y"][:n_test].astype(cpu.int64)}


def independent_pixels_nll(x_train, x_test):
    """-log p(x) in nats per image under 784 independent Bernoullis with the training
    frequencies: the model with no latent variable at all, the floor a VAE must beat."""
    cpu = backend.module_for_device("cpu")
    p_on = cpu.clip(x_train.mean(axis=0), 1e-3, 1 - 1e-3)
    return float(-(x_test * cpu.log(p_on) + (1 - x_test) * cpu.log(1 - p_on)).sum(axis=1).mean())


def set_decoder_bias(decoder, x_train):
    """Start the Bernoulli logits at each pixel's log-odds (the independent-pixels model), so
    a short run does not spend its steps learning that the border is empty."""
    cpu = backend.module_for_device("cpu")
    p_on = cpu.clip(x_train.mean(axis=0), 1e-3, 1 - 1e-3)
    bias = decoder.net[-1].bias
    bias.data[...] = backend.get_array_module(bias.data).asarray(cpu.log(p_on / (1 - p_on)))


def mean_elbo(vae, x, rng, batch_size=250):
    """Mean ELBO in nats per image over the rows of x (one sample of z each, closed-form KL)."""
    with no_grad():
        return sum(float(vae.elbo(x[i:i + batch_size], rng=rng).sum().item())
                   for i in range(0, len(x), batch_size)) / len(x)


def vae_on_images(out_dir, images, seed, quick, device, log):
    """A VAE with a 2-D latent space, trained on the ELBO (eq. 28-35):

        L(x) = E_q(z|x)[log p(x|z)] - KL(q(z|x) || N(0, I)) <= log p(x)

    Returns (its summary, the trained VAE: the IWAE bounds are computed for it)."""
    # --- set-up: encoder q(z|x) = N(mu(x), diag(sigma^2(x))) (eq. 27) and decoder
    # p(x|z) = prod_d Bernoulli(x_d; sigmoid(logits_d(z))) (eq. 20), z in 2-D
    rng = backend.rng(seed)
    x_train, x_test = images["x_train"], images["x_test"]
    hidden = (128,) if quick else (256,)
    encoder = MLPEncoder(784, 2, hidden, rng=rng, dtype="float32", device=device)
    decoder = MLPDecoder(2, 784, hidden, rng=rng, dtype="float32", device=device)
    set_decoder_bias(decoder, x_train)
    vae = VAE(encoder, decoder, rng=rng)
    baseline = independent_pixels_nll(x_train, x_test)
    elbo_before = mean_elbo(vae, x_test, rng)

    # --- training: Adam on the negative ELBO, -E_q[log p(x|z)] + KL(q(z|x) || N(0, I)) (eq. 28-35)
    epochs = 4 if quick else 40
    start = time.perf_counter()
    history = fit(vae, x_train, Adam(vae.parameters(), lr=2e-3 if quick else 1e-3), epochs=epochs, batch_size=50,
                  seed=seed, progress=False)
    seconds = time.perf_counter() - start

    # --- evaluation: the test ELBO (a lower bound on log p(x)) against independent pixels
    elbo = mean_elbo(vae, x_test, rng)
    beats = -elbo < baseline
    what = f"VAE, 2-D z, MLP 784-{hidden[0]}-2, {epochs} epochs on {len(x_train)} binarized MNIST images"
    if beats:
        result = f"test ELBO {elbo:.1f} nats (independent pixels: {-baseline:.1f})"
    else:
        result = (f"too short to beat independent pixels (test ELBO {elbo:.1f} vs {-baseline:.1f} nats): "
                  "not a result")
    log(f"latent: {what}: test ELBO {elbo_before:.1f} -> {elbo:.1f} nats in {seconds:.1f} s; independent pixels "
        f"{-baseline:.1f}")
    figures = {}

    # the latent space: each test image's posterior mean mu(x), and E[x|z] on a grid of z at the
    # prior's quantiles (Kingma & Welling 2014, fig. 4), so equal areas hold equal prior mass
    with no_grad():
        mu = _common.host(vae.encode(x_test)[0])
        n_grid = 10 if quick else 15
        quantiles = [statistics.NormalDist().inv_cdf((i + 0.5) / n_grid) for i in range(n_grid)]
        cpu = backend.module_for_device("cpu")
        z1, z2 = cpu.meshgrid(quantiles, quantiles[::-1])            # top row: the largest z2
        z = tensor(cpu.stack([z1.ravel(), z2.ravel()], axis=1), dtype="float32", device=device)
        manifold = _common.host(vae.decoder.mean(z)).reshape(n_grid, n_grid, 28, 28)
    title = _common.title(f"{what}; {result}", quick)
    path = plot_manifold(mu, images["y_test"], manifold, quantiles, title, out_dir / "vae_manifold.png")
    figures[path] = title

    # reconstructions: E[x|z] at z = mu(x), rows of test images and rows of their reconstructions
    n_shown = 12
    shown = x_test[:2 * n_shown]
    recon = _common.host(vae.reconstruct(shown)).reshape(-1, 28, 28)
    rows = [shown[:n_shown].reshape(-1, 28, 28), recon[:n_shown], shown[n_shown:].reshape(-1, 28, 28),
            recon[n_shown:]]
    title = _common.title(f"{what}: rows 1 and 3 test images, rows 2 and 4 their reconstructions E[x | z = mu(x)] "
                          f"through the 2-D code; {result}", quick)
    path = plot.image_grid(cpu.concatenate(rows), out_dir / "vae_reconstructions.png", nrow=n_shown, scale=3,
                           title=title)
    figures[Path(path).name] = title
    summary = {"train_images": len(x_train), "test_images": len(x_test), "epochs": epochs,
               "epoch_loss": [float(v) for v in history["epoch_loss"]], "test_elbo_before": elbo_before,
               "test_elbo": elbo, "independent_pixels_log_likelihood": -baseline, "beats_independent_pixels": beats,
               "train_seconds": round(seconds, 3), "figures": figures}
    return summary, vae


def plot_manifold(mu, labels, manifold, quantiles, title, path):
    """Left: the posterior means of the test images, coloured by digit. Right: the decoded grid."""
    cpu = backend.module_for_device("cpu")
    fig = _common.figure(12, 6.4)
    ax = fig.add_subplot(1, 2, 1)
    for digit in range(10):
        mine = labels == digit
        ax.scatter(mu[mine, 0], mu[mine, 1], s=8, color=f"C{digit}", label=str(digit), linewidths=0)
    ax.set_xlabel("z1")
    ax.set_ylabel("z2")
    ax.set_title("test images' posterior means mu(x), by digit", fontsize=10)
    ax.legend(title="digit", fontsize=8, markerscale=2, ncols=2, loc="best")
    n = len(quantiles)
    tiles = cpu.ones((n * 29 + 1, n * 29 + 1))
    for i in range(n):
        for j in range(n):
            tiles[1 + 29 * i:29 * (i + 1), 1 + 29 * j:29 * (j + 1)] = manifold[i, j]
    ax = fig.add_subplot(1, 2, 2)
    ax.imshow(tiles, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ticks = [1 + 29 * i + 14 for i in range(0, n, 2)]
    ax.set_xticks(ticks, [f"{quantiles[i]:.1f}" for i in range(0, n, 2)], fontsize=7)
    ax.set_yticks(ticks, [f"{quantiles[::-1][i]:.1f}" for i in range(0, n, 2)], fontsize=7)
    ax.set_xlabel("z1 (prior quantiles)")
    ax.set_ylabel("z2")
    ax.set_title(f"decoder means E[x|z] on a {n} x {n} grid of z", fontsize=10)
    _common.suptitle(fig, title, fontsize=11)
    return _common.save(fig, path)


# ============================================================================ 3. IWAE bounds

def iwae_bounds(out_dir, vae, images, seed, quick, log):
    """F_k = E[log 1/k sum_i w_i], w_i = p(x, z_i) / q(z_i|x), z_i ~ q(z|x) (Burda et al. 2016):
    F_1 <= F_k <= F_{k+1} <= log p(x). Each point averages n_repeats independent estimates of
    the test set's mean (``tinydgm.evaluate.bounds_table``), its error bar their standard error."""
    rng = backend.rng(seed + 1)
    ks = (1, 10, 100) if quick else (1, 3, 10, 30, 100, 300, 1000)
    n_images, n_repeats = (50, 2) if quick else (100, 3)
    x = images["x_test"][:n_images]
    start = time.perf_counter()
    rows = bounds_table(vae, x, ks=ks, n_repeats=n_repeats, rng=rng)
    seconds = time.perf_counter() - start
    elbo, bounds = rows[0], rows[1:]
    rises = all(b["nats"] >= a["nats"] - 2 * max(a["stderr"], b["stderr"]) for a, b in zip(bounds, bounds[1:]))
    log(f"latent: IWAE bounds of the VAE on {n_images} test images: ELBO {elbo['nats']:.2f}, "
        + ", ".join(f"F_{b['k']} {b['nats']:.2f}" for b in bounds) + f" nats ({seconds:.1f} s)")
    gain = bounds[-1]["nats"] - elbo["nats"]
    title = _common.title(
        f"IWAE bounds F_k of the 2-D VAE (trained on the ELBO) on {n_images} test images, each the mean of "
        f"{n_repeats} estimates: F_{bounds[-1]['k']} = {bounds[-1]['nats']:.2f} nats is {gain:.2f} above the "
        f"ELBO ({elbo['nats']:.2f}); every F_k is a lower bound on log p(x)", quick)
    path = plot_bounds(elbo, bounds, title, out_dir / "iwae_bounds.png")
    return {"test_images": n_images, "repeats": n_repeats, "seconds": round(seconds, 3),
            "elbo": {"nats": elbo["nats"], "stderr": _common.finite(elbo["stderr"])},
            "bounds": [{"k": b["k"], "nats": b["nats"], "stderr": _common.finite(b["stderr"]),
                        "bits_per_dim": b["bits_per_dim"]} for b in bounds],
            "rises_with_k": rises, "figures": {path: title}}


def plot_bounds(elbo, bounds, title, path):
    fig = _common.figure(7.5, 5.2)
    ax = fig.add_subplot(1, 1, 1)
    ks = [b["k"] for b in bounds]
    errors = [0.0 if math.isnan(b["stderr"]) else b["stderr"] for b in bounds]
    ax.errorbar(ks, [b["nats"] for b in bounds], yerr=errors, marker="o", capsize=3, label="F_k (IWAE bound)")
    ax.axhline(elbo["nats"], color="tab:red", ls="--", label="ELBO (closed-form KL, eq. 30)")
    ax.set_xscale("log")
    ax.set_xlabel("k, importance samples per image")
    ax.set_ylabel("mean bound on log p(x), nats per image")
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    _common.suptitle(fig, title, fontsize=11)
    return _common.save(fig, path)


# ============================================================================ 4. M2

def m2_semi_supervised(out_dir, images, seed, quick, device, log):
    """M2 with 10 labels per class: J = sum_labelled [L(x, y) + alpha log q(y|x)] + sum_unlabelled U(x)
    (eq. 38). alpha = 50, the paper's weight per labelled example for MNIST with 100 labels
    (0.1 N / N_l with N = 50,000, ``paper_alpha``): the same formula with this subset's N = 1000
    gives 1, which leaves the classifier almost no signal next to the ELBO's ~150 nats. Its
    test accuracy stands beside the nearest neighbour among the same labelled images (pixels,
    no model), with the binomial standard error of a test set this small."""
    cpu = backend.module_for_device("cpu")
    rng = backend.rng(seed)
    x, y = images["x_train"], images["y_train"]
    per_class = 10
    labelled = cpu.concatenate([cpu.flatnonzero(y == c)[:per_class] for c in range(10)])
    unlabelled = cpu.setdiff1d(cpu.arange(len(x)), labelled)
    # the labelled examples repeated so that they outnumber the unlabelled ones (each repeat
    # counts in J): with 900 unlabelled images and a richer z the decoder learns to ignore y
    x_stream, y_stream = semi_supervised_data(x[labelled], y[labelled], x[unlabelled], repeat=30)
    # a 2-D z holds the style only, so the class must come from y
    hidden, latent_dim = ((128,), 2) if quick else ((256,), 2)
    model = M2(784, 10, latent_dim=latent_dim, hidden=hidden, alpha=paper_alpha(50000, len(labelled)), rng=rng,
               dtype="float32", device=device)
    set_decoder_bias(model.decoder, x)
    epochs = 2 if quick else 18
    start = time.perf_counter()
    history = fit(model, (x_stream, y_stream), Adam(model.parameters(), lr=1e-3), epochs=epochs, batch_size=100,
                  seed=seed, progress=False)
    seconds = time.perf_counter() - start

    # --- evaluation: accuracy of argmax q(y|x) on the test images, against 1-nearest-neighbour
    x_test, y_test = images["x_test"], images["y_test"]
    accuracy = float((_common.host(model.predict(x_test)) == y_test).mean())
    nearest = ((x_test[:, None, :] - x[labelled][None, :, :]) ** 2).sum(axis=-1).argmin(axis=1)
    nn_accuracy = float((y[labelled][nearest] == y_test).mean())
    stderr = math.sqrt(accuracy * (1 - accuracy) / len(y_test))
    beats = accuracy > nn_accuracy + 2 * stderr
    log(f"latent: M2 with {len(labelled)} labels and {len(unlabelled)} unlabelled images, {epochs} epochs "
        f"({seconds:.1f} s): test accuracy {accuracy:.3f}, nearest labelled neighbour {nn_accuracy:.3f}")

    # --- the class-conditional grid: z ~ N(0, I) fixed along each row, class k in column k
    n_rows = 6 if quick else 8
    grid = _common.host(class_conditional_grid(model, n_rows, rng=backend.rng(seed + 2)))
    # does column y look like digit y? the shipped MNIST classifier (tinydgm.evaluate) reads the grid
    read = classifier_probs(grid.reshape(-1, 784)).argmax(axis=1).reshape(n_rows, 10)
    read_as_column = float((read == cpu.arange(10)).mean())
    log(f"latent: M2 class-conditional grid: the MNIST classifier reads column y as digit y in {read_as_column:.0%} "
        "of the images (chance 10%)")
    what = f"M2 ({len(labelled)} labels, {len(unlabelled)} unlabelled binarized MNIST images, {epochs} epochs)"
    if beats:
        result = (f"test accuracy of q(y|x) {accuracy:.1%} ± {stderr:.1%} (nearest labelled neighbour "
                  f"{nn_accuracy:.1%}, chance 10%)")
    elif accuracy > nn_accuracy - 2 * stderr:
        result = (f"test accuracy of q(y|x) {accuracy:.1%} ± {stderr:.1%}, no better than the nearest labelled "
                  f"neighbour's {nn_accuracy:.1%} within that error")
    else:
        result = (f"too short to beat the nearest labelled neighbour (test accuracy {accuracy:.1%} vs "
                  f"{nn_accuracy:.1%}): not a result")
    # a grid read at chance means the decoder has not learnt to use y: its columns are not classes
    grid_text = (f"the shipped MNIST classifier reads column y as digit y in {read_as_column:.0%} of them "
                 "(chance 10%)" + ("" if read_as_column > 0.2 else ": the decoder ignores y, not a result"))
    title = _common.title(f"{what}: E[x | y, z], z fixed along each row, y = 0..9 along the columns; {grid_text}; "
                          f"{result}", quick)
    path = plot.image_grid(grid.reshape(-1, 28, 28), out_dir / "m2_class_grid.png", nrow=10, scale=3, title=title)
    return {"labelled": int(len(labelled)), "unlabelled": int(len(unlabelled)), "alpha": model.alpha,
            "epochs": epochs, "epoch_loss": [float(v) for v in history["epoch_loss"]],
            "test_accuracy": accuracy, "test_accuracy_stderr": stderr, "nearest_neighbour_accuracy": nn_accuracy,
            "beats_nearest_neighbour": beats, "grid_read_as_its_class": read_as_column,
            "train_seconds": round(seconds, 3), "figures": {Path(path).name: title}}


# ============================================================================ 5. VAE priors

N_PRIORS = 4


def prior_variants(encoder, x_train, rng, quick, device):
    """The N_PRIORS priors compared, {name: prior} (None: N(0, I) with its closed-form KL), built
    for the VAE that holds ``encoder`` (VampPrior reuses it)."""
    n_components, n_pseudo = (4, 10) if quick else (10, 50)
    n_couplings = 2 if quick else 4
    flow = toy_realnvp(2, n_couplings=n_couplings, hidden=(16,) if quick else (32, 32), rng=rng,
                       dtype="float32", device=device)
    pseudo = x_train[rng.choice(len(x_train), n_pseudo, replace=False)]     # the paper's "data" initialisation
    return {"N(0, I)": None,
            f"mixture of {n_components} Gaussians": MixtureOfGaussiansPrior(2, n_components, rng=rng,
                                                                           dtype="float32", device=device),
            f"VampPrior, K = {n_pseudo}": VampPrior(encoder, n_pseudo, init=pseudo, rng=rng),
            f"RealNVP flow, {n_couplings} couplings": FlowPrior(flow)}


def vae_priors(out_dir, images, seed, quick, device, log):
    """One 2-D VAE per prior, the same encoder and decoder start and the same data, trained on
    the ELBO with the KL by Monte Carlo (closed form for N(0, I)). The ELBO surgery on n
    training images (isachenko-l07 "ELBO surgery"; Hoffman & Johnson 2016):

        1/n sum_i KL(q(z|x_i) || p(z)) = KL(q_agg(z) || p(z)) + I_q[x, z],   q_agg = 1/n sum_i q(z|x_i)

    A prior nearer the aggregated posterior removes part of the marginal KL; the row
    "q_agg of the N(0, I) VAE" swaps the N(0, I) VAE's prior for its own q_agg over the same
    n points (``AggregatedPosterior``), the optimal prior, whose marginal KL is 0."""
    section_start = time.perf_counter()
    x_train, x_test = images["x_train"], images["x_test"]
    hidden, epochs = ((32,), 1) if quick else ((256,), 40)
    baseline = independent_pixels_nll(x_train, x_test)
    vaes, rows_of_elbo, seconds = {}, {}, {}
    for index in range(N_PRIORS):
        rng = backend.rng(seed)                      # the same encoder/decoder start for every prior
        encoder = MLPEncoder(784, 2, hidden, rng=rng, dtype="float32", device=device)
        decoder = MLPDecoder(2, 784, hidden, rng=rng, dtype="float32", device=device)
        set_decoder_bias(decoder, x_train)
        name, prior = list(prior_variants(encoder, x_train, rng, quick, device).items())[index]
        vae = VAE(encoder, decoder, prior=prior, rng=rng)
        start = time.perf_counter()
        fit(vae, x_train, Adam(vae.parameters(), lr=2e-3 if quick else 1e-3), epochs=epochs, batch_size=50,
            seed=seed, progress=False)
        seconds[name] = round(time.perf_counter() - start, 3)
        rows_of_elbo[name] = mean_elbo(vae, x_test, rng)
        vaes[name] = vae
        log(f"latent: VAE with the {name} prior, {epochs} epoch(s) ({seconds[name]:.1f} s): test ELBO "
            f"{rows_of_elbo[name]:.1f} nats")

    # --- the ELBO surgery on n training images, and the optimal prior q_agg as a reference row
    n_points, n_samples = (50, 4) if quick else (300, 20)
    x_surgery = x_train[:n_points]
    standard = vaes["N(0, I)"]
    optimal = VAE(standard.encoder, standard.decoder, prior=AggregatedPosterior(standard.encoder, x_surgery),
                  rng=backend.rng(seed))
    names = list(vaes) + ["q_agg of the N(0, I) VAE"]
    rows = elbo_surgery_table(list(vaes.values()) + [optimal], x_surgery, names=names, n_samples=n_samples,
                              rng=backend.rng(seed + 3))
    table = format_elbo_surgery_table(rows)
    for r in rows:
        log(f"latent: ELBO surgery, {r['model']}: average KL {r['average_kl']:.2f} = KL(q_agg || p) "
            f"{r['marginal_kl']:.2f} + I_q {r['mutual_info']:.2f} nats (log n = {r['log_n']:.2f})")

    what = (f"2-D VAEs (MLP 784-{hidden[0]}-2), {epochs} epoch{'s' if epochs > 1 else ''} on {len(x_train)} "
            "binarized MNIST images, one per prior")
    beats = all(-elbo < baseline for elbo in rows_of_elbo.values())
    if quick or not beats:
        verdict = (f"too short to beat independent pixels ({-baseline:.1f} nats) with every prior: not a result"
                   if not beats else "a few steps: not a result")
    else:
        verdict = f"all beat independent pixels ({-baseline:.1f} nats)"
    md = out_dir / "vae_priors_elbo_surgery.md"
    md.write_text(f"# ELBO surgery of the VAE priors\n\n{what}; {verdict}.\n"
                  f"Terms on n = {n_points} training images, {n_samples} draws of z each, nats "
                  "(value +- Monte Carlo standard error); average KL = KL(q_agg || p) + I_q[x, z]. "
                  "I_q is the mutual information on these n points, at most log n; the ELBO here is on training "
                  "images (the figures quote the test ELBO).\n\n"
                  f"{table}\n")
    figures = {}
    marginal = ", ".join(f"{r['model']} {r['marginal_kl']:.2f}" for r in rows)
    test_elbo = ", ".join(f"{name} {elbo:.1f}" for name, elbo in rows_of_elbo.items())
    title = _common.title(
        f"{what}: each prior's density p(z) (shaded; contours of log p 2 nats apart) and its encoder's posterior "
        f"means mu(x) of the training images (dots: the aggregated posterior). ELBO surgery on {n_points} "
        f"training images, KL(q_agg || p) in nats: {marginal}; test ELBO {test_elbo}; {verdict}", quick)
    path = plot_priors_latent(vaes, x_train, device, title, out_dir / "vae_priors_latent.png")
    figures[path] = title

    # --- samples: x ~ p(z) p(x|z), the decoder's mean E[x|z] at prior draws, one row per prior
    n_shown = 12
    cpu = backend.module_for_device("cpu")
    rows_of_samples = [_common.host(vae.sample(n_shown, rng=backend.rng(seed + 4), mean=True)).reshape(-1, 28, 28)
                       for vae in vaes.values()]
    title = _common.title(f"{what}: decoder means E[x|z] at z ~ p(z), one row per prior, top to bottom: "
                          + "; ".join(vaes) + f"; {verdict}", quick)
    path = plot.image_grid(cpu.concatenate(rows_of_samples), out_dir / "vae_priors_samples.png", nrow=n_shown,
                           scale=3, title=title)
    figures[Path(path).name] = title
    return {"epochs": epochs, "hidden": hidden[0], "test_elbo": rows_of_elbo, "train_seconds": seconds,
            "seconds": round(time.perf_counter() - section_start, 3),
            "independent_pixels_log_likelihood": -baseline, "beats_independent_pixels": beats,
            "surgery_points": n_points, "surgery_samples": n_samples,
            "elbo_surgery": [{k: (_common.finite(v) if isinstance(v, float) else v) for k, v in r.items()}
                             for r in rows],
            "files": [md.name], "figures": figures}


def plot_priors_latent(vaes, x_train, device, title, path):
    """One panel per prior: log p(z) on a grid (shaded, with contours) and the encoder's means
    mu(x_i) of the training images, so a prior that fits the aggregated posterior puts its
    mass under the dots."""
    cpu = backend.module_for_device("cpu")
    with no_grad():
        means = {name: _common.host(vae.encode(x_train)[0]) for name, vae in vaes.items()}
    fig = _common.figure(4.2 * len(vaes), 5.2)
    for k, (name, vae) in enumerate(vaes.items()):
        mu = means[name]
        centre = cpu.median(mu, axis=0)
        half = max(3.0, float(cpu.percentile(cpu.abs(mu - centre), 99.5)) * 1.15)
        side = cpu.linspace(-half, half, 120)
        z1, z2 = cpu.meshgrid(centre[0] + side, centre[1] + side)
        z = tensor(cpu.stack([z1.ravel(), z2.ravel()], axis=1), dtype="float32", device=device)
        with no_grad():
            log_p = _common.host(vae.prior.log_prob(z)).reshape(z1.shape)
        ax = fig.add_subplot(1, len(vaes), k + 1)
        ax.pcolormesh(z1, z2, cpu.exp(log_p), cmap="Blues", shading="auto")
        ax.contour(z1, z2, log_p, levels=cpu.linspace(log_p.max() - 8, log_p.max(), 5), colors="tab:blue",
                   linestyles="solid", linewidths=0.6)
        ax.scatter(mu[:, 0], mu[:, 1], s=3, c="tab:red", linewidths=0, alpha=0.6)
        ax.set_xlim(centre[0] - half, centre[0] + half)
        ax.set_ylim(centre[1] - half, centre[1] + half)
        ax.set_aspect("equal")
        ax.set_xlabel("z1")
        ax.set_ylabel("z2")
        ax.set_title(f"p(z): {name}", fontsize=10)
    _common.suptitle(fig, title, fontsize=11)
    return _common.save(fig, path)


def main(argv=None):
    return _common.main(run, __doc__, argv, name="latent")


if __name__ == "__main__":
    sys.exit(main())
