"""Adversarial models that infer: a BiGAN whose encoder learns to invert its generator (on a
2-D toy and on the embedded images), and an InfoGAN whose latent codes each control one thing
in the samples.

    python demos/adversarial_inference.py [--device cpu|cuda] [--quick] [--out DIR] [--seed N]

1. BiGAN (Donahue et al. 2017; intro lecture part I, "Bidirectional GANs"): an encoder z = E(x)
   beside the generator x = G(z), and a discriminator D(x, z) of pairs, (x, E(x)) against
   (G(z), z):

       min_{G, E} max_D  E_{p_data}[ln D(x, E(x))] + E_{p(z)}[ln(1 - D(G(z), z))]

   At the game's optimum the two joints agree and E and G invert each other. On a 2-D
   "banana" (x = (u, v + 0.5 u^2 - 1) with u, v ~ N(0, 1)), the round trips G(E(x)) and
   E(G(z)) close in over training -> bigan_toy.png. On the embedded images: test images x
   beside G(E(x)) -> bigan_reconstructions.png
2. InfoGAN (Chen et al. 2016; kuleshov-l12, "Information Preference"): the generator's input
   is noise z and codes c (a 10-way category, two continuous U(-1, 1) codes); Q(c | x), a second
   head on the discriminator's body, keeps the bound L_I = H(c) + E[ln Q(c | G(z, c))] of
   I(c; G(z, c)) high. Each code varied with the noise and the others fixed ->
   infogan_code_sweeps.png
"""
import time
from pathlib import Path

import _common
from tinydgm import backend, data, plot
from tinydgm.autodiff.core import tensor
from tinydgm.autodiff.elementwise import sigmoid
from tinydgm.models.adversarial import (BiGAN, InfoDiscriminator, InfoGAN, JointDiscriminator, MLPGenerator)
from tinydgm.nn.module import Module
from tinydgm.optim import Adam


def run(out_dir, seed, quick, device, log):
    with _common.one_blas_thread():
        toy = bigan_on_a_toy(out_dir, seed, quick, device, log)
        images = bigan_on_images(out_dir, seed, quick, device, log)
        codes = infogan_on_images(out_dir, seed, quick, device, log)
    return _common.collect({"bigan_toy": toy, "bigan_images": images, "infogan": codes})


# ============================================================================ 1. BiGAN on a 2-D toy

def banana(n, rng):
    """x = (u, v + 0.5 u^2 - 1), u, v ~ N(0, 1): a curved density that a smooth G can make from N(0, I)."""
    cpu = backend.module_for_device("cpu")
    u, v = rng.standard_normal(n), 0.5 * rng.standard_normal(n)
    return cpu.stack([u, v + 0.5 * u * u - 1.0], axis=1).astype("float32")


def bigan_on_a_toy(out_dir, seed, quick, device, log):
    rng = backend.rng(seed)
    # --- the three players: MLPs 2 -> 64 -> 64 -> 2 for E and G, D on the 4 numbers of a pair
    encoder = MLPGenerator(2, 2, (64, 64), rng=rng, dtype="float32", device=device)
    generator = MLPGenerator(2, 2, (64, 64), rng=rng, dtype="float32", device=device)
    discriminator = JointDiscriminator(2, 2, (64, 64), rng=rng, dtype="float32", device=device)
    model = BiGAN(encoder, generator, discriminator, 2, lr=1e-3, rng=seed + 1)
    x_eval, z_eval = banana(1000, backend.rng(seed + 2)), backend.rng(seed + 3).standard_normal((1000, 2))
    # --- training: one discriminator step and one encoder-generator step per round, batches of 128
    steps = 100 if quick else 3000
    every = max(steps // 20, 1)
    errors = {"step": [], "x": [], "z": []}
    start = time.perf_counter()
    for step in range(steps + 1):
        if step % every == 0:
            e = model.reconstruction_errors(tensor(x_eval, device=device), tensor(z_eval, dtype="float32", device=device))
            errors["step"].append(step)
            errors["x"].append(e["x"])
            errors["z"].append(e["z"])
        if step < steps:
            model.train_step(tensor(banana(128, rng), device=device))
    seconds = time.perf_counter() - start
    log(f"adversarial_inference: BiGAN on the banana, {steps} rounds ({seconds:.1f} s): mean ||x - G(E(x))||^2 "
        f"{errors['x'][0]:.3f} -> {errors['x'][-1]:.3f}, mean ||z - E(G(z))||^2 {errors['z'][0]:.3f} -> "
        f"{errors['z'][-1]:.3f}")
    x_back = _common.host(model.reconstruct(tensor(x_eval, device=device)))
    z_back = _common.host(model.reconstruct_latent(tensor(z_eval, dtype="float32", device=device)))
    fell = errors["x"][-1] < errors["x"][0] and errors["z"][-1] < errors["z"][0]
    title = _common.title(f"BiGAN on a 2-D banana, MLP players 64-64, {steps} rounds: the round trips x -> G(E(x)) "
                          "and z -> E(G(z)) (40 segments each) and their mean squared errors over training"
                          + ("" if fell else "; too short for the errors to fall: not a result"), quick)
    path = plot_toy(x_eval, x_back, z_eval, z_back, errors, title, out_dir / "bigan_toy.png")
    return {"steps": steps, "train_seconds": round(seconds, 3),
            "x_error_before": errors["x"][0], "x_error": errors["x"][-1],
            "z_error_before": errors["z"][0], "z_error": errors["z"][-1], "figures": {path: title}}


def plot_toy(x, x_back, z, z_back, errors, title, path):
    fig = _common.figure(13, 4.4)
    axes = fig.subplots(1, 3)
    for ax, a, b, name in ((axes[0], x, x_back, "x"), (axes[1], z, z_back, "z")):
        ax.scatter(a[:, 0], a[:, 1], s=3, c="0.7", label=f"{name}")
        ax.scatter(b[:, 0], b[:, 1], s=3, c="C3", label="G(E(x))" if name == "x" else "E(G(z))")
        for i in range(40):
            ax.plot([a[i, 0], b[i, 0]], [a[i, 1], b[i, 1]], c="C0", lw=0.7)
        ax.set_aspect("equal")
        ax.legend(fontsize=8, loc="upper right")
        ax.set_title("data space" if name == "x" else "latent space", fontsize=10)
    axes[2].semilogy(errors["step"], errors["x"], "o-", label="mean ||x - G(E(x))||^2")
    axes[2].semilogy(errors["step"], errors["z"], "s-", label="mean ||z - E(G(z))||^2")
    axes[2].set_xlabel("round")
    axes[2].legend(fontsize=8)
    axes[2].set_title("round-trip errors (1000 points)", fontsize=10)
    _common.suptitle(fig, title, fontsize=10)
    return _common.save(fig, path)


# ============================================================================ images

class SigmoidMLP(Module):
    """x = sigmoid(MLP(u)): gray levels in [0, 1] like the images (784 outputs)."""

    def __init__(self, n_in, hidden, rng, device):
        super().__init__()
        self.net = MLPGenerator(n_in, 784, hidden, rng=rng, dtype="float32", device=device)

    def forward(self, u):
        return sigmoid(self.net(u))


def embedded_images():
    train = data.load_embedded("train")["x"].reshape(-1, 784).astype("float32") / 255.0
    test = data.load_embedded("test")["x"].reshape(-1, 784).astype("float32") / 255.0
    return train, test


def bigan_on_images(out_dir, seed, quick, device, log):
    rng = backend.rng(seed)
    train, test = embedded_images()
    latent_dim = 16
    encoder = MLPGenerator(784, latent_dim, (256,), rng=rng, dtype="float32", device=device)
    generator = SigmoidMLP(latent_dim, (256,), rng, device)
    discriminator = JointDiscriminator(784, latent_dim, (256,), rng=rng, dtype="float32", device=device)
    # one rate, Adam's 2e-4, for all three players (E and G at 1e-3, as in the MNIST benchmark, gave worse
    # reconstructions on these 1000 images: mean ||x - G(E(x))||^2 85 against 61 after 3000 rounds)
    model = BiGAN(encoder, generator, discriminator, latent_dim, rng=seed + 1)
    steps = 30 if quick else 3000
    x_test = tensor(test[:16], device=device)
    z_test = backend.rng(seed + 4).standard_normal((500, latent_dim)).astype("float32")
    before = model.reconstruction_errors(tensor(test, device=device), tensor(z_test, device=device))
    start = time.perf_counter()
    for _ in range(steps):
        model.train_step(tensor(train[rng.integers(0, len(train), 64)], device=device))
    seconds = time.perf_counter() - start
    after = model.reconstruction_errors(tensor(test, device=device), tensor(z_test, device=device))
    log(f"adversarial_inference: BiGAN on the embedded images, {steps} rounds ({seconds:.1f} s): mean "
        f"||x - G(E(x))||^2 of the 500 test images {before['x']:.1f} -> {after['x']:.1f}, mean ||z - E(G(z))||^2 "
        f"{before['z']:.2f} -> {after['z']:.2f}")
    cpu = backend.module_for_device("cpu")
    rows = cpu.concatenate([test[:16], _common.host(model.reconstruct(x_test)),
                            _common.host(model.sample(16, rng=backend.rng(seed + 5)))])
    fell = after["x"] < before["x"] and after["z"] < before["z"]
    title = _common.title(f"BiGAN, MLP players (E 784-256-16, G 16-256-784, D 800-256-1), {steps} rounds on "
                          f"{len(train)} images: held-out test images x (top), G(E(x)) (middle), samples G(z) "
                          f"(bottom); mean ||x - G(E(x))||^2 {before['x']:.1f} -> {after['x']:.1f}"
                          + ("" if fell else ", too short for both round trips to improve: not a result"), quick)
    path = plot.image_grid(rows.reshape(-1, 28, 28), out_dir / "bigan_reconstructions.png", nrow=16, scale=2,
                           title=title)
    return {"steps": steps, "train_seconds": round(seconds, 3), "x_error_before": before["x"], "x_error": after["x"],
            "z_error_before": before["z"], "z_error": after["z"], "figures": {Path(path).name: title}}


# ============================================================================ 2. InfoGAN code sweeps

def infogan_on_images(out_dir, seed, quick, device, log):
    rng = backend.rng(seed)
    train, _ = embedded_images()
    noise_dim, n_categories, n_continuous = 16, 10, 2
    generator = SigmoidMLP(noise_dim + n_categories + n_continuous, (256,), rng, device)
    discriminator = InfoDiscriminator(784, n_categories, n_continuous, (256,), rng=rng, dtype="float32", device=device)
    # D and Q at Adam's 2e-4, G at 1e-3: the rates of Chen et al.'s released code
    g_optimizer = Adam(generator.parameters(), lr=1e-3, betas=(0.5, 0.999))
    model = InfoGAN(generator, discriminator, noise_dim, lam=1.0, g_optimizer=g_optimizer, rng=seed + 1)
    steps = 30 if quick else 3000
    bound_before = model.estimate_mutual_information_bound(2000, rng=backend.rng(seed + 2))
    start = time.perf_counter()
    for _ in range(steps):
        model.train_step(tensor(train[rng.integers(0, len(train), 64)], device=device))
    seconds = time.perf_counter() - start
    bound = model.estimate_mutual_information_bound(2000, rng=backend.rng(seed + 2))
    log(f"adversarial_inference: InfoGAN on the embedded images, {steps} rounds ({seconds:.1f} s): L_I "
        f"{bound_before:.2f} -> {bound:.2f} nats (H(c) = {model.code_entropy():.2f}; the categorical part is at most "
        f"ln 10 = 2.30)")
    # --- the sweeps: rows are categories; (a) 8 noise vectors, (b), (c) one continuous code from -2 to 2
    cpu = backend.module_for_device("cpu")
    n_values = 8
    zs = backend.rng(seed + 3).standard_normal((n_values, noise_dim)).astype("float32")
    z_one = cpu.repeat(zs[:1], n_values, axis=0)
    values = cpu.linspace(-2.0, 2.0, n_values)
    panels = {"categorical": [], "continuous 1": [], "continuous 2": []}
    for k in range(n_categories):
        categories = cpu.full(n_values, k)
        panels["categorical"].append(_common.host(model.generate_with_codes(
            tensor(zs, device=device), categories, cpu.zeros((n_values, n_continuous)))))
        for j in range(n_continuous):
            cont = cpu.zeros((n_values, n_continuous))
            cont[:, j] = values
            panels[f"continuous {j + 1}"].append(_common.host(model.generate_with_codes(
                tensor(z_one, device=device), categories, cont)))
    title = _common.title(
        f"InfoGAN on {len(train)} embedded images, {steps} rounds (G 28-256-784, D/Q body 784-256): rows = the 10 "
        "categories; left: 8 noise vectors, middle and right: continuous code 1, 2 from -2 to 2 (noise fixed); "
        f"L_I = {bound:.2f} nats" + ("" if bound > bound_before else " (not above its start: not a result)"), quick)
    path = plot_sweeps(panels, title, out_dir / "infogan_code_sweeps.png")
    return {"steps": steps, "train_seconds": round(seconds, 3), "information_bound_before": bound_before,
            "information_bound": bound, "code_entropy": model.code_entropy(), "figures": {path: title}}


def plot_sweeps(panels, title, path):
    cpu = backend.module_for_device("cpu")
    fig = _common.figure(13, 5.6)
    axes = fig.subplots(1, len(panels))
    for ax, (name, rows) in zip(axes, panels.items()):
        images = cpu.stack(rows).reshape(len(rows), -1, 28, 28)                  # (categories, values, 28, 28)
        grid = plot.tile_images(images.reshape(-1, 28, 28), nrow=images.shape[1], padding=1, pad_value=1.0)
        ax.imshow(grid, cmap="gray", vmin=0, vmax=1)
        ax.set_title(f"{name} code", fontsize=10)
        ax.axis("off")
    _common.suptitle(fig, title, fontsize=10)
    return _common.save(fig, path)


def main(argv=None):
    return _common.main(run, __doc__, argv, name="adversarial_inference")


if __name__ == "__main__":
    raise SystemExit(main())
