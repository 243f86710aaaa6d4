"""Gated PixelCNN training step (issue 12), side by side with a PyTorch twin on the CPU, in one process.

    python benchmarks/bench_gated_pixelcnn.py [--quick] [--threads N] [--out SECTION.md] [--repeats R] [--retries K]
    python benchmarks/bench_gated_pixelcnn.py --profile      # cProfile of the tinydgm side instead

step: one Adam step (lr 1e-3) of ``GatedPixelCNN()`` with its defaults (64 channels, 5 gated blocks, the
first with a 7x7 kernel (type A), then 3x3 (type B) with residuals; head ReLU, 1x1 conv, ReLU, 1x1 conv;
Bernoulli outputs) on batches of 32 binarized 28 x 28 MNIST images, float32: the loss is the mean over
the batch of -ln p(x) = -sum_i ln Bernoulli(x_i | sigmoid(logit_i)). Each gated block (van den Oord et al.
2016c, Figure 2) runs the vertical convolution over rows i - k//2 .. i ((k//2 + 1) x k), the horizontal
one over columns j - k//2 .. j (1 x (k//2 + 1)), the 1x1 vertical-to-horizontal link on the vertical
pre-activation shifted down a row, the gates tanh(a_f) sigmoid(a_g) on both stacks and the 1x1 output
convolution with the residual. Target: at most 2x PyTorch, like the plain PixelCNN.

The PyTorch twin is the same network written with ``torch.nn`` under the same parameter names, the
tinydgm weights copied over. Before timing, both sides take 5 Adam steps from the same weights on the
same batches in float32 and their losses are asserted to agree (1e-4 relative), and in float64 the loss
and every parameter gradient of one step agree to 1e-9.
"""
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

import tinydgm as td  # noqa: E402
from tinydgm.models.autoregressive import GatedPixelCNN  # noqa: E402

BATCH, SIDE, LR = 32, 28, 1e-3
SECTIONS, section = common.part_registry()      # (name, title, fn) in registration order; @section(name, title)


# ----------------------------------------------------------------------------- the twin

class TorchGatedBlock(torch.nn.Module):
    """The twin of ``tinydgm.nn.masked_conv.GatedBlock`` (same layer names)."""

    def __init__(self, block, dtype):
        super().__init__()
        self.k, self.mask_type, self.residual = block.k, block.mask_type, block.residual
        for name in ("v_conv", "h_conv", "v_to_h", "h_out"):
            conv = getattr(block, name)
            layer = torch.nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, dtype=dtype)
            setattr(self, name, layer)

    @staticmethod
    def _gate(a):
        a_f, a_g = a.chunk(2, dim=1)
        return torch.tanh(a_f) * torch.sigmoid(a_g)

    def forward(self, v, h):
        p = self.k // 2
        a_v = self.v_conv(F.pad(v, (p, p, p, 0)))                         # rows i-p..i, columns j-p..j+p
        if self.mask_type == "A":
            h_in = F.pad(h, (p + 1, 0, 0, 0))[:, :, :, :-1]                  # columns j-p-1..j-1
        else:
            h_in = F.pad(h, (p, 0, 0, 0))                                    # columns j-p..j
        a_v_down = F.pad(a_v, (0, 0, 1, 0))[:, :, :-1, :]                   # shift down one row
        a_h = self.h_conv(h_in) + self.v_to_h(a_v_down)
        h_out = self.h_out(self._gate(a_h))
        return self._gate(a_v), (h_out + h if self.residual else h_out)


class TorchGatedPixelCNN(torch.nn.Module):
    """The twin of ``GatedPixelCNN`` (Bernoulli outputs, no class conditioning), weights copied."""

    def __init__(self, model, dtype=torch.float32):
        super().__init__()
        self.stack = torch.nn.Module()
        self.stack.blocks = torch.nn.ModuleList(TorchGatedBlock(b, dtype) for b in model.stack.blocks)
        self.head = torch.nn.Conv2d(model.head.in_channels, model.head.out_channels, 1, dtype=dtype)
        self.conv_out = torch.nn.Conv2d(model.conv_out.in_channels, model.conv_out.out_channels, 1, dtype=dtype)
        target = self.state_dict()
        with torch.no_grad():
            for name, value in model.state_dict().items():
                assert tuple(target[name].shape) == value.shape, f"{name}: {target[name].shape} vs {value.shape}"
                target[name].copy_(torch.tensor(np.ascontiguousarray(value)))

    def logits(self, x):
        v = h = x
        for block in self.stack.blocks:
            v, h = block(v, h)
        return self.conv_out(torch.relu(self.head(torch.relu(h))))

    def loss(self, x, eps=None):
        nll = F.binary_cross_entropy_with_logits(self.logits(x), x, reduction="none")
        return nll.flatten(1).sum(1).mean()


def make_pair(dtype="float32", seed=0):
    model = GatedPixelCNN(rng=np.random.default_rng(seed), dtype=dtype)
    twin = TorchGatedPixelCNN(model, torch.float64 if dtype == "float64" else torch.float32)
    return model, twin


def binary_batches(n_batches, seed=1):
    """(n_batches, 32, 1, 28, 28) in {0, 1}: binarized MNIST training images (pixels > 127) when
    TINYDGM_DATA holds them, else random binary images (the step's cost does not depend on the pixels)."""
    n = n_batches * BATCH
    try:
        from tinydgm.data import load_mnist
        x = load_mnist(download=False, progress=False)["x_train"][:n] > 127
        source = "MNIST training images binarized at 127"
    except Exception:                                                   # no data here: any images will do
        x = np.random.default_rng(seed).random((n, SIDE, SIDE)) < 0.2
        source = "random binary images (no MNIST found)"
    return x.reshape(n_batches, BATCH, 1, SIDE, SIDE).astype(np.float32), source


# ----------------------------------------------------------------------------- agreement checks

def check_float64(x):
    """Loss and every parameter gradient of one step agree in float64 (1e-9 relative). Returns
    (tinydgm loss, PyTorch loss, largest gradient gap)."""
    model, twin = make_pair("float64")
    loss = model.loss(td.tensor(x.astype(np.float64)))
    loss.backward()
    twin_loss = twin.loss(torch.tensor(x.astype(np.float64)))
    twin_loss.backward()
    a, b = float(loss.item()), float(twin_loss.item())
    assert abs(a - b) <= 1e-9 * abs(b), f"float64 loss: tinydgm {a!r} vs PyTorch {b!r}"
    twin_params = dict(twin.named_parameters())
    gap = 0.0
    for name, param in model.named_parameters():
        g_pt = twin_params[name].grad.numpy()
        gap = max(gap, float(np.abs(param.grad.numpy() - g_pt).max() / max(np.abs(g_pt).max(), 1e-30)))
    assert gap <= 1e-9, f"float64 parameter gradients differ by {gap:.1e} (relative)"
    return a, b, gap


# ----------------------------------------------------------------------------- the part

@section("step", "Gated PixelCNN training step, batch 32, 28x28 binary images")
def bench_step(cfg):
    batches, source = binary_batches(4)
    a64, b64, gap = check_float64(batches[0][:4])
    print(f"  float64: loss {a64:.9f} / {b64:.9f}, largest parameter-gradient gap {gap:.1e}", flush=True)
    model, twin = make_pair()
    td_side, pt_side = common.TinydgmStep(model, LR), common.TorchStep(twin, LR)
    xs_td, xs_pt = [td.tensor(x) for x in batches], [torch.tensor(x) for x in batches]
    losses = common.check_losses("Gated PixelCNN", lambda k: (td_side.step(xs_td[k % 4]), pt_side.step(xs_pt[k % 4])),
                                 floor=0.0)
    print("  same float32 loss for 5 Adam steps (checked): " + ", ".join(f"{a:.4f}/{b:.4f}" for a, b in losses),
          flush=True)
    load0 = os.getloadavg()
    with common.ForeignLoad() as load:
        stats, _ = common.compare({"tinydgm": common.cycling(td_side.step, xs_td),
                                   "PyTorch": common.cycling(pt_side.step, xs_pt)},
                                  repeats=cfg.repeats, warmup=3, min_sample_s=cfg.sample_s, settle_s=cfg.settle_s,
                                  retries=cfg.retries)
        common.print_pair(stats)
    ratio, _ = common.paired_ratio(stats["tinydgm"], stats["PyTorch"])
    iqr = common.paired_ratio_iqr(stats["tinydgm"], stats["PyTorch"])
    n_params = sum(p.size for p in model.parameters())
    return "\n".join([
        f"One Adam step (lr {LR}) of `GatedPixelCNN()` ({n_params:,} parameters: 64 channels, 5 gated blocks, the "
        "first 7x7 type A, then 3x3 type B with residuals; head ReLU, 1x1, ReLU, 1x1; Bernoulli outputs), "
        f"float32, batch {BATCH} of {source}; loss = mean over the batch of -ln p(x). PyTorch: the same "
        "network in `torch.nn` (vertical (k//2 + 1) x k and horizontal 1 x (k//2 + 1) convolutions on padded "
        "inputs, the shifted 1x1 vertical-to-horizontal link, gates, residuals), the tinydgm weights copied.", "",
        f"Checked before timing: in float64 the loss of one step agrees to 1e-9 ({a64:.9f} / {b64:.9f}) and "
        f"every parameter gradient to {gap:.0e} (largest max-difference over max-entry); in float32 the losses "
        "of 5 Adam steps on the same batches agree to 1e-4: " + ", ".join(f"{a:.3f} / {b:.3f}" for a, b in losses)
        + f". {cfg.repeats} interleaved repeats, {cfg.settle_s} s pause before each sample.", "",
        common.pair_table(stats, detail=True), "",
        f"Target at most 2x PyTorch: {common.verdict(ratio, iqr, 2.0)}. {common.load_note(load, [stats])} "
        f"Load average (1 min) {load0[0]:.2f} before, {os.getloadavg()[0]:.2f} after."])


def profile(n=10):
    """cProfile of n tinydgm steps (after 3 warm-up steps): where the time goes."""
    batches, _ = binary_batches(4)
    model, twin = make_pair()
    td_side, pt_side = common.TinydgmStep(model, LR), common.TorchStep(twin, LR)
    xs_td, xs_pt = [td.tensor(x) for x in batches], [torch.tensor(x) for x in batches]
    for k in range(3):
        td_side.step(xs_td[k])
        pt_side.step(xs_pt[k])
    common.profile_steps(lambda k: td_side.step(xs_td[k % 4]), lambda k: pt_side.step(xs_pt[k % 4]), n)


def main(argv=None):
    parser = common.parts_parser(__doc__, SECTIONS)
    common.add_repeat_options(parser, "interleaved repeats (default 11)")
    parser.add_argument("--profile", action="store_true", help="profile the tinydgm side instead")
    cfg = parser.parse_args(argv)
    cfg.repeats = 5 if cfg.quick else cfg.repeats
    cfg.sample_s = 0.0
    cfg.settle_s = 0.1          # let the other library's spinning BLAS/OpenMP threads sleep
    parts = common.chosen_parts(parser, cfg, SECTIONS)
    pinned = common.pin_threads(cfg.threads)
    if cfg.profile:
        profile()
        return
    info, bodies, elapsed, load0, load = common.run_sections(cfg, SECTIONS, parts, pinned)
    command = "python benchmarks/bench_gated_pixelcnn.py" + (" --quick" if cfg.quick else "") + \
        f" --threads {cfg.threads} --repeats {cfg.repeats} --retries {cfg.retries}" + \
        (f" --out {cfg.out}" if cfg.out else "")
    common.finish_section(cfg.out, common.command_head(command, elapsed, load0, load, info, cfg.threads), bodies)


if __name__ == "__main__":
    main()
