"""The engine and the data: every op gradient-checked, a Gaussian mixture fitted by maximum
likelihood through the engine, the toy 2-D densities and the embedded images.

    python demos/engine.py [--device cpu|cuda] [--quick] [--out DIR] [--seed N]

1. Gradient check (the oracle): every op of the catalogue against central differences,
   first and second order, in float64 -> gradcheck_report.md, gradcheck_errors.png
2. "My first generative model" (intro lecture eq. 3-5): a Gaussian mixture fitted to
   8 Gaussians on a ring by gradient descent on the negative log-likelihood (the KL to the
   data, intro lecture eq. 16) -> gmm_density.png, gmm_training.png
3. The toy 2-D densities of tinydgm.data, with their exact densities -> toy_densities.png
4. The image set inside the package, and its dynamic binarization -> embedded_images.png
"""
import math
import sys
import time
from pathlib import Path

import _common
from tinydgm import backend, data, plot
from tinydgm.autodiff import catalog
from tinydgm.autodiff.core import no_grad, tensor
from tinydgm.autodiff.functional import exp, expand_dims, log_softmax, logsumexp
from tinydgm.autodiff.gradcheck import gradcheck
from tinydgm.data.toy import eight_gaussians, eight_gaussians_log_density
from tinydgm.optim import Adam

LOG_2PI = math.log(2 * math.pi)


def run(out_dir, seed, quick, device, log):
    results = {
        "gradcheck": gradcheck_report(out_dir, quick, device, log),
        "gmm": gaussian_mixture(out_dir, seed, quick, device, log),
        "toys": toy_densities(out_dir, seed, quick, log),
        "images": embedded_images(out_dir, seed, quick, log),
    }
    return _common.collect(results)


# ============================================================================ 1. gradient check

def gradcheck_report(out_dir, quick, device, log):
    """Every differentiable op against finite differences: tinydgm.gradcheck (first order) and
    tinydgm.gradgradcheck (second order), full Jacobians, float64, on ``device``."""
    start = time.perf_counter()
    results = catalog.check_all(device=device)
    counts = {s: sum(r.status == s for r in results) for s in ("passed", "failed", "missing", "error")}
    (out_dir / "gradcheck_report.md").write_text(report_markdown(results, counts, device,
                                                                 time.perf_counter() - start))
    chart_title = _common.title(f"tinydgm op catalogue: gradient check (float64, {device})", quick)
    chart = plot_errors(results, chart_title, out_dir / "gradcheck_errors.png")
    log(f"gradcheck: {counts['passed']}/{len(results)} catalogue entries pass on {device} "
        f"(failed {counts['failed']}, missing {counts['missing']}, error {counts['error']})")
    return {"entries": len(results), **counts, "not_passed": [r.name for r in results if not r.passed],
            "files": ["gradcheck_report.md", chart], "figures": {chart: chart_title}}


def report_markdown(results, counts, device, seconds):
    failures = [f"- **{r.name}** ({r.status}): {r.message}" for r in results if not r.passed]
    return "\n".join([
        "# Gradient-check report",
        "",
        f"Every differentiable op of the tinydgm engine (`tinydgm.autodiff.catalog`), in float64 on {device},",
        "checked with `tinydgm.gradcheck` (first order) and `tinydgm.gradgradcheck` (second order).",
        "The error columns compare the full Jacobian from the engine (`tinydgm.jacobian`) with",
        "central differences (`tinydgm.numerical_jacobian`):",
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


def plot_errors(results, title, path):
    fig = _common.figure(7.5, 1.0 + 0.16 * len(results))
    ax = fig.add_subplot()
    ys = list(range(len(results)))[::-1]
    floor = 1e-17                                   # log scale: a zero error is drawn at the floor
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
    ax.set_xlabel("worst relative Jacobian error vs central differences (log scale; dashed: gradcheck's rtol)")
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize=7)
    return _common.save(fig, path)


# ============================================================================ 2. Gaussian mixture

def gmm_log_prob(x, logits, mu, log_sigma):
    """Log-density of a Gaussian mixture with diagonal covariances (intro lecture eq. 3-5:
    p(z = k) = pi_k, p(x | z = k) = N(x; mu_k, sigma_k^2), p(x) = sum_z p(z) p(x | z)),
    for x (N, D), summed over z in log space:

        log p(x) = logsumexp_k [ log pi_k + sum_d log N(x_d | mu_kd, sigma_kd^2) ],
        pi = softmax(logits),  sigma = exp(log_sigma),  mu and log_sigma of shape (K, D).
    """
    z = (expand_dims(x, 1) - mu) / exp(log_sigma)                              # (N, K, D)
    log_normal = (-0.5 * z * z - log_sigma - 0.5 * LOG_2PI).sum(axis=-1)       # (N, K)
    return logsumexp(log_softmax(logits, axis=-1) + log_normal, axis=-1)       # (N,)


def gaussian_mixture(out_dir, seed, quick, device, log, k=10):
    """Maximum likelihood for a K-component diagonal GMM on 8 Gaussians on a ring.

    Minimising the mean NLL is minimising KL(p_data || p_model) up to the data's entropy
    (intro lecture eq. 16), so the best reachable NLL is the true density's, drawn as a line.
    K = 10 > 8 modes: with exactly 8 components, gradient steps from random means often
    settle with two modes under one component (a local optimum); spare components avoid it.
    """
    # --- set-up: data from the toy, parameters pi = 1/K, random means, sigma = 1
    n, steps = (512, 200) if quick else (2048, 500)
    rng = backend.rng(seed)
    points = eight_gaussians(n, rng)
    x = tensor(points, dtype="float32", device=device)
    logits = tensor(backend.module_for_device(device).zeros(k), dtype="float32", requires_grad=True)
    mu = tensor(rng.standard_normal((k, 2)), dtype="float32", device=device, requires_grad=True)
    log_sigma = tensor(backend.module_for_device(device).zeros((k, 2)), dtype="float32", requires_grad=True)
    params = (logits, mu, log_sigma)

    # --- the oracle on the model's own loss first: d NLL / d(logits, mu, log_sigma), float64
    checked = gradcheck(lambda *ps: -gmm_log_prob(tensor(points[:16], dtype="float64", device=device), *ps).mean(),
                        [tensor(p.data, dtype="float64", requires_grad=True) for p in params])

    # --- training loop: Adam on the mean NLL (nats per point)
    optimizer = Adam(params, lr=0.05)
    history = []
    for _ in range(steps):
        optimizer.zero_grad()
        nll = -gmm_log_prob(x, *params).mean()
        nll.backward()
        optimizer.step()
        history.append(nll.item())
    with no_grad():
        history.append(-gmm_log_prob(x, *params).mean().item())

    # --- evaluation: the true density's NLL on the same points is the floor
    true_nll = -float(eight_gaussians_log_density(points).mean())
    figures = {}
    title = _common.title(f"GMM ({k} components) fitted by maximum likelihood to 8 Gaussians", quick)
    figures[plot_gmm_density(params, points, title, out_dir / "gmm_density.png", grid=80 if quick else 200)] = title
    title = _common.title("GMM on 8 Gaussians: training curve (NLL per point)", quick)
    figures[plot_gmm_curve(history, true_nll, title, out_dir / "gmm_training.png")] = title
    log(f"gmm: NLL {history[0]:.3f} -> {history[-1]:.3f} nats/point in {steps} Adam steps "
        f"(the true density: {true_nll:.3f}); gradcheck of the loss: {'passed' if checked else 'FAILED'}")
    return {"components": k, "points": n, "steps": steps, "initial_nll": history[0], "final_nll": history[-1],
            "true_density_nll": true_nll, "loss_gradcheck": bool(checked), "figures": figures}


def plot_gmm_density(params, points, title, path, grid, lim=3.5):
    _, _, log_p = plot.density_grid(lambda x: gmm_log_prob(x, *params), (-lim, lim, -lim, lim), grid,
                                    device=params[0].device)
    fig = _common.figure(5.5, 5)
    ax = fig.add_subplot()
    image = ax.imshow(backend.module_for_device("cpu").exp(log_p), origin="lower", extent=(-lim, lim, -lim, lim),
                      cmap="magma")
    ax.scatter(points[:, 0], points[:, 1], s=2, c="white", alpha=0.35, linewidths=0, label="data")
    mu = params[1].numpy()
    ax.scatter(mu[:, 0], mu[:, 1], s=30, marker="x", c="cyan", label="component means")
    fig.colorbar(image, ax=ax, shrink=0.8, label="p(x)")
    _common.suptitle(fig, title, fontsize=11)
    ax.legend(loc="upper right", fontsize=7, facecolor="0.25", labelcolor="white")
    return _common.save(fig, path)


def plot_gmm_curve(history, true_nll, title, path):
    fig = _common.figure(6, 3.5)
    ax = fig.add_subplot()
    ax.plot(range(len(history)), history, label="GMM")
    ax.axhline(true_nll, color="gray", ls="--", label="true density (the floor)")
    ax.set_xlabel("Adam step")
    ax.set_ylabel("NLL (nats / point)")
    _common.suptitle(fig, title, fontsize=11)
    ax.legend()
    return _common.save(fig, path)


# ============================================================================ 3. toy densities

# The square each toy is drawn in (x_min, x_max, y_min, y_max): all of its mass and a margin.
TOY_EXTENTS = {
    "two_moons": (-4.0, 4.0, -4.0, 4.0),
    "eight_gaussians": (-3.2, 3.2, -3.2, 3.2),
    "grid_gaussians": (-4.8, 4.8, -4.8, 4.8),
    "checkerboard": (-2.5, 2.5, -2.5, 2.5),
    "rings": (-3.6, 3.6, -3.6, 3.6),
    "spirals": (-4.0, 4.0, -4.0, 4.0),
    "swiss_roll": (-3.6, 3.6, -3.6, 3.6),
}
TOY_TITLES = {"two_moons": "two moons", "eight_gaussians": "8 Gaussians", "grid_gaussians": "grid of Gaussians",
              "swiss_roll": "swiss roll"}


def toy_extent(name):
    return TOY_EXTENTS.get(name, (-4.5, 4.5, -4.5, 4.5))      # a toy added later: a wide square


def toy_densities(out_dir, seed, quick, log):
    """Every toy of tinydgm.data: samples, and the exact density where it exists. For those,
    two checks: the density's Riemann sum over the square (its mass, ~1) and the samples'
    mean log-density (a Monte Carlo estimate of -H(p): H(p) is the lowest NLL a model can
    reach on that toy, the "true density" line of the flow demos)."""
    n, resolution = (1000, 120) if quick else (2000, 300)
    rng = backend.rng(seed)
    cpu = backend.module_for_device("cpu")
    panels, toys = [], {}
    for name, toy in data.TOYS.items():
        x = toy.sample(n, rng, dtype="float64")
        entry = {"samples": n, "exact_density": toy.log_density is not None}
        log_p = None
        if toy.log_density is not None:
            xs, ys, log_p = plot.density_grid(lambda pts, f=toy.log_density: f(pts.numpy()), toy_extent(name),
                                              resolution, dtype="float64")
            entry["mass_on_grid"] = float(cpu.exp(log_p).sum() * (xs[1] - xs[0]) * (ys[1] - ys[0]))
            entry["mean_log_density"] = float(toy.log_density(x).mean())
        panels.append((name, x, log_p))
        toys[name] = entry
    title = _common.title(f"tinydgm.data toy densities ({n} seeded samples each)", quick)
    path = plot_toys(panels, title, out_dir / "toy_densities.png")
    log("toys: " + ", ".join(f"{name} mass {e['mass_on_grid']:.3f}" for name, e in toys.items() if e["exact_density"])
        + f" (exact densities on the grid); {len(toys)} toys, {n} samples each")
    return {"toys": toys, "figures": {path: title}}


def plot_toys(panels, title, path, cols=4):
    cpu = backend.module_for_device("cpu")
    rows = math.ceil(len(panels) / cols)
    fig = _common.figure(4.0 * cols, 4.0 * rows + 0.4)
    for k, (name, x, log_p) in enumerate(panels):
        ax = fig.add_subplot(rows, cols, k + 1)
        extent, label = toy_extent(name), TOY_TITLES.get(name, name)
        if log_p is not None:
            # p / max p on a colour scale up to 1.5: the densest regions stay mid-tone, so the
            # white samples remain visible on top of them (e.g. the flat checkerboard)
            ax.imshow(cpu.exp(log_p - log_p.max()), origin="lower", extent=extent, cmap="viridis",
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
    _common.suptitle(fig, title)
    return _common.save(fig, path)


# ============================================================================ 4. embedded images

def embedded_images(out_dir, seed, quick, log, n_images=64):
    """The MNIST subset shipped inside the package: ``n_images`` drawn by the seed, as gray
    levels and dynamically binarized, b ~ Bernoulli(x / 255), side by side. Check on the
    whole set: E[b] = x / 255, so the fraction of pixels on matches the mean gray level."""
    rng = backend.rng(seed)
    cpu = backend.module_for_device("cpu")
    x = data.load_embedded("train")["x"]                                   # (1000, 28, 28) uint8
    shown = x[cpu.sort(rng.choice(len(x), size=n_images, replace=False))]
    binary = data.dynamic_binarize(shown, rng)
    whole = data.dynamic_binarize(x, rng)
    side = math.ceil(math.sqrt(n_images))
    gray_grid = plot.tile_images(shown, nrow=side)
    binary_grid = plot.tile_images(binary.astype("float64"), nrow=side)
    pair = cpu.concatenate([gray_grid, cpu.ones((gray_grid.shape[0], 8)), binary_grid], axis=1)
    title = _common.title(f"embedded MNIST subset: {n_images} images (left), dynamically binarized (right)", quick)
    path = plot.image_grid(pair[None], out_dir / "embedded_images.png", padding=0, scale=2, title=title)
    mean_gray, fraction_on = float(x.mean() / 255.0), float(whole.mean())
    log(f"images: {n_images} of {len(x)} embedded images; dynamic binarization of the whole set: "
        f"{fraction_on:.4f} of the pixels on, mean gray level {mean_gray:.4f}")
    return {"embedded_images": int(len(x)), "shown": n_images, "image_shape": list(x.shape[1:]),
            "mean_gray_level": mean_gray, "binarized_fraction_on": fraction_on,
            "figures": {Path(path).name: title}}


def main(argv=None):
    return _common.main(run, __doc__, argv, name="engine")


if __name__ == "__main__":
    sys.exit(main())
