"""PixelVAE and the parallel multiscale PixelCNN against PyTorch twins at the same budget (issue 17).

    TINYDGM_DATA=<folder with binarized_mnist.npz> python benchmarks/twins_hybrid.py \
        [--quick] [--threads N] [--parts pixelvae,multiscale] [--n-train N] [--epochs E] [--n-test N] \
        [--k K] [--depths 0,2] [--out SECTION.md]

The models are the ones benchmarks/quality_hybrid.py trains (its builders are imported, not copied). Each twin
is the same network written in PyTorch (same layers, masks, upsampling and conditioning), its weights copied
from the tinydgm model parameter by parameter, by name. Before any training the script checks, in float64,
that both sides give the same objective for the same x (and the same eps for PixelVAE) to 1e-10 relative,
and the same gradient for every parameter.

Then both sides train from the same initial weights on the same batches in the same order (batch 50, Adam
lr 1e-3, as quality_hybrid.py), with the same eps drawn once from NumPy and fed to both, one step of each in
turn, at 1 thread each. The test figures use the same eps on both sides too:

- PixelVAE (Gulrajani et al. 2017; intro lecture eq. 43-44), one model per number of masked layers
  (``--depths``): the importance-sampled test NLL, -ln 1/k sum_j p(x | z_j) p(z_j) / q(z_j | x), the
  -ELBO (10 draws) and the closed-form KL(q(z | x) || p(z)) averaged over the test images.
- The multiscale PixelCNN (Reed et al. 2017): the exact test NLL.

The batches come as in train.fit (seed 0): a permutation per epoch from one NumPy generator. The multiscale
model draws no noise, so its tinydgm side repeats quality_hybrid.py's run exactly; for PixelVAE the eps come
from the same generator, so after the first epoch the order, and the noise, differ from quality_hybrid.py's
run (whose eps come from the model's own generator): its tinydgm numbers differ from those a little.
The seconds each side spends in its steps (summed over the interleaved steps) are reported as a ratio.
"""
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as torch_F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import common  # noqa: E402
import quality_hybrid  # noqa: E402

import tinydgm as td  # noqa: E402
from tinydgm import optim  # noqa: E402
from tinydgm.models.autoregressive import MultiscalePixelCNN  # noqa: E402

SECTIONS, section = common.part_registry()
BATCH, LR = quality_hybrid.BATCH, quality_hybrid.LR
LOG_2PI = math.log(2 * math.pi)
CHECK_RTOL = 1e-10


def multiscale_model(seed=0):
    """quality_hybrid.py's multiscale model (base 7x7, 32 maps, 4 residual blocks, 2 scales of 3 groups)."""
    return MultiscalePixelCNN((28, 28), (7, 7), group_channels=32, group_layers=2, rng=td.rng(seed),
                              **quality_hybrid.BASE)


# ----------------------------------------------------------------------------- the twins

class Twin(torch.nn.Module):
    """Holds a copy of every parameter of a tinydgm model under its tinydgm name (dots -> "__"), and the
    PixelCNN masks of its masked convolutions; ``conv`` applies a named convolution as F.conv2d."""

    def __init__(self, model, dtype):
        super().__init__()
        self.dtype = dtype
        self.params = torch.nn.ParameterDict({name.replace(".", "__"): torch.nn.Parameter(
            torch.tensor(np.array(p.numpy()), dtype=dtype)) for name, p in model.named_parameters()})
        self.masks = {name: torch.tensor(np.asarray(m.mask), dtype=dtype)
                      for name, m in model.named_modules() if hasattr(m, "mask")}

    def p(self, name):
        return self.params[name.replace(".", "__")]

    def conv(self, name, x, stride=1, padding=None):
        """Conv2d (or MaskedConv2d: W * M, padding k // 2) ``name`` of the tinydgm model."""
        w = self.p(name + ".weight")
        if name in self.masks:
            w = w * self.masks[name]
        padding = w.shape[-1] // 2 if padding is None else padding
        return torch_F.conv2d(x, w, self.p(name + ".bias"), stride=stride, padding=padding)

    def linear(self, name, h):
        return h @ self.p(name + ".weight") + self.p(name + ".bias")      # tinydgm stores W as (in, out)


def bernoulli_log_prob(logits, x):
    """sum_i ln Bernoulli(x_i; sigmoid(logit_i)) per image."""
    return -torch_F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(dim=(1, 2, 3))


class TorchPixelVAE(Twin):
    """quality_hybrid.pixelvae(n_layers) in PyTorch:

        (mu, log_var) = dense(relu(conv(relu(conv(x)))))             ConvEncoder, 4x4 stride 2 convs
        z = mu + exp(log_var / 2) eps
        f(z) = ConvT(relu(ConvT(relu(dense(z)).reshape(C_f, 7, 7))))  two 4x4 stride-2 transposed convs
        a_1 = W_1 *_A x + V_1 f;  a_l = a_{l-1} + W_l *_B relu(a_{l-1}) + V_l f;  logits = W_out relu(a_L)
        loss = -mean[ln p(x | z) - KL(q || p)],  KL = -1/2 sum(1 + log_var - mu^2 - exp(log_var))
    """

    def __init__(self, model, dtype):
        super().__init__(model, dtype)
        self.latent_dim = model.latent_dim
        self.n_layers = model.decoder.n_layers
        self.n_upsample = model.decoder.n_upsample
        self.base_shape = model.decoder.base_shape

    def encode(self, x):
        h = torch.relu(self.conv("encoder.conv.0", x, stride=2, padding=1))
        h = torch.relu(self.conv("encoder.conv.2", h, stride=2, padding=1))
        out = self.linear("encoder.dense.2", torch.relu(self.linear("encoder.dense.0", h.flatten(1))))
        return out[:, :self.latent_dim], out[:, self.latent_dim:]

    def features(self, z):
        f = torch.relu(self.linear("decoder.dense.2", torch.relu(self.linear("decoder.dense.0", z))))
        f = f.reshape((z.shape[0],) + self.base_shape)
        for i in range(self.n_upsample):
            f = torch_F.conv_transpose2d(f, self.p(f"decoder.upsample.{i}.weight"), self.p(f"decoder.upsample.{i}.bias"),
                                         stride=2, padding=1)
            f = f if i == self.n_upsample - 1 else torch.relu(f)
        return f

    def log_px_z(self, x, z):
        """ln p(x | z) for z (S, N, L) -> (S, N)."""
        s, n = z.shape[:2]
        f = self.features(z.reshape(s * n, -1))
        x_rep = x.expand(s, *x.shape).reshape(s * n, *x.shape[1:])
        cond = lambda l: self.conv(f"decoder.pixelcnn.cond.{l}", f)       # noqa: E731  V_l f(z), 1x1
        if self.n_layers == 0:
            a = cond(0)
        else:
            a = self.conv("decoder.pixelcnn.masked.0", x_rep) + cond(0)
            for l in range(1, self.n_layers):
                a = a + self.conv(f"decoder.pixelcnn.masked.{l}", torch.relu(a)) + cond(l)
        logits = self.conv("decoder.pixelcnn.conv_out", torch.relu(a))
        return bernoulli_log_prob(logits, x_rep).reshape(s, n)

    def elbo_terms(self, x, eps):
        """(1/S sum_s ln p(x | z_s), KL), each (N,), for eps (S, N, L)."""
        mu, log_var = self.encode(x)
        z = mu + torch.exp(0.5 * log_var) * eps
        kl = -0.5 * (1 + log_var - mu * mu - torch.exp(log_var)).sum(-1)
        return self.log_px_z(x, z).mean(0), kl

    def loss(self, x, eps):
        log_px_z, kl = self.elbo_terms(x, eps)
        return -(log_px_z - kl).mean()

    def log_weights(self, x, eps):
        """ln w_j = ln p(x | z_j) + ln p(z_j) - ln q(z_j | x), (k, N)."""
        mu, log_var = self.encode(x)
        z = mu + torch.exp(0.5 * log_var) * eps
        log_pz = (-0.5 * LOG_2PI - 0.5 * z * z).sum(-1)
        log_qz = (-0.5 * LOG_2PI - 0.5 * log_var - 0.5 * eps * eps).sum(-1)
        return self.log_px_z(x, z) + log_pz - log_qz


class TorchMultiscale(Twin):
    """multiscale_model() in PyTorch: the base PixelCNN at 7x7 (type A 5x5, residual blocks
    a + expand(relu(conv(relu(reduce(relu(a)))))), relu, head, relu, conv_out), then per scale the group
    networks [relu(3x3 conv)] x 2, 1x1 conv on the known groups, logits interleaved into the 2x image."""

    def __init__(self, model, dtype):
        super().__init__(model, dtype)
        self.n_scales, self.n_residual = model.n_scales, len(model.base.blocks)
        self.group_layers = len(model.upsamplers[0][0].convs)

    def base_logits(self, x):
        a = self.conv("base.conv_in", x)
        for b in range(self.n_residual):
            h = torch.relu(self.conv(f"base.blocks.{b}.reduce", torch.relu(a)))
            a = a + self.conv(f"base.blocks.{b}.expand", torch.relu(self.conv(f"base.blocks.{b}.conv", h)))
        return self.conv("base.conv_out", torch.relu(self.conv("base.head", torch.relu(a))))

    def group_logits(self, known, k, g):
        h = known
        for l in range(self.group_layers):
            h = torch.relu(self.conv(f"upsamplers.{k}.{g}.convs.{l}", h, padding=1))
        return self.conv(f"upsamplers.{k}.{g}.conv_out", h)

    @staticmethod
    def interleave(g1, g2, g3, g4):
        n, c, s, t = g1.shape
        blocks = torch.stack([torch.stack([g1, g2], -1), torch.stack([g3, g4], -1)], -2)
        return blocks.permute(0, 1, 2, 4, 3, 5).reshape(n, c, 2 * s, 2 * t)

    def log_prob(self, x):
        images = [x]
        for _ in range(self.n_scales):
            images.append(images[-1][:, :, ::2, ::2])
        logit_map = self.base_logits(images[-1])
        for k in range(self.n_scales - 1, -1, -1):
            groups = [images[k][:, :, dy::2, dx::2] for dy, dx in ((0, 0), (0, 1), (1, 0), (1, 1))]
            logit_map = self.interleave(logit_map, *[self.group_logits(torch.cat(groups[:g + 1], 1), k, g)
                                                     for g in range(3)])
        return bernoulli_log_prob(logit_map, x)

    def loss(self, x, eps=None):
        return -self.log_prob(x).mean()


# ----------------------------------------------------------------------------- the float64 check

def check_float64(model, make_twin, x, eps=None):
    """Cast ``model`` to float64 in place, build its twin, compare the loss (relative CHECK_RTOL) and the
    gradient of every parameter (max |difference| / max |gradient| <= 1e-9 over each). Returns
    (loss relative difference, worst gradient relative difference, its parameter name)."""
    model.to(dtype="float64")
    twin = make_twin(model, torch.float64)
    x64 = x.astype(np.float64)
    if eps is None:
        loss_td, loss_pt = model.loss(td.tensor(x64)), twin.loss(torch.tensor(x64))
    else:
        loss_td = -model.objective(td.tensor(x64), eps=td.tensor(eps)).mean()
        loss_pt = twin.loss(torch.tensor(x64), torch.tensor(eps))
    loss_td.backward()
    loss_pt.backward()
    a, b = float(loss_td.item()), float(loss_pt.item())
    loss_err = abs(a - b) / abs(b)
    assert loss_err <= CHECK_RTOL, f"float64 loss: tinydgm {a!r} vs PyTorch {b!r} ({loss_err:.1e} relative)"
    worst = (0.0, None)
    for name, p in model.named_parameters():
        g_pt = twin.p(name).grad.numpy()
        g_td = np.asarray(p.grad.numpy() if hasattr(p.grad, "numpy") else p.grad)
        err = float(np.abs(g_td - g_pt).max() / max(np.abs(g_pt).max(), 1e-300))
        assert err <= 1e-9, f"float64 gradient of {name} differs by {err:.2e} (relative)"
        worst = max(worst, (err, name))
    return loss_err, worst[0], worst[1]


# ----------------------------------------------------------------------------- training both sides

def train_pair(model, twin, x_train, cfg, latent_dim=None):
    """Both sides from the same weights, the same batches in the same order and, with ``latent_dim``,
    the same eps (1, B, L) from one NumPy generator; one step of each in turn. Returns the seconds each
    side spent in its steps and the last epoch's mean loss of each."""
    td_opt, pt_opt = optim.Adam(model.parameters(), lr=LR), torch.optim.Adam(twin.parameters(), lr=LR)
    gen = np.random.default_rng(0)
    seconds, last = [0.0, 0.0], None
    for epoch in range(cfg.epochs):
        order, losses = gen.permutation(len(x_train)), []
        for start in range(0, len(x_train), BATCH):
            x = x_train[order[start:start + BATCH]]
            eps = None if latent_dim is None else gen.standard_normal((1, len(x), latent_dim)).astype(np.float32)
            t0 = time.perf_counter()
            td_opt.zero_grad()
            loss_td = model.loss(td.tensor(x)) if eps is None else -model.objective(td.tensor(x), eps=td.tensor(eps)).mean()
            loss_td.backward()
            td_opt.step()
            t1 = time.perf_counter()
            pt_opt.zero_grad(set_to_none=True)
            loss_pt = twin.loss(torch.tensor(x), None if eps is None else torch.tensor(eps))
            loss_pt.backward()
            pt_opt.step()
            t2 = time.perf_counter()
            seconds[0] += t1 - t0
            seconds[1] += t2 - t1
            losses.append((float(loss_td.item()), float(loss_pt.item())))
        last = np.mean(losses, axis=0)
        print(f"  epoch {epoch + 1}: loss tinydgm {last[0]:.3f}, PyTorch {last[1]:.3f}", flush=True)
    return seconds, last


def logmeanexp(a, axis=0):
    m = a.max(axis=axis, keepdims=True)
    return (m + np.log(np.exp(a - m).mean(axis=axis, keepdims=True))).squeeze(axis)


def evaluate_pixelvae(model, twin, x_test, k, chunk=10, batch=50):
    """(NLL, -ELBO, KL) of each side, means over x_test, with the same eps on both sides: k importance
    samples per image (in chunks of ``chunk``) and 10 ELBO draws."""
    gen = np.random.default_rng(1)
    out = {"td": [], "pt": []}
    with td.no_grad(), torch.no_grad():
        for start in range(0, len(x_test), batch):
            x = x_test[start:start + batch]
            log_w = {"td": [], "pt": []}
            for _ in range(0, k, chunk):
                eps = gen.standard_normal((chunk, len(x), model.latent_dim)).astype(np.float32)
                log_w["td"].append(model.log_importance_weights(td.tensor(x), chunk, eps=td.tensor(eps)).numpy())
                log_w["pt"].append(twin.log_weights(torch.tensor(x), torch.tensor(eps)).numpy())
            eps = gen.standard_normal((10, len(x), model.latent_dim)).astype(np.float32)
            log_px_z, kl = model.elbo_terms(td.tensor(x), eps=td.tensor(eps))
            out["td"].append(np.stack([-logmeanexp(np.concatenate(log_w["td"])),
                                       kl.numpy() - log_px_z.numpy(), kl.numpy()], 1))
            log_px_z, kl = twin.elbo_terms(torch.tensor(x), torch.tensor(eps))
            out["pt"].append(np.stack([-logmeanexp(np.concatenate(log_w["pt"])), (kl - log_px_z).numpy(),
                                       kl.numpy()], 1))
    return {side: np.concatenate(rows).mean(0) for side, rows in out.items()}


def data(cfg):
    return quality_hybrid.binarized(cfg)


def ratio_note(seconds):
    return f"{seconds[0]:.0f} / {seconds[1]:.0f} ({seconds[0] / seconds[1]:.2f}x)"


# ----------------------------------------------------------------------------- 1. PixelVAE

@section("pixelvae", "PixelVAE against its PyTorch twin: test NLL, -ELBO and KL at the same budget")
def pixelvae_part(cfg):
    x_train, x_test = data(cfg)
    checks, rows = [], []
    for n_layers in [int(d) for d in cfg.depths.split(",")]:
        eps64 = np.random.default_rng(7).standard_normal((1, 8, 16))
        loss_err, grad_err, where = check_float64(quality_hybrid.pixelvae(n_layers), TorchPixelVAE, x_train[:8], eps64)
        checks.append(f"{n_layers} layers: loss {loss_err:.1e}, worst gradient {grad_err:.1e} ({where})")
        print("  float64 check:", checks[-1], flush=True)
        model = quality_hybrid.pixelvae(n_layers)
        twin = TorchPixelVAE(model, torch.float32)
        seconds, last = train_pair(model, twin, x_train, cfg, model.latent_dim)
        model.eval()
        res = evaluate_pixelvae(model, twin, x_test, cfg.k)
        for side, name in (("td", "tinydgm"), ("pt", "PyTorch twin")):
            nll, neg_elbo, kl = res[side]
            rows.append([n_layers, name, f"{nll:.2f}", f"{neg_elbo:.2f}", f"{kl:.2f}",
                         f"{last[0 if side == 'td' else 1]:.2f}"])
            print(" ", rows[-1], flush=True)
        rows.append([n_layers, "train s, tinydgm / PyTorch", "", "", "", ratio_note(seconds)])
    table = common.markdown_table(["PixelCNN layers", "side", f"test NLL (k = {cfg.k})", "-ELBO (10 draws)",
                                   "KL(q \\|\\| p)", "last epoch's loss"], rows)
    return (f"{table}\n\nNats per image on {cfg.n_test} test images after {cfg.epochs} epochs on {cfg.n_train} "
            f"images; the same eps on both sides in training and evaluation. Float64 check before training "
            f"(8 images, one eps; relative differences): {'; '.join(checks)}.")


# ----------------------------------------------------------------------------- 2. multiscale

@section("multiscale", "Multiscale PixelCNN against its PyTorch twin: exact test NLL at the same budget")
def multiscale_part(cfg):
    x_train, x_test = data(cfg)
    loss_err, grad_err, where = check_float64(multiscale_model(), TorchMultiscale, x_train[:8])
    check = f"loss {loss_err:.1e}, worst gradient {grad_err:.1e} ({where})"
    print("  float64 check:", check, flush=True)
    model = multiscale_model()
    twin = TorchMultiscale(model, torch.float32)
    seconds, last = train_pair(model, twin, x_train, cfg)
    with td.no_grad(), torch.no_grad():
        nll_td = -float(np.concatenate([model.log_prob(x_test[i:i + 100]).numpy()
                                        for i in range(0, len(x_test), 100)]).mean())
        nll_pt = -float(twin.log_prob(torch.tensor(x_test)).numpy().mean())
    rows = [["tinydgm", f"{nll_td:.2f}", f"{last[0]:.2f}"], ["PyTorch twin", f"{nll_pt:.2f}", f"{last[1]:.2f}"],
            ["train s, tinydgm / PyTorch", ratio_note(seconds), ""]]
    return (common.markdown_table(["side", "test NLL (exact)", "last epoch's loss"], rows) +
            f"\n\nNats per image on {cfg.n_test} test images after {cfg.epochs} epochs on {cfg.n_train} images. "
            f"Float64 check before training (8 images; relative differences): {check}.")


def main(argv=None):
    parser = common.parts_parser(__doc__, SECTIONS, quick_help="a smoke run (few images, one epoch)")
    parser.add_argument("--n-train", type=int, default=3000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--n-test", type=int, default=300)
    parser.add_argument("--k", type=int, default=50, help="importance samples per test image (PixelVAE)")
    parser.add_argument("--depths", default="0,2", help="PixelCNN layers of the PixelVAE decoders")
    cfg = parser.parse_args(argv)
    if cfg.quick:
        cfg.n_train, cfg.epochs, cfg.n_test, cfg.k, cfg.depths = 100, 1, 20, 10, "0,2"
    parts = common.chosen_parts(parser, cfg, SECTIONS)
    pinned = common.pin_threads(cfg.threads)
    info, bodies, elapsed, load0, load1 = common.run_sections(cfg, SECTIONS, parts, pinned)
    command = (f"python benchmarks/twins_hybrid.py --threads {cfg.threads} --parts {','.join(parts)} --n-train "
               f"{cfg.n_train} --epochs {cfg.epochs} --n-test {cfg.n_test} --k {cfg.k} --depths {cfg.depths}")
    head = ["## Hybrid models against PyTorch twins at the same budget (`benchmarks/twins_hybrid.py`)", "",
            common.machine_markdown(info, cfg.threads), "",
            f"Command: `{command}`; {elapsed:.0f} s; load average {load0[0]:.2f} -> {load1[0]:.2f}.", ""]
    common.finish_section(cfg.out, head, bodies)


if __name__ == "__main__":
    main()
