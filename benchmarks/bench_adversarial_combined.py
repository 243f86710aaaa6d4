"""CycleGAN, FlowGAN and adversarial autoencoder benchmark (issue 16), side by side with PyTorch on
the CPU, in one process.

    python benchmarks/bench_adversarial_combined.py [--quick] [--threads N] [--out SECTION.md]
                                                    [--parts cyclegan,flowgan,aae] [--cpu-only]

cyclegan: one ``CycleGAN.train_step((x, y))`` on 28 x 28 digits and inverted digits, batch 64 of each,
float32: G and F are ``ConvTranslator(1, 16, n_layers=2)`` (3x3 convs 1 -> 16 -> 16 -> 1, ReLU, sigmoid),
D_X and D_Y MLPs 784 -> 256 -> 1 (LeakyReLU 0.2) on the flattened image; the generators' update (least-
squares GAN terms of both translations, 10 x the L1 cycle loss of both cycles, discriminators frozen,
Adam(2e-4, (0.5, 0.999))), then the discriminators' update on the step's translations.

flowgan: one ``FlowGAN.train_step(x)`` with the hybrid objective (lambda = 1), batch 5 x 64 of
flattened dequantized digits in [0, 1]: the flow ``toy_realnvp(784, 4, hidden=(256,))`` (4 affine
couplings with half masks, MLP conditioners 784 -> 256 -> 2 x 784, bounded log-scales), the critic an
MLP 784 -> 256 -> 1; 5 WGAN-GP critic steps (64 real images, 64 G(z) = f^{-1}(z), the penalty's double
backprop) and one generator step on -E D(f^{-1}(z)) - E log p(x) over the 320 images and 320 fresh z;
Adam(1e-4, (0, 0.9)).

aae: one ``AdversarialAutoencoder.train_step(x)``, batch 100 of binarized digits: encoder 784 -> 512 ->
512 -> 2 (z = mu(x)), Bernoulli decoder 2 -> 512 -> 512 -> 784, discriminator on z 2 -> 64 -> 64 -> 1,
prior the mixture of 10 Gaussians; the reconstruction update (encoder and decoder), the discriminator's
update (100 prior draws against 100 codes) and the encoder's adversarial update; Adam(1e-3, (0.5, 0.999)).

The PyTorch twins are the same networks in ``torch.nn`` with the tinydgm weights copied (a Linear's
(in, out) weight transposed). Before timing, both sides take 3 steps in float64 from the same weights and
the same noise (z, alpha and prior draws made by the tinydgm model's generator and replayed into the
twin) and every reported loss and every parameter afterwards is asserted to agree. Target: at most 1.5x
PyTorch.
"""
import math
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
from bench_adversarial import report, time_pair  # noqa: E402

import tinydgm as td  # noqa: E402
from tinydgm.models.adversarial import ConvTranslator, CycleGAN, MLPDiscriminator  # noqa: E402
from tinydgm.models.flows import toy_realnvp  # noqa: E402
from tinydgm.models.hybrid import AdversarialAutoencoder, FlowGAN, GaussianMixturePrior2D  # noqa: E402
from tinydgm.models.latent import MLPDecoder, MLPEncoder  # noqa: E402
from tinydgm.nn.module import Module  # noqa: E402

SECTIONS, section = common.part_registry()
TARGET = 1.5


# ----------------------------------------------------------------------------- shared

def digits(n, seed=0):
    """n MNIST training digits as floats in [0, 1] (TINYDGM_DATA), else the embedded 1000, repeated."""
    try:
        from tinydgm.data import load_mnist
        x, source = load_mnist(download=False, progress=False)["x_train"][:n], "MNIST training digits"
    except Exception:                                                  # no data here: the embedded set will do
        from tinydgm.data import load_embedded
        x, source = load_embedded("train")["x"], "the embedded 1000 digits"
        x = x[np.arange(n) % len(x)]
    return x.reshape(n, 784).astype(np.float64) / 255.0, source


def torch_dtype(dtype):
    return torch.float64 if dtype == "float64" else torch.float32


def copy_weights(module, twin):
    """tinydgm parameters -> the twin's of the same name (2-D Linear weights (in, out) transposed)."""
    target = dict(twin.named_parameters())
    dtype = next(twin.parameters()).dtype
    with torch.no_grad():
        for name, p in module.named_parameters():
            value = p.numpy()
            value = value.T if value.ndim == 2 else value
            assert tuple(target[name].shape) == value.shape, f"{name}: {tuple(target[name].shape)} vs {value.shape}"
            target[name].copy_(torch.tensor(np.ascontiguousarray(value)).to(dtype))
    assert len(target) == len(list(module.named_parameters())), "the twin has other parameters"
    return twin


def assert_same_parameters(module, twin, rtol, what):
    target = dict(twin.named_parameters())
    worst = 0.0
    for name, p in module.named_parameters():
        value = p.numpy()
        value = value.T if value.ndim == 2 else value
        other = target[name].detach().numpy()
        gap = float(np.abs(value - other).max() / max(np.abs(other).max(), 1e-30))
        worst = max(worst, gap)
        assert gap < rtol, f"{what}: {name} differs by {gap:.1e} (relative to its largest entry)"
    return worst


def assert_same_reports(a, b, rtol, what):
    for name, value in b.items():
        assert abs(a[name] - value) <= rtol * max(abs(value), 1e-3), f"{what}: {name} tinydgm {a[name]} vs {value}"


class Frozen:
    def __init__(self, *modules):
        self.modules = modules

    def __enter__(self):
        for m in self.modules:
            m.requires_grad_(False)

    def __exit__(self, *exc):
        for m in self.modules:
            m.requires_grad_(True)


class TorchMLPCritic(torch.nn.Module):
    """The twin of ``MLPDiscriminator``: layers.k = Linear, LeakyReLU(0.2) between them, output (N,)."""

    def __init__(self, sizes):
        super().__init__()
        self.layers = torch.nn.ModuleList(torch.nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))

    def forward(self, x):
        h = x
        for layer in self.layers[:-1]:
            h = F.leaky_relu(layer(h), 0.2)
        return self.layers[-1](h).reshape(-1)


def cpu_seconds(td_call, pt_call, calls=3, rounds=3):
    """CPU time (``time.process_time``) per call of each side, interleaved rounds of ``calls`` calls, median
    over rounds: on a machine whose other processes keep taking the cores, CPU time is what a side used,
    wall time what it waited as well. Fair with 1 thread per side (at 2, spinning thread pools add CPU
    time that is not work). Returns (tinydgm s, PyTorch s, their ratio)."""
    import statistics
    import time
    times = {"tinydgm": [], "PyTorch": []}
    for _ in range(rounds):
        for name, call in (("tinydgm", td_call), ("PyTorch", pt_call)):
            call()
            start = time.process_time()
            for _ in range(calls):
                call()
            times[name].append((time.process_time() - start) / calls)
    a, b = statistics.median(times["tinydgm"]), statistics.median(times["PyTorch"])
    return a, b, a / b


def cpu_note(td_call, pt_call, threads):
    a, b, ratio = cpu_seconds(td_call, pt_call)
    print(f"  CPU time per step: tinydgm {a * 1e3:.0f} ms, PyTorch {b * 1e3:.0f} ms, ratio {ratio:.2f}x", flush=True)
    return (f"CPU time per step (process time, median of 3 interleaved rounds of 3 steps, {threads} thread"
            f"{'s' if threads > 1 else ''} per side): tinydgm {a * 1e3:.0f} ms, PyTorch {b * 1e3:.0f} ms, "
            f"**{ratio:.2f}x**" + (" (at 2 threads PyTorch's spinning OpenMP workers count too)" if threads > 1
                                    else "") + ".")


def timing(cfg, td_call, pt_call, loadavg):
    """The markdown of the timing: the paired wall-clock table and verdict (unless --cpu-only), then the CPU
    time per step of each side."""
    parts = []
    if not cfg.cpu_only:
        stats, load = time_pair(cfg, td_call, pt_call)
        parts += [report(stats, load, TARGET, loadavg), ""]
    return "\n".join(parts + [cpu_note(td_call, pt_call, cfg.threads)])


def twin_step_check(name, td_step, pt_step, inputs, module, twin, rtol):
    """Three steps on both sides; the reports and then every parameter agree. Returns the worst gap."""
    for args in inputs:
        a, b = td_step(*args), pt_step(*args)
        assert_same_reports(a, b, rtol, name)
    return assert_same_parameters(module, twin, rtol * 10, name)


# ----------------------------------------------------------------------------- CycleGAN

class FlatCritic(Module):
    """An MLP critic on flattened images (tinydgm side)."""

    def __init__(self, rng, dtype):
        super().__init__()
        self.mlp = MLPDiscriminator(784, (256,), rng=rng, dtype=dtype)

    def forward(self, x):
        return self.mlp(x.reshape(x.shape[0], -1))


class TorchFlatCritic(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.mlp = TorchMLPCritic((784, 256, 1))

    def forward(self, x):
        return self.mlp(x.reshape(x.shape[0], -1))


class TorchConvTranslator(torch.nn.Module):
    """The twin of ``ConvTranslator(1, 16, 2)``."""

    def __init__(self, channels=16, n_layers=2):
        super().__init__()
        widths = [1] + [channels] * n_layers
        self.hidden = torch.nn.ModuleList(torch.nn.Conv2d(a, b, 3, padding=1) for a, b in zip(widths[:-1], widths[1:]))
        self.out = torch.nn.Conv2d(widths[-1], 1, 3, padding=1)

    def forward(self, x):
        h = x
        for conv in self.hidden:
            h = torch.relu(conv(h))
        return torch.sigmoid(self.out(h))


class TorchCycleGAN:
    """The twin of ``CycleGAN.train_step`` (least squares, lambda 10, G and F updated first)."""

    def __init__(self, model, dtype):
        t = torch_dtype(dtype)
        self.G = copy_weights(model.generator_xy, TorchConvTranslator().to(t))
        self.F = copy_weights(model.generator_yx, TorchConvTranslator().to(t))
        self.D_X = copy_weights(model.discriminator_x, TorchFlatCritic().to(t))
        self.D_Y = copy_weights(model.discriminator_y, TorchFlatCritic().to(t))
        self.lam = model.lambda_cycle
        self.opt_g = torch.optim.Adam(list(self.G.parameters()) + list(self.F.parameters()), lr=2e-4,
                                      betas=(0.5, 0.999))
        self.opt_d = torch.optim.Adam(list(self.D_X.parameters()) + list(self.D_Y.parameters()), lr=2e-4,
                                      betas=(0.5, 0.999))

    def step(self, x, y):
        with Frozen(self.D_X, self.D_Y):
            y_fake, x_fake = self.G(x), self.F(y)
            gan_g = ((self.D_Y(y_fake) - 1) ** 2).mean()
            gan_f = ((self.D_X(x_fake) - 1) ** 2).mean()
            cycle = self.lam * ((self.F(y_fake) - x).abs().mean() + (self.G(x_fake) - y).abs().mean())
            self.opt_g.zero_grad(set_to_none=True)
            (gan_g + gan_f + cycle).backward()
        self.opt_g.step()
        d_x = ((self.D_X(x) - 1) ** 2).mean() + (self.D_X(x_fake.detach()) ** 2).mean()
        d_y = ((self.D_Y(y) - 1) ** 2).mean() + (self.D_Y(y_fake.detach()) ** 2).mean()
        self.opt_d.zero_grad(set_to_none=True)
        (d_x + d_y).backward()
        self.opt_d.step()
        return {"gan_G": gan_g.item(), "gan_F": gan_f.item(), "cycle": cycle.item(), "D_X": d_x.item(),
                "D_Y": d_y.item()}


def cyclegan_sides(dtype, seed=0):
    rng = np.random.default_rng(seed)
    model = CycleGAN(ConvTranslator(1, 16, 2, rng=rng, dtype=dtype), ConvTranslator(1, 16, 2, rng=rng, dtype=dtype),
                     FlatCritic(rng, dtype), FlatCritic(rng, dtype), (1, 28, 28), lambda_cycle=10.0, lr=2e-4)
    return model, TorchCycleGAN(model, dtype)


def cyclegan_batches(n, dtype):
    x, source = digits(128 * n)
    x = x.reshape(n, 2, 64, 1, 28, 28).astype(dtype)
    return [(b[0], 1.0 - b[1]) for b in x], source          # X digits, Y inverted other digits


@section("cyclegan", "CycleGAN step, conv translators and MLP critics, batch 64 + 64, 28x28")
def bench_cyclegan(cfg):
    loadavg = os.getloadavg()
    gaps = {}
    for dtype, rtol in (("float64", 1e-9), ("float32", 2e-3)):
        model, twin = cyclegan_sides(dtype)
        batches, source = cyclegan_batches(3, dtype)
        gaps[dtype] = twin_step_check(
            "CycleGAN " + dtype, lambda x, y: model.train_step((td.tensor(x), td.tensor(y))),
            lambda x, y: twin.step(torch.tensor(x), torch.tensor(y)), batches, _CycleModules(model),
            _CycleModules(twin), rtol)
    print(f"  same reports and parameters after 3 steps: float64 gap {gaps['float64']:.1e}, float32 "
          f"{gaps['float32']:.1e}", flush=True)
    model, twin = cyclegan_sides("float32")
    batches, source = cyclegan_batches(8, np.float32)
    td_batches = [(td.tensor(x), td.tensor(y)) for x, y in batches]
    pt_batches = [(torch.tensor(x), torch.tensor(y)) for x, y in batches]
    td_call, pt_call = common.cycling(model.train_step, td_batches), common.cycling(lambda b: twin.step(*b), pt_batches)
    return "\n".join([
        "One step = `CycleGAN.train_step((x, y))`: G(x), F(y), F(G(x)), G(F(y)) through two `ConvTranslator(1, 16, "
        "2)` (3x3 convs 1 -> 16 -> 16 -> 1, ReLU, sigmoid), the least-squares terms through D_Y and D_X (MLPs "
        "784 -> 256 -> 1, LeakyReLU 0.2, frozen), 10 x the L1 cycle loss, backward, Adam(2e-4, (0.5, 0.999)) on G "
        "and F; then both discriminators on the real batches and the step's translations, backward, Adam. Batch "
        f"64 of X (digits) and 64 of Y (inverted digits) from {source}, float32.", "",
        f"Checked before timing: 3 steps from the same weights agree in every reported term (1e-9 relative in "
        f"float64, 2e-3 in float32) and in every parameter afterwards (largest gap, relative to the parameter's "
        f"largest entry: {gaps['float64']:.1e} in float64, {gaps['float32']:.1e} in float32). {cfg.repeats} "
        "interleaved repeats.", "",
        timing(cfg, td_call, pt_call, loadavg)])


class _CycleModules:
    """The four networks of either side under the tinydgm parameter names."""

    def __init__(self, side):
        if isinstance(side, CycleGAN):
            self.parts = {"generator_xy": side.generator_xy, "generator_yx": side.generator_yx,
                          "discriminator_x": side.discriminator_x, "discriminator_y": side.discriminator_y}
        else:
            self.parts = {"generator_xy": side.G, "generator_yx": side.F, "discriminator_x": side.D_X,
                          "discriminator_y": side.D_Y}

    def named_parameters(self):
        return [(f"{key}.{name}", p) for key, part in self.parts.items() for name, p in part.named_parameters()]


# ----------------------------------------------------------------------------- FlowGAN

class TorchRealNVP(torch.nn.Module):
    """The twin of ``toy_realnvp(D, K, hidden)``: per coupling k, mask b_k,
        (t, raw) = MLP(b x), s = scale tanh(raw) (1 - b),  z = b x + (1 - b)(x exp(s) + t)
    and the inverse x = b z + (1 - b)(z - t) exp(-s) with (t, s) from b z."""

    def __init__(self, flow, dtype):
        super().__init__()
        t = torch_dtype(dtype)
        self.transform = torch.nn.Module()
        self.transform.transforms = torch.nn.ModuleList()
        self.masks = []
        for coupling in flow.transform.transforms:
            cond = coupling.conditioner
            net = torch.nn.Module()
            net.layers = torch.nn.ModuleList(torch.nn.Linear(*lin.weight.shape) for lin in cond.layers)
            net.last = torch.nn.Linear(*cond.last.weight.shape)
            net.scale = torch.nn.Parameter(torch.ones(cond.scale.shape))
            holder = torch.nn.Module()
            holder.conditioner = net
            self.transform.transforms.append(holder)
            self.masks.append(torch.tensor(coupling.mask).to(t))
        self.to(t)

    def _shift_log_scale(self, k, h_in):
        cond = self.transform.transforms[k].conditioner
        h = h_in
        for layer in cond.layers:
            h = torch.relu(layer(h))
        t, raw = cond.last(h).chunk(2, dim=1)
        return t, cond.scale * torch.tanh(raw) * (1 - self.masks[k])

    def log_prob(self, x):
        log_det = 0
        for k, b in enumerate(self.masks):
            x_b = x * b
            t, s = self._shift_log_scale(k, x_b)
            x = x_b + (1 - b) * (x * torch.exp(s) + t)
            log_det = log_det + s.sum(dim=1)
        return -0.5 * (x * x).sum(dim=1) - 0.5 * x.shape[1] * math.log(2 * math.pi) + log_det

    def inverse(self, z):
        for k in reversed(range(len(self.masks))):
            b = self.masks[k]
            z_b = z * b
            t, s = self._shift_log_scale(k, z_b)
            z = z_b + (1 - b) * (z - t) * torch.exp(-s)
        return z


def torch_penalty(critic, x_real, x_fake, alpha, lam):
    x_hat = (alpha[:, None] * x_real + (1 - alpha[:, None]) * x_fake).requires_grad_()
    grad, = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)
    return lam * ((torch.sqrt((grad * grad).sum(1) + 1e-12) - 1) ** 2).mean()


class TorchFlowGAN:
    """The twin of ``FlowGAN.train_step`` with the hybrid objective: n_critic WGAN-GP critic steps, then the
    generator step on -E D(f^{-1}(z)) + lambda (-E log p(x))."""

    def __init__(self, model, dtype):
        self.flow = copy_weights(model.flow, TorchRealNVP(model.flow, dtype))
        self.critic = copy_weights(model.critic, TorchMLPCritic((784, 256, 1)).to(torch_dtype(dtype)))
        self.n_critic, self.lam, self.mle_weight = model.n_critic, model.lam, model.mle_weight
        self.opt_d = torch.optim.Adam(self.critic.parameters(), lr=1e-4, betas=(0.0, 0.9))
        self.opt_g = torch.optim.Adam(self.flow.parameters(), lr=1e-4, betas=(0.0, 0.9))
        self.gen = torch.Generator().manual_seed(0)

    def _noise(self, shape, noise, dtype, uniform=False):
        if noise is not None:
            return noise.pop(0)
        return (torch.rand if uniform else torch.randn)(*shape, generator=self.gen, dtype=dtype)

    def step(self, x, noise=None):
        n, m = x.shape[0], x.shape[0] // self.n_critic
        critic_losses, penalties = [], []
        for x_i in x.split(m):
            z = self._noise((m, 784), noise, x.dtype)
            with torch.no_grad():
                x_fake = self.flow.inverse(z)
            critic_loss = -(self.critic(x_i).mean() - self.critic(x_fake).mean())
            penalty = torch_penalty(self.critic, x_i, x_fake, self._noise((m,), noise, x.dtype, uniform=True), self.lam)
            self.opt_d.zero_grad(set_to_none=True)
            (critic_loss + penalty).backward()
            self.opt_d.step()
            critic_losses.append(critic_loss.item())
            penalties.append(penalty.item())
        z = self._noise((n, 784), noise, x.dtype)
        with Frozen(self.critic):
            adversarial = -self.critic(self.flow.inverse(z)).mean()
            nll = -self.flow.log_prob(x).mean()
            objective = adversarial + self.mle_weight * nll
            self.opt_g.zero_grad(set_to_none=True)
            objective.backward()
        self.opt_g.step()
        return {"critic_loss": sum(critic_losses) / len(critic_losses),
                "gradient_penalty": sum(penalties) / len(penalties), "generator_objective": objective.item(),
                "nll": nll.item(), "adversarial": adversarial.item()}


def flowgan_sides(dtype, seed=0):
    rng = np.random.default_rng(seed)
    flow = toy_realnvp(784, 4, hidden=(256,), rng=rng, dtype=dtype)
    for coupling in flow.transform.transforms:       # a fresh coupling is the identity: give the check a shape
        last = coupling.conditioner.last
        last.weight.data = (0.01 * rng.standard_normal(last.weight.shape)).astype(dtype)
    model = FlowGAN(flow, MLPDiscriminator(784, (256,), rng=rng, dtype=dtype), objective="hybrid", mle_weight=1.0,
                    rng=seed + 1)
    return model, TorchFlowGAN(model, dtype)


def flowgan_batches(n, dtype, seed=0):
    """(n, 320, 784) uniformly dequantized digits (x + u) / 256 in [0, 1]."""
    x, source = digits(320 * n)
    u = np.random.default_rng(seed).random(x.shape)
    return ((x * 255.0 + u) / 256.0).reshape(n, 320, 784).astype(dtype), source


def _flowgan_noise(model, replay, n, m, dtype):
    """The draws ``FlowGAN.train_step`` makes, in its order: per critic step z (m, D) and alpha (m,), then z (n, D)."""
    noise = []
    for _ in range(model.n_critic):
        noise.append(torch.tensor(model.sample_latent(m, rng=replay).numpy()))
        noise.append(torch.tensor(replay.random(m).astype(dtype)))
    noise.append(torch.tensor(model.sample_latent(n, rng=replay).numpy()))
    return noise


@section("flowgan", "FlowGAN hybrid round: 5 WGAN-GP critic steps and the flow's step, RealNVP on 784 dimensions")
def bench_flowgan(cfg):
    loadavg = os.getloadavg()
    gaps = {}
    for dtype, rtol in (("float64", 1e-8), ("float32", 5e-3)):
        model, twin = flowgan_sides(dtype)
        batches, _ = flowgan_batches(3, dtype)
        noise_rng, replay = np.random.default_rng(11), np.random.default_rng(11)
        inputs = []
        for x in batches:
            inputs.append((x, _flowgan_noise(model, replay, 320, 64, dtype)))
        gaps[dtype] = twin_step_check(
            "FlowGAN " + dtype, lambda x, noise: model.train_step(td.tensor(x), rng=noise_rng),
            lambda x, noise: twin.step(torch.tensor(x), list(noise)), inputs, _FlowGANModules(model),
            _FlowGANModules(twin), rtol)
    print(f"  same reports and parameters after 3 rounds: float64 gap {gaps['float64']:.1e}, float32 "
          f"{gaps['float32']:.1e}", flush=True)
    model, twin = flowgan_sides("float32")
    batches, source = flowgan_batches(6, np.float32)
    td_call = common.cycling(model.train_step, [td.tensor(x) for x in batches])
    pt_call = common.cycling(twin.step, [torch.tensor(x) for x in batches])
    return "\n".join([
        "One round = `FlowGAN.train_step(x)` with the hybrid objective (lambda = 1), x 320 dequantized digits "
        f"((pixel + u) / 256, from {source}), float32: 5 critic steps, each on 64 real images and 64 samples "
        "f^{-1}(z) made without graph, -(E D(x) - E D(G(z))) + 10 E(||grad D(x_hat)|| - 1)^2 (the double "
        "backprop), Adam(1e-4, (0, 0.9)); then the flow's step on -E D(f^{-1}(z)) - E log p(x) over 320 fresh z "
        "and the 320 images (the inverse pass through the couplings and the forward pass with its log-dets), "
        "critic frozen, Adam. Flow `toy_realnvp(784, 4, hidden=(256,))` (1.6M parameters), critic MLP 784 -> "
        "256 -> 1. PyTorch: the same flow and critic in `torch.nn`, weights copied, the same round.", "",
        "Checked before timing: 3 rounds with the same z and alpha (the tinydgm model's draws replayed into the "
        f"twin) agree in the critic loss, penalty, NLL and objective (1e-8 relative in float64, 5e-3 in float32) "
        f"and in every parameter afterwards (largest gap {gaps['float64']:.1e} in float64, {gaps['float32']:.1e} in "
        f"float32). The timed sides draw their own noise. {cfg.repeats} interleaved repeats.", "",
        timing(cfg, td_call, pt_call, loadavg)])


class _FlowGANModules:
    def __init__(self, side):
        self.parts = {"generator.flow": side.flow, "discriminator": side.critic}

    def named_parameters(self):
        return [(f"{key}.{name}", p) for key, part in self.parts.items() for name, p in part.named_parameters()]


# ----------------------------------------------------------------------------- adversarial autoencoder

class TorchAAE:
    """The twin of ``AdversarialAutoencoder.train_step`` (deterministic encoder, Bernoulli decoder)."""

    def __init__(self, model, dtype):
        t = torch_dtype(dtype)

        def seq(sizes):
            layers = []
            for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
                layers.append(torch.nn.Linear(a, b))
                if i < len(sizes) - 2:
                    layers.append(torch.nn.ReLU())
            holder = torch.nn.Module()
            holder.net = torch.nn.Sequential(*layers)
            return holder.to(t)
        self.encoder = copy_weights(model.encoder, seq((784, 512, 512, 4)))
        self.decoder = copy_weights(model.decoder, seq((2, 512, 512, 784)))
        self.discriminator = copy_weights(model.discriminator, TorchMLPCritic((2, 64, 64, 1)).to(t))
        self.prior, self.gen = model.prior, np.random.default_rng(5)
        adam = dict(lr=1e-3, betas=(0.5, 0.999))
        self.opt_ae = torch.optim.Adam(list(self.encoder.parameters()) + list(self.decoder.parameters()), **adam)
        self.opt_d = torch.optim.Adam(self.discriminator.parameters(), **adam)
        self.opt_g = torch.optim.Adam(self.encoder.parameters(), **adam)

    def encode(self, x):
        return self.encoder.net(x)[:, :2]                       # mu, the first L columns

    def step(self, x, z_prior=None):
        if z_prior is None:
            z_prior = torch.tensor(self.prior.sample(x.shape[0], rng=self.gen).numpy()).to(x.dtype)
        logits = self.decoder.net(self.encode(x))
        reconstruction = F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(1).mean()
        self.opt_ae.zero_grad(set_to_none=True)
        reconstruction.backward()
        self.opt_ae.step()
        with torch.no_grad():
            z_code = self.encode(x)
        d_loss = -(F.logsigmoid(self.discriminator(z_prior)).mean() + F.logsigmoid(-self.discriminator(z_code)).mean())
        self.opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        self.opt_d.step()
        with Frozen(self.discriminator):
            g_loss = -F.logsigmoid(self.discriminator(self.encode(x))).mean()
            self.opt_g.zero_grad(set_to_none=True)
            g_loss.backward()
        self.opt_g.step()
        return {"reconstruction": reconstruction.item(), "discriminator_loss": d_loss.item(),
                "encoder_loss": g_loss.item()}


def aae_sides(dtype, seed=0):
    rng = np.random.default_rng(seed)
    model = AdversarialAutoencoder(MLPEncoder(784, 2, (512, 512), rng=rng, dtype=dtype),
                                   MLPDecoder(2, 784, (512, 512), rng=rng, dtype=dtype),
                                   MLPDiscriminator(2, (64, 64), rng=rng, dtype=dtype),
                                   GaussianMixturePrior2D(10, dtype=dtype), lr=1e-3, rng=seed + 1)
    return model, TorchAAE(model, dtype)


def aae_batches(n, dtype, seed=0):
    x, source = digits(100 * n)
    binary = (np.random.default_rng(seed).random(x.shape) < x).astype(dtype)       # one dynamic binarization
    return binary.reshape(n, 100, 784), source


@section("aae", "Adversarial autoencoder step: reconstruction, discriminator on z, encoder; MLPs 784-512-512-2")
def bench_aae(cfg):
    loadavg = os.getloadavg()
    gaps = {}
    for dtype, rtol in (("float64", 1e-9), ("float32", 2e-3)):
        model, twin = aae_sides(dtype)
        batches, _ = aae_batches(3, dtype)
        noise_rng, replay = np.random.default_rng(13), np.random.default_rng(13)
        inputs = [(x, torch.tensor(model.sample_prior(100, rng=replay).numpy())) for x in batches]
        gaps[dtype] = twin_step_check(
            "AAE " + dtype, lambda x, z: model.train_step(td.tensor(x), rng=noise_rng),
            lambda x, z: twin.step(torch.tensor(x), z), inputs, _AAEModules(model), _AAEModules(twin), rtol)
    print(f"  same reports and parameters after 3 steps: float64 gap {gaps['float64']:.1e}, float32 "
          f"{gaps['float32']:.1e}", flush=True)
    model, twin = aae_sides("float32")
    batches, source = aae_batches(8, np.float32)
    td_call = common.cycling(model.train_step, [td.tensor(x) for x in batches])
    pt_call = common.cycling(twin.step, [torch.tensor(x) for x in batches])
    return "\n".join([
        "One step = `AdversarialAutoencoder.train_step(x)`, x 100 binarized digits (one dynamic binarization "
        f"of {source}), float32: the reconstruction update (z = mu(x) from the encoder 784 -> 512 -> 512 -> "
        "(mu, log_var) of 2, the Bernoulli decoder 2 -> 512 -> 512 -> 784, -mean log p(x|z), backward, Adam on "
        "both), the discriminator's update (100 draws of the 10-Gaussian mixture prior against the 100 codes, "
        "-(E ln D(z) + E ln(1 - D(E(x)))), discriminator 2 -> 64 -> 64 -> 1), and the encoder's update "
        "(-E ln D(E(x)), discriminator frozen); Adam(1e-3, (0.5, 0.999)) each. Both sides draw the prior with "
        "the same NumPy sampler.", "",
        "Checked before timing: 3 steps with the same prior draws agree in the three losses (1e-9 relative in "
        f"float64, 2e-3 in float32) and every parameter afterwards (largest gap {gaps['float64']:.1e} in float64, "
        f"{gaps['float32']:.1e} in float32). {cfg.repeats} interleaved repeats.", "",
        timing(cfg, td_call, pt_call, loadavg)])


class _AAEModules:
    def __init__(self, side):
        self.parts = {"encoder": side.encoder, "decoder": side.decoder, "discriminator": side.discriminator}

    def named_parameters(self):
        return [(f"{key}.{name}", p) for key, part in self.parts.items() for name, p in part.named_parameters()]


# ----------------------------------------------------------------------------- main

def main(argv=None):
    parser = common.parts_parser(__doc__, SECTIONS)
    common.add_repeat_options(parser)
    parser.add_argument("--cpu-only", action="store_true", help="only the CPU time per step (no wall-clock pairs)")
    cfg = parser.parse_args(argv)
    cfg.repeats = 5 if cfg.quick else cfg.repeats
    cfg.sample_s = 0.05 if cfg.quick else 0.2
    cfg.settle_s = 0.1
    parts = common.chosen_parts(parser, cfg, SECTIONS)
    pinned = common.pin_threads(cfg.threads)
    info, bodies, elapsed, load0, load = common.run_sections(cfg, SECTIONS, parts, pinned)
    command = "python benchmarks/bench_adversarial_combined.py" + (" --quick" if cfg.quick else "") + \
        f" --threads {cfg.threads}" + (f" --parts {cfg.parts}" if cfg.parts else "") + \
        f" --repeats {cfg.repeats} --retries {cfg.retries}" + (" --cpu-only" if cfg.cpu_only else "") + \
        (f" --out {cfg.out}" if cfg.out else "")
    common.finish_section(cfg.out, common.command_head(command, elapsed, load0, load, info, cfg.threads), bodies)


if __name__ == "__main__":
    main()
