"""Normalizing flows: planar, RealNVP and MAF on 2-D toys whose true density is known, and a
small multi-scale RealNVP on the embedded 8-bit images.

    python demos/flows.py [--device cpu|cuda] [--quick] [--out DIR] [--seed N]

A flow maps data x to a base variable z = f(x) with z ~ N(0, I) and counts the change of
volume (intro lecture part II, "Normalizing flows", eq. 31-33; isachenko-l07):

    log p(x) = log N(f(x); 0, I) + log |det df/dx|

so the log-likelihood is exact and training is maximum likelihood.

1. Data: three toys with a closed-form density (8 Gaussians, checkerboard, rings), so
   every model's held-out log-likelihood stands beside the true density's, the ceiling.
2. Models: planar (16 layers, Rezende & Mohamed 2015: a rank-one update with a
   linear-time determinant), RealNVP (8 affine couplings, intro lecture eq. 40-41) and MAF
   (5 MADE layers, isachenko-l07, "Gaussian autoregressive flow (MAF)").
3. Training: Adam on the mean NLL of fresh minibatches of the toy.
4. Evaluation: held-out log-likelihood; density heatmap and samples -> flow_toys.png
5. Images: a two-scale RealNVP on the embedded 8-bit images with uniform dequantization
   and RealNVP's logit pre-processing (isachenko-l07, "Uniform dequantization"), trained on
   the dequantization bound; test bits/dim and samples -> flow_image_samples.png
"""
import math
import sys
import time
from pathlib import Path

import _common
from tinydgm import backend, data, plot
from tinydgm.autodiff.core import no_grad, tensor
from tinydgm.data import toy as toys
from tinydgm.models.flows.maf_iaf import build_maf
from tinydgm.models.flows.dequantization import DequantizedFlow, LogitTransform, UniformDequantization
from tinydgm.models.flows.planar import planar_flow
from tinydgm.models.flows.realnvp import image_realnvp, toy_realnvp
from tinydgm.optim import Adam
from tinydgm.train import fit

TOYS = ("eight_gaussians", "checkerboard", "rings")
TOY_NAMES = {"eight_gaussians": "8 Gaussians", "checkerboard": "checkerboard", "rings": "rings"}
MODELS = ("planar", "RealNVP", "MAF")
EXTENT = (-4.0, 4.0, -4.0, 4.0)


def run(out_dir, seed, quick, device, log):
    return _common.collect({
        "toys": flows_on_toys(out_dir, seed, quick, device, log),
        "image_flow": image_flow(out_dir, seed, quick, device, log),
    })


# ============================================================================ 1-4. 2-D toys

def build(name, rng, device):
    if name == "planar":
        return planar_flow(2, 16, rng=rng, dtype="float32", device=device)
    if name == "RealNVP":
        return toy_realnvp(2, 8, rng=rng, dtype="float32", device=device)
    return build_maf(2, n_layers=5, hidden_sizes=(64, 64), rng=rng, dtype="float32").to(device)


# planar flows stack many weak layers and fit slowly: a larger step
LEARNING_RATE = {"planar": 5e-3, "RealNVP": 1e-3, "MAF": 1e-3}


def train(flow, toy, steps, lr, rng, device, batch_size=512):
    """Maximum likelihood on fresh draws of the toy: Adam on -mean log p(x)."""
    optimizer = Adam(flow.parameters(), lr=lr)
    flow.train()
    losses = []
    for _ in range(steps):
        x = tensor(toys.sample_toy(toy, batch_size, rng), dtype="float32", device=device)
        optimizer.zero_grad()
        loss = flow.loss(x)                          # -mean log p(x), change of variables
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    flow.eval()
    return losses


def mean_log_prob(flow, x, device):
    with no_grad():
        return float(flow.log_prob(tensor(x, dtype="float32", device=device)).mean().item())


def flows_on_toys(out_dir, seed, quick, device, log):
    toy_names = TOYS[:1] if quick else TOYS
    steps = 200 if quick else 1500
    rows = []
    with _common.one_blas_thread():                 # tiny matrices: BLAS threads only add contention
        for toy in toy_names:
            # --- 1. data: held-out points, the true density's mean log p on them (the ceiling), and
            # the best single Gaussian's (what a flow that learnt nothing but the moments reaches)
            x_test = toys.sample_toy(toy, 5000, backend.rng(12345))
            true_ll = float(toys.log_density(toy, x_test.astype("float64")).mean())
            gaussian_ll = best_gaussian_log_likelihood(x_test)
            _, _, true_log_p = plot.density_grid(lambda x, t=toy: toys.log_density(t, x.numpy()), EXTENT, 150,
                                                 dtype="float64")
            row = {"toy": toy, "true_log_likelihood": true_ll, "gaussian_log_likelihood": gaussian_ll,
                   "true_log_p": true_log_p, "models": {}}
            for name in MODELS:
                # --- 2.-3. the model and its training loop
                rng = backend.rng(seed)
                flow = build(name, rng, device)
                start = time.perf_counter()
                losses = train(flow, toy, steps, LEARNING_RATE[name], rng, device)
                seconds = time.perf_counter() - start
                # --- 4. evaluation: held-out log-likelihood, the density on a grid, samples
                ll = mean_log_prob(flow, x_test, device)
                _, _, log_p = plot.density_grid(flow.log_prob, EXTENT, 150, dtype="float32", device=device)
                samples = _common.host(flow.sample(1000, rng=rng))
                row["models"][name] = {"test_log_likelihood": ll, "final_train_nll": losses[-1],
                                       "train_seconds": round(seconds, 3), "log_p": log_p, "samples": samples,
                                       "beats_a_gaussian": ll > gaussian_ll + 0.05}
                log(f"flows: {name} on {TOY_NAMES[toy]}: held-out log-likelihood {ll:.3f} (true density "
                    f"{true_ll:.3f}, best Gaussian {gaussian_ll:.3f}) after {steps} steps in {seconds:.1f} s")
            rows.append(row)
    title = _common.title(f"Flows fitted to 2-D toys ({steps} Adam steps of 512 fresh points): density and "
                          "1000 samples; held-out log-likelihood in nats, the true density's in brackets", quick)
    path = plot_toy_grid(rows, title, quick, out_dir / "flow_toys.png")
    summary = [{"toy": r["toy"], "model": name, "test_log_likelihood": m["test_log_likelihood"],
                "true_log_likelihood": r["true_log_likelihood"], "gaussian_log_likelihood": r["gaussian_log_likelihood"],
                "beats_a_gaussian": m["beats_a_gaussian"], "train_seconds": m["train_seconds"]}
               for r in rows for name, m in r["models"].items()]
    return {"steps": steps, "results": summary, "figures": {path: title}}


def best_gaussian_log_likelihood(x):
    """Mean log N(x; m, S) with the sample mean and covariance: the ceiling of any Gaussian,
    the floor a flow must beat to have learnt more than two moments."""
    cpu = backend.module_for_device("cpu")
    x = x.astype(cpu.float64)
    d = x.shape[1]
    cov = cpu.cov(x, rowvar=False)
    return float(-0.5 * (d * math.log(2 * math.pi) + math.log(cpu.linalg.det(cov)) + d))


def plot_toy_grid(rows, title, quick, path):
    """One row per toy: the true density, then each model's density with its samples."""
    cpu = backend.module_for_device("cpu")
    cols = 1 + len(MODELS)
    fig = _common.figure(3.2 * cols, 3.3 * len(rows) + 0.7)
    for i, row in enumerate(rows):
        panels = [("true density", row["true_log_p"], None, f"log-lik {row['true_log_likelihood']:.2f}")]
        for name, m in row["models"].items():
            verdict = "" if m["beats_a_gaussian"] or not quick else "\n(no better than a Gaussian: not a result)"
            panels.append((name, m["log_p"], m["samples"],
                           f"log-lik {m['test_log_likelihood']:.2f} (true {row['true_log_likelihood']:.2f}){verdict}"))
        for j, (name, log_p, samples, result) in enumerate(panels):
            ax = fig.add_subplot(len(rows), cols, i * cols + j + 1)
            finite = cpu.isfinite(log_p)            # a density far below the float range is drawn as 0
            shown = cpu.where(finite, cpu.exp(log_p - log_p[finite].max()), 0.0)
            ax.imshow(shown, origin="lower", extent=EXTENT, cmap="viridis", interpolation="nearest")
            if samples is not None:
                ax.scatter(samples[:, 0], samples[:, 1], s=1, c="white", alpha=0.5, linewidths=0)
            ax.set_xlim(EXTENT[0], EXTENT[1])
            ax.set_ylim(EXTENT[2], EXTENT[3])
            ax.set_title(f"{name}, {TOY_NAMES[row['toy']]}\n{result}", fontsize=8)
            ax.tick_params(labelsize=6)
    _common.suptitle(fig, title, fontsize=11)
    return _common.save(fig, path)


# ============================================================================ 5. images

def image_flow(out_dir, seed, quick, device, log):
    """A two-scale RealNVP (squeeze, checkerboard and channel couplings, factor-out) on
    x + u, u ~ U[0, 1)^D, in logit space. The bound it trains and reports, per image,

        log P(x) >= E_u[ log p(x + u) ],    bits/dim = -bound / (D ln 2)

    counts the logit transform's log-determinant, so the numbers are in the discrete space."""
    # --- set-up: the embedded 8-bit images, the flow, the dequantization
    rng = backend.rng(seed)
    images = data.load_embedded("train")["x"][:200 if quick else 1000].reshape(-1, 1, 28, 28).astype("float32")
    test = data.load_embedded("test")["x"][:100 if quick else 500].reshape(-1, 1, 28, 28).astype("float32")
    flow = image_realnvp((1, 28, 28), hidden_channels=8 if quick else 16, n_blocks=1, rng=rng, dtype="float32",
                         device=device)
    model = DequantizedFlow(flow, UniformDequantization(rng=rng), LogitTransform())
    bpd_before = held_out_bits_per_dim(model, test, rng, device)
    baseline = independent_pixels_bits_per_dim(images, test)

    # --- training: minibatch Adam on the bound
    epochs = 1 if quick else 4
    start = time.perf_counter()
    fit(model, images, Adam(model.parameters(), lr=1e-3), epochs=epochs, batch_size=50, seed=seed, progress=False)
    seconds = time.perf_counter() - start

    # --- evaluation: test bits/dim (an upper bound) and 36 samples
    bpd = held_out_bits_per_dim(model, test, rng, device)
    x = _common.host(model.sample(36, rng=rng))
    what = f"RealNVP (two scales) after {epochs} epochs on {len(images)} embedded 8-bit MNIST images"
    if bpd < baseline:
        result = f"test {bpd:.2f} bits/dim (independent pixels: {baseline:.2f}; before training {bpd_before:.2f})"
    else:
        result = (f"too short to beat independent pixels (test {bpd:.2f} bits/dim vs {baseline:.2f}; "
                  f"{bpd_before:.2f} before training): not a result")
    title = _common.title(f"{what}: 36 samples; {result}", quick)
    path = plot.image_grid(x.reshape(-1, 28, 28) / 255.0, out_dir / "flow_image_samples.png", scale=3, title=title)
    log(f"flows: image RealNVP test bits/dim {bpd_before:.3f} -> {bpd:.3f} in {epochs} epochs ({seconds:.1f} s); "
        f"independent pixels {baseline:.3f}")
    return {"images": int(len(images)), "test_images": int(len(test)), "epochs": epochs,
            "train_seconds": round(seconds, 3), "test_bits_per_dim_before": bpd_before, "test_bits_per_dim": bpd,
            "independent_pixels_bits_per_dim": baseline, "beats_independent_pixels": bpd < baseline,
            "figures": {Path(path).name: title}}


def independent_pixels_bits_per_dim(train, test):
    """Bits/dim of the test images under 784 independent categoricals over the 256 levels,
    each the training histogram of its pixel with one pseudo-count per level (Laplace): the
    model with no dependencies between pixels, the floor an image model must beat."""
    cpu = backend.module_for_device("cpu")
    train, test = train.reshape(len(train), -1).astype(cpu.int64), test.reshape(len(test), -1).astype(cpu.int64)
    d = train.shape[1]
    counts = cpu.ones((d, 256))
    cpu.add.at(counts, (cpu.broadcast_to(cpu.arange(d), train.shape), train), 1.0)
    log_p = cpu.log(counts / counts.sum(axis=1, keepdims=True))
    return float(-log_p[cpu.arange(d), test].sum(axis=1).mean() / (d * math.log(2)))


def held_out_bits_per_dim(model, x, rng, device, batch_size=100):
    with no_grad():
        return sum(float(model.bits_per_dim(tensor(x[i:i + batch_size], device=device), rng=rng).sum().item())
                   for i in range(0, len(x), batch_size)) / len(x)


def main(argv=None):
    return _common.main(run, __doc__, argv, name="flows")


if __name__ == "__main__":
    sys.exit(main())
