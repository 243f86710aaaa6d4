"""Adversarial models: a GAN and a WGAN-GP on the 8-Gaussians toy (samples over the data
density, the discriminator beside the optimal one), a WGAN-GP on the embedded images
(samples and latent interpolations), and the loss curves of all three.

    python demos/adversarial.py [--device cpu|cuda] [--quick] [--out DIR] [--seed N]

A generator x = G(z), z ~ N(0, I), has no density to evaluate; a discriminator D(x) learns
to tell its samples from the data, and the two play (intro lecture part I, "GAN
optimization problem"; Goodfellow et al. 2014)

    min_G max_D V(D, G),   V(D, G) = E_{p_data}[ln D(x)] + E_{p(z)}[ln(1 - D(G(z)))]

1. Data: 8 Gaussians on a ring, whose density is known, so the modes a generator covers
   can be counted (``tinydgm.evaluate.toy_mode_coverage``: a mode is covered when a quarter
   of its share of the samples lies within 3 standard deviations of it) and the optimal
   discriminator drawn.
2. Models: MLP generator and discriminator (``toy_networks.py``), trained as a GAN with the
   non-saturating generator loss and as a WGAN-GP (Gulrajani et al. 2017: a critic without
   the sigmoid, the gradient penalty lambda E[(||grad D(x_hat)|| - 1)^2] through a double
   backward; intro lecture, "Wasserstein GAN").
3. Training: alternating updates (Goodfellow et al., Algorithm 1; n_critic = 5 critic steps
   per generator step for WGAN-GP).
4. Evaluation: samples over the data density; the GAN's D(x) and the WGAN-GP critic's score
   beside D*(x) = p_data / (p_data + p_G) (intro lecture eq. 14), p_G estimated from the
   generator's samples -> adversarial_toys.png
5. Images: a WGAN-GP with MLP players on the embedded 8-bit images (gray levels in [0, 1]):
   samples with the FID analogue of the shipped MNIST classifier beside that of independent
   pixels and of real images -> adversarial_mnist_samples.png; spherical interpolations
   between latent vectors (Radford et al. 2016; intro lecture, "GAN generalizes beyond
   training data") -> adversarial_interpolations.png
6. The losses over training (intro lecture, "experimental comparison GAN and WGAN"): the
   GAN's -V beside its equilibrium value ln 4, the WGAN-GP critics' Wasserstein estimates
   -> adversarial_losses.png
"""
import math
import sys
import time
from pathlib import Path

import _common
from tinydgm import backend, data, plot
from tinydgm.autodiff.core import no_grad, tensor
from tinydgm.autodiff.elementwise import sigmoid
from tinydgm.data.toy import eight_gaussians, eight_gaussians_log_density
from tinydgm.evaluate import mnist_frechet_distance, toy_mode_coverage
from tinydgm.models.adversarial import (GAN, WGANGP, MLPDiscriminator, MLPGenerator, compare_to_optimal,
                                        interpolate, optimal_discriminator, quadrature_grid)
from tinydgm.nn.module import Module

TOY_MODELS = ("GAN", "WGAN-GP")
BOX, GRID = 4.0, 160                 # the grid [-4, 4]^2 of the density panels, 160 cells per axis
KDE_SAMPLES, KDE_WIDTH = 20000, 0.1  # p_G for D*: a Gaussian kernel density estimate of generator samples


def run(out_dir, seed, quick, device, log):
    with _common.one_blas_thread():                 # small matrices: BLAS threads only add contention
        toys = gans_on_toys(out_dir, seed, quick, device, log)
        images = gan_on_images(out_dir, seed, quick, device, log)
    title = _common.title(
        f"Adversarial losses per generator step: GAN and WGAN-GP on 8 Gaussians, WGAN-GP on the embedded "
        f"images ({images['steps']} steps); dashed: the GAN's values at the game's equilibrium, D = 1/2", quick)
    path = plot_losses(toys.pop("history"), images.pop("history"), title, out_dir / "adversarial_losses.png")
    return _common.collect({"toys": toys, "images": images, "losses": {"figures": {path: title}}})


# ============================================================================ 1-4. 2-D toys

def build_toy(name, rng, seed, device):
    """The toy players (hidden widths 64, 64) and the game. WGAN-GP uses the authors' toy
    settings (their released code: lambda = 0.1 on 2-D data, Adam betas (0.5, 0.9)) with a
    larger step, as the tests of wgan.py do."""
    generator = MLPGenerator(2, 2, (64, 64), rng=rng, dtype="float32", device=device)
    discriminator = MLPDiscriminator(2, (64, 64), rng=rng, dtype="float32", device=device)
    if name == "GAN":
        return GAN(generator, discriminator, 2, lr=1e-3, betas=(0.5, 0.999), rng=seed + 1), 256
    return WGANGP(generator, discriminator, 2, n_critic=5, lam=0.1, lr=1e-3, betas=(0.5, 0.9), rng=seed + 1), 5 * 64


def coverage(model, rng, n=2000):
    """Modes covered out of 8 and the fraction of samples within 3 std of a mode, from 2000
    samples; a mode counts as covered when at least a quarter of its fair share (n / 8) of the
    samples lies within 3 std of it (one stray sample near each mode is not coverage)."""
    found = toy_mode_coverage("eight_gaussians", _common.host(model.sample(n, rng=rng)), min_count=n // 32)
    return {"modes_covered": found.modes_covered, "high_quality": found.high_quality}


def gans_on_toys(out_dir, seed, quick, device, log):
    steps = {"GAN": 150, "WGAN-GP": 60} if quick else {"GAN": 1500, "WGAN-GP": 600}
    # --- 1. data: the quadrature grid and the data density on it
    points, cell = quadrature_grid(-BOX, BOX, GRID, dim=2)      # (GRID^2, 2), x varies slowest
    log_p_data = eight_gaussians_log_density(points)
    results, history = {}, {}
    for name in TOY_MODELS:
        # --- 2. the players and the game
        rng = backend.rng(seed)
        model, batch = build_toy(name, rng, seed, device)
        before = coverage(model, backend.rng(seed + 2))
        # --- 3. training: each train_step is k (GAN: 1, WGAN-GP: 5) discriminator/critic steps
        # on their own minibatches of 64 or 256 fresh points, then one generator step
        start = time.perf_counter()
        reports = [model.train_step(tensor(eight_gaussians(batch, rng), dtype="float32", device=device))
                   for _ in range(steps[name])]
        seconds = time.perf_counter() - start
        history[name] = {key: [r[key] for r in reports] for key in reports[0]}
        # --- 4. evaluation: modes, samples, the discriminator on the grid and D*
        after = coverage(model, backend.rng(seed + 2))
        samples = _common.host(model.sample(1000, rng=backend.rng(seed + 3)))
        log_p_g = kde_log_density(_common.host(model.sample(KDE_SAMPLES, rng=backend.rng(seed + 4))), points, cell)
        score = on_host(model.D, device)
        comparison = compare_to_optimal(score, points, log_p_data, log_p_g, cell) if name == "GAN" else None
        with no_grad():
            raw = _common.host(score(tensor(points, dtype="float32")))
        results[name] = {"steps": steps[name], "batch": batch, "train_seconds": round(seconds, 3),
                         "modes_before": before, "modes_after": after, "samples": samples, "raw": raw,
                         "d_star": optimal_discriminator(log_p_data, log_p_g), "log_p_g": log_p_g,
                         "comparison": comparison}
        log(f"adversarial: {name} on 8 Gaussians, {steps[name]} steps ({seconds:.1f} s): modes covered "
            f"{before['modes_covered']} -> {after['modes_covered']} of 8, samples within 3 std of a mode "
            f"{after['high_quality']:.0%}" + (f"; mean |D - D*| {comparison['mean_abs_error']:.3f}" if comparison
                                              else ""))
    title = _common.title(
        "8 Gaussians: GAN (non-saturating loss) and WGAN-GP (lambda = 0.1, 5 critic steps per generator step), "
        "MLP players 64-64; D*(x) = p_data / (p_data + p_G) with p_G a kernel density estimate "
        f"(width {KDE_WIDTH}) of {KDE_SAMPLES:,} generator samples", quick)
    path = plot_toys(results, log_p_data, title, quick, out_dir / "adversarial_toys.png")
    summary = {name: {"steps": r["steps"], "batch": r["batch"], "train_seconds": r["train_seconds"],
                      "modes_covered_before": r["modes_before"]["modes_covered"],
                      "modes_covered": r["modes_after"]["modes_covered"],
                      "high_quality_fraction": r["modes_after"]["high_quality"],
                      **({"against_optimal_discriminator": r["comparison"]} if r["comparison"] else {})}
               for name, r in results.items()}
    return {"models": summary, "history": history, "figures": {path: title}}


def on_host(network, device):
    """The network applied on the model's device to host points, its output back on the host:
    the quadrature tools work on NumPy grids."""
    return lambda x: tensor(_common.host(network(tensor(x.numpy(), dtype="float32", device=device))))


def kde_log_density(samples, points, cell):
    """log p_G on the grid from a Gaussian kernel density estimate of the samples,
    p(x) = 1/n sum_s N(x; x_s, h^2 I), binned: the samples are counted in the grid's cells and
    the counts blurred by the separable Gaussian kernel (K H K^T), exact up to the binning
    (cells of 0.05 against h = 0.1). Samples outside the box are lost (their mass is missing)."""
    cpu = backend.module_for_device("cpu")
    axis = cpu.unique(points[:, 0])
    width = axis[1] - axis[0]
    edges = cpu.concatenate([axis - width / 2, axis[-1:] + width / 2])
    counts, _, _ = cpu.histogram2d(samples[:, 0], samples[:, 1], bins=[edges, edges])
    diff = axis[:, None] - axis[None, :]
    kernel = cpu.exp(-0.5 * (diff / KDE_WIDTH) ** 2) / (math.sqrt(2 * math.pi) * KDE_WIDTH)   # N1(a_i - a_j; h)
    density = kernel @ counts @ kernel.T / len(samples)
    return cpu.log(density.reshape(-1) + 1e-12)         # a floor: no log 0 where no sample came near


def plot_toys(results, log_p_data, title, quick, path):
    """One row per model: samples over the data density, its discriminator (GAN) or critic
    (WGAN-GP) on the grid, and D* for its generator. Where neither density has mass D* is
    undefined: drawn grey."""
    cpu = backend.module_for_device("cpu")
    extent = (-BOX, BOX, -BOX, BOX)

    def image(values):                                   # grid values (x slowest) -> image rows along y
        return values.reshape(GRID, GRID).T

    p_data = cpu.exp(log_p_data)
    fig = _common.figure(13.5, 9.4)
    for row, (name, r) in enumerate(results.items()):
        after, before = r["modes_after"], r["modes_before"]
        ax = fig.add_subplot(2, 3, 3 * row + 1)
        ax.imshow(image(p_data), origin="lower", extent=extent, cmap="Greys")
        ax.scatter(r["samples"][:, 0], r["samples"][:, 1], s=2, c="tab:red", linewidths=0, label="G(z), 1000")
        ax.set_xlim(-BOX, BOX)
        ax.set_ylim(-BOX, BOX)
        ax.legend(loc="upper right", fontsize=8, markerscale=4)
        verdict = "" if after["modes_covered"] > before["modes_covered"] or not quick else " (not a result)"
        ax.set_title(f"{name}, {r['steps']} steps: samples over p_data\nmodes covered {after['modes_covered']}/8 "
                     f"(before training {before['modes_covered']}/8), {after['high_quality']:.0%} within 3 std"
                     f"{verdict}", fontsize=9)
        ax = fig.add_subplot(2, 3, 3 * row + 2)
        if name == "GAN":
            shown = ax.imshow(image(1 / (1 + cpu.exp(-r["raw"]))), origin="lower", extent=extent, cmap="RdBu_r",
                              vmin=0, vmax=1)
            c = r["comparison"]
            ax.set_title(f"trained D(x) = sigmoid(logit)\nmean |D - D*| under (p_data + p_G)/2: "
                         f"{c['mean_abs_error']:.3f}", fontsize=9)
            fig.colorbar(shown, ax=ax, shrink=0.8)
        else:
            shown = ax.imshow(image(r["raw"]), origin="lower", extent=extent, cmap="RdBu_r")
            ax.set_title("trained critic score D(x)\n(no sigmoid: a score, not a probability)", fontsize=9)
            fig.colorbar(shown, ax=ax, shrink=0.8)
        ax = fig.add_subplot(2, 3, 3 * row + 3)
        mixture = 0.5 * (p_data + cpu.exp(r["log_p_g"]))
        d_star = cpu.where(mixture > 1e-3 * mixture.max(), r["d_star"], cpu.nan)
        cmap = plot_cmap("RdBu_r")
        shown = ax.imshow(image(d_star), origin="lower", extent=extent, cmap=cmap, vmin=0, vmax=1)
        ax.set_title(f"D*(x) = p_data / (p_data + p_G) for this generator\n(grey: neither density has mass)",
                     fontsize=9)
        fig.colorbar(shown, ax=ax, shrink=0.8)
    for ax in fig.axes:
        if ax.get_label() != "<colorbar>":
            ax.tick_params(labelsize=7)
    _common.suptitle(fig, title, fontsize=11)
    return _common.save(fig, path)


def plot_cmap(name):
    """A colour map with NaN drawn light grey."""
    from matplotlib import colormaps
    return colormaps[name].with_extremes(bad="0.85")


# ============================================================================ 5. images

class ImageGenerator(Module):
    """x = sigmoid(MLP(z)), (N, 784): gray levels in [0, 1] like the data (the toy generator's
    output is linear). The output bias starts at each pixel's mean log-odds, so G starts at
    the mean image instead of grey noise (as the autoregressive demo starts its models)."""

    def __init__(self, latent_dim, hidden, mean_image, rng, device):
        super().__init__()
        self.net = MLPGenerator(latent_dim, 784, hidden, rng=rng, dtype="float32", device=device)
        cpu = backend.module_for_device("cpu")
        p = cpu.clip(mean_image, 1e-3, 1 - 1e-3)
        bias = self.net.layers[-1].bias
        bias.data[...] = backend.get_array_module(bias.data).asarray(cpu.log(p / (1 - p)))

    def forward(self, z):
        return sigmoid(self.net(z))


def gan_on_images(out_dir, seed, quick, device, log):
    """A WGAN-GP with MLP players on the embedded images' gray levels / 255 (Gulrajani et al.
    2017's settings: lambda = 10, 5 critic steps per generator step, Adam betas (0.5, 0.9) as
    in their released MNIST code, here lr 2e-4). On these 1000 images a plain GAN's
    discriminator won within a few thousand steps and the generator collapsed to one image;
    the critic's penalty keeps its gradient useful."""
    cpu = backend.module_for_device("cpu")
    rng = backend.rng(seed)
    train = data.load_embedded("train")["x"].reshape(-1, 784).astype("float32") / 255.0
    test = data.load_embedded("test")["x"].reshape(-1, 784).astype("float32") / 255.0
    latent_dim = 32
    generator = ImageGenerator(latent_dim, (256, 256), train.mean(axis=0), rng, device)
    critic = MLPDiscriminator(784, (256,), rng=rng, dtype="float32", device=device)
    model = WGANGP(generator, critic, latent_dim, n_critic=5, lam=10.0, lr=2e-4, betas=(0.5, 0.9), rng=seed + 1)
    n_eval = 200 if quick else 500
    fid_before = fid(model, test[:n_eval], seed)
    fid_floor = float(mnist_frechet_distance(train[:n_eval], test[:n_eval]))     # real images: the best reachable
    fid_pixels = float(mnist_frechet_distance(independent_pixels(train, n_eval, rng), test[:n_eval]))

    # --- training: each step is 5 critic steps on minibatches of 64 images, then one generator step
    steps = 30 if quick else 600
    start = time.perf_counter()
    reports = [model.train_step(tensor(train[rng.integers(0, len(train), 5 * 64)], device=device))
               for _ in range(steps)]
    seconds = time.perf_counter() - start
    history = {key: [r[key] for r in reports] for key in reports[0]}

    # --- evaluation: the FID analogue of n_eval samples against as many test images
    fid_after = fid(model, test[:n_eval], seed)
    what = (f"WGAN-GP, MLP generator 32-256-256-784 and critic 784-256-1, {steps} generator steps on "
            f"{len(train)} gray-level MNIST images")
    fid_text = (f"FID analogue to {n_eval} test images {fid_after:.0f} (independent pixels {fid_pixels:.0f}, "
                f"{n_eval} training images {fid_floor:.0f}, before training {fid_before:.0f})")
    beats = fid_after < fid_pixels
    result = fid_text if beats else f"too short to beat independent pixels ({fid_text}): not a result"
    log(f"adversarial: {what} ({seconds:.1f} s): FID analogue {fid_before:.0f} -> {fid_after:.0f}; independent "
        f"pixels {fid_pixels:.0f}, training images {fid_floor:.0f}")
    figures = {}
    samples = _common.host(model.sample(64, rng=backend.rng(seed + 5)))
    title = _common.title(f"{what}: 64 samples; {result}", quick)
    path = plot.image_grid(samples.reshape(-1, 28, 28), out_dir / "adversarial_mnist_samples.png", scale=3,
                           title=title)
    figures[Path(path).name] = title

    # --- interpolations: slerp between two z ~ N(0, I) per row (in 32 dimensions the prior's mass
    # sits near the sphere of radius sqrt(32), which the straight line would leave)
    n_rows, n_steps = (4, 8) if quick else (8, 10)
    ends = _common.host(model.sample_latent(2 * n_rows, rng=backend.rng(seed + 6)))
    rows = [_common.host(model.generate(interpolate(ends[2 * i], ends[2 * i + 1], n_steps, "spherical").data))
            for i in range(n_rows)]
    title = _common.title(f"{what}: spherical interpolation from one z ~ N(0, I) to another along each row "
                          f"(the ends are samples); {result}", quick)
    path = plot.image_grid(cpu.concatenate(rows).reshape(-1, 28, 28), out_dir / "adversarial_interpolations.png",
                           nrow=n_steps, scale=3, title=title)
    figures[Path(path).name] = title
    return {"train_images": len(train), "steps": steps, "train_seconds": round(seconds, 3), "fid_images": n_eval,
            "fid_before": fid_before, "fid": fid_after, "fid_training_images": fid_floor,
            "fid_independent_pixels": fid_pixels, "beats_independent_pixels": beats, "history": history,
            "figures": figures}


def independent_pixels(train, n, rng):
    """n images whose every pixel is copied from a random training image at that position: the
    pixels' marginals and nothing else, the baseline a generator must beat."""
    cpu = backend.module_for_device("cpu")
    rows = rng.integers(0, len(train), size=(n, train.shape[1]))
    return train[rows, cpu.arange(train.shape[1])]


def fid(model, test, seed):
    """The Frechet distance of the shipped MNIST classifier's features (``tinydgm.evaluate``):
    comparable across models here, not with published FIDs."""
    samples = _common.host(model.sample(len(test), rng=backend.rng(seed + 7)))
    return float(mnist_frechet_distance(samples, test))


# ============================================================================ 6. losses

def plot_losses(toy_history, image_history, title, path):
    """Each loss per generator step (thin) and its running mean over 50 steps (thick)."""
    cpu = backend.module_for_device("cpu")
    panels = [("GAN, 8 Gaussians", toy_history["GAN"], ("discriminator_loss", "generator_loss")),
              ("WGAN-GP, 8 Gaussians", toy_history["WGAN-GP"], ("wasserstein_estimate", "gradient_penalty")),
              ("WGAN-GP, MNIST images", image_history, ("wasserstein_estimate", "gradient_penalty"))]
    labels = {"discriminator_loss": "discriminator: -V(D, G)", "generator_loss": "generator: -E ln D(G(z))",
              "wasserstein_estimate": "E D(x) - E D(G(z)) (critic)", "gradient_penalty": "gradient penalty"}
    fig = _common.figure(14, 4.6)
    for i, (name, history, keys) in enumerate(panels):
        ax = fig.add_subplot(1, 3, i + 1)
        for j, key in enumerate(keys):
            values = cpu.asarray(history[key], dtype=float)
            window = min(50, len(values))
            smooth = cpu.convolve(values, cpu.ones(window) / window, mode="valid")
            ax.plot(values, color=f"C{j}", alpha=0.25, lw=0.6)
            ax.plot(cpu.arange(window - 1, len(values)), smooth, color=f"C{j}", lw=1.8, label=labels[key])
        if "discriminator_loss" in keys:        # at the game's equilibrium D = 1/2 everywhere
            ax.axhline(math.log(4), color="C0", ls="--", lw=1, label="-V at equilibrium: ln 4")
            ax.axhline(math.log(2), color="C1", ls="--", lw=1, label="generator loss there: ln 2")
        ax.set_xlabel("generator step")
        ax.set_title(name, fontsize=10)
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    _common.suptitle(fig, title, fontsize=11)
    return _common.save(fig, path)


def main(argv=None):
    return _common.main(run, __doc__, argv, name="adversarial")


if __name__ == "__main__":
    sys.exit(main())
