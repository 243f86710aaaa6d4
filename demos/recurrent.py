"""Recurrent models: the variational RNN against its RNN baselines on the switching walk
(sampled trajectories and test NLLs beside the walk's exact one), and a PixelRNN with Row
LSTM layers on the embedded binarized images (samples, test NLL, its sequential training
step beside a PixelCNN's).

    python demos/recurrent.py [--device cpu|cuda] [--quick] [--out DIR] [--seed N]

1. Data: the switching walk (``tinydgm.data.switching_walk``): a hidden regime picks one of
   three headings and sticks to it with probability 0.9, steps have Laplace noise; the next
   step given the past is a mixture of three bumps. Its exact log-density (forward
   algorithm) is the floor of every model's NLL. The models see the increments
   (x_1, x_2 - x_1, ...), a map with unit Jacobian.
2. Models (kuleshov-l12, "Variational RNN"; Chung et al. 2015): an RNN with a Gaussian
   output (RNN-Gauss), the same RNN with a mixture output (RNN-GMM), and the VRNN whose
   z_t ~ p(z_t | h_{t-1}) feeds both the decoder and the recurrence, trained on its per-step
   ELBO. The same LSTM width for all.
3. Evaluation: test NLL (exact for the RNNs; the importance-sampled estimate for the VRNN)
   and sampled trajectories -> recurrent_sequences.png
4. PixelRNN (intro lecture part III, "Pixel RNN"; van den Oord et al. 2016b): Row LSTM
   layers after a 7x7 type-A convolution, trained on the embedded binarized images; test
   NLL beside independent pixels, the training step beside a PixelCNN of about the same
   size (the row loop is sequential) -> recurrent_pixelrnn_samples.png
"""
import math
import sys
import time
from pathlib import Path

import numpy as np

import _common
from tinydgm import backend, data, optim
from tinydgm.autodiff.core import no_grad, tensor
from tinydgm.data import switching_walk, switching_walk_log_density
from tinydgm.evaluate import importance_log_likelihood
from tinydgm.models import VRNN, AutoregressiveRNN, PixelCNN, PixelRNN
from tinydgm.plot import tile_images
from tinydgm.train import fit

WALK = dict(n_regimes=3, stay=0.9, speed=0.5, noise=0.1, init_scale=1.0)


def run(out_dir, seed, quick, device, log):
    with _common.one_blas_thread():                 # small matrices: BLAS threads only add contention
        sequences = sequence_models(out_dir, seed, quick, device, log)
        pixels = pixelrnn_on_images(out_dir, seed, quick, device, log)
    return _common.collect({"sequences": sequences, "pixelrnn": pixels})


# ============================================================================ 1-3. sequences

def increments(x):
    return np.concatenate([x[:, :1], np.diff(x, axis=1)], axis=1)


def positions(dx):
    return np.cumsum(dx, axis=1)


def sequence_models(out_dir, seed, quick, device, log):
    length, n_train, epochs = (12, 384, 2) if quick else (20, 4000, 15)
    # --- 1. data, and the walk's own log-density on the test set
    x_train = switching_walk(n_train, length, rng=seed, dtype="float64", **WALK)
    x_test = switching_walk(256, length, rng=seed + 1, dtype="float64", **WALK)
    true_nll = -float(switching_walk_log_density(x_test, **WALK).mean())
    train, test = increments(x_train).astype(np.float32), increments(x_test).astype(np.float32)
    # --- 2. the models, one LSTM width
    make = dict(hidden_size=32, phi_size=32, length=length, dtype="float32", device=device)
    models = {"RNN-Gauss": AutoregressiveRNN(2, rng=backend.rng(seed), **make),
              "RNN-GMM": AutoregressiveRNN(2, n_components=3, rng=backend.rng(seed), **make),
              "VRNN": VRNN(2, 2, rng=backend.rng(seed), **make)}
    results, samples = {}, {}
    for name, model in models.items():
        start = time.perf_counter()
        fit(model, train, optim.Adam(model.parameters(), lr=3e-3), epochs=epochs, batch_size=64, seed=seed,
            progress=False)
        seconds = time.perf_counter() - start
        # --- 3. evaluation
        with no_grad():
            if name == "VRNN":
                nll = -importance_log_likelihood(model, test, k=50 if quick else 500, rng=backend.rng(seed + 2)).mean
            else:
                nll = -float(_common.host(model.log_prob(tensor(test, device=device))).mean())
            samples[name] = positions(_common.host(model.sample(200, rng=backend.rng(seed + 3))))
        results[name] = {"test_nll": _common.finite(nll), "train_seconds": round(seconds, 2), "epochs": epochs}
        log(f"recurrent: {name} on the switching walk (T = {length}), {epochs} epochs in {seconds:.1f} s: "
            f"test NLL {nll:.2f} nats per sequence (the walk's own: {true_nll:.2f})")
    title = _common.title(
        f"Switching walk (3 headings, stay 0.9, Laplace steps; T = {length}): data and samples of each model, "
        f"LSTM 32 units; test NLL in nats per sequence (the walk's exact NLL {true_nll:.2f})", quick)
    path = plot_trajectories(x_test, samples, results, title, out_dir / "recurrent_sequences.png")
    return {"models": results, "true_nll": true_nll, "length": length, "figures": {path: title}}


def plot_trajectories(x_data, samples, results, title, path):
    fig = _common.figure(4 * (1 + len(samples)), 4.4)
    axes = fig.subplots(1, 1 + len(samples), sharex=True, sharey=True)
    panels = [("data", x_data, None)] + [(name, s, results[name]["test_nll"]) for name, s in samples.items()]
    for ax, (name, x, nll) in zip(axes, panels):
        for seq in x[:12]:
            ax.plot(seq[:, 0], seq[:, 1], lw=0.8, marker=".", ms=2)
        ax.set_title(name if nll is None else f"{name}: NLL {nll:.1f}", fontsize=10)
        ax.set_aspect("equal")
    axes[0].set_xlim(-8, 8)
    axes[0].set_ylim(-8, 8)
    _common.suptitle(fig, title, fontsize=10)
    return _common.save(fig, path)


# ============================================================================ 4. PixelRNN

def pixelrnn_on_images(out_dir, seed, quick, device, log):
    train = data.load_embedded_binarized("train", seed=seed)["x"].astype(np.float32)[:, None]
    test = data.load_embedded_binarized("test", seed=seed)["x"].astype(np.float32)[:, None][:100]
    size = 14 if quick else 28                      # quick: the central 14x14 crop
    where = f"the central {size}x{size} crop of the" if quick else f"{size}x{size}"
    crop = slice((28 - size) // 2, (28 + size) // 2)
    train, test = train[:192 if quick else None, :, crop, crop], test[:, :, crop, crop]
    make = dict(image_size=(size, size), rng=backend.rng(seed), dtype="float32", device=device)
    model = PixelRNN(channels=16, n_layers=2, kernel_size=7, **make)
    pixelcnn = PixelCNN(channels=32, n_residual=2, kernel_size=7, **make)
    epochs = 1 if quick else 8
    with no_grad():
        before = -float(_common.host(model.log_prob(tensor(test, device=device))).mean())
    start = time.perf_counter()
    history = fit(model, train, optim.Adam(model.parameters(), lr=3e-3), epochs=epochs, batch_size=16, seed=seed,
                  progress=False)
    seconds = time.perf_counter() - start
    steps = len(history["loss"])
    repeats = 1 if quick else 3
    step_rnn, step_cnn = step_time(model, train[:16], device, repeats), step_time(pixelcnn, train[:16], device, repeats)
    with no_grad():
        nll = -float(_common.host(model.log_prob(tensor(test, device=device))).mean())
    p = np.clip(train.mean(axis=0), 1e-3, 1 - 1e-3)                  # independent pixels, fit on the train set
    independent = -float((test * np.log(p) + (1 - test) * np.log(1 - p)).sum(axis=(1, 2, 3)).mean())
    start = time.perf_counter()
    images = _common.host(model.sample(16, rng=backend.rng(seed + 4)))
    sample_seconds = time.perf_counter() - start
    log(f"recurrent: PixelRNN (Row LSTM x 2, 16 channels) on {where} embedded images, {steps} steps in "
        f"{seconds:.1f} s: test NLL {before:.1f} -> {nll:.1f} nats (independent pixels {independent:.1f}); "
        f"a training step {step_rnn * 1e3:.0f} ms vs {step_cnn * 1e3:.0f} ms for a PixelCNN of "
        f"{pixelcnn.num_parameters():,} parameters ({model.num_parameters():,} here)")
    verdict = "" if nll < independent else " (not a result: too brief to beat independent pixels)"
    title = _common.title(
        f"PixelRNN (Row LSTM x 2, 16 channels) after {steps} steps on {where} binarized images: 16 samples; "
        f"test NLL {nll:.1f} nats (independent pixels {independent:.1f}){verdict}; training step "
        f"{step_rnn * 1e3:.0f} ms vs {step_cnn * 1e3:.0f} ms for a PixelCNN of about its size", quick)
    fig = _common.figure(5, 5.6)
    ax = fig.add_subplot()
    ax.imshow(tile_images(images[:, 0], nrow=4), cmap="gray", vmin=0, vmax=1)
    ax.axis("off")
    _common.suptitle(fig, title, fontsize=9)
    path = _common.save(fig, out_dir / "recurrent_pixelrnn_samples.png")
    return {"image_size": size, "steps": steps, "train_seconds": round(seconds, 2), "test_nll_before": before,
            "test_nll": nll, "independent_pixels_nll": independent, "step_seconds": step_rnn,
            "pixelcnn_step_seconds": step_cnn, "sample_seconds": round(sample_seconds, 2),
            "sample_fraction_on": float(images.mean()), "figures": {path: title}}


def step_time(model, batch, device, repeats=3):
    """Median seconds of one Adam step on ``batch`` (after one warm-up step)."""
    x = tensor(batch, device=device)
    optimizer = optim.Adam(model.parameters(), lr=0.0)           # lr 0: time the step, change nothing
    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        optimizer.zero_grad()
        model.loss(x).backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return float(np.median(times[1:]))


def main(argv=None):
    return _common.main(run, __doc__, argv, name="recurrent")


if __name__ == "__main__":
    sys.exit(main())
