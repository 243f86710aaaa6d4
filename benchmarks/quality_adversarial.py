"""Sample quality of GAN, WGAN and WGAN-GP on MNIST (issue 15), each next to a PyTorch twin.

    TINYDGM_DATA=<folder with mnist.npz> python benchmarks/quality_adversarial.py [--epochs E] [--out SECTION.md]
    ... --run gan tinydgm        # one training run only (its results go to --work), e.g. to run in parallel
    ... --report                 # metrics, figures and the markdown from the runs in --work

Every model uses the same MLP networks, float32, on the 60,000 MNIST training images scaled to [-1, 1]:

    generator      z (100) -> 256 -> 512 -> 784, ReLU, tanh out  (``MLPGenerator`` + tanh)
    discriminator  x (784) -> 512 -> 256 -> 1, LeakyReLU(0.2)    (``MLPDiscriminator``: logit or critic score)

    GAN      non-saturating generator loss, k = 1, Adam(2e-4, (0.5, 0.999))        (the library's defaults)
    WGAN     weight clipping c = 0.01, n_critic = 5, RMSProp(5e-5)                   (Arjovsky et al.)
    WGAN-GP  lambda = 10, n_critic = 5, Adam(1e-4, (0, 0.9))                         (Gulrajani et al.)

Minibatches of 64 for every discriminator/critic step; the budget is the same number of epochs for all
(each training image meets the discriminator once per epoch), so WGAN and WGAN-GP take 5 times fewer
generator steps than the GAN. The PyTorch twin of each run has the same networks, initial weights
(copied), data order, noise (the z and alpha that the tinydgm model draws from its seeded generator,
replayed) and hyperparameters; so the two runs differ only by floating-point rounding, which the
adversarial game amplifies over thousands of steps.

Quality through the shipped MNIST classifier (``tinydgm.evaluate``): the Frechet distance of its
features (FID analogue) between 10,000 samples and the 60,000 training images, and the Inception
Score analogue of the 10,000 samples; the MNIST test images score 4.07 and 9.32 (the best
achievable). Figures: benchmarks/figures/adversarial_samples_<model>.png (64 samples of each side) and
adversarial_losses.png (the intro lecture's GAN-vs-WGAN comparison: the GAN's Jensen-Shannon estimate and
the WGANs' Wasserstein estimate over training, beside the FID of 2,000 samples at checkpoints).
"""
import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

from tinydgm.autodiff.elementwise import tanh  # noqa: E402
from tinydgm.evaluate import classifier_features, gaussian_statistics  # noqa: E402
from tinydgm.evaluate import frechet_distance_gaussians, mnist_inception_score  # noqa: E402
from tinydgm.models.adversarial import GAN, WGAN, WGANGP, MLPDiscriminator, MLPGenerator  # noqa: E402
from tinydgm.nn.module import Module  # noqa: E402

LATENT, BATCH = 100, 64
G_HIDDEN, D_HIDDEN = (256, 512), (512, 256)
MODELS = ("gan", "wgan", "wgan_gp")
SIDES = ("tinydgm", "PyTorch")
TITLES = {"gan": "GAN (non-saturating)", "wgan": "WGAN (clipping)", "wgan_gp": "WGAN-GP"}
HYPER = {"gan": dict(lr=2e-4, betas=(0.5, 0.999)), "wgan": dict(n_critic=5, clip_value=0.01, lr=5e-5),
         "wgan_gp": dict(n_critic=5, lam=10.0, lr=1e-4, betas=(0.0, 0.9))}
N_SAMPLES, N_CHECK, N_CHECKPOINTS = 10_000, 2_000, 10
FIGURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "figures")


# ----------------------------------------------------------------------------- networks

class TanhGenerator(Module):
    """x = tanh(MLP(z)): the MLP generator with outputs in [-1, 1], the range of the data."""

    def __init__(self, rng, dtype="float32"):
        super().__init__()
        self.mlp = MLPGenerator(LATENT, 784, G_HIDDEN, rng=rng, dtype=dtype)

    def forward(self, z):
        return tanh(self.mlp(z))


def build_model(name, seed):
    rng = np.random.default_rng(seed)
    generator = TanhGenerator(rng)
    discriminator = MLPDiscriminator(784, D_HIDDEN, rng=rng, dtype="float32")
    cls = {"gan": GAN, "wgan": WGAN, "wgan_gp": WGANGP}[name]
    return cls(generator, discriminator, LATENT, rng=np.random.default_rng(seed + 1), **HYPER[name])


class TorchMLP(torch.nn.Module):
    """The twin of an MLP (tinydgm ``layers.i.weight`` of shape (in, out) copied transposed)."""

    def __init__(self, module, hidden_act, out_act):
        super().__init__()
        state = module.state_dict()
        n = len([k for k in state if k.endswith(".weight")])
        self.layers = torch.nn.ModuleList()
        prefix = next(iter(state)).rsplit("layers.", 1)[0]
        for i in range(n):
            w, b = state[f"{prefix}layers.{i}.weight"], state[f"{prefix}layers.{i}.bias"]
            layer = torch.nn.Linear(*w.shape)
            with torch.no_grad():
                layer.weight.copy_(torch.tensor(np.ascontiguousarray(w.T)))
                layer.bias.copy_(torch.tensor(b))
            self.layers.append(layer)
        self.hidden_act, self.out_act = hidden_act, out_act

    def forward(self, x):
        for layer in self.layers[:-1]:
            x = self.hidden_act(layer(x))
        return self.out_act(self.layers[-1](x))


def torch_twin(model):
    """(generator, critic) in PyTorch with the model's current weights."""
    g = TorchMLP(model.generator, torch.relu, torch.tanh)
    d = TorchMLP(model.discriminator, lambda h: torch.nn.functional.leaky_relu(h, 0.2), lambda h: h.reshape(-1))
    return g, d


class TorchTrainer:
    """One round of ``GAN``/``WGAN``/``WGANGP.train_step`` in PyTorch, drawing z (and alpha) from a
    NumPy generator in the order the tinydgm model draws them."""

    def __init__(self, name, model, seed):
        self.name, self.h = name, HYPER[name]
        self.g, self.d = torch_twin(model)
        self.rng = np.random.default_rng(seed + 1)              # the model's own stream, replayed
        if name == "wgan":
            self.opt_d = torch.optim.RMSprop(self.d.parameters(), lr=self.h["lr"])
            self.opt_g = torch.optim.RMSprop(self.g.parameters(), lr=self.h["lr"])
        else:
            betas = self.h["betas"]
            self.opt_d = torch.optim.Adam(self.d.parameters(), lr=self.h["lr"], betas=betas)
            self.opt_g = torch.optim.Adam(self.g.parameters(), lr=self.h["lr"], betas=betas)
        self.k = self.h.get("n_critic", 1)

    def z(self, m):
        return torch.tensor(self.rng.standard_normal(size=(m, LATENT)).astype(np.float32))

    def critic_step(self, x):
        m = x.shape[0]
        with torch.no_grad():
            fake = self.g(self.z(m))
        real_s, fake_s = self.d(x), self.d(fake)
        report = {}
        if self.name == "gan":
            loss = -(torch.nn.functional.logsigmoid(real_s).mean() + torch.nn.functional.logsigmoid(-fake_s).mean())
            report["discriminator_loss"] = loss.item()
        else:
            loss = -(real_s.mean() - fake_s.mean())
            report["critic_loss"] = loss.item()
            report["wasserstein_estimate"] = -loss.item()
        if self.name == "wgan_gp":
            alpha = torch.tensor(self.rng.random(m).astype(np.float32)).reshape(m, 1)
            x_hat = (alpha * x + (1 - alpha) * fake).requires_grad_()
            grad, = torch.autograd.grad(self.d(x_hat).sum(), x_hat, create_graph=True)
            norm = torch.sqrt((grad * grad).sum(1) + 1e-12)
            penalty = self.h["lam"] * ((norm - 1) ** 2).mean()
            report["gradient_penalty"] = penalty.item()
            loss = loss + penalty
        self.opt_d.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_d.step()
        if self.name == "wgan":
            with torch.no_grad():
                for p in self.d.parameters():
                    p.clamp_(-self.h["clip_value"], self.h["clip_value"])
        return report

    def train_step(self, x):
        x = torch.tensor(x)
        m = x.shape[0] // self.k
        history = [self.critic_step(x[i * m:(i + 1) * m]) for i in range(self.k)]
        report = {key: sum(h[key] for h in history) / self.k for key in history[0]}
        self.d.requires_grad_(False)
        fake_s = self.d(self.g(self.z(m)))
        if self.name == "gan":
            g_loss = -torch.nn.functional.logsigmoid(fake_s).mean()
        else:
            g_loss = -fake_s.mean()
        self.opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        self.d.requires_grad_(True)
        self.opt_g.step()
        report["generator_loss"] = g_loss.item()
        return report

    def sample(self, n, seed):
        z = np.random.default_rng(seed).standard_normal(size=(n, LATENT)).astype(np.float32)
        with torch.no_grad():
            return self.g(torch.tensor(z)).numpy()


def tinydgm_sample(model, n, seed):
    z = np.random.default_rng(seed).standard_normal(size=(n, LATENT)).astype(np.float32)
    return model.generate(z).numpy()


# ----------------------------------------------------------------------------- data and metrics

def load_data():
    from tinydgm.data import load_mnist
    mnist = load_mnist(download=False, progress=False)
    x_train = mnist["x_train"].reshape(-1, 784)
    return x_train, mnist["x_test"].reshape(-1, 784)


def to_unit(x):
    """Generator outputs in [-1, 1] -> pixels in [0, 1] for the classifier (tanh stays inside)."""
    return np.clip((np.asarray(x, dtype=np.float64) + 1) / 2, 0, 1)


def training_statistics(x_train):
    """mu, Sigma of the classifier's features of the 60,000 training images (cached per process)."""
    return gaussian_statistics(classifier_features(x_train))


def fid_against(stats, images):
    mu, sigma = gaussian_statistics(classifier_features(to_unit(images)))
    return frechet_distance_gaussians(mu, sigma, *stats)


# ----------------------------------------------------------------------------- one run

def check_twin(name, seed, data, rounds=3, rtol=1e-3):
    """The twin takes the same first rounds as the tinydgm model: every reported loss agrees
    (float32, so to rtol); returns the pairs."""
    model = build_model(name, seed)
    trainer = TorchTrainer(name, model, seed)
    per_round = HYPER[name].get("n_critic", 1) * BATCH
    pairs = []
    for r in range(rounds):
        x = data[r * per_round:(r + 1) * per_round]
        a, b = model.train_step(x), trainer.train_step(x)
        for key in a:
            assert abs(a[key] - b[key]) <= rtol * max(abs(b[key]), 1e-2), \
                f"{name} round {r} {key}: {a[key]} vs {b[key]}"
        pairs.append((a, b))
    return pairs


def train_run(name, side, epochs, seed, work, max_rounds=None):
    """Train one model (or its twin) for ``epochs`` epochs; save losses, checkpoint FIDs and final
    samples to ``work``/<name>_<side>.npz (and .json)."""
    x_train, _ = load_data()
    data = (x_train.astype(np.float32) / 127.5 - 1).astype(np.float32)
    stats = training_statistics(x_train)
    model = build_model(name, seed)
    trainer = None
    if side == "PyTorch":
        for a, b in check_twin(name, seed, data):
            print(f"{name}: same first rounds on both sides: {a} / {b}", flush=True)
        trainer = TorchTrainer(name, model, seed)
    k = HYPER[name].get("n_critic", 1)
    per_round = k * BATCH
    rounds_per_epoch = len(data) // per_round if max_rounds is None else max_rounds
    total = epochs * rounds_per_epoch
    checkpoints = set(np.linspace(0, total, N_CHECKPOINTS + 1).astype(int)[1:])
    data_rng = np.random.default_rng(seed + 2)
    history, fids = [], []
    train_seconds = cpu_seconds = 0.0
    step = 0
    for epoch in range(epochs):
        order = data_rng.permutation(len(data))
        for r in range(rounds_per_epoch):
            x = data[order[r * per_round:(r + 1) * per_round]]
            t0, c0 = time.perf_counter(), time.process_time()
            report = trainer.train_step(x) if trainer else model.train_step(x)
            train_seconds += time.perf_counter() - t0
            cpu_seconds += time.process_time() - c0
            history.append(report)
            step += 1
            if step in checkpoints:
                seed_k = 1000 + step
                samples = trainer.sample(N_CHECK, seed_k) if trainer else tinydgm_sample(model, N_CHECK, seed_k)
                fids.append((step, fid_against(stats, samples)))
                print(f"{name} {side}: round {step}/{total}, FID({N_CHECK}) {fids[-1][1]:.2f}, "
                      f"{train_seconds:.0f} s, last {report}", flush=True)
    samples = trainer.sample(N_SAMPLES, 12345) if trainer else tinydgm_sample(model, N_SAMPLES, 12345)
    keys = sorted(history[0])
    out = os.path.join(work, f"{name}_{side}")
    np.savez(out + ".npz", samples=samples.astype(np.float32), fids=np.array(fids),
             **{key: np.array([h[key] for h in history]) for key in keys})
    with open(out + ".json", "w") as f:
        json.dump({"model": name, "side": side, "epochs": epochs, "rounds": total, "seed": seed,
                   "train_seconds": train_seconds, "cpu_seconds": cpu_seconds,
                   "generator_steps": total, "critic_steps": total * k, "loadavg_end": os.getloadavg()}, f)
    print(f"{name} {side}: done, {train_seconds:.0f} s wall, {cpu_seconds:.0f} s CPU", flush=True)


# ----------------------------------------------------------------------------- report

def smooth(values, width):
    if len(values) < width:
        return np.arange(len(values)), values
    kernel = np.ones(width) / width
    return np.arange(width - 1, len(values)), np.convolve(values, kernel, mode="valid")


def sample_figure(name, runs, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(8, 4.3))
    for ax, side in zip(axes, SIDES):
        x = to_unit(runs[(name, side)]["samples"][:64]).reshape(8, 8, 28, 28)
        grid = np.ones((8 * 29 + 1, 8 * 29 + 1))
        for i in range(8):
            for j in range(8):
                grid[1 + 29 * i:29 * i + 29, 1 + 29 * j:29 * j + 29] = x[i, j]
        ax.imshow(grid, cmap="gray", vmin=0, vmax=1)
        ax.set_title(f"{TITLES[name]}: {side}")
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def loss_figure(runs, path):
    """The intro lecture's "experimental comparison GAN and WGAN": the GAN's loss (as the
    Jensen-Shannon estimate it implies) and the WGANs' Wasserstein estimate over training, each
    beside the FID at checkpoints."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.4))
    for ax, name in zip(axes, MODELS):
        meta = runs[(name, "tinydgm")]["meta"]
        epochs_per_round = meta["epochs"] / meta["rounds"]
        if name == "gan":
            label = "JSD estimate (ln 4 - discriminator loss) / 2"
        else:
            label = "Wasserstein estimate E D(x) - E D(G(z))"
        twin = ax.twinx()
        curves = []
        for side, style, marker in (("tinydgm", "-", "o"), ("PyTorch", "--", "s")):
            if (name, side) not in runs:
                continue
            run = runs[(name, side)]
            curve = (math.log(4) - run["discriminator_loss"]) / 2 if name == "gan" else run["wasserstein_estimate"]
            curves.append(curve)
            if side == "tinydgm":
                ax.plot(np.arange(len(curve)) * epochs_per_round, curve, color="C0", alpha=0.15, lw=0.5)
            steps, smoothed = smooth(curve, max(len(curve) // 100, 1))
            ax.plot(steps * epochs_per_round, smoothed, style, color="C0", label=f"{side} (smoothed)")
            fids = run["fids"]
            twin.plot(fids[:, 0] * epochs_per_round, fids[:, 1], marker + style, color="C3", mfc="none"
                      if side == "PyTorch" else "C3", label=f"FID, {side}")
        # the y range of the smoothed curves after the first 5 % of training (the start spikes)
        kept = [smooth(c, max(len(c) // 100, 1))[1][len(c) // 20:] for c in curves]
        low, high = min(float(k.min()) for k in kept), max(float(k.max()) for k in kept)
        ax.set_ylim(low - 0.15 * (high - low), high + 0.35 * (high - low))
        ax.set_xlabel("epoch")
        ax.set_ylabel(label, color="C0", fontsize=8)
        ax.set_title(TITLES[name])
        ax.legend(loc="upper left", fontsize=7, title="estimate", title_fontsize=7)
        twin.set_ylabel(f"FID analogue ({N_CHECK} samples, log scale)", color="C3", fontsize=8)
        twin.set_yscale("log")
        twin.legend(loc="upper right", fontsize=7, title="sample quality", title_fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def load_runs(work):
    return common.load_runs(work, MODELS, SIDES)


def make_report(work, command):
    x_train, x_test = load_data()
    stats = training_statistics(x_train)
    runs = load_runs(work)
    rows = []
    fid_test = frechet_distance_gaussians(*gaussian_statistics(classifier_features(x_test)), *stats)
    is_test = mnist_inception_score(x_test)
    rows.append(["MNIST test images (10,000): the best achievable", "—", "—", f"{fid_test:.2f}", f"{is_test:.2f}",
                 "—"])
    for name in MODELS:
        for side in SIDES:
            if (name, side) not in runs:
                rows.append([TITLES[name], side, "not run", "—", "—", "—"])
                continue
            run = runs[(name, side)]
            meta = run["meta"]
            samples = run["samples"]
            fid = fid_against(stats, samples)
            score = mnist_inception_score(to_unit(samples))
            run["fid"], run["is"] = fid, score
            epochs = f"{meta['epochs']} epoch{'s' * (meta['epochs'] != 1)}"
            rows.append([TITLES[name], side, f"{epochs}: {meta['critic_steps']:,} D / "
                         f"{meta['generator_steps']:,} G steps", f"{fid:.2f}", f"{score:.2f}",
                         f"{meta['train_seconds']:.0f} s ({meta['cpu_seconds']:.0f} s CPU)"])
            print(rows[-1], flush=True)
    os.makedirs(FIGURES, exist_ok=True)
    for name in MODELS:
        if all((name, side) in runs for side in SIDES):
            sample_figure(name, runs, os.path.join(FIGURES, f"adversarial_samples_{name}.png"))
    if all((name, "tinydgm") in runs for name in MODELS):
        loss_figure(runs, os.path.join(FIGURES, "adversarial_losses.png"))
    table = common.markdown_table(["model", "side", "budget", "FID analogue (10,000 samples vs train) ↓",
                                   "IS analogue (10,000 samples) ↑", "training time"], rows)
    checkpoint_lines = []
    for name in MODELS:
        for side in SIDES:
            if (name, side) in runs:
                f = runs[(name, side)]["fids"]
                checkpoint_lines.append(f"- {TITLES[name]}, {side}: " + ", ".join(f"{v:.1f}" for v in f[:, 1]))
    return table, checkpoint_lines, fid_test, is_test, runs


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=10, help="epochs of the training set per run (default 10)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "tinydgm_quality_adversarial"),
                        help="folder for the runs' results")
    parser.add_argument("--run", nargs=2, metavar=("MODEL", "SIDE"), help="one run: MODEL in gan, wgan, wgan_gp; "
                        "SIDE tinydgm or PyTorch")
    parser.add_argument("--report", action="store_true", help="only the report, from the runs in --work")
    parser.add_argument("--threads", type=int, default=1, help="threads per run (default 1)")
    parser.add_argument("--out", help="write the markdown section to this file")
    parser.add_argument("--max-rounds", type=int, help="rounds per epoch (a smoke run; default: the whole set)")
    cfg = parser.parse_args(argv)
    os.makedirs(cfg.work, exist_ok=True)
    common.pin_threads(cfg.threads)
    torch.set_num_threads(cfg.threads)
    if cfg.run:
        name, side = cfg.run
        if name not in MODELS or side not in SIDES:
            parser.error(f"--run MODEL SIDE with MODEL in {MODELS} and SIDE in {SIDES}")
        train_run(name, side, cfg.epochs, cfg.seed, cfg.work, cfg.max_rounds)
        return
    if not cfg.report:
        for name in MODELS:
            for side in SIDES:
                subprocess.run([sys.executable, __file__, "--run", name, side, "--epochs", str(cfg.epochs),
                                "--seed", str(cfg.seed), "--work", cfg.work, "--threads", str(cfg.threads)],
                               check=True)
    command = (f"TINYDGM_DATA=<folder with mnist.npz> python benchmarks/quality_adversarial.py --epochs {cfg.epochs}"
               + (f" --out {cfg.out}" if cfg.out else ""))
    table, checkpoint_lines, fid_test, is_test, runs = make_report(cfg.work, command)
    section = "\n".join([f"Command: `{command}`.", "", table, "",
                         f"FID analogue of {N_CHECK} samples at {N_CHECKPOINTS} checkpoints (against the training "
                         "images' statistics; biased upwards at this sample size):", ""] + checkpoint_lines)
    print("\n" + section)
    common.write_section(cfg.out, section)


if __name__ == "__main__":
    main()
