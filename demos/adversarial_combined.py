"""Adversarial models that combine: CycleGAN translations (a 2-D rotation and digits to
inverted digits, never shown a pair), a flow trained by MLE, adversarially and by both
(FlowGAN), and the adversarial autoencoder's latent space with the classes coloured.

    python demos/adversarial_combined.py [--device cpu|cuda] [--quick] [--out DIR] [--seed N]

1. CycleGAN (Zhu et al. 2017; intro lecture part I, "Unpaired image-to-image translation"):
   G: X -> Y and F: Y -> X against two least-squares discriminators, with the cycle loss
   lambda (E|F(G(x)) - x| + E|G(F(y)) - y|). Toy: X three clusters, Y the same rotated by
   45 degrees; how far G(x) lands from the true R x. Images: X the embedded digits, Y
   colour-inverted digits from other images; digit preservation is the shipped MNIST
   classifier's accuracy on 1 - G(x) and on F(y), and the cycle error |F(G(x)) - x|
   -> adversarial_combined_cyclegan.png
2. FlowGAN (Grover et al. 2018; kuleshov-l12, "Flows + GANs: FlowGAN"): one RealNVP on the
   8-Gaussians toy trained three ways, MLE, ADV (WGAN-GP) and Hybrid (lambda = 1); each
   panel shows the exact density, samples, the test NLL and the modes covered: the lecture's
   table in 2-D -> adversarial_combined_flowgan.png
3. Adversarial autoencoder (Makhzani et al. 2016; kuleshov-l12, "Adversarial Autoencoder
   (VAE + GAN)"): a 2-D code for the embedded binarized digits, pushed to a mixture of 10
   Gaussians and to a swiss roll; the test codes coloured by digit over prior samples
   -> adversarial_combined_aae.png
"""
import math
import sys
import time

import _common
from tinydgm import backend, data
from tinydgm.autodiff.core import no_grad, tensor
from tinydgm.data.toy import eight_gaussians, eight_gaussians_log_density
from tinydgm.evaluate import load_mnist_classifier, toy_mode_coverage
from tinydgm.models.adversarial import ConvTranslator, CycleGAN, MLPDiscriminator, ResidualMLP
from tinydgm.models.flows.realnvp import toy_realnvp
from tinydgm.models.hybrid import AdversarialAutoencoder, FlowGAN, GaussianMixturePrior2D, SwissRollPrior
from tinydgm.models.latent import MLPDecoder, MLPEncoder
from tinydgm.nn.module import Module

THETA = math.pi / 4                               # the toy's ground-truth rotation
CENTRES = ((2.0, 0.0), (-1.0, 1.2), (-0.5, -1.5))
WEIGHTS = (0.5, 0.3, 0.2)
BOX, GRID = 4.0, 120


def run(out_dir, seed, quick, device, log):
    with _common.one_blas_thread():
        return _common.collect({
            "cyclegan": cyclegan_part(out_dir, seed, quick, device, log),
            "flowgan": flowgan_part(out_dir, seed, quick, device, log),
            "aae": aae_part(out_dir, seed, quick, device, log),
        })


# ============================================================================ 1. CycleGAN

def domain_x(n, rng):
    """Three overlapping clusters of unequal weights (no rotation maps them onto themselves)."""
    cpu = backend.module_for_device("cpu")
    k = rng.choice(3, n, p=cpu.array(WEIGHTS))
    return (cpu.array(CENTRES)[k] + 0.35 * rng.standard_normal((n, 2))).astype("float32")


def rotation():
    cpu = backend.module_for_device("cpu")
    return cpu.array([[math.cos(THETA), -math.sin(THETA)], [math.sin(THETA), math.cos(THETA)]], dtype="float32")


class FlatCritic(Module):
    """An MLP discriminator on flattened images."""

    def __init__(self, size, hidden, rng, device):
        super().__init__()
        self.mlp = MLPDiscriminator(size, hidden, rng=rng, dtype="float32", device=device)

    def forward(self, x):
        return self.mlp(x.reshape(x.shape[0], -1))


def cyclegan_part(out_dir, seed, quick, device, log):
    cpu = backend.module_for_device("cpu")
    rng = backend.rng(seed)
    R = rotation()
    # --- toy: identity-initialised residual translators, lambda = 1 (see the tests' docstring)
    toy = CycleGAN(ResidualMLP(2, (32, 32), rng=rng, dtype="float32", device=device),
                   ResidualMLP(2, (32, 32), rng=rng, dtype="float32", device=device),
                   MLPDiscriminator(2, (32, 32), rng=rng, dtype="float32", device=device),
                   MLPDiscriminator(2, (32, 32), rng=rng, dtype="float32", device=device), 2,
                   lambda_cycle=1.0, lr=2e-3)
    toy_steps = 100 if quick else 1500
    x_test = domain_x(1000, backend.rng(seed + 1))
    y_test = x_test @ R.T
    start = time.perf_counter()
    for _ in range(toy_steps):                           # two independent batches: no pairs
        x, y = domain_x(64, rng), domain_x(64, rng) @ R.T
        toy.train_step((tensor(x, device=device), tensor(y, device=device)))
    toy_seconds = time.perf_counter() - start
    g_x = _common.host(toy.translate_xy(tensor(x_test, device=device)))
    f_y = _common.host(toy.translate_yx(tensor(y_test, device=device)))
    g_error = float(cpu.linalg.norm(g_x - y_test, axis=1).mean())
    f_error = float(cpu.linalg.norm(f_y - x_test, axis=1).mean())
    identity_error = float(cpu.linalg.norm(x_test - y_test, axis=1).mean())
    log(f"adversarial_combined: CycleGAN toy, {toy_steps} steps ({toy_seconds:.1f} s): mean |G(x) - R x| "
        f"{g_error:.3f}, |F(y) - R^-1 y| {f_error:.3f} (identity map {identity_error:.3f})")

    # --- images: digits X and inverted digits Y, from disjoint halves of the embedded set
    train, test = data.load_embedded("train"), data.load_embedded("test")
    images = train["x"].reshape(-1, 1, 28, 28).astype("float32") / 255.0
    x_images, y_images = images[:500], 1.0 - images[500:]
    x_eval = test["x"].reshape(-1, 1, 28, 28).astype("float32")[:200] / 255.0
    labels = test["y"][:200]
    model = CycleGAN(ConvTranslator(1, 8, rng=rng, dtype="float32", device=device),
                     ConvTranslator(1, 8, rng=rng, dtype="float32", device=device),
                     FlatCritic(784, (256,), rng, device), FlatCritic(784, (256,), rng, device), (1, 28, 28),
                     lambda_cycle=10.0, lr=1e-3)
    image_steps = 6 if quick else 300
    start = time.perf_counter()
    for _ in range(image_steps):
        batch = (x_images[rng.integers(0, len(x_images), 64)], y_images[rng.integers(0, len(y_images), 64)])
        model.train_step(tuple(tensor(b, device=device) for b in batch))
    image_seconds = time.perf_counter() - start
    g_img = _common.host(model.translate_xy(tensor(x_eval, device=device)))
    f_img = _common.host(model.translate_yx(tensor(1.0 - x_eval, device=device)))
    cycled = _common.host(model.cycle_x(tensor(x_eval, device=device)))
    classifier = load_mnist_classifier()
    accuracy_real = float((backend.to_numpy(classifier.predict(x_eval)) == labels).mean())
    accuracy_g = float((backend.to_numpy(classifier.predict(1.0 - g_img)) == labels).mean())
    accuracy_f = float((backend.to_numpy(classifier.predict(f_img)) == labels).mean())
    cycle_error = float(cpu.abs(cycled - x_eval).mean())
    log(f"adversarial_combined: CycleGAN digits <-> inverted digits, {image_steps} steps ({image_seconds:.1f} s): "
        f"digit kept by G {accuracy_g:.1%}, by F {accuracy_f:.1%} (real test images {accuracy_real:.1%}); "
        f"cycle error mean |F(G(x)) - x| {cycle_error:.3f}")

    title = _common.title(
        f"CycleGAN, never shown a pair. Top: Y = X rotated by 45 degrees, residual MLP translators, lambda 1, "
        f"{toy_steps} steps: mean |G(x) - R x| {g_error:.2f}, |F(y) - R^-1 y| {f_error:.2f} (identity map "
        f"{identity_error:.2f}). Bottom: digits and inverted digits, conv translators, lambda 10, {image_steps} "
        f"steps: the shipped classifier reads the digit of 1 - G(x) in {accuracy_g:.0%} and of F(y) in "
        f"{accuracy_f:.0%} of test images (real: {accuracy_real:.0%}); cycle error {cycle_error:.3f}", quick)
    fig = _common.figure(13.0, 10.0)
    axes = [fig.add_subplot(2, 3, i + 1) for i in range(3)]
    axes[0].scatter(x_test[:, 0], x_test[:, 1], s=2, c="tab:blue", label="x ~ X")
    axes[0].scatter(y_test[:, 0], y_test[:, 1], s=2, c="tab:orange", label="y ~ Y")
    axes[0].set_title("the two domains (unpaired)", fontsize=9)
    axes[1].scatter(y_test[:, 0], y_test[:, 1], s=2, c="tab:orange", label="y ~ Y")
    axes[1].scatter(g_x[:, 0], g_x[:, 1], s=2, c="tab:red", label="G(x)")
    for i in range(0, 1000, 40):
        axes[1].plot([x_test[i, 0], g_x[i, 0]], [x_test[i, 1], g_x[i, 1]], c="grey", lw=0.5)
    axes[1].set_title("G: X -> Y (grey: x to G(x))", fontsize=9)
    axes[2].scatter(x_test[:, 0], x_test[:, 1], s=2, c="tab:blue", label="x ~ X")
    axes[2].scatter(f_y[:, 0], f_y[:, 1], s=2, c="tab:green", label="F(y)")
    axes[2].set_title("F: Y -> X", fontsize=9)
    for ax in axes:
        ax.set_xlim(-BOX, BOX)
        ax.set_ylim(-BOX, BOX)
        ax.set_aspect("equal")
        ax.legend(loc="upper right", fontsize=7, markerscale=4)
    rows = cpu.concatenate([x_eval[:10], g_img[:10], cycled[:10], 1.0 - x_eval[10:20], f_img[10:20]])
    ax = fig.add_subplot(2, 1, 2)
    ax.imshow(tile(rows.reshape(5, 10, 28, 28)), cmap="gray", vmin=0, vmax=1)
    ax.set_yticks([14 + 29 * i for i in range(5)], ["x", "G(x)", "F(G(x))", "y", "F(y)"])
    ax.set_xticks([])
    _common.suptitle(fig, title, fontsize=10)
    path = _common.save(fig, out_dir / "adversarial_combined_cyclegan.png")
    return {"toy": {"steps": toy_steps, "train_seconds": round(toy_seconds, 3), "g_error": g_error,
                    "f_error": f_error, "identity_error": identity_error},
            "images": {"steps": image_steps, "train_seconds": round(image_seconds, 3), "accuracy_g": accuracy_g,
                       "accuracy_f": accuracy_f, "accuracy_real": accuracy_real, "cycle_error": cycle_error},
            "figures": {path: title}}


def tile(rows):
    """(R, C, 28, 28) images -> one (29 R - 1, 29 C - 1) picture with 1-pixel white gaps."""
    cpu = backend.module_for_device("cpu")
    r, c = rows.shape[:2]
    out = cpu.ones((29 * r - 1, 29 * c - 1), dtype="float32")
    for i in range(r):
        for j in range(c):
            out[29 * i:29 * i + 28, 29 * j:29 * j + 28] = cpu.clip(rows[i, j], 0, 1)
    return out


# ============================================================================ 2. FlowGAN

OBJECTIVES = ("mle", "adv", "hybrid")
NAMES = {"mle": "MLE", "adv": "ADV (WGAN-GP)", "hybrid": "Hybrid, lambda = 1"}


def flowgan_part(out_dir, seed, quick, device, log):
    """One RealNVP (8 affine couplings, 64-64 conditioners) per objective, the same seed, the
    same data stream, the same number of generator steps; WGAN-GP's toy settings (lambda 0.1,
    5 critic steps, Adam betas (0.5, 0.9)) for the critic."""
    cpu = backend.module_for_device("cpu")
    steps = 25 if quick else 1500
    test = eight_gaussians(2000, backend.rng(seed + 7))
    true_nll = float(-eight_gaussians_log_density(test).mean())
    axis = cpu.linspace(-BOX, BOX, GRID)
    points = cpu.stack(cpu.meshgrid(axis, axis), axis=-1).reshape(-1, 2)
    results = {}
    for objective in OBJECTIVES:
        rng = backend.rng(seed)
        flow = toy_realnvp(2, 8, hidden=(64, 64), rng=rng, dtype="float32", device=device)
        critic = MLPDiscriminator(2, (64, 64), rng=rng, dtype="float32", device=device)
        model = FlowGAN(flow, critic, objective=objective, mle_weight=1.0, n_critic=5, gp_weight=0.1, lr=1e-3,
                        betas=(0.5, 0.9), rng=seed + 1)
        data_rng = backend.rng(seed + 2)
        start = time.perf_counter()
        for _ in range(steps):
            model.train_step(tensor(eight_gaussians(5 * 64, data_rng), device=device))
        seconds = time.perf_counter() - start
        with no_grad():
            nll = float(-_common.host(model.log_prob(tensor(test, device=device))).astype("float64").mean())
            density = cpu.exp(_common.host(model.log_prob(tensor(points.astype("float32"), device=device))))
        samples = _common.host(model.sample(2000, rng=backend.rng(seed + 3)))
        found = toy_mode_coverage("eight_gaussians", samples, min_count=2000 // 32)
        results[objective] = {"steps": steps, "train_seconds": round(seconds, 3), "test_nll": _common.finite(nll),
                              "modes_covered": found.modes_covered, "high_quality": found.high_quality,
                              "density": density.reshape(GRID, GRID), "samples": samples[:1000]}
        log(f"adversarial_combined: FlowGAN {NAMES[objective]}, {steps} generator steps ({seconds:.1f} s): test NLL "
            f"{nll:.3f} nats (true density {true_nll:.3f}), modes covered {found.modes_covered}/8, "
            f"{found.high_quality:.0%} of samples within 3 std of a mode")
    title = _common.title(
        f"FlowGAN on 8 Gaussians: one RealNVP (8 couplings) trained by MLE, ADV (WGAN-GP) and Hybrid (lambda 1), "
        f"{steps} generator steps each; exact density and 1000 samples; test NLL in nats (true density "
        f"{true_nll:.2f}) and the share of samples within 3 std of a mode", quick)
    fig = _common.figure(13.0, 4.9)
    for i, (objective, r) in enumerate(results.items()):
        ax = fig.add_subplot(1, 3, i + 1)
        ax.imshow(r["density"], origin="lower", extent=(-BOX, BOX, -BOX, BOX), cmap="Greys")
        ax.scatter(r["samples"][:, 0], r["samples"][:, 1], s=1, c="tab:red", linewidths=0)
        ax.set_xlim(-BOX, BOX)
        ax.set_ylim(-BOX, BOX)
        nll = "inf" if r["test_nll"] is None else f"{r['test_nll']:.2f}"
        ax.set_title(f"{NAMES[objective]}\ntest NLL {nll} nats, modes {r['modes_covered']}/8, "
                     f"{r['high_quality']:.0%} within 3 std", fontsize=9)
    _common.suptitle(fig, title, fontsize=10)
    path = _common.save(fig, out_dir / "adversarial_combined_flowgan.png")
    summary = {NAMES[o]: {k: v for k, v in r.items() if k not in ("density", "samples")} for o, r in results.items()}
    return {"true_density_nll": true_nll, "objectives": summary, "figures": {path: title}}


# ============================================================================ 3. adversarial autoencoder

def aae_part(out_dir, seed, quick, device, log):
    """Encoder 784-256-256-2 (deterministic: z = mu(x)), Bernoulli decoder 2-256-256-784,
    discriminator on z 2-64-64-1, on the embedded binarized digits (1000 train, 500 test)."""
    cpu = backend.module_for_device("cpu")
    train = data.load_embedded_binarized("train", seed=seed)["x"].reshape(-1, 784).astype("float32")
    test_set = data.load_embedded_binarized("test", seed=seed)
    test, labels = test_set["x"].reshape(-1, 784).astype("float32"), test_set["y"]
    steps = 20 if quick else 3000
    priors = {"mixture of 10 Gaussians": GaussianMixturePrior2D(10, dtype="float32", device=device),
              "swiss roll": SwissRollPrior(dtype="float32", device=device)}
    results = {}
    for name, prior in priors.items():
        rng = backend.rng(seed)
        model = AdversarialAutoencoder(
            MLPEncoder(784, 2, (256, 256), rng=rng, dtype="float32", device=device),
            MLPDecoder(2, 784, (256, 256), rng=rng, dtype="float32", device=device),
            MLPDiscriminator(2, (64, 64), rng=rng, dtype="float32", device=device), prior, lr=1e-3, rng=seed + 1)
        start = time.perf_counter()
        reports = [model.train_step(tensor(train[rng.integers(0, len(train), 100)], device=device))
                   for _ in range(steps)]
        seconds = time.perf_counter() - start
        codes = _common.host(model.codes(tensor(test, device=device)))
        prior_draws = _common.host(model.sample_prior(2000, rng=backend.rng(seed + 4)))
        results[name] = {"steps": steps, "train_seconds": round(seconds, 3),
                         "reconstruction_nats": reports[-1]["reconstruction"],
                         "code_mean": codes.mean(axis=0).tolist(), "prior_mean": prior_draws.mean(axis=0).tolist(),
                         "code_std": codes.std(axis=0).tolist(), "prior_std": prior_draws.std(axis=0).tolist(),
                         "codes": codes, "prior": prior_draws}
        code_std, prior_std = codes.std(axis=0), prior_draws.std(axis=0)
        log(f"adversarial_combined: AAE with a {name} prior, {steps} steps ({seconds:.1f} s): reconstruction "
            f"{reports[-1]['reconstruction']:.1f} nats; code std ({code_std[0]:.2f}, {code_std[1]:.2f}) against the "
            f"prior's ({prior_std[0]:.2f}, {prior_std[1]:.2f})")
    title = _common.title(
        f"Adversarial autoencoder, 2-D codes of the {len(test)} test digits coloured by class (grey: draws of "
        f"the prior), {steps} steps on {len(train)} binarized training digits; the discriminator on z pushes the "
        f"aggregated posterior q(z) to the prior", quick)
    fig = _common.figure(12.0, 5.8)
    for i, (name, r) in enumerate(results.items()):
        ax = fig.add_subplot(1, 2, i + 1)
        ax.scatter(r["prior"][:, 0], r["prior"][:, 1], s=1, c="lightgrey", linewidths=0)
        shown = ax.scatter(r["codes"][:, 0], r["codes"][:, 1], s=4, c=labels, cmap="tab10", vmin=-0.5, vmax=9.5)
        ax.set_title(f"prior: {name}\nreconstruction {r['reconstruction_nats']:.0f} nats per image", fontsize=9)
        ax.set_aspect("equal")
        fig.colorbar(shown, ax=ax, ticks=range(10), shrink=0.8, label="digit")
    _common.suptitle(fig, title, fontsize=10)
    path = _common.save(fig, out_dir / "adversarial_combined_aae.png")
    summary = {name: {k: v for k, v in r.items() if k not in ("codes", "prior")} for name, r in results.items()}
    return {"priors": summary, "figures": {path: title}}


def main(argv=None):
    return _common.main(run, __doc__, argv, name="adversarial_combined")


if __name__ == "__main__":
    sys.exit(main())
