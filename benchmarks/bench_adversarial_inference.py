"""BiGAN and InfoGAN training steps (issue 16), side by side with PyTorch twins on the CPU, in one process.

    python benchmarks/bench_adversarial_inference.py [--quick] [--threads N] [--out SECTION.md] [--parts bigan,infogan]

bigan: one ``BiGAN.train_step`` with k = 1, batch 64 of flat 784-pixel images in [-1, 1], float32: the
discriminator's update on the encoder's pairs (x, E(x)) and the generator's pairs (G(z), z) (E and G without
graph), then the joint update of E and G (the labels swapped: -mean ln D(G(z), z) - mean ln(1 - D(x, E(x))),
the discriminator frozen), Adam(betas (0.5, 0.999)): the discriminator at lr 2e-4, E and G at 1e-3 (at 2e-4
the discriminator won the MNIST game within 3 epochs). Networks (the MNIST configuration of
``quality_adversarial_inference.py``): encoder 784 -> 512 -> 512 -> 50 (ReLU), generator 50 -> 512 -> 512
-> 784 (ReLU, tanh out), joint discriminator [x, z] (834) -> 512 -> 512 -> 1 (LeakyReLU 0.2).

infogan: one ``InfoGAN.train_step`` with k = 1, batch 64: the update of D and Q on real images and
G(z, c) (no graph into G): -V(D, G) - lambda L_I; then G's update: -mean ln D(G(z, c)) - lambda L_I with the
discriminator frozen; lambda = 1, Adam(2e-4, (0.5, 0.999)). Codes: 62 noise, a 10-way categorical and 2
continuous U(-1, 1). Generator 74 -> 256 -> 512 -> 784 (ReLU, tanh out); discriminator body 784 -> 512 ->
256 (LeakyReLU 0.2), D head 256 -> 1 and Q head 256 -> 12 (10 category logits, 2 means). The generator's
Adam runs at lr 1e-3, as in the authors' released code (D and Q at 2e-4).

The PyTorch twins are the same networks in ``torch.nn`` with the tinydgm weights copied. Before timing,
both sides take 3 steps from the same weights with the same noise (z and the codes drawn by the tinydgm
model from one seeded generator and replayed into the twin) and the reported losses must agree, in
float64 to 1e-9 and in float32 to 2e-3 relative. Target: at most 1.5x PyTorch.
"""
import math
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

import tinydgm as td  # noqa: E402
from tinydgm.autodiff.elementwise import tanh  # noqa: E402
from tinydgm.models.adversarial import (BiGAN, InfoDiscriminator, InfoGAN, JointDiscriminator,  # noqa: E402
                                        MLPGenerator)
from tinydgm.nn.module import Module  # noqa: E402
from tinydgm.optim import Adam  # noqa: E402

BATCH = 64
ADAM = dict(lr=2e-4, betas=(0.5, 0.999))
BIGAN = dict(latent=50, encoder=(512, 512), generator=(512, 512), discriminator=(512, 512), eg_lr=1e-3)
INFOGAN = dict(noise=62, categories=10, continuous=2, generator=(256, 512), body=(512, 256), lam=1.0, g_lr=1e-3)
LOG_2PI = math.log(2 * math.pi)
SECTIONS, section = common.part_registry()


# ----------------------------------------------------------------------------- the tinydgm models

class TanhMLP(Module):
    """x = tanh(MLP(u)): an MLP generator with outputs in [-1, 1], the range of the data."""

    def __init__(self, n_in, n_out, hidden, rng, dtype):
        super().__init__()
        self.mlp = MLPGenerator(n_in, n_out, hidden, rng=rng, dtype=dtype)

    def forward(self, u):
        return tanh(self.mlp(u))


def build_bigan(seed=0, dtype="float32"):
    rng = np.random.default_rng(seed)
    c = BIGAN
    encoder = MLPGenerator(784, c["latent"], c["encoder"], rng=rng, dtype=dtype)      # a deterministic MLP x -> z
    generator = TanhMLP(c["latent"], 784, c["generator"], rng, dtype)
    discriminator = JointDiscriminator(784, c["latent"], c["discriminator"], rng=rng, dtype=dtype)
    # E and G at lr 1e-3, D at 2e-4: with 2e-4 for all three the discriminator won (its loss 0.02 by epoch 3)
    g_optimizer = Adam(list(generator.parameters()) + list(encoder.parameters()), lr=c["eg_lr"], betas=ADAM["betas"])
    return BiGAN(encoder, generator, discriminator, c["latent"], g_optimizer=g_optimizer,
                 rng=np.random.default_rng(seed + 1), **ADAM)


def build_infogan(seed=0, dtype="float32", lam_continuous=None):
    rng = np.random.default_rng(seed)
    c = INFOGAN
    generator = TanhMLP(c["noise"] + c["categories"] + c["continuous"], 784, c["generator"], rng, dtype)
    discriminator = InfoDiscriminator(784, c["categories"], c["continuous"], c["body"], rng=rng, dtype=dtype)
    g_optimizer = Adam(generator.parameters(), lr=c["g_lr"], betas=ADAM["betas"])     # the authors' code: G at 1e-3
    return InfoGAN(generator, discriminator, c["noise"], lam=c["lam"], lam_continuous=lam_continuous,
                   g_optimizer=g_optimizer, rng=np.random.default_rng(seed + 1), **ADAM)


# ----------------------------------------------------------------------------- the PyTorch twins

def torch_layers(layers, dtype):
    """torch Linear layers with the weights of a tinydgm ModuleList of Linear ((in, out) weights: transposed)."""
    return torch.nn.ModuleList(common.torch_linear(layer, dtype) for layer in layers)


def run_mlp(layers, h, act, out=None):
    for layer in layers[:-1]:
        h = act(layer(h))
    h = layers[-1](h)
    return h if out is None else out(h)


def leaky(h):
    return F.leaky_relu(h, 0.2)


class _Frozen:
    def __init__(self, module):
        self.module = module

    def __enter__(self):
        self.module.requires_grad_(False)

    def __exit__(self, *exc):
        self.module.requires_grad_(True)


class TorchBiGAN(torch.nn.Module):
    """``BiGAN.train_step`` (k = 1, labels swapped for E and G) in PyTorch; z replayed from a NumPy generator
    in the order the tinydgm model draws them (the discriminator's z, then the E-and-G step's)."""

    def __init__(self, model, noise_seed, dtype=torch.float32):
        super().__init__()
        self.E = torch_layers(model.encoder.layers, dtype)
        self.G = torch_layers(model.generator.mlp.layers, dtype)
        self.D = torch_layers(model.discriminator.layers, dtype)
        self.dtype, self.noise, self.latent = dtype, np.random.default_rng(noise_seed), model.latent_dim
        self.opt_d = torch.optim.Adam(self.D.parameters(), **ADAM)
        self.opt_eg = torch.optim.Adam(list(self.G.parameters()) + list(self.E.parameters()), lr=BIGAN["eg_lr"],
                                       betas=ADAM["betas"])

    def encode(self, x):
        return run_mlp(self.E, x, torch.relu)

    def generate(self, z):
        return run_mlp(self.G, z, torch.relu, torch.tanh)

    def logits(self, x, z):
        return run_mlp(self.D, torch.cat([x, z], 1), leaky).reshape(-1)

    def z(self, n):
        return torch.tensor(self.noise.standard_normal(size=(n, self.latent)), dtype=self.dtype)

    def train_step(self, x):
        z = self.z(x.shape[0])
        with torch.no_grad():
            z_hat, x_fake = self.encode(x), self.generate(z)
        d_loss = -(F.logsigmoid(self.logits(x, z_hat)).mean() + F.logsigmoid(-self.logits(x_fake, z)).mean())
        self.opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        self.opt_d.step()
        z = self.z(x.shape[0])
        with _Frozen(self.D):
            encoder_logits, generator_logits = self.logits(x, self.encode(x)), self.logits(self.generate(z), z)
            eg_loss = -(F.logsigmoid(generator_logits).mean() + F.logsigmoid(-encoder_logits).mean())
            self.opt_eg.zero_grad(set_to_none=True)
            eg_loss.backward()
        self.opt_eg.step()
        return {"discriminator_loss": d_loss.item(), "encoder_generator_loss": eg_loss.item()}


class TorchInfoGAN(torch.nn.Module):
    """``InfoGAN.train_step`` (k = 1) in PyTorch; the codes and z replayed in the tinydgm model's order
    (categories, continuous codes, noise; for the discriminator's step, then the generator's)."""

    def __init__(self, model, noise_seed, dtype=torch.float32):
        super().__init__()
        self.G = torch_layers(model.generator.mlp.layers, dtype)
        self.body = torch_layers(model.discriminator.body, dtype)
        self.d_head = common.torch_linear(model.discriminator.d_head, dtype)
        self.q_head = common.torch_linear(model.discriminator.q_head, dtype)
        self.dtype, self.noise = dtype, np.random.default_rng(noise_seed)
        self.k, self.c, self.noise_dim, self.lam = (model.n_categories, model.n_continuous, model.noise_dim,
                                                    model.lam)
        self.entropy = math.log(self.k) + self.c * math.log(2)
        self.discriminator = torch.nn.ModuleList([self.body, self.d_head, self.q_head])
        self.opt_d = torch.optim.Adam(self.discriminator.parameters(), **ADAM)
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=INFOGAN["g_lr"], betas=ADAM["betas"])

    def codes(self, n):
        categories = self.noise.integers(0, self.k, size=n)
        continuous = torch.tensor(self.noise.uniform(-1.0, 1.0, size=(n, self.c)), dtype=self.dtype)
        z = torch.tensor(self.noise.standard_normal(size=(n, self.noise_dim)), dtype=self.dtype)
        one_hot = F.one_hot(torch.tensor(categories), self.k).to(self.dtype)
        return z, one_hot, continuous

    def generate(self, z, one_hot, continuous):
        return run_mlp(self.G, torch.cat([z, one_hot, continuous], 1), torch.relu, torch.tanh)

    def features(self, x):
        h = x
        for layer in self.body:
            h = leaky(layer(h))
        return h

    def information(self, h, one_hot, continuous):
        q = self.q_head(h)
        log_q_cat = (one_hot * F.log_softmax(q[:, :self.k], 1)).sum(1)
        log_q_cont = (-0.5 * (continuous - q[:, self.k:]) ** 2 - 0.5 * LOG_2PI).sum(1)
        return (log_q_cat + log_q_cont).mean() + self.entropy

    def train_step(self, x):
        z, one_hot, continuous = self.codes(x.shape[0])
        with torch.no_grad():
            x_fake = self.generate(z, one_hot, continuous)
        h_fake = self.features(x_fake)
        d_loss = -(F.logsigmoid(self.d_head(self.features(x)).reshape(-1)).mean()
                   + F.logsigmoid(-self.d_head(h_fake).reshape(-1)).mean())
        info_d = -self.lam * self.information(h_fake, one_hot, continuous)
        self.opt_d.zero_grad(set_to_none=True)
        (d_loss + info_d).backward()
        self.opt_d.step()
        z, one_hot, continuous = self.codes(x.shape[0])
        with _Frozen(self.discriminator):
            h_fake = self.features(self.generate(z, one_hot, continuous))
            g_loss = -F.logsigmoid(self.d_head(h_fake).reshape(-1)).mean()
            info_g = -self.lam * self.information(h_fake, one_hot, continuous)
            self.opt_g.zero_grad(set_to_none=True)
            (g_loss + info_g).backward()
        self.opt_g.step()
        return {"discriminator_loss": d_loss.item(), "information_loss": info_d.item(),
                "generator_loss": g_loss.item(), "generator_information_loss": info_g.item()}

    def infer_categories(self, x):
        with torch.no_grad():
            return self.q_head(self.features(x))[:, :self.k].argmax(1).numpy()


BUILDERS = {"bigan": (build_bigan, TorchBiGAN), "infogan": (build_infogan, TorchInfoGAN)}


# ----------------------------------------------------------------------------- data and agreement checks

def real_batches(n_batches, dtype, seed=1):
    """(n_batches, 64, 784) images in [-1, 1]: MNIST training images when TINYDGM_DATA holds them, else random
    images (the step's cost does not depend on the pixels)."""
    n = n_batches * BATCH
    try:
        from tinydgm.data import load_mnist
        x = load_mnist(download=False, progress=False)["x_train"][:n].reshape(n, 784).astype(np.float64) / 127.5 - 1
        source = "MNIST training images scaled to [-1, 1]"
    except Exception:                                                   # no data here: any images will do
        x = np.tanh(np.random.default_rng(seed).standard_normal((n, 784)))
        source = "random images in [-1, 1] (no MNIST found)"
    return x.reshape(n_batches, BATCH, 784).astype(dtype), source


def check_twin(name, dtype, rtol, steps=3, seed=0):
    """``steps`` rounds on both sides from the same weights with the same noise: every reported loss agrees."""
    build, twin_class = BUILDERS[name]
    model = build(seed, dtype)
    twin = twin_class(model, seed + 1, torch.float64 if dtype == "float64" else torch.float32)
    batches, _ = real_batches(steps, dtype)
    rows = []
    for x in batches:
        a, b = model.train_step(td.tensor(x)), twin.train_step(torch.tensor(x))
        for key in a:
            assert abs(a[key] - b[key]) <= rtol * max(abs(b[key]), 1e-3), f"{name} {dtype} {key}: {a[key]} vs {b[key]}"
        rows.append((a, b))
    return rows


# ----------------------------------------------------------------------------- timing

def part(cfg, name, description):
    loadavg = os.getloadavg()
    checked64 = check_twin(name, "float64", 1e-9)
    check_twin(name, "float32", 2e-3)
    first = checked64[0]
    print("  same losses in float64, first step: " + ", ".join(f"{k} {first[0][k]:.6f}/{first[1][k]:.6f}"
                                                               for k in first[0]), flush=True)
    build, twin_class = BUILDERS[name]
    model = build(5, "float32")
    twin = twin_class(model, 6)
    batches, source = real_batches(8, np.float32)
    stats = common.time_steps(model.train_step, twin.train_step, batches, cfg.repeats, cfg.sample_s, cfg.settle_s,
                              warmup=2)
    ratio, _ = common.paired_ratio(stats["tinydgm"], stats["PyTorch"])
    iqr = common.paired_ratio_iqr(stats["tinydgm"], stats["PyTorch"])
    n_params = model.num_parameters()
    return "\n".join([
        description + f" {n_params / 1e6:.2f}M parameters, float32, batch 64 of {source}.", "",
        "Checked before timing: 3 steps from the same weights with the same noise (the tinydgm model's draws "
        "replayed into the twin), every reported loss equal to 1e-9 relative in float64 (first step: "
        + ", ".join(f"{k} {first[0][k]:.6f} / {first[1][k]:.6f}" for k in first[0]) + ") and to 2e-3 in float32. "
        f"{cfg.repeats} interleaved repeats, {cfg.settle_s} s pause before each sample.", "",
        common.pair_table(stats, detail=True), "",
        f"Target at most 1.5x PyTorch: {common.verdict(ratio, iqr, 1.5)}. Load average (1 min) {loadavg[0]:.2f} "
        f"before this part, {os.getloadavg()[0]:.2f} after."])


@section("bigan", "BiGAN step: one discriminator and one encoder-generator update, batch 64, MNIST MLPs")
def bench_bigan(cfg):
    return part(cfg, "bigan", "One round = `BiGAN.train_step(x)` with k = 1: the discriminator's update on (x, E(x)) "
                "and (G(z), z) pairs, then one Adam step of the encoder and the generator together. Encoder 784 -> "
                "512 -> 512 -> 50, generator 50 -> 512 -> 512 -> 784 (tanh), joint discriminator 834 -> 512 -> 512 -> "
                "1.")


@section("infogan", "InfoGAN step: one D-and-Q and one generator update, batch 64, MNIST MLPs")
def bench_infogan(cfg):
    return part(cfg, "infogan", "One round = `InfoGAN.train_step(x)` with k = 1: D and Q (one body, two heads) on "
                "real images and G(z, c), -V - L_I; then G on -mean ln D(G(z, c)) - L_I. 62 noise + 10-way categorical "
                "+ 2 continuous codes; generator 74 -> 256 -> 512 -> 784 (tanh), body 784 -> 512 -> 256, heads "
                "256 -> 1 and 256 -> 12.")


def main(argv=None):
    parser = common.parts_parser(__doc__, SECTIONS)
    parser.add_argument("--repeats", type=int, default=11, help="interleaved repeats per case (default 11)")
    cfg = parser.parse_args(argv)
    cfg.repeats = 5 if cfg.quick else cfg.repeats
    cfg.sample_s = 0.05 if cfg.quick else 0.2
    cfg.settle_s = 0.1
    parts = common.chosen_parts(parser, cfg, SECTIONS)
    pinned = common.pin_threads(cfg.threads)
    info, bodies, elapsed, load0, load = common.run_sections(cfg, SECTIONS, parts, pinned)
    command = "python benchmarks/bench_adversarial_inference.py" + (" --quick" if cfg.quick else "") + \
        f" --threads {cfg.threads}" + (f" --parts {cfg.parts}" if cfg.parts else "") + f" --repeats {cfg.repeats}" + \
        (f" --out {cfg.out}" if cfg.out else "")
    common.finish_section(cfg.out, common.command_head(command, elapsed, load0, load, info, cfg.threads), bodies)


if __name__ == "__main__":
    main()
