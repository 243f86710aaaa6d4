"""Autoregressive models: NADE, MADE and PixelCNN on binarized images, and a MADE whose exact
probabilities of every outcome can be drawn (a 2-D density discretised to 8 bits).

    python demos/autoregressive.py [--device cpu|cuda] [--quick] [--out DIR] [--seed N]

Every model here factorises the image with the chain rule (intro lecture part III, eq. 42):

    p(x) = prod_d p(x_d | x_<d),      log p(x) = sum_d log p(x_d | x_<d)

so log p(x) is exact and the training loss is the exact negative log-likelihood.

1. Data: the embedded MNIST subset, binarized once (a static binarization).
2. Models: NADE (shared input weights, eq. 42's conditionals by the history recursion),
   MADE (one masked MLP pass gives all conditionals), PixelCNN (masked convolutions), each
   with its output biases at the data's log-odds, so before any step each pixel is already
   on as often as in the data (the independent-pixels baseline).
3. Training: tinydgm.train.fit, Adam on the mean NLL (nats per image).
4. Evaluation: the exact test NLL, next to the independent-pixels baseline; samples drawn
   pixel by pixel -> ar_samples_nade.png, ar_samples_made.png, ar_samples_pixelcnn.png
5. A MADE on 8 Gaussians discretised to 16 x 16 cells, each cell as 8 bits: its exact
   probabilities of all 256 codes beside the data histogram -> made_toy_density.png
"""
import math
import sys
import time
from pathlib import Path

import _common
from tinydgm import backend, data, plot
from tinydgm.autodiff.core import no_grad, tensor
from tinydgm.data.toy import eight_gaussians, eight_gaussians_log_density
from tinydgm.models.autoregressive import made, nade, pixelcnn
from tinydgm.optim import Adam
from tinydgm.train import fit

MODELS = ("NADE", "MADE", "PixelCNN")


def run(out_dir, seed, quick, device, log):
    cpu = backend.module_for_device("cpu")
    # --- 1. data: (N, 784) floats in {0, 1}
    train = data.load_embedded_binarized("train", seed=seed)["x"]
    test = data.load_embedded_binarized("test", seed=seed)["x"]
    n_train = 300 if quick else len(train)
    x_train = train[:n_train].reshape(n_train, 784).astype("float32")
    x_test = (test[:100] if quick else test).reshape(-1, 784).astype("float32")
    p_on = cpu.clip(x_train.mean(axis=0), 1e-3, 1 - 1e-3)          # each pixel's frequency of "on"
    baseline = independent_pixels_nll(p_on, x_test)                  # nats/image, no dependencies

    results = {"train_images": n_train, "test_images": int(len(x_test)), "data_fraction_on": float(x_train.mean()),
               "independent_pixels_nll": baseline, "models": {}, "figures": {}}
    rng = backend.rng(seed)
    for name in MODELS:
        # --- 2. the model, its output biases at the data's log-odds
        model = build(name, quick, rng, device)
        set_output_bias(model, name, p_on)
        shape = (-1, 1, 28, 28) if name == "PixelCNN" else (-1, 784)
        nll_before = mean_nll(model, x_test.reshape(shape))

        # --- 3. training: minibatch Adam on the exact NLL (model.loss = mean -log p(x))
        epochs, lr, batch = SCHEDULE[name][quick]
        start = time.perf_counter()
        history = fit(model, x_train.reshape(shape), Adam(model.parameters(), lr=lr), epochs=epochs,
                      batch_size=batch, seed=seed, progress=False)
        train_seconds = time.perf_counter() - start

        # --- 4. evaluation: exact test NLL, then samples x_d ~ p(x_d | x_<d) one pixel at a time
        nll = mean_nll(model, x_test.reshape(shape))
        n_samples = 16 if quick else 36
        samples = _common.host(model.sample(n_samples, rng=rng))
        title = _common.title(sample_title(name, n_samples, epochs, n_train, nll, baseline), quick)
        path = plot.image_grid(samples.reshape(n_samples, 28, 28), out_dir / f"ar_samples_{name.lower()}.png",
                               scale=4 if quick else 3, title=title)
        results["figures"][Path(path).name] = title
        results["models"][name] = {
            "parameters": int(model.num_parameters()), "epochs": epochs,
            "epoch_loss": [float(v) for v in history["epoch_loss"]], "test_nll_before": nll_before,
            "test_nll": nll, "beats_independent_pixels": nll < baseline,
            "train_seconds": round(train_seconds, 3), "samples": n_samples,
            "sample_fraction_on": float(samples.mean())}
        log(f"autoregressive: {name} test NLL {nll_before:.1f} -> {nll:.1f} nats/image in {epochs} epochs "
            f"({train_seconds:.1f} s); independent pixels {baseline:.1f}")

    # --- 5. MADE on a discretised 2-D density
    results["made_toy"] = made_on_discretised_toy(out_dir, seed, quick, device, log, results["figures"])
    results["files"] = list(results["figures"])
    return results


# ----------------------------------------------------------------------------- set-up

def build(name, quick, rng, device):
    """Small models, sized so the whole demo takes a minute or two on a CPU."""
    if name == "NADE":
        return nade.NADE(784, 50 if quick else 100, rng=rng, device=device)
    if name == "MADE":
        # random connectivity: fewer than D - 1 = 783 hidden units cannot hold every degree evenly
        model = made.MADE(784, [256] if quick else [500], connectivity="random", rng=rng)
        return model.to(device)
    return pixelcnn.PixelCNN(channels=8 if quick else 16, n_residual=1 if quick else 2, rng=rng, device=device)


# (epochs, Adam's lr, batch size): the full run, and the quick one (bolder steps on 300 images,
# enough to beat independent pixels in a few seconds)
SCHEDULE = {
    "NADE": {False: (20, 1e-2, 100), True: (5, 2e-2, 50)},
    "MADE": {False: (25, 3e-3, 100), True: (10, 1e-2, 50)},
    "PixelCNN": {False: (15, 5e-3, 32), True: (4, 1e-2, 32)},
}


def set_output_bias(model, name, p_on):
    """Start each conditional at the pixel's marginal log-odds, log(p_d / (1 - p_d)) (as
    Hinton's RBM guide does for the visible biases): a pixel that is never on in the data
    starts near p = 0.001 instead of 1/2, so a short run leaves no noise in the border.
    NADE's b_d and MADE's output bias are per pixel; PixelCNN's output is a 1x1 convolution
    whose bias is shared by every pixel, so it gets the mean log-odds (its network must
    still learn where the border is)."""
    xp = backend.get_array_module(model.parameters()[0].data)
    log_odds = xp.asarray(backend.module_for_device("cpu").log(p_on / (1 - p_on)))
    if name == "NADE":
        model.b.data[...] = log_odds
    elif name == "MADE":
        model.layers[-1].bias.data[...] = log_odds
    else:
        p = float(p_on.mean())
        model.conv_out.bias.data[...] = math.log(p / (1 - p))


def independent_pixels_nll(p_on, x):
    """-log p(x) under independent pixels with the training frequencies, averaged over the
    rows of x: the model with no x_<d in any conditional, the floor every model must beat."""
    cpu = backend.module_for_device("cpu")
    return float(-(x * cpu.log(p_on) + (1 - x) * cpu.log(1 - p_on)).sum(axis=1).mean())


def mean_nll(model, x, batch_size=250):
    """Mean -log p(x) in nats over the rows of x, in batches, without a graph."""
    device = model.parameters()[0].device
    total = 0.0
    with no_grad():
        for start in range(0, len(x), batch_size):
            total -= float(model.log_prob(tensor(x[start:start + batch_size], device=device)).sum().item())
    return total / len(x)


def sample_title(name, n_samples, epochs, n_train, nll, baseline):
    what = f"{name}: {n_samples} samples after {epochs} epochs on {n_train} binarized MNIST images"
    if nll < baseline:
        return f"{what}; test NLL {nll:.1f} nats (independent pixels: {baseline:.1f})"
    return (f"{what}; too short to beat independent pixels (test NLL {nll:.1f} vs {baseline:.1f} nats): "
            "not a result")


# ----------------------------------------------------------------------------- 5. MADE on 8 bits

TOY_BITS = 4                      # bits per coordinate: a 16 x 16 grid
TOY_EXTENT = 3.2                  # the grid covers [-3.2, 3.2]^2


def toy_cells(points, bits=TOY_BITS, extent=TOY_EXTENT):
    """The grid cell (i, j) of each 2-D point, i from x and j from y, on a 2^bits x 2^bits grid
    over [-extent, extent]^2 (points outside go to the border cells)."""
    cpu = backend.module_for_device("cpu")
    k = 2 ** bits
    cells = cpu.floor((points + extent) / (2 * extent) * k).astype(cpu.int64)
    return cpu.clip(cells, 0, k - 1)


def cells_to_bits(cells, bits=TOY_BITS):
    """(N, 2) cell indices -> (N, 2 bits) binary codes: the bits of i then of j, most
    significant first (x_1 is the coarsest half of the x axis)."""
    cpu = backend.module_for_device("cpu")
    shifts = cpu.arange(bits - 1, -1, -1)
    return ((cells[:, :, None] >> shifts) & 1).reshape(len(cells), 2 * bits).astype(cpu.float64)


def made_on_discretised_toy(out_dir, seed, quick, device, log, figures):
    """A MADE with D = 8 binary inputs: p(x) = prod_d p(x_d | x_<d) is a normalised
    distribution over all 2^8 codes (eq. 42), so it can be drawn exactly, cell by cell."""
    cpu = backend.module_for_device("cpu")
    rng = backend.rng(seed)
    k = 2 ** TOY_BITS
    n = 5000 if quick else 20000
    cells = toy_cells(eight_gaussians(n, rng))
    x = cells_to_bits(cells).astype("float32")
    model = made.MADE(2 * TOY_BITS, [64, 64], rng=rng).to(device)
    epochs = 15 if quick else 80
    history = fit(model, x, Adam(model.parameters(), lr=3e-3), epochs=epochs, batch_size=100, seed=seed,
                  progress=False)
    every = cpu.stack(cpu.meshgrid(cpu.arange(k), cpu.arange(k), indexing="ij"), axis=-1).reshape(-1, 2)
    with no_grad():
        log_p = model.log_prob(tensor(cells_to_bits(every), dtype="float32", device=device)).numpy()
    p_model = cpu.exp(log_p.astype(cpu.float64)).reshape(k, k)
    hist = cpu.zeros((k, k))
    cpu.add.at(hist, (cells[:, 0], cells[:, 1]), 1.0)
    hist /= n
    # the true cell probabilities: the density integrated over each cell (midpoint rule, 8 x 8 per cell)
    fine = 8 * k
    axis = -TOY_EXTENT + (cpu.arange(fine) + 0.5) * (2 * TOY_EXTENT / fine)
    gx, gy = cpu.meshgrid(axis, axis, indexing="ij")
    density = cpu.exp(eight_gaussians_log_density(cpu.stack([gx.ravel(), gy.ravel()], axis=1))).reshape(fine, fine)
    p_true = density.reshape(k, 8, k, 8).sum(axis=(1, 3))
    p_true /= p_true.sum()
    entropy_hist = -float((hist[hist > 0] * cpu.log(hist[hist > 0])).sum())
    nll_train = -float((hist * log_p.reshape(k, k)).sum())          # cross-entropy to the histogram
    title = _common.title("8 Gaussians on a 16 x 16 grid, each cell as 8 bits (4 for x, 4 for y): "
                          f"MADE's exact probabilities after {epochs} epochs", quick)
    name = plot_cells([(p_true, "true cell probabilities"), (hist, f"data histogram ({n} samples)"),
                       (p_model, "MADE p(x) of all 256 codes")], title, out_dir / "made_toy_density.png")
    figures[name] = title
    log(f"autoregressive: MADE on 8 Gaussians (16x16 cells, 8 bits): NLL {nll_train:.3f} nats vs the "
        f"histogram's entropy {entropy_hist:.3f}; sum of p over all 256 codes {float(p_model.sum()):.6f}")
    return {"bits": 2 * TOY_BITS, "samples": n, "epochs": epochs,
            "epoch_loss": [float(v) for v in history["epoch_loss"]],
            "probability_sum": float(p_model.sum()), "train_nll": nll_train, "histogram_entropy": entropy_hist,
            "total_variation_to_histogram": 0.5 * float(cpu.abs(p_model - hist).sum()),
            "total_variation_to_true": 0.5 * float(cpu.abs(p_model - p_true).sum())}


def plot_cells(panels, title, path):
    fig = _common.figure(4.0 * len(panels), 4.5)
    vmax = max(float(p.max()) for p, _ in panels)
    e = TOY_EXTENT
    for idx, (p, panel_title) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), idx + 1)
        image = ax.imshow(p.T, origin="lower", extent=(-e, e, -e, e), cmap="viridis", vmin=0.0, vmax=vmax,
                          interpolation="nearest")
        ax.set_title(panel_title, fontsize=10)
        ax.tick_params(labelsize=7)
    fig.colorbar(image, ax=fig.axes, shrink=0.8, label="probability of the cell")
    _common.suptitle(fig, title)
    return _common.save(fig, path)


def main(argv=None):
    return _common.main(run, __doc__, argv, name="autoregressive")


if __name__ == "__main__":
    sys.exit(main())
