"""``python -m tinydgm demo``: the project's main job on embedded data, on the CPU.

The demo is a list of sections (``SECTIONS``). Each section is a function
``run(out_dir, seed, quick, log) -> dict`` that writes its own files into ``out_dir`` and
returns a small summary (with the list of files it wrote); ``run_demo`` runs them in order
and writes every summary to ``summary.json``. Later model families add a section each.

Sections now:

    gradcheck   the op catalogue checked against finite differences (first and second
                order): gradcheck_report.md and gradcheck_errors.png
    gmm         a 2-D Gaussian mixture fitted by maximum likelihood to 8 Gaussians on a
                ring: gmm_density.png and gmm_training.png
    toys        the toy 2-D densities of tinydgm.data, sampled, with the exact density
                behind the samples where it exists: toy_densities.png
    images      the image set embedded in the package, gray levels beside a dynamic
                binarization: embedded_images.png
    autoregressive
                NADE, MADE and PixelCNN trained briefly on the embedded binarized
                images, a sample grid each (ar_samples_nade.png, ar_samples_made.png,
                ar_samples_pixelcnn.png), and a MADE on 8 Gaussians discretised to a
                16 x 16 grid of 8-bit codes: made_toy_density.png
    ebm         random-walk Metropolis-Hastings chains on 8 Gaussians (mh_chains.png) and a
                neural EBM trained by PCD with Langevin chains (ebm_density.png)
    rbm         a Bernoulli RBM trained by CD-1 on the embedded binarized images: its
                filters (rbm_filters.png) and Gibbs samples (rbm_samples.png)
    flows       planar, RealNVP and MAF flows on 2-D toys (flow_<model>_<toy>.png) and a
                small two-scale RealNVP on the embedded images (flow_image_samples.png)

Figures are drawn with matplotlib's Agg canvas (no display needed); nothing is read from
outside the package and nothing is downloaded.
"""
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from tinydgm import backend, data, plot
from tinydgm.autodiff import catalog
from tinydgm.autodiff.core import no_grad, tensor
from tinydgm.autodiff.functional import exp, expand_dims, log_softmax, logsumexp
from tinydgm.autodiff.gradcheck import gradcheck
from tinydgm.data.toy import eight_gaussians, eight_gaussians_log_density
from tinydgm.optim import Adam

__all__ = ["Section", "SECTIONS", "run_demo", "gmm_log_prob", "fit_gmm", "TOY_EXTENTS", "toy_cells", "cells_to_bits"]

DEFAULT_OUT = "tinydgm_out"
LOG_2PI = math.log(2 * math.pi)


@dataclass(frozen=True)
class Section:
    name: str
    title: str
    run: Callable     # run(out_dir: Path, seed: int, quick: bool, log) -> summary dict


def _figure(width, height):
    """A matplotlib Figure on the Agg canvas: no pyplot, no display, no global state."""
    from matplotlib.figure import Figure
    return Figure(figsize=(width, height), dpi=100, layout="constrained")


# ----------------------------------------------------------------------------- section: gradcheck

def gradcheck_section(out_dir, seed, quick, log):
    """Every op of the catalogue against central differences: a table and a bar chart."""
    start = time.perf_counter()
    results = catalog.check_all(device="cpu")
    counts = {s: sum(r.status == s for r in results) for s in ("passed", "failed", "missing", "error")}
    report = out_dir / "gradcheck_report.md"
    report.write_text(_report_markdown(results, counts, time.perf_counter() - start))
    chart = out_dir / "gradcheck_errors.png"
    _plot_errors(results, chart)
    log(f"gradcheck: {counts['passed']}/{len(results)} catalogue entries pass "
        f"(failed {counts['failed']}, missing {counts['missing']}, error {counts['error']})")
    return {"entries": len(results), **counts,
            "not_passed": [r.name for r in results if not r.passed],
            "files": [report.name, chart.name]}


def _report_markdown(results, counts, seconds):
    failures = [f"- **{r.name}** ({r.status}): {r.message}" for r in results if not r.passed]
    return "\n".join([
        "# Gradient-check report",
        "",
        "Every differentiable op of the tinydgm engine (`tinydgm.autodiff.catalog`), in float64 on",
        "the CPU, checked with `tinydgm.gradcheck` (first order) and `tinydgm.gradgradcheck`",
        "(second order). The error columns compare the full Jacobian from the engine",
        "(`tinydgm.jacobian`) with central differences (`tinydgm.numerical_jacobian`):",
        "",
        "    relative error = max |J_engine - J_numeric| / max(|J_numeric|, 1e-5)   (entrywise)",
        "",
        "and, for the second order, the same for the Jacobian of `(x, v) -> grad(<v, f(x)>, x)`.",
        "Errors near 1e-10 are the rounding of the finite differences themselves.",
        "`smooth = no` marks piecewise-linear ops (zero second derivative almost everywhere).",
        "",
        f"{counts['passed']} of {len(results)} entries pass; failed {counts['failed']}, "
        f"missing {counts['missing']}, error {counts['error']} ({seconds:.1f} s).",
        "",
        catalog.format_table(results),
        "",
        *(["## Not passing", "", *failures, ""] if failures else []),
    ])


def _plot_errors(results, path):
    fig = _figure(7.5, 1.0 + 0.16 * len(results))
    ax = fig.add_subplot()
    ys = list(range(len(results)))[::-1]
    floor = 1e-17          # log scale: a zero error is drawn at the floor
    for offset, attr, label, color in ((0.2, "first_order_error", "first order", "tab:blue"),
                                       (-0.2, "second_order_error", "second order", "tab:orange")):
        values = [max(getattr(r, attr) or 0.0, floor) for r in results]
        ax.barh([y + offset for y in ys], [v - floor for v in values], left=floor, height=0.4,
                label=label, color=color)
    for y, r in zip(ys, results):
        if r.status != "passed":
            ax.text(1e-16, y, r.status.upper(), va="center", fontsize=6, color="tab:red")
    ax.set_xscale("log")
    ax.set_xlim(1e-17, 1.0)
    ax.axvline(1e-3, color="gray", lw=0.8, ls="--")
    ax.set_yticks(ys, [r.name for r in results], fontsize=6)
    ax.set_ylim(-1, len(results))
    ax.set_xlabel("worst relative Jacobian error vs central differences (log scale; dashed: gradcheck rtol)")
    ax.set_title("tinydgm op catalogue: gradient check (float64, CPU)")
    ax.legend(loc="lower right", fontsize=7)
    fig.savefig(path)


# ----------------------------------------------------------------------------- section: gmm

def gmm_log_prob(x, logits, mu, log_sigma):
    """Log-density of a Gaussian mixture with diagonal covariances, for x of shape (N, D):

        log p(x) = logsumexp_k [ log pi_k + sum_d log N(x_d | mu_kd, sigma_kd^2) ],
        pi = softmax(logits),  sigma = exp(log_sigma),  mu and log_sigma of shape (K, D).
    """
    z = (expand_dims(x, 1) - mu) / exp(log_sigma)                              # (N, K, D)
    log_normal = (-0.5 * z * z - log_sigma - 0.5 * LOG_2PI).sum(axis=-1)       # (N, K)
    return logsumexp(log_softmax(logits, axis=-1) + log_normal, axis=-1)       # (N,)


def fit_gmm(x, k, steps, rng, lr=0.05, progress=True):
    """Maximum likelihood for a K-component diagonal GMM by Adam on the mean NLL.

    Returns (params, history) with params = (logits, mu, log_sigma) Tensors and history the
    NLL (nats per point) before each step, then the final NLL.
    """
    from tqdm.auto import tqdm
    xp, d = backend.xp_of(x.data), x.shape[1]
    logits = tensor(xp.zeros(k), dtype=x.dtype, requires_grad=True)           # pi_k = 1/K
    mu = tensor(rng.standard_normal((k, d)), dtype=x.dtype, requires_grad=True)  # means near 0
    log_sigma = tensor(xp.zeros((k, d)), dtype=x.dtype, requires_grad=True)    # sigma = 1
    params = (logits, mu, log_sigma)
    optimizer = Adam(params, lr=lr)
    history = []
    bar = tqdm(range(steps), desc="gmm fit", unit="step", disable=not progress, leave=False)
    for _ in bar:
        for p in params:
            p.grad = None
        nll = -gmm_log_prob(x, *params).mean()
        nll.backward()
        optimizer.step()
        history.append(nll.item())
        bar.set_postfix(nll=f"{history[-1]:.3f}", refresh=False)
    with no_grad():
        history.append(-gmm_log_prob(x, *params).mean().item())
    return params, history


def _gradcheck_gmm_loss(x, params):
    """The oracle on the model's own loss: d NLL / d(logits, mu, log_sigma) in float64."""
    x64 = tensor(x.data[:16], dtype="float64")
    inputs = [tensor(p.data, dtype="float64", requires_grad=True) for p in params]
    return gradcheck(lambda *ps: -gmm_log_prob(x64, *ps).mean(), inputs)


def gmm_section(out_dir, seed, quick, log, k=10):
    """Fit a K-component GMM to 8 Gaussians on a ring; plot the density and the NLL curve.

    K = 10 > 8 modes: with exactly 8 components, gradient steps from random means often
    settle with two modes under one component (a local optimum of the likelihood); a few
    spare components make the fit reach the true density's NLL for most seeds.
    """
    n, steps, grid = (512, 200, 80) if quick else (2048, 500, 200)
    rng = backend.rng(seed)
    points = eight_gaussians(n, rng)
    x = tensor(points, dtype=backend.get_default_dtype())
    params, history = fit_gmm(x, k, steps, rng)
    true_nll = -float(eight_gaussians_log_density(points).mean())   # the density that made the data
    checked = _gradcheck_gmm_loss(x, params)
    density = out_dir / "gmm_density.png"
    curve = out_dir / "gmm_training.png"
    _plot_density(params, points, density, grid)
    _plot_curve(history, true_nll, curve)
    log(f"gmm: NLL {history[0]:.3f} -> {history[-1]:.3f} nats/point in {steps} Adam steps "
        f"(the true density: {true_nll:.3f})")
    return {"components": k, "points": n, "steps": steps, "initial_nll": history[0],
            "final_nll": history[-1], "true_density_nll": true_nll, "loss_gradcheck": bool(checked),
            "files": [density.name, curve.name]}


def _plot_density(params, data, path, grid, lim=3.5):
    xp = backend.module_for_device("cpu")
    axis = xp.linspace(-lim, lim, grid)
    gx, gy = xp.meshgrid(axis, axis)
    points = tensor(xp.stack([gx.ravel(), gy.ravel()], axis=1))
    with no_grad():
        density = exp(gmm_log_prob(points, *params)).numpy().reshape(grid, grid)
    fig = _figure(5.5, 5)
    ax = fig.add_subplot()
    image = ax.imshow(density, origin="lower", extent=(-lim, lim, -lim, lim), cmap="magma")
    ax.scatter(data[:, 0], data[:, 1], s=2, c="white", alpha=0.35, linewidths=0, label="data")
    mu = params[1].numpy()
    ax.scatter(mu[:, 0], mu[:, 1], s=30, marker="x", c="cyan", label="component means")
    fig.colorbar(image, ax=ax, shrink=0.8, label="p(x)")
    ax.set_title("GMM fitted by maximum likelihood (tinydgm autodiff)")
    ax.legend(loc="upper right", fontsize=7, facecolor="0.25", labelcolor="white")
    fig.savefig(path)


def _plot_curve(history, true_nll, path):
    fig = _figure(6, 3.5)
    ax = fig.add_subplot()
    ax.plot(range(len(history)), history, label="model")
    ax.axhline(true_nll, color="gray", ls="--", label="true density")
    ax.set_xlabel("Adam step")
    ax.set_ylabel("negative log-likelihood (nats / point)")
    ax.set_title("GMM training curve")
    ax.legend()
    fig.savefig(path)


# ----------------------------------------------------------------------------- section: toys

# The square each toy is drawn in (x_min, x_max, y_min, y_max): all of its mass and a margin.
TOY_EXTENTS = {
    "two_moons": (-4.0, 4.0, -4.0, 4.0),
    "eight_gaussians": (-3.2, 3.2, -3.2, 3.2),
    "checkerboard": (-2.5, 2.5, -2.5, 2.5),
    "rings": (-3.6, 3.6, -3.6, 3.6),
    "spirals": (-4.0, 4.0, -4.0, 4.0),
    "swiss_roll": (-3.6, 3.6, -3.6, 3.6),
}
TOY_TITLES = {"two_moons": "two moons", "eight_gaussians": "8 Gaussians", "swiss_roll": "swiss roll"}


def _cpu():
    """Figures and summaries are host data: the CPU array module."""
    return backend.module_for_device("cpu")


def toys_section(out_dir, seed, quick, log):
    """Every toy density of ``tinydgm.data``: samples, and the exact density where it exists.

    For the toys with a closed-form density the section also checks it: the density's
    Riemann sum over the drawn square (its mass, ~1) and the mean log-density of the samples
    (a Monte Carlo estimate of -H(p); the entropy H(p) is the lowest NLL a model can reach).
    """
    n, resolution = (1000, 120) if quick else (2000, 300)
    rng = backend.rng(seed)
    panels, toys = [], {}
    for name, toy in data.TOYS.items():
        x = toy.sample(n, rng, dtype="float64")
        extent = TOY_EXTENTS[name]
        entry = {"samples": n, "exact_density": toy.log_density is not None}
        grid = None
        if toy.log_density is not None:
            xs, ys, log_p = plot.density_grid(lambda points, f=toy.log_density: f(points.numpy()), extent,
                                              resolution, dtype="float64")
            cell = (xs[1] - xs[0]) * (ys[1] - ys[0])
            entry["mass_on_grid"] = float(_cpu().exp(log_p).sum() * cell)
            entry["mean_log_density"] = float(toy.log_density(x).mean())
            grid = log_p
        panels.append((name, x, grid, extent))
        toys[name] = entry
    path = out_dir / "toy_densities.png"
    _plot_toys(panels, path)
    exact = [name for name, e in toys.items() if e["exact_density"]]
    log("toys: " + ", ".join(f"{name} mass {toys[name]['mass_on_grid']:.3f}" for name in exact)
        + f" (exact densities on the grid); {len(toys)} toys, {n} samples each")
    return {"toys": toys, "files": [path.name]}


def _plot_toys(panels, path):
    """One panel per toy: the density exp(log p) as a heatmap (where it exists) with the
    samples on top; toys without a closed form show the samples alone."""
    cols = 3
    rows = math.ceil(len(panels) / cols)
    fig = _figure(4.0 * cols, 4.0 * rows + 0.4)
    for k, (name, x, log_p, extent) in enumerate(panels):
        ax = fig.add_subplot(rows, cols, k + 1)
        label = TOY_TITLES.get(name, name)
        if log_p is not None:
            # p / max p on a colour scale up to 1.5: the densest regions stay mid-tone, so the
            # white samples remain visible on top of them (e.g. the flat checkerboard)
            ax.imshow(_cpu().exp(log_p - log_p.max()), origin="lower", extent=extent, cmap="viridis",
                      vmin=0.0, vmax=1.5, interpolation="nearest", aspect="equal")
            ax.scatter(x[:, 0], x[:, 1], s=1.5, c="white", alpha=0.6, linewidths=0)
            ax.set_title(f"{label}: exact p(x) and samples", fontsize=10)
        else:
            ax.set_facecolor("0.96")
            ax.scatter(x[:, 0], x[:, 1], s=1.5, c="tab:blue", alpha=0.5, linewidths=0)
            ax.set_title(f"{label}: samples (no closed-form p)", fontsize=10)
        ax.set_xlim(extent[0], extent[1])
        ax.set_ylim(extent[2], extent[3])
        ax.set_aspect("equal")
        ax.tick_params(labelsize=7)
    fig.suptitle(f"tinydgm.data toy densities ({len(panels[0][1])} seeded samples each)")
    fig.savefig(path)


# ----------------------------------------------------------------------------- section: images

def images_section(out_dir, seed, quick, log, n_images=64):
    """The image set shipped inside the package (an MNIST subset): ``n_images`` drawn by
    ``seed``, as gray levels and dynamically binarized, b ~ Bernoulli(x / 255), side by side.

    Also checks the binarization on the whole set: E[b] = x / 255, so the fraction of pixels
    that are on must match the mean gray level (up to the Monte Carlo error of ~1e-3).
    """
    rng = backend.rng(seed)
    x = data.load_embedded("train")["x"]                                   # (1000, 28, 28) uint8
    shown = x[_cpu().sort(rng.choice(len(x), size=n_images, replace=False))]
    binary = data.dynamic_binarize(shown, rng)
    whole = data.dynamic_binarize(x, rng)
    side = int(math.ceil(math.sqrt(n_images)))
    gray_grid = plot.tile_images(shown, nrow=side)
    binary_grid = plot.tile_images(binary.astype("float64"), nrow=side)
    gap = _cpu().ones((gray_grid.shape[0], 8))
    pair = _cpu().concatenate([gray_grid, gap, binary_grid], axis=1)
    path = out_dir / "embedded_images.png"
    plot.image_grid(pair[None], path, padding=0, scale=2,
                    title=f"embedded MNIST subset: {n_images} images (left), dynamically binarized (right)")
    mean_gray = float(x.mean() / 255.0)
    fraction_on = float(whole.mean())
    log(f"images: {n_images} of {len(x)} embedded images; dynamic binarization of the whole set: "
        f"{fraction_on:.4f} of the pixels on, mean gray level {mean_gray:.4f}")
    return {"embedded_images": int(len(x)), "shown": n_images, "image_shape": list(x.shape[1:]),
            "mean_gray_level": mean_gray, "binarized_fraction_on": fraction_on, "files": [path.name]}


# ----------------------------------------------------------------------------- section: autoregressive

def _fit_quietly(model, x, epochs, batch_size, lr, seed):
    """train.fit without progress bars; returns the per-epoch mean training loss (nats/example)."""
    from tinydgm.train import fit
    history = fit(model, x, Adam(model.parameters(), lr=lr), epochs=epochs, batch_size=batch_size, seed=seed,
                  progress=False)
    return [float(v) for v in history["epoch_loss"]]


def _mean_nll(model, x, batch_size=250):
    """Mean -log p(x) in nats over the rows of x, in batches, without a graph."""
    total = 0.0
    with no_grad():
        for start in range(0, len(x), batch_size):
            chunk = tensor(x[start:start + batch_size], dtype=backend.get_default_dtype())
            total += -float(model.log_prob(chunk).numpy().sum())
    return total / len(x)


def _image_model(name, quick, rng):
    """The small demo model of each family (sized so the whole section takes a minute or two)."""
    from tinydgm.models.autoregressive import made, nade, pixelcnn
    if name == "NADE":
        return nade.NADE(784, 50 if quick else 100, rng=rng)
    if name == "MADE":
        # random connectivity: fewer than D - 1 = 783 units cannot hold every degree evenly
        return made.MADE(784, [256] if quick else [500], connectivity="random", rng=rng)
    return pixelcnn.PixelCNN(channels=8 if quick else 32, n_residual=1 if quick else 3, rng=rng)


AR_IMAGE_MODELS = ("NADE", "MADE", "PixelCNN")


def autoregressive_section(out_dir, seed, quick, log):
    """NADE, MADE and PixelCNN trained briefly on the embedded binarized images, a grid of
    samples from each (drawn by the fast sampling kernels), and a MADE fitted to a
    discretised 2-D density (8 Gaussians on a 16 x 16 grid, each cell written as 8 bits) whose
    exact probabilities of all 256 cells are drawn next to the data histogram."""
    rng = backend.rng(seed)
    train = data.load_embedded_binarized("train", seed=seed)["x"]
    test = data.load_embedded_binarized("test", seed=seed)["x"]
    n_train = 300 if quick else len(train)
    x_train = train[:n_train].reshape(n_train, 784).astype("float32")
    x_test = test.reshape(len(test), 784).astype("float32")
    epochs = {"NADE": 3 if quick else 20, "MADE": 5 if quick else 25, "PixelCNN": 2 if quick else 15}
    lr = {"NADE": 1e-2, "MADE": 3e-3, "PixelCNN": 2e-3}
    n_samples = 16 if quick else 36
    models, files = {}, []
    for name in AR_IMAGE_MODELS:
        start = time.perf_counter()
        model = _image_model(name, quick, rng)
        x_fit = x_train.reshape(-1, 1, 28, 28) if name == "PixelCNN" else x_train
        curve = _fit_quietly(model, x_fit, epochs[name], 32 if name == "PixelCNN" else 100, lr[name], seed)
        train_seconds = time.perf_counter() - start
        x_eval = x_test[:100] if quick else x_test
        nll = _mean_nll(model, x_eval.reshape(-1, 1, 28, 28) if name == "PixelCNN" else x_eval)
        start = time.perf_counter()
        samples = model.sample(n_samples, rng=rng, method="fast").numpy()
        sample_seconds = time.perf_counter() - start
        path = out_dir / f"ar_samples_{name.lower()}.png"
        plot.image_grid(samples.reshape(n_samples, 28, 28), path, scale=4,
                        title=f"{name}: {n_samples} samples after {epochs[name]} epochs on "
                              f"{n_train} images (test NLL {nll:.1f} nats)")
        files.append(path.name)
        models[name] = {"parameters": int(model.num_parameters()), "epochs": epochs[name],
                        "epoch_loss": curve, "test_nll": nll, "test_images": int(len(x_eval)),
                        "train_seconds": round(train_seconds, 3), "sample_seconds": round(sample_seconds, 3),
                        "samples": n_samples, "sample_fraction_on": float(samples.mean())}
        log(f"autoregressive: {name} {curve[0]:.1f} -> {curve[-1]:.1f} nats/image (train) in {epochs[name]} "
            f"epochs, test NLL {nll:.1f}; {n_samples} samples in {sample_seconds:.2f} s")
    toy = _made_toy(out_dir, seed, quick, log)
    files.append(toy.pop("file"))
    return {"train_images": n_train, "data_fraction_on": float(x_train.mean()), "models": models,
            "made_toy": toy, "files": files}


TOY_BITS = 4                      # bits per coordinate: a 16 x 16 grid
TOY_EXTENT = 3.2                  # the grid covers [-3.2, 3.2]^2


def toy_cells(points, bits=TOY_BITS, extent=TOY_EXTENT):
    """The grid cell (i, j) of each 2-D point, i from x and j from y, on a 2^bits x 2^bits grid
    over [-extent, extent]^2 (points outside go to the border cells)."""
    xp = _cpu()
    k = 2 ** bits
    cells = xp.floor((points + extent) / (2 * extent) * k).astype(xp.int64)
    return xp.clip(cells, 0, k - 1)


def cells_to_bits(cells, bits=TOY_BITS):
    """(N, 2) cell indices -> (N, 2 bits) binary codes: the bits of i then of j, most
    significant first (x_1 is the coarsest half of the x axis)."""
    xp = _cpu()
    shifts = xp.arange(bits - 1, -1, -1)
    return ((cells[:, :, None] >> shifts) & 1).reshape(len(cells), 2 * bits).astype(xp.float64)


def _made_toy(out_dir, seed, quick, log):
    """A MADE with D = 8 binary inputs on 8 Gaussians discretised to 16 x 16 cells; its exact
    p(cell) for all 256 codes (a normalised distribution: the sum is checked) beside the
    histogram of the training data and the true cell probabilities."""
    from tinydgm.models.autoregressive import made
    xp = _cpu()
    rng = backend.rng(seed)
    k = 2 ** TOY_BITS
    n = 5000 if quick else 20000
    cells = toy_cells(eight_gaussians(n, rng))
    x = cells_to_bits(cells).astype("float32")
    model = made.MADE(2 * TOY_BITS, [64, 64], rng=rng)
    epochs = 15 if quick else 80
    curve = _fit_quietly(model, x, epochs, 100, 3e-3, seed)
    every = xp.stack(xp.meshgrid(xp.arange(k), xp.arange(k), indexing="ij"), axis=-1).reshape(-1, 2)
    with no_grad():
        log_p = model.log_prob(tensor(cells_to_bits(every), dtype=backend.get_default_dtype())).numpy()
    p_model = xp.exp(log_p.astype(xp.float64)).reshape(k, k)
    hist = xp.zeros((k, k))
    xp.add.at(hist, (cells[:, 0], cells[:, 1]), 1.0)
    hist /= n
    # the true cell probabilities: the 8-Gaussians density integrated over each cell (midpoint rule, 8x8 per cell)
    fine = 8 * k
    axis = -TOY_EXTENT + (xp.arange(fine) + 0.5) * (2 * TOY_EXTENT / fine)
    gx, gy = xp.meshgrid(axis, axis, indexing="ij")
    dens = xp.exp(eight_gaussians_log_density(xp.stack([gx.ravel(), gy.ravel()], axis=1))).reshape(fine, fine)
    p_true = dens.reshape(k, 8, k, 8).sum(axis=(1, 3))
    p_true /= p_true.sum()
    entropy_hist = -float((hist[hist > 0] * xp.log(hist[hist > 0])).sum())
    nll_train = -float((hist * log_p.reshape(k, k)).sum())
    path = out_dir / "made_toy_density.png"
    _plot_toy_cells([(p_true, "true cell probabilities"), (hist, f"data histogram ({n} samples)"),
                     (p_model, "MADE p(x) of all 256 codes")], path)
    log(f"autoregressive: MADE on 8 Gaussians (16x16 cells, 8 bits): NLL {nll_train:.3f} nats vs the "
        f"histogram's entropy {entropy_hist:.3f}; sum of p over all 256 codes {float(p_model.sum()):.6f}")
    return {"bits": 2 * TOY_BITS, "samples": n, "epochs": epochs, "epoch_loss": curve,
            "probability_sum": float(p_model.sum()), "train_nll": nll_train, "histogram_entropy": entropy_hist,
            "total_variation_to_histogram": 0.5 * float(xp.abs(p_model - hist).sum()),
            "total_variation_to_true": 0.5 * float(xp.abs(p_model - p_true).sum()), "file": path.name}


def _plot_toy_cells(panels, path):
    fig = _figure(4.0 * len(panels), 4.3)
    vmax = max(float(p.max()) for p, _ in panels)
    e = TOY_EXTENT
    for idx, (p, title) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), idx + 1)
        image = ax.imshow(p.T, origin="lower", extent=(-e, e, -e, e), cmap="viridis", vmin=0.0, vmax=vmax,
                          interpolation="nearest")
        ax.set_title(title, fontsize=10)
        ax.tick_params(labelsize=7)
    fig.colorbar(image, ax=fig.axes, shrink=0.8, label="probability of the cell")
    fig.suptitle("8 Gaussians on a 16 x 16 grid, each cell as 8 bits (4 for x, 4 for y): MADE's exact probabilities")
    fig.savefig(path)


# ----------------------------------------------------------------------------- energy-based models

def ebm_section(out_dir, seed, quick, log):
    """Random-walk Metropolis-Hastings chains (the Numba kernel) on the 8-Gaussians density,
    and a neural EBM p(x) ~ exp(f(x)) fitted to 8 Gaussians by persistent contrastive
    divergence with Langevin chains: its density, normalised on a grid, with chain samples,
    and the kernel MMD^2 of those samples to the data before and after training."""
    from tinydgm.data.toy import sample_toy
    from tinydgm.models.energy import ebm

    files = ["mh_chains.png", "ebm_density.png"]
    _, accept = ebm.mh_chains_on_toy(out_dir / files[0], n_steps=100 if quick else 400, seed=seed)
    rng = backend.rng(seed)
    steps = 30 if quick else 1000
    with _one_blas_thread():                 # tiny matrices: BLAS threads only add contention
        model, history = ebm.fit_neural_ebm_on_toy("eight_gaussians", n_iters=steps, seed=seed)
        data_points = sample_toy("eight_gaussians", 500, rng)
        samples = model.sample(500, rng).numpy()
        mmd_after = float(ebm.mmd(samples, data_points))
    initial = ebm.NeuralEBM(2, rng=backend.rng(seed)).sample(500, backend.rng(seed)).numpy()
    mmd_before = float(ebm.mmd(initial, data_points))
    ebm.plot_density_and_samples(model, out_dir / files[1], samples=samples,
                                 title=f"neural EBM, {steps} PCD steps, MMD^2 {mmd_after:.3f}")
    log(f"ebm: MH acceptance {float(accept.mean()):.2f}; neural EBM {steps} steps in {history['time_s']:.1f} s, "
        f"MMD^2 to the data {mmd_before:.3f} (initial chains) -> {mmd_after:.3f}")
    return {"mh_acceptance": float(accept.mean()), "ebm_steps": steps, "ebm_train_seconds": history["time_s"],
            "mmd_initial": mmd_before, "mmd_trained": mmd_after, "files": files}


def _one_blas_thread():
    """Limit BLAS to one thread where threadpoolctl is installed (a no-op otherwise)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:                     # optional: only the speed differs
        import contextlib
        return contextlib.nullcontext()
    return threadpool_limits(1)


def rbm_section(out_dir, seed, quick, log):
    """A Bernoulli RBM trained by CD-1 on the embedded binarized images: its filters (columns
    of W), Gibbs samples, and the pseudo-likelihood before and after training."""
    from tinydgm.models.energy.rbm import BernoulliRBM

    rng = backend.rng(seed)
    x = data.load_embedded_binarized("train", seed=seed)["x"].reshape(-1, 784).astype("float32")
    x_test = data.load_embedded_binarized("test", seed=seed)["x"].reshape(-1, 784).astype("float32")
    model = BernoulliRBM(784, 64 if quick else 200, rng=rng, dtype="float32")
    model.b.data[...] = _visible_logits(x)  # Hinton's guide: visible biases at the data's log-odds
    before = float(model.pseudo_likelihood(x_test).mean())
    epochs = 2 if quick else 30
    start = time.perf_counter()
    model.fit(x, epochs=epochs, batch_size=20, lr=0.05, k=1, persistent=False, momentum=0.5, rng=rng)
    seconds = time.perf_counter() - start
    after = float(model.pseudo_likelihood(x_test).mean())
    files = ["rbm_filters.png", "rbm_samples.png"]
    plot.rbm_filters(model, out_dir / files[0], n=64 if quick else 100)
    plot.rbm_samples(model, out_dir / files[1], n=36, rng=rng, k=100 if quick else 1000)
    log(f"rbm: {model.n_hidden} hidden units, CD-1 for {epochs} epochs in {seconds:.1f} s; test pseudo-log-likelihood "
        f"{before:.1f} -> {after:.1f} nats/image")
    return {"hidden": model.n_hidden, "epochs": epochs, "train_seconds": seconds,
            "pseudo_log_likelihood_before": before, "pseudo_log_likelihood_after": after, "files": files}


def _visible_logits(x, eps=1e-3):
    p = _cpu().clip(x.mean(axis=0), eps, 1 - eps)
    return _cpu().log(p / (1 - p)).astype(x.dtype)


# ----------------------------------------------------------------------------- flows

def flows_section(out_dir, seed, quick, log):
    """Planar, RealNVP and MAF flows fitted to 2-D toys (density heatmaps with samples, test
    log-likelihood next to the true density's), and the sample grid of a small multi-scale
    RealNVP trained briefly on the embedded images (uniform dequantization, logit space)."""
    from tinydgm.models.flows import realnvp
    from tinydgm.models.flows.autoregressive import build_maf

    toys = ("eight_gaussians",) if quick else ("eight_gaussians", "two_moons", "checkerboard")
    steps = 30 if quick else 1500
    with _one_blas_thread():
        rows = realnvp.flow_toys_panel(out_dir, toys=toys, steps=steps, seed=seed, log=None)
        for name in toys:
            rng = backend.rng(seed)
            flow = build_maf(2, n_layers=5, hidden_sizes=(64, 64), rng=rng, dtype="float32")
            realnvp.fit_toy(flow, name, steps=steps, lr=1e-3, rng=rng)
            ll = realnvp.toy_log_likelihood(flow, name)
            samples = backend.to_numpy(flow.sample(2000, rng=rng).data)
            _, _, log_p = plot.density_grid(flow.log_prob, dtype="float32")
            # MAF's log-scales are soft-bounded (|alpha| < 8), yet far from the data a stack of
            # exp(-alpha) can overflow; those grid points are drawn as zero density and counted
            overflow = ~_cpu().isfinite(log_p)
            log_p[overflow] = -math.inf
            path = out_dir / f"flow_maf_{name}.png"
            plot.density_2d(log_p, path, samples=samples, title=f"MAF, {name}: log-lik {ll:.2f}")
            true = next(r["true_log_likelihood"] for r in rows if r["toy"] == name)
            rows.append({"model": "maf", "toy": name, "path": str(path), "test_log_likelihood": ll,
                         "true_log_likelihood": true, "grid_overflow_fraction": float(overflow.mean())})
    keys = ("model", "toy", "test_log_likelihood", "true_log_likelihood", "grid_overflow_fraction")
    toy_rows = [{k: r[k] for k in keys if k in r} for r in rows]
    for r in toy_rows:
        true = "" if r["true_log_likelihood"] is None else f" (true density {r['true_log_likelihood']:.2f})"
        log(f"flows: {r['model']} on {r['toy']}: test log-likelihood {r['test_log_likelihood']:.2f}{true}")
    image = _image_flow(out_dir, seed, quick, log)
    files = [Path(r["path"]).name for r in rows] + [image.pop("file")]
    return {"toys": toy_rows, "image_flow": image, "files": files}


def _image_flow(out_dir, seed, quick, log):
    """A two-scale RealNVP on the embedded 8-bit images: a few epochs, then 36 samples."""
    from tinydgm.models.flows import realnvp
    from tinydgm.models.flows.dequantization import DequantizedFlow, LogitTransform, UniformDequantization

    rng = backend.rng(seed)
    images = data.load_embedded("train")["x"][:200 if quick else 1000].reshape(-1, 1, 28, 28)
    flow = realnvp.image_realnvp((1, 28, 28), hidden_channels=8 if quick else 16, n_blocks=1, rng=rng,
                                 dtype="float32")
    model = DequantizedFlow(flow, UniformDequantization(rng=rng), LogitTransform())
    epochs = 1 if quick else 4
    start = time.perf_counter()
    curve = _fit_quietly(model, images.astype("float32"), epochs, batch_size=50, lr=1e-3, seed=seed)
    seconds = time.perf_counter() - start
    x = backend.to_numpy(model.sample(36, rng=rng).data)
    name = "flow_image_samples.png"
    plot.image_grid(x.reshape(-1, 28, 28) / 255.0, out_dir / name,
                    title=f"RealNVP, {epochs} epochs, {len(images)} images")
    log(f"flows: image RealNVP {curve[0] / (784 * math.log(2)):.2f} -> {curve[-1] / (784 * math.log(2)):.2f} "
        f"bits/dim (training bound) in {seconds:.1f} s")
    return {"images": int(len(images)), "epochs": epochs, "train_seconds": seconds,
            "bits_per_dim": [c / (784 * math.log(2)) for c in curve], "file": name}


# ----------------------------------------------------------------------------- the demo

SECTIONS = [
    Section("gradcheck", "Gradient check of every op", gradcheck_section),
    Section("gmm", "Gaussian mixture by maximum likelihood", gmm_section),
    Section("toys", "Toy 2-D densities", toys_section),
    Section("images", "The embedded image set", images_section),
    Section("autoregressive", "NADE, MADE and PixelCNN on binarized images; MADE on a discretised 2-D density",
            autoregressive_section),
    Section("ebm", "Metropolis-Hastings chains and a neural EBM on 8 Gaussians", ebm_section),
    Section("rbm", "A Bernoulli RBM on the embedded binarized images", rbm_section),
    Section("flows", "Planar, RealNVP and MAF flows on 2-D toys; a small image RealNVP", flows_section),
]


def run_demo(out_dir=DEFAULT_OUT, seed=0, quick=False, log=print):
    """Run every section, writing into ``out_dir``; returns the summary (also in summary.json)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = {"seed": seed, "quick": quick, "sections": {}}
    for section in SECTIONS:
        start = time.perf_counter()
        result = section.run(out_dir, seed, quick, log)
        result["seconds"] = round(time.perf_counter() - start, 3)
        summary["sections"][section.name] = result
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
