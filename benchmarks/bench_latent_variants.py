"""VAE priors and posteriors benchmark (issue 14): the training step of each variant, and PyTorch twins of
the VampPrior and IAF-posterior steps, side by side on the CPU in one process.

    TINYDGM_DATA=<folder with binarized_mnist.npz> python benchmarks/bench_latent_variants.py \
        [--quick] [--threads N] [--out SECTION.md] [--parts variants,vampprior,iaf,mixture] [--k-mix 500]

The model is the VampPrior paper's one-stochastic-layer VAE made smaller ("VAE with a VampPrior", AISTATS 2018, uses
two gated layers of 300 units; here one ReLU layer): encoder 784 -> 300 -> (40 mu, 40 log_var), decoder
40 -> 300 -> 784 Bernoulli logits, batch 100, float32, Adam (lr 1e-3). One step = loss (-mean ELBO,
one reparameterised sample per image), backward, Adam step.

variants: the step of each prior / posterior of tinydgm.models.latent, timed interleaved, as a ratio to
the plain VAE's step (N(0, I) prior, closed-form KL): MixtureOfGaussiansPrior(40, K), VampPrior(encoder,
K) (K = ``--k-mix`` components / pseudo-inputs, 500 as in the paper; also K = 100, the quality run's),
FlowPrior(toy_realnvp(40, 4 couplings, hidden (100,))), AutoregressivePrior(40, (100,)),
PlanarPosterior(16 steps), IAFPosterior(2 steps, MADE (100,), context 40). No target: what a variant
costs.

vampprior, iaf: the VampPrior VAE (K = ``--k-mix``) and the IAF-posterior VAE against PyTorch twins
(``torch.nn.Linear``, ``F.linear`` with the MADE masks, ``torch.logsumexp``, ``torch.optim.Adam``), the
tinydgm model's initial weights copied. Before any timing the twin's loss equals tinydgm's in float64
on the same batch and the same noise eps (asserted to 1e-9 relative), and so do the gradients of the
first encoder layer and of the prior's / posterior's own parameters; then the float32 losses along 5
Adam steps with shared noise. Target: at most 1.0x PyTorch.

mixture (not in the default parts): before / after the GEMM form of ``MixtureOfGaussians.log_prob`` in
one process. The "before" side swaps the library's GEMM form for its direct (..., K, L) form (the code
the mixture used before) around each call; both sides are timed interleaved: log p(z) of
``MixtureOfGaussiansPrior`` and ``VampPrior`` on one evaluation pass of latents, and their training
steps, at K = 100 and K = ``--k-mix``, after checking that the two forms give the same log p(z) and loss.
"""
import argparse
import contextlib
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as torch_F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

import tinydgm as td  # noqa: E402
from tinydgm.distributions import MixtureOfGaussians  # noqa: E402
from tinydgm.models.flows.realnvp import toy_realnvp  # noqa: E402
from tinydgm.models.latent import (AutoregressivePrior, FlowPrior, IAFPosterior,  # noqa: E402
                                   MixtureOfGaussiansPrior, MLPDecoder, MLPEncoder, PlanarPosterior, VAE,
                                   VampPrior)

DTYPE = np.float32
D, HIDDEN, LATENT, BATCH, LR = 784, 300, 40, 100, 1e-3
LOG_2PI = math.log(2 * math.pi)


def binarized_mnist():
    return td.data.load_binarized_mnist(download=False, progress=False)


def train_batches(n_batches, seed=0):
    train = binarized_mnist()["train"]
    idx = np.random.default_rng(seed).choice(len(train), size=n_batches * BATCH, replace=False)
    return train[idx].reshape(n_batches, BATCH, D).astype(DTYPE)


def build(name, k_mix=500, dtype="float32", seed=0):
    """The VAE of variant ``name`` (see the module docstring)."""
    gen = np.random.default_rng(seed)
    enc = MLPEncoder(D, LATENT, hidden=(HIDDEN,), activation="relu", rng=gen, dtype=dtype)
    dec = MLPDecoder(LATENT, D, hidden=(HIDDEN,), activation="relu", likelihood="bernoulli", rng=gen, dtype=dtype)
    extra = np.random.default_rng(seed + 100)
    kw = {}
    if name == "mog":
        kw["prior"] = MixtureOfGaussiansPrior(LATENT, k_mix, rng=extra, dtype=dtype)
    elif name == "vampprior":
        train = binarized_mnist()["train"]
        kw["prior"] = VampPrior(enc, k_mix, init=train[extra.choice(len(train), k_mix, replace=False)].astype(dtype))
    elif name == "flow-prior":
        kw["prior"] = FlowPrior(toy_realnvp(LATENT, n_couplings=4, hidden=(100,), rng=extra, dtype=dtype))
    elif name == "ar-prior":
        kw["prior"] = AutoregressivePrior(LATENT, hidden_sizes=(100,), rng=extra, dtype=dtype)
    elif name == "planar":
        kw["posterior"] = PlanarPosterior(D, LATENT, n_layers=16, hidden=(64,), rng=extra, dtype=dtype)
    elif name == "iaf":
        kw["posterior"] = IAFPosterior(D, LATENT, n_layers=2, hidden_sizes=(100,), context_dim=40, hidden=(100,),
                                       identity_init=False, rng=extra, dtype=dtype)
    elif name != "standard":
        raise ValueError(f"unknown variant {name!r}")
    return VAE(enc, dec, rng=np.random.default_rng(seed + 1), **kw)


# ----------------------------------------------------------------------------- the PyTorch twins

def log_normal(z, mu, log_var):
    """sum_l log N(z_l; mu_l, exp(log_var_l))."""
    return (-0.5 * LOG_2PI - 0.5 * log_var - 0.5 * (z - mu) ** 2 * torch.exp(-log_var)).sum(-1)


class TorchMADE(torch.nn.Module):
    """The Gaussian MADE of one tinydgm IAFLayer with a context: masked weights (F.linear with W * M),
    the context added unmasked in every hidden layer (Kingma et al. 2016 fig. 2), alpha softly bounded."""

    def __init__(self, layer, dtype):
        super().__init__()
        made = layer.made
        self.weights = torch.nn.ParameterList()
        self.biases = torch.nn.ParameterList()
        self.masks = []
        for lin in made.layers:
            self.weights.append(torch.nn.Parameter(torch.tensor(lin.weight.numpy().T.copy(), dtype=dtype)))
            self.biases.append(torch.nn.Parameter(torch.tensor(lin.bias.numpy(), dtype=dtype)))
            self.masks.append(torch.tensor(np.asarray(lin.mask).T.copy(), dtype=dtype))
        self.context = torch.nn.ParameterList(
            [torch.nn.Parameter(torch.tensor(c.weight.numpy().T.copy(), dtype=dtype)) for c in made.context_layers])
        self.alpha_bound = layer.alpha_bound

    def forward(self, z, h):
        """z_k = z_{k-1} exp(alpha) + mu, and sum_i alpha_i."""
        a = z
        for w, b, m, v in zip(self.weights[:-1], self.biases[:-1], self.masks[:-1], self.context):
            a = torch.relu(torch_F.linear(a, w * m, b) + torch_F.linear(h, v))
        mu, raw = torch_F.linear(a, self.weights[-1] * self.masks[-1], self.biases[-1]).chunk(2, dim=-1)
        alpha = self.alpha_bound * torch.tanh(raw / self.alpha_bound)
        return z * torch.exp(alpha) + mu, alpha.sum(-1)


class TorchVariantVAE(torch.nn.Module):
    """The twin of a tinydgm VAE with a VampPrior or an IAF posterior (with neither: the N(0, I) prior
    with the Monte Carlo KL, which is not tinydgm's closed-form path, so not a twin of ``standard``):

        (mu, log_var) = enc(x),  z_0 = mu + exp(log_var / 2) eps
        IAF:        h = ctx(x),  z = IAF_2(IAF_1(z_0, h), h),  log q = log N(z_0; mu, var) - sum alpha
        VampPrior:  log p(z) = logsumexp_k log N(z; mu(u_k), var(u_k)) - log K
        loss = -mean_n mean_s [log p(x|z) + log p(z) - log q(z|x)]
    """

    def __init__(self, model, dtype=torch.float32):
        super().__init__()
        self.encoder = common.torch_mlp(model.encoder.net, dtype, model.encoder.activation)
        self.decoder = common.torch_mlp(model.decoder.net, dtype, model.decoder.activation)
        self.dtype = dtype
        self.vamp = isinstance(model.prior, VampPrior)
        if self.vamp:
            self.pseudo_inputs = torch.nn.Parameter(torch.tensor(model.prior.pseudo_inputs.numpy(), dtype=dtype))
        self.iaf = isinstance(model.posterior, IAFPosterior)
        if self.iaf:
            self.context_net = common.torch_mlp(model.posterior.net, dtype, model.posterior.activation)
            self.steps = torch.nn.ModuleList([TorchMADE(layer, dtype) for layer in model.posterior.layers])

    def encode(self, x):
        return self.encoder(x).chunk(2, dim=-1)

    def log_prior(self, z):
        if not self.vamp:
            return (-0.5 * LOG_2PI - 0.5 * z * z).sum(-1)
        mu_k, log_var_k = self.encode(self.pseudo_inputs)                          # (K, L) each
        log_pk = log_normal(z.unsqueeze(-2), mu_k, log_var_k)                      # (..., K)
        return torch.logsumexp(log_pk, dim=-1) - math.log(mu_k.shape[0])

    def loss(self, x, eps=None):
        mu, log_var = self.encode(x)
        if eps is None:
            eps = torch.randn(1, x.shape[0], mu.shape[1], dtype=self.dtype)
        z = mu + torch.exp(0.5 * log_var) * eps                                    # (S, N, L)
        log_q = log_normal(z, mu, log_var)
        if self.iaf:
            s, n, length = z.shape
            h = self.context_net(x).repeat(s, 1)
            z = z.reshape(-1, length)
            log_det = 0
            for step in self.steps:
                z, a = step(z, h)
                log_det = log_det + a
            z, log_q = z.reshape(s, n, length), log_q - log_det.reshape(s, n)
        logits = self.decoder(z)
        log_px = -torch_F.binary_cross_entropy_with_logits(logits, x.expand_as(logits), reduction="none").sum(-1)
        return -(log_px + self.log_prior(z) - log_q).mean()


# ----------------------------------------------------------------------------- the checks

def grad_error(td_grad, torch_grad, transpose=False):
    a = td_grad.numpy() if hasattr(td_grad, "numpy") else np.asarray(td_grad)
    b = torch_grad.numpy()
    b = b.T if transpose else b
    return float(np.abs(a - b).max() / np.abs(b).max())


def check_float64(name, k_mix, x):
    """Same loss and gradients in float64, same batch and noise. Returns (a, b, {parameter: error})."""
    model = build(name, k_mix, dtype="float64")
    twin = TorchVariantVAE(model, dtype=torch.float64)
    eps = np.random.default_rng(7).standard_normal((1, len(x), LATENT))
    loss_td = -model.objective(td.tensor(x.astype(np.float64)), eps=td.tensor(eps)).mean()
    loss_td.backward()
    loss_pt = twin.loss(torch.tensor(x.astype(np.float64)), torch.tensor(eps))
    loss_pt.backward()
    a, b = float(loss_td.item()), float(loss_pt.item())
    assert abs(a - b) <= 1e-9 * abs(b), f"{name}: float64 loss tinydgm {a!r} vs PyTorch {b!r}"
    errors = {"first encoder layer": grad_error(common.linear_layers(model.encoder.net)[0].weight.grad,
                                                twin.encoder[0].weight.grad, transpose=True)}
    if name == "vampprior":
        errors["pseudo-inputs"] = grad_error(model.prior.pseudo_inputs.grad, twin.pseudo_inputs.grad)
    if name == "iaf":
        errors["first IAF step's first masked layer"] = grad_error(
            model.posterior.layers[0].made.layers[0].weight.grad, twin.steps[0].weights[0].grad, transpose=True)
        errors["context net's first layer"] = grad_error(common.linear_layers(model.posterior.net)[0].weight.grad,
                                                         twin.context_net[0].weight.grad, transpose=True)
    for what, err in errors.items():
        assert err <= 1e-9, f"{name}: float64 gradient of the {what} differs by {err:.2e} (relative)"
    return a, b, errors


def check_steps(name, td_side, pt_side, batches, rtol=1e-4):
    gen = np.random.default_rng(11)

    def step_pair(i):
        x = batches[i % len(batches)]
        eps = gen.standard_normal((1, len(x), LATENT)).astype(DTYPE)
        return td_side.step(td.tensor(x), td.tensor(eps)), pt_side.step(torch.tensor(x), torch.tensor(eps))
    return common.check_losses(name, step_pair, rtol=rtol)


# ----------------------------------------------------------------------------- timing

def bench_variants(cfg):
    names = ["standard", "mog", "vampprior", "mog-100", "vampprior-100", "flow-prior", "ar-prior", "planar", "iaf"]
    batches = train_batches(8)
    xs = [td.tensor(x) for x in batches]
    cases = {}
    for name in names:
        base, _, k = name.partition("-")
        k_mix = int(k) if k.isdigit() else cfg.k_mix
        step = common.TinydgmStep(build(base if k.isdigit() else name, k_mix), LR).step
        cases[name] = common.cycling(step, xs)
    load0 = os.getloadavg()
    with common.ForeignLoad() as load:
        stats, _ = common.compare(cases, repeats=cfg.repeats, warmup=3, min_sample_s=cfg.sample_s,
                                  retries=cfg.retries)
    load1 = os.getloadavg()
    rows = []
    for name in names:
        ratio = "1" if name == "standard" else common.fmt_ratio(stats[name], stats["standard"])
        rows.append([name, common.fmt_ms(stats[name]), ratio, stats[name].contended])
        print(f"  {name:14s} {common.fmt_ms(stats[name]):>26s} ms  {ratio}", flush=True)
    table = common.markdown_table(["variant", "median ms [IQR]", "/ standard (paired: median, min–max)",
                                   "contended samples kept"], rows)
    return "\n".join([
        f"tinydgm only, one process; K = {cfg.k_mix} for `mog` and `vampprior` (the paper's), K = 100 for the "
        f"`-100` rows (the quality run's). {cfg.repeats} interleaved repeats of all {len(names)} steps.", "",
        table, "",
        f"{common.load_note(load, [stats])} Load average {load0[0]:.2f} before, {load1[0]:.2f} after."])


def bench_twin(name, cfg, describe):
    batches = train_batches(8)
    a64, b64, gerrs = check_float64(name, cfg.k_mix, batches[0])
    print(f"  float64 loss: tinydgm {a64:.12f}, PyTorch {b64:.12f}; gradients {gerrs}", flush=True)
    model = build(name, cfg.k_mix)
    td_side, pt_side = common.TinydgmStep(model, LR), common.TorchStep(TorchVariantVAE(model), LR)
    losses = check_steps(name, td_side, pt_side, batches)
    print("  float32 losses along 5 Adam steps: " + ", ".join(f"{a:.4f}/{b:.4f}" for a, b in losses), flush=True)
    xs_td = [td.tensor(x) for x in batches]
    xs_pt = [torch.tensor(x) for x in batches]
    cases = {"tinydgm": common.cycling(td_side.step, xs_td), "PyTorch": common.cycling(pt_side.step, xs_pt)}
    load0 = os.getloadavg()
    with common.ForeignLoad() as load:
        stats, _ = common.compare(cases, repeats=cfg.repeats, warmup=5, min_sample_s=cfg.sample_s,
                                  settle_s=cfg.settle_s, retries=cfg.retries)
        b2b, b2b_iqr = common.back_to_back(td_side.step, pt_side.step, batches, cfg.b2b_rounds)
    load1 = os.getloadavg()
    ratio, _ = common.paired_ratio(stats["tinydgm"], stats["PyTorch"])
    iqr = common.paired_ratio_iqr(stats["tinydgm"], stats["PyTorch"])
    print(f"  tinydgm {common.fmt_ms(stats['tinydgm'])} ms, PyTorch {common.fmt_ms(stats['PyTorch'])} ms, "
          f"ratio {common.fmt_ratio(stats['tinydgm'], stats['PyTorch'])}, back to back {b2b:.2f}x", flush=True)
    table = common.pair_table(stats, detail=True)
    return "\n".join([
        describe + f" Same loss in float64 on the same batch and noise (checked to 1e-9: {a64:.9f} / {b64:.9f}; "
        "gradients agree: " + ", ".join(f"{k} {v:.0e}" for k, v in gerrs.items()) + "), and in float32 along 5 "
        "Adam steps with shared noise: " + ", ".join(f"{a:.3f} / {b:.3f}" for a, b in losses)
        + f". {cfg.repeats} interleaved repeats, {cfg.settle_s} s pause before each sample.", "",
        table, "",
        f"Target at most 1.0x PyTorch: {common.verdict(ratio, iqr, 1.0)}. Back to back ({cfg.b2b_rounds} rounds "
        f"of 5 steps per side, no pause, alternating which side goes first): **{b2b:.2f}x** (IQR "
        f"{b2b_iqr[0]:.2f}–{b2b_iqr[1]:.2f}).", "",
        f"{common.load_note(load, [stats])} Load average {load0[0]:.2f} before, {load1[0]:.2f} after."])


def bench_vampprior(cfg):
    return bench_twin("vampprior", cfg,
        f"VAE 784-300-40 with `VampPrior(encoder, {cfg.k_mix})` (pseudo-inputs started at training images), "
        "Monte Carlo KL with one sample: log p(z) = logsumexp_k log q(z|u_k) - log K, the encoder run on the K "
        "pseudo-inputs at every step. PyTorch twin: `torch.nn.Linear` MLPs, the pseudo-inputs an "
        "`nn.Parameter`, `torch.logsumexp`, `F.binary_cross_entropy_with_logits`, `torch.optim.Adam`.")


def bench_iaf(cfg):
    return bench_twin("iaf", cfg,
        "VAE 784-300-40 with `IAFPosterior(784, 40, n_layers=2, hidden_sizes=(100,), context_dim=40, "
        "hidden=(100,), identity_init=False)`: context h = tanh-MLP(x), two Gaussian-MADE IAF steps reading "
        "(z, h) with alternating orderings, z = z exp(alpha) + mu, alpha = 8 tanh(raw / 8), Monte Carlo KL with "
        "log q = log q_0 - sum alpha. PyTorch twin: the same MADE as `F.linear(a, W * M, b)` with the masks "
        "copied, the context through `F.linear` unmasked, `torch.optim.Adam`.")


@contextlib.contextmanager
def direct_mixture_form():
    """MixtureOfGaussians.log_prob through the (..., K, L) array, as before the GEMM form (the
    "before" side of the before/after timings; the GEMM form is the library's default)."""
    gemm = MixtureOfGaussians._component_log_probs_gemm
    MixtureOfGaussians._component_log_probs_gemm = MixtureOfGaussians._component_log_probs_direct
    try:
        yield
    finally:
        MixtureOfGaussians._component_log_probs_gemm = gemm


def in_direct_form(fn):
    def call():
        with direct_mixture_form():
            fn()
    return call


def check_forms_agree(name, k_mix, x, z):
    """The two forms give the same prior log p(z) and the same loss on the same noise (float32)."""
    model = build(name, k_mix)
    eps = td.tensor(np.random.default_rng(3).standard_normal((1, len(x), LATENT)).astype(DTYPE))
    with td.no_grad():
        gemm = model.prior.log_prob(z).numpy(), float(-model.objective(td.tensor(x), eps=eps).mean().item())
        with direct_mixture_form():
            direct = model.prior.log_prob(z).numpy(), float(-model.objective(td.tensor(x), eps=eps).mean().item())
    error = float(np.abs(gemm[0] - direct[0]).max())
    assert error <= 1e-3 and abs(gemm[1] - direct[1]) <= 1e-5 * abs(direct[1]), (name, error, gemm[1], direct[1])
    return error, gemm[1], direct[1]


def bench_mixture(cfg):
    """log p(z) of the mixture priors at the importance-sampling size, and the training steps, with the
    direct (..., K, L) form (before) and the GEMM form (after), interleaved in one process."""
    batches = train_batches(8)
    xs = [td.tensor(x) for x in batches]
    cases, checks, names = {}, [], []
    for k_mix in sorted({100, cfg.k_mix}):
        n_z = 100 * 100 * 100 // k_mix       # 10,000 latents at K = 100; the direct form's array kept at 40M entries
        z = td.tensor(np.random.default_rng(5).standard_normal((n_z, LATENT)).astype(DTYPE))
        for base in ("mog", "vampprior"):
            name = f"{base}-{k_mix}"
            checks.append((name,) + check_forms_agree(base, k_mix, batches[0], z))
            prior = build(base, k_mix).prior

            def log_prob(prior=prior, z=z):
                with td.no_grad():
                    prior.log_prob(z)
            cases[f"{name} log p(z), direct"] = in_direct_form(log_prob)
            cases[f"{name} log p(z), GEMM"] = log_prob
            cases[f"{name} step, direct"] = in_direct_form(common.cycling(common.TinydgmStep(
                build(base, k_mix), LR).step, xs))
            cases[f"{name} step, GEMM"] = common.cycling(common.TinydgmStep(build(base, k_mix), LR).step, xs)
            names.append(name)
    cases["standard step"] = common.cycling(common.TinydgmStep(build("standard"), LR).step, xs)
    load0 = os.getloadavg()
    with common.ForeignLoad() as load:
        stats, _ = common.compare(cases, repeats=cfg.repeats, warmup=2, min_sample_s=cfg.sample_s,
                                  retries=cfg.retries)
    load1 = os.getloadavg()
    rows = []
    for name in names:
        for what in ("log p(z)", "step"):
            before, after = stats[f"{name} {what}, direct"], stats[f"{name} {what}, GEMM"]
            extra = ([common.fmt_ratio(before, stats["standard step"]), common.fmt_ratio(after, stats["standard step"])]
                     if what == "step" else ["", ""])
            rows.append([name, what, common.fmt_ms(before), common.fmt_ms(after), common.fmt_ratio(before, after)]
                        + extra)
            print(f"  {name:14s} {what:9s} direct {common.fmt_ms(before):>24s} ms, GEMM {common.fmt_ms(after):>24s}"
                  f" ms, {common.fmt_ratio(before, after)} faster", flush=True)
    table = common.markdown_table(["prior", "what", "direct form ms [IQR]", "GEMM form ms [IQR]",
                                   "direct / GEMM (paired: median, min–max)", "direct step / standard step",
                                   "GEMM step / standard step"], rows)
    agree = "; ".join(f"{n}: log p(z) within {e:.1e} nats, loss {a:.4f} / {b:.4f}" for n, e, a, b in checks)
    return "\n".join([
        f"`MixtureOfGaussians.log_prob` with the direct (..., K, L) form (before) and the GEMM form (after), "
        f"tinydgm only, one process, {cfg.repeats} interleaved repeats. log p(z): the prior on 10,000 latents "
        f"at K = 100 (100 images x 100 samples: one pass of the importance-sampled evaluation), 10,000 x 100 / K "
        f"at other K (the direct form's (M, K, L) array kept at 40M entries), no graph. Step: the "
        f"VAE 784-300-40 training step (loss, backward, Adam). The two forms agree (float32): {agree}.", "",
        table, "",
        f"standard step: {common.fmt_ms(stats['standard step'])} ms. {common.load_note(load, [stats])} "
        f"Load average {load0[0]:.2f} before, {load1[0]:.2f} after."])


PARTS = {"variants": ("Training step of each prior / posterior, relative to the plain VAE", bench_variants),
         "mixture": ("The mixture priors' log p(z) and step, direct form against GEMM form", bench_mixture),
         "vampprior": ("VampPrior VAE training step against PyTorch", bench_vampprior),
         "iaf": ("IAF-posterior VAE training step against PyTorch", bench_iaf)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats (a smoke run)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out")
    parser.add_argument("--parts", default="variants,vampprior,iaf",
                        help=f"comma-separated, from {','.join(PARTS)}")
    parser.add_argument("--k-mix", type=int, default=500, help="mixture components / pseudo-inputs")
    parser.add_argument("--retries", type=int, default=1,
                        help="retakes of a sample taken under CPU contention (on a machine that is always "
                             "contended, more retries only add time)")
    cfg = parser.parse_args(argv)
    cfg.repeats = 5 if cfg.quick else 11
    cfg.b2b_rounds = 6 if cfg.quick else 12
    cfg.sample_s = 0.02 if cfg.quick else 0.1
    cfg.settle_s = 0.1
    parts = cfg.parts.split(",")
    pinned = common.pin_threads(cfg.threads)
    info = common.machine_info()
    print(common.machine_markdown(info, cfg.threads))
    print(f"- pinned: {pinned}", flush=True)
    start, load0 = time.perf_counter(), os.getloadavg()
    bodies = []
    for i, part in enumerate(parts, start=1):
        title, fn = PARTS[part]
        print(f"\n{i}. {title}", flush=True)
        bodies.append(f"#### {i}. {title}\n\n" + fn(cfg))
    elapsed, load1 = time.perf_counter() - start, os.getloadavg()
    command = ("TINYDGM_DATA=<folder with binarized_mnist.npz> python benchmarks/bench_latent_variants.py"
               + (" --quick" if cfg.quick else "") + f" --threads {cfg.threads} --k-mix {cfg.k_mix}"
               + f" --retries {cfg.retries}"
               + (f" --parts {cfg.parts}" if cfg.parts != "variants,vampprior,iaf" else ""))
    common.finish_section(cfg.out, [f"Command: `{command}` (one process, {elapsed:.0f} s; load average "
                                    f"{load0[0]:.2f} at the start, {load1[0]:.2f} at the end).", "",
                                    common.machine_markdown(info, cfg.threads), ""], bodies)


if __name__ == "__main__":
    main()
