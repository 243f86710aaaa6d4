"""Adversarial models benchmark (issue 15), side by side with PyTorch on the CPU, in one process.

    python benchmarks/bench_adversarial.py [--quick] [--threads N] [--out SECTION.md] [--parts dcgan,wgan_gp]
    python benchmarks/bench_adversarial.py --profile dcgan      # cProfile of the tinydgm side instead

dcgan: one DCGAN training round, batch 64, 28 x 28, float32: one discriminator update (real batch and
G(z) without graph, -V(D, G), backward, Adam) and one generator update (fresh z, the non-saturating loss
-E ln D(G(z)), backward through the frozen discriminator, Adam), i.e. ``GAN.train_step`` with k = 1.
Networks: ``DCGANGenerator(latent_dim=100, features=64)`` (Linear 100 -> 128x7x7, BatchNorm, ReLU,
ConvTranspose2d 128 -> 64, BatchNorm, ReLU, ConvTranspose2d 64 -> 1, tanh) and the DCGAN paper's
discriminator ``DCGANDiscriminator(features=64, batch_norm=True)`` (Conv2d 1 -> 64 stride 2, LeakyReLU,
Conv2d 64 -> 128 stride 2, BatchNorm, LeakyReLU, Conv2d 128 -> 1 7x7); Adam(2e-4, (0.5, 0.999)).
Target: at most 1.5x PyTorch.

wgan_gp: one WGAN-GP critic update, batch 64: G(z) without graph, the critic loss
-(E D(x) - E D(G(z))) plus lambda E(||grad D(x_hat)|| - 1)^2 at per-sample interpolates (the input
gradient taken with create_graph=True, then the whole loss differentiated again: the double
backprop), Adam(1e-4, (0, 0.9)), i.e. ``WGANGP.discriminator_step``. Same generator, critic
``DCGANDiscriminator(features=64)`` (no batch norm, as WGAN-GP requires). Target: at most 1.5x PyTorch.

The PyTorch twins are the same networks written with ``torch.nn`` (same layer names, the tinydgm
weights and batch-norm buffers copied over). Before timing, both sides take the same steps in
float64 from the same weights with the same noise (z and alpha drawn by the tinydgm model from one
seeded generator and handed to the twin), and the losses, the penalty and parameter gradients are
asserted to agree; then the float32 sides are checked the same way (looser tolerance).
"""
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

import tinydgm as td  # noqa: E402
from tinydgm.models.adversarial import GAN, WGANGP, DCGANDiscriminator, DCGANGenerator  # noqa: E402

BATCH, LATENT, FEATURES = 64, 100, 64
DCGAN_ADAM = dict(lr=2e-4, betas=(0.5, 0.999))
WGAN_GP_ADAM = dict(lr=1e-4, betas=(0.0, 0.9))
LAM = 10.0
SECTIONS, section = common.part_registry()      # (name, title, fn) in registration order; @section(name, title)


# ----------------------------------------------------------------------------- the twins

class TorchGenerator(torch.nn.Module):
    """The twin of ``DCGANGenerator``: the same layers under the same names."""

    def __init__(self, latent_dim=LATENT, features=FEATURES, channels=1):
        super().__init__()
        f = self.features = features
        self.project = torch.nn.Linear(latent_dim, 2 * f * 7 * 7, bias=False)
        self.norm1 = torch.nn.BatchNorm2d(2 * f)
        self.up2 = torch.nn.ConvTranspose2d(2 * f, f, 4, stride=2, padding=1, bias=False)
        self.norm2 = torch.nn.BatchNorm2d(f)
        self.up3 = torch.nn.ConvTranspose2d(f, channels, 4, stride=2, padding=1)

    def forward(self, z):
        h = self.project(z).reshape(z.shape[0], 2 * self.features, 7, 7)
        h = torch.relu(self.norm1(h))
        h = torch.relu(self.norm2(self.up2(h)))
        return torch.tanh(self.up3(h))


class TorchDiscriminator(torch.nn.Module):
    """The twin of ``DCGANDiscriminator``: the same layers under the same names."""

    def __init__(self, features=FEATURES, batch_norm=False, channels=1, negative_slope=0.2):
        super().__init__()
        f, self.slope = features, negative_slope
        self.down1 = torch.nn.Conv2d(channels, f, 4, stride=2, padding=1)
        self.down2 = torch.nn.Conv2d(f, 2 * f, 4, stride=2, padding=1, bias=not batch_norm)
        self.norm2 = torch.nn.BatchNorm2d(2 * f) if batch_norm else None
        self.out = torch.nn.Conv2d(2 * f, 1, 7)

    def forward(self, x):
        h = F.leaky_relu(self.down1(x), self.slope)
        h = self.down2(h)
        if self.norm2 is not None:
            h = self.norm2(h)
        return self.out(F.leaky_relu(h, self.slope)).reshape(-1)


def copy_weights(module, twin):
    """tinydgm parameters and buffers -> the twin's (a Linear's (in, out) weight transposed)."""
    state = module.state_dict()
    target = twin.state_dict()
    dtype = next(twin.parameters()).dtype
    with torch.no_grad():
        for name, value in state.items():
            if name.endswith("project.weight"):
                value = value.T
            assert tuple(target[name].shape) == value.shape, f"{name}: {target[name].shape} vs {value.shape}"
            target[name].copy_(torch.tensor(np.ascontiguousarray(value)).to(dtype))
    return twin


def players(dtype, batch_norm, seed=0):
    """tinydgm generator and discriminator with DCGAN's initialisation, and their twins."""
    rng = np.random.default_rng(seed)
    generator = DCGANGenerator(LATENT, features=FEATURES, rng=rng, dtype=dtype)
    discriminator = DCGANDiscriminator(features=FEATURES, batch_norm=batch_norm, rng=rng, dtype=dtype)
    torch_dtype = torch.float64 if dtype == "float64" else torch.float32
    g_twin = copy_weights(generator, TorchGenerator().to(torch_dtype))
    d_twin = copy_weights(discriminator, TorchDiscriminator(batch_norm=batch_norm).to(torch_dtype))
    return generator, discriminator, g_twin, d_twin


def real_batches(n_batches, dtype, seed=1):
    """(n_batches, 64, 1, 28, 28) images in [-1, 1]: MNIST training images when TINYDGM_DATA holds
    them, else smooth random blobs (the step's cost does not depend on the pixels)."""
    n = n_batches * BATCH
    try:
        from tinydgm.data import load_mnist
        x = load_mnist(download=False, progress=False)["x_train"][:n].astype(np.float64) / 127.5 - 1
        source = "MNIST training images scaled to [-1, 1]"
    except Exception:                                                   # no data here: any images will do
        x = np.tanh(np.random.default_rng(seed).standard_normal((n, 28, 28)))
        source = "random images in [-1, 1] (no MNIST found)"
    return x.reshape(n_batches, BATCH, 1, 28, 28).astype(dtype), source


def _frozen(module):
    class Frozen:
        def __enter__(self):
            module.requires_grad_(False)

        def __exit__(self, *exc):
            module.requires_grad_(True)
    return Frozen()


class TorchGAN:
    """PyTorch twin of ``GAN.train_step`` (k = 1, non-saturating generator loss)."""

    def __init__(self, g, d):
        self.g, self.d = g, d
        self.opt_g = torch.optim.Adam(g.parameters(), **DCGAN_ADAM)
        self.opt_d = torch.optim.Adam(d.parameters(), **DCGAN_ADAM)
        self.gen = torch.Generator().manual_seed(0)

    def step(self, x, z1=None, z2=None):
        dtype = x.dtype
        z1 = torch.randn(x.shape[0], LATENT, generator=self.gen, dtype=dtype) if z1 is None else z1
        with torch.no_grad():
            fake = self.g(z1)
        d_loss = -(F.logsigmoid(self.d(x)).mean() + F.logsigmoid(-self.d(fake)).mean())
        self.opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        self.opt_d.step()
        z2 = torch.randn(x.shape[0], LATENT, generator=self.gen, dtype=dtype) if z2 is None else z2
        with _frozen(self.d):
            g_loss = -F.logsigmoid(self.d(self.g(z2))).mean()
            self.opt_g.zero_grad(set_to_none=True)
            g_loss.backward()
        self.opt_g.step()
        return d_loss.item(), g_loss.item()


def torch_gradient_penalty(d, x_real, x_fake, alpha, lam=LAM, eps=1e-12):
    """lambda E(||grad_x_hat D(x_hat)||_2 - 1)^2, x_hat = alpha x + (1 - alpha) x_tilde (create_graph)."""
    n = x_real.shape[0]
    x_hat = (alpha.reshape(n, 1, 1, 1) * x_real + (1 - alpha.reshape(n, 1, 1, 1)) * x_fake).requires_grad_()
    grad, = torch.autograd.grad(d(x_hat).sum(), x_hat, create_graph=True)
    norm = torch.sqrt((grad * grad).reshape(n, -1).sum(1) + eps)
    return lam * ((norm - 1) ** 2).mean()


class TorchWGANGP:
    """PyTorch twin of ``WGANGP.discriminator_step``."""

    def __init__(self, g, d):
        self.g, self.d = g, d
        self.opt_d = torch.optim.Adam(d.parameters(), **WGAN_GP_ADAM)
        self.gen = torch.Generator().manual_seed(0)

    def critic_step(self, x, z=None, alpha=None):
        n, dtype = x.shape[0], x.dtype
        z = torch.randn(n, LATENT, generator=self.gen, dtype=dtype) if z is None else z
        alpha = torch.rand(n, generator=self.gen, dtype=dtype) if alpha is None else alpha
        with torch.no_grad():
            fake = self.g(z)
        critic_loss = -(self.d(x).mean() - self.d(fake).mean())
        penalty = torch_gradient_penalty(self.d, x, fake, alpha)
        self.opt_d.zero_grad(set_to_none=True)
        (critic_loss + penalty).backward()
        self.opt_d.step()
        return critic_loss.item(), penalty.item()


# ----------------------------------------------------------------------------- agreement checks

def _close(a, b, rtol, what):
    assert abs(a - b) <= rtol * max(abs(b), 1e-3), f"{what}: tinydgm {a} vs PyTorch {b}"


def _grad_gap(param, twin_param):
    """max |g_td - g_pt| / max |g_pt| of one parameter's gradient."""
    a, b = param.grad.numpy(), twin_param.grad.detach().numpy()
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))


def check_dcgan(dtype, rtol, steps=3):
    """Both sides take ``steps`` rounds from the same weights with the same z (drawn by the tinydgm
    model's own generator, replayed for the twin); the discriminator and generator losses agree at
    each, and the discriminator's first-layer gradient after the last."""
    generator, discriminator, g_twin, d_twin = players(dtype, batch_norm=True)
    gan = GAN(generator, discriminator, LATENT, **DCGAN_ADAM)
    twin = TorchGAN(g_twin, d_twin)
    batches, _ = real_batches(steps, dtype)
    noise, replay = np.random.default_rng(7), np.random.default_rng(7)
    losses = []
    for x in batches:
        report = gan.train_step(td.tensor(x), rng=noise)
        z1 = torch.tensor(gan.sample_latent(BATCH, rng=replay).numpy())
        z2 = torch.tensor(gan.sample_latent(BATCH, rng=replay).numpy())
        d_loss, g_loss = twin.step(torch.tensor(x), z1, z2)
        _close(report["discriminator_loss"], d_loss, rtol, f"DCGAN {dtype} discriminator loss")
        _close(report["generator_loss"], g_loss, rtol, f"DCGAN {dtype} generator loss")
        losses.append((report["discriminator_loss"], d_loss, report["generator_loss"], g_loss))
    gap = _grad_gap(generator.up3.weight, g_twin.up3.weight)
    assert gap < rtol * 10, f"DCGAN {dtype}: generator last-layer gradient differs by {gap}"
    return losses, gap


def check_wgan_gp(dtype, rtol, steps=3):
    """The penalty alone at fixed alpha (value and the gradient of a critic weight through the
    double backprop), then ``steps`` critic updates with the same z and alpha: critic loss,
    penalty and the first-layer gradient agree."""
    generator, critic, g_twin, d_twin = players(dtype, batch_norm=False)
    wgan = WGANGP(generator, critic, LATENT, lam=LAM, **WGAN_GP_ADAM)
    twin = TorchWGANGP(g_twin, d_twin)
    batches, _ = real_batches(steps, dtype)
    # 1. the penalty alone, its value and d penalty / d W of the middle convolution
    rng = np.random.default_rng(3)
    x_real = batches[0]
    x_fake = np.tanh(rng.standard_normal(x_real.shape)).astype(dtype)
    alpha = rng.random(BATCH).astype(dtype)
    from tinydgm.models.adversarial import gradient_penalty
    critic.zero_grad()
    penalty = gradient_penalty(wgan.D, td.tensor(x_real), td.tensor(x_fake), lam=LAM, alpha=td.tensor(alpha))
    penalty.backward()
    d_twin.zero_grad(set_to_none=True)
    twin_penalty = torch_gradient_penalty(d_twin, torch.tensor(x_real), torch.tensor(x_fake), torch.tensor(alpha))
    twin_penalty.backward()
    _close(penalty.item(), twin_penalty.item(), rtol, f"WGAN-GP {dtype} penalty")
    penalty_gap = _grad_gap(critic.down2.weight, d_twin.down2.weight)
    assert penalty_gap < rtol * 10, f"WGAN-GP {dtype}: penalty gradient of down2.weight differs by {penalty_gap}"
    penalty_values = (penalty.item(), twin_penalty.item())
    # 2. critic updates
    noise, replay = np.random.default_rng(11), np.random.default_rng(11)
    losses = []
    for x in batches:
        report = wgan.discriminator_step(td.tensor(x), rng=noise)
        z = torch.tensor(wgan.sample_latent(BATCH, rng=replay).numpy())
        a = torch.tensor(replay.random(BATCH).astype(dtype))
        critic_loss, gp = twin.critic_step(torch.tensor(x), z, a)
        _close(report["critic_loss"], critic_loss, rtol, f"WGAN-GP {dtype} critic loss")
        _close(report["gradient_penalty"], gp, rtol, f"WGAN-GP {dtype} gradient penalty")
        losses.append((report["critic_loss"], critic_loss, report["gradient_penalty"], gp))
    step_gap = _grad_gap(critic.down1.weight, d_twin.down1.weight)
    assert step_gap < rtol * 10, f"WGAN-GP {dtype}: down1.weight gradient differs by {step_gap}"
    return penalty_values, penalty_gap, losses, step_gap


# ----------------------------------------------------------------------------- timing

def time_pair(cfg, td_call, pt_call):
    with common.ForeignLoad() as load:
        stats, _ = common.compare({"tinydgm": td_call, "PyTorch": pt_call}, repeats=cfg.repeats, warmup=2,
                                  min_sample_s=cfg.sample_s, settle_s=cfg.settle_s, retries=cfg.retries)
    common.print_pair(stats)
    return stats, load


def report(stats, load, target, loadavg):
    ratio, _ = common.paired_ratio(stats["tinydgm"], stats["PyTorch"])
    iqr = common.paired_ratio_iqr(stats["tinydgm"], stats["PyTorch"])
    min_ratio = stats["tinydgm"].min / stats["PyTorch"].min
    table = common.pair_table(stats)
    return "\n".join([table, "",
                      f"Target at most {target}x PyTorch: {common.verdict(ratio, iqr, target)}; ratio of the "
                      f"minima {min_ratio:.2f}x. {common.load_note(load, [stats])} Load average (1 min) "
                      f"{loadavg[0]:.2f} before this part, {os.getloadavg()[0]:.2f} after."])


def dcgan_sides(batches):
    generator, discriminator, g_twin, d_twin = players("float32", batch_norm=True)
    gan = GAN(generator, discriminator, LATENT, **DCGAN_ADAM, rng=np.random.default_rng(5))
    twin = TorchGAN(g_twin, d_twin)
    return (common.cycling(gan.train_step, [td.tensor(x) for x in batches]),
            common.cycling(twin.step, [torch.tensor(x) for x in batches]))


def wgan_gp_sides(batches):
    generator, critic, g_twin, d_twin = players("float32", batch_norm=False)
    wgan = WGANGP(generator, critic, LATENT, lam=LAM, **WGAN_GP_ADAM, rng=np.random.default_rng(5))
    twin = TorchWGANGP(g_twin, d_twin)
    return (common.cycling(wgan.discriminator_step, [td.tensor(x) for x in batches]),
            common.cycling(twin.critic_step, [torch.tensor(x) for x in batches]))


@section("dcgan", "DCGAN step: one discriminator and one generator update, batch 64, 28x28")
def bench_dcgan(cfg):
    loadavg = os.getloadavg()
    losses64, gap64 = check_dcgan("float64", 1e-9)
    losses32, gap32 = check_dcgan("float32", 2e-3)
    print("  same losses in float64 (3 rounds): " + ", ".join(f"D {a:.6f}/{b:.6f} G {c:.6f}/{d:.6f}"
                                                               for a, b, c, d in losses64), flush=True)
    batches, source = real_batches(8, np.float32)
    stats, load = time_pair(cfg, *dcgan_sides(batches))
    return "\n".join([
        "One round = `GAN.train_step(x)` with k = 1: the discriminator's update (G(z) without graph, "
        "-V(D, G) on the real batch and the fakes, backward, Adam) and the generator's (64 fresh z, the "
        "non-saturating loss -mean ln D(G(z)), backward through the frozen discriminator, Adam); "
        "Adam(2e-4, betas (0.5, 0.999)) on both sides. Generator `DCGANGenerator(latent_dim=100, "
        "features=64)`: Linear 100 -> 128x7x7 (no bias), BatchNorm, ReLU, ConvTranspose2d 128 -> 64 (4, "
        "stride 2), BatchNorm, ReLU, ConvTranspose2d 64 -> 1, tanh. Discriminator `DCGANDiscriminator("
        "features=64, batch_norm=True)`: Conv2d 1 -> 64 (4, stride 2), LeakyReLU(0.2), Conv2d 64 -> 128 "
        "(4, stride 2), BatchNorm, LeakyReLU, Conv2d 128 -> 1 (7). 0.9M parameters in all (generator 760k, "
        "discriminator 139k), float32, batch 64 "
        f"of {source}; both sides draw their own z inside the step. PyTorch: the same networks in "
        "`torch.nn`, the tinydgm weights and batch-norm buffers copied, the generator step with the "
        "discriminator's parameters frozen (requires_grad off), as tinydgm does.", "",
        "Checked before timing, from the same weights with the same z (the tinydgm model's draws replayed "
        "into the twin), 3 rounds: in float64 the discriminator and generator losses agree to 1e-9 "
        "relative (" + ", ".join(f"D {a:.6f} / {b:.6f}, G {c:.6f} / {d:.6f}" for a, b, c, d in losses64)
        + f") and the generator's last-layer weight gradient to {gap64:.1e} (max difference over max "
        f"entry); in float32 the losses agree to 2e-3 relative (gradient {gap32:.1e}). {cfg.repeats} "
        "interleaved repeats, 0.1 s pause before each sample.", "",
        report(stats, load, 1.5, loadavg)])


@section("wgan_gp", "WGAN-GP critic step with the double backprop, batch 64, 28x28")
def bench_wgan_gp(cfg):
    loadavg = os.getloadavg()
    pen64, pgap64, losses64, sgap64 = check_wgan_gp("float64", 1e-9)
    pen32, pgap32, losses32, sgap32 = check_wgan_gp("float32", 2e-3)
    print(f"  same penalty in float64: {pen64[0]:.9f} / {pen64[1]:.9f}, gradient gap {pgap64:.1e}", flush=True)
    batches, source = real_batches(8, np.float32)
    stats, load = time_pair(cfg, *wgan_gp_sides(batches))
    return "\n".join([
        "One critic update = `WGANGP.discriminator_step(x)`: 64 z through the generator without graph "
        "(training mode, batch statistics), the critic loss -(mean D(x) - mean D(G(z))), the penalty "
        "10 mean (||grad_x_hat D(x_hat)||_2 - 1)^2 at x_hat = alpha x + (1 - alpha) G(z), one alpha per "
        "sample (a third critic pass, the input gradient with `create_graph=True`, i.e. a backward pass "
        "that is itself recorded), then the backward of the sum through both graphs (the double "
        "backprop, second order through the convolutions and LeakyReLU), Adam(1e-4, betas (0, 0.9)). "
        "Same generator as above; critic `DCGANDiscriminator(features=64)` without batch norm. PyTorch: "
        "the same step with `torch.autograd.grad(..., create_graph=True)`, weights copied.", "",
        f"Checked before timing (float64): the penalty alone at fixed alpha, {pen64[0]:.9f} / {pen64[1]:.9f}, "
        f"and its gradient w.r.t. the critic's middle convolution weight (max difference over max entry "
        f"{pgap64:.1e}); then 3 critic updates with the same z and alpha: critic loss and penalty agree to "
        "1e-9 relative (" + ", ".join(f"{a:.6f} / {b:.6f} and {c:.6f} / {d:.6f}" for a, b, c, d in losses64)
        + f"), the first-layer weight gradient to {sgap64:.1e}. In float32 the same to 2e-3 (penalty "
        f"gradient {pgap32:.1e}, step gradient {sgap32:.1e}). {cfg.repeats} interleaved repeats, batch 64 of "
        f"{source}.", "",
        report(stats, load, 1.5, loadavg)])


# ----------------------------------------------------------------------------- profiling

def profile(part, n=20):
    """cProfile of n tinydgm steps of ``part`` (after 3 warm-up steps): where the time goes."""
    batches, _ = real_batches(8, np.float32)
    td_call, pt_call = (dcgan_sides if part == "dcgan" else wgan_gp_sides)(batches)
    for _ in range(3):
        td_call()
        pt_call()
    common.profile_steps(lambda k: td_call(), lambda k: pt_call(), n)


# ----------------------------------------------------------------------------- main

def main(argv=None):
    parser = common.parts_parser(__doc__, SECTIONS)
    common.add_repeat_options(parser)
    parser.add_argument("--profile", choices=[n for n, _, _ in SECTIONS], help="profile one part's tinydgm side")
    cfg = parser.parse_args(argv)
    cfg.repeats = 5 if cfg.quick else cfg.repeats
    cfg.sample_s = 0.05 if cfg.quick else 0.2
    cfg.settle_s = 0.1          # let the other library's spinning BLAS/OpenMP threads sleep
    parts = common.chosen_parts(parser, cfg, SECTIONS)

    pinned = common.pin_threads(cfg.threads)
    if cfg.profile:
        profile(cfg.profile)
        return
    info, bodies, elapsed, load0, load = common.run_sections(cfg, SECTIONS, parts, pinned)

    command = "python benchmarks/bench_adversarial.py" + (" --quick" if cfg.quick else "") + \
        f" --threads {cfg.threads}" + (f" --parts {cfg.parts}" if cfg.parts else "") + \
        f" --repeats {cfg.repeats} --retries {cfg.retries}" + (f" --out {cfg.out}" if cfg.out else "")
    common.finish_section(cfg.out, common.command_head(command, elapsed, load0, load, info, cfg.threads), bodies)


if __name__ == "__main__":
    main()
