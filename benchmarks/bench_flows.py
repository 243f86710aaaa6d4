"""Normalizing flows benchmark (issue 6), side by side with PyTorch on the CPU, in one process.

    python benchmarks/bench_flows.py [--quick] [--threads N] [--out SECTION.md] [--parts realnvp,...]

Sections are registered with ``@section(name, title)``: each is a function ``fn(cfg) -> markdown``
(a "### ..." part of the report) run in registration order; ``--parts`` selects some of them.

realnvp: RealNVP training step on a 2-D toy (8 Gaussians), batch 512, float32: 8 affine couplings
with alternating half masks, each conditioner an MLP 2 -> 64 -> 64 -> (2 shifts, 2 log-scales)
with ReLU and the bounded log-scale s = scale * tanh(raw), base N(0, I), loss = mean NLL, Adam
(lr 1e-3). tinydgm: ``tinydgm.models.flows.toy_realnvp`` (``flow.loss`` -> ``backward`` ->
``tinydgm.optim.Adam``); PyTorch: the same flow written with ``torch.nn.Linear``, the model's
weights copied over. Same loss checked along 5 Adam steps before timing. Target: at most 1.0x
PyTorch.
"""
import argparse
import math
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

import tinydgm as td  # noqa: E402
from tinydgm import optim  # noqa: E402

DTYPE = np.float32
LR = 1e-3
SECTIONS = []       # (name, title, fn) in registration order


def section(name, title):
    """Register ``fn(cfg) -> markdown`` as the benchmark part ``name``."""
    def register(fn):
        SECTIONS.append((name, title, fn))
        return fn
    return register


def toy_batches(n_batches, batch, toy="eight_gaussians", seed=0):
    """(n_batches, batch, 2) float32 draws of a 2-D toy density."""
    from tinydgm.data.toy import sample_toy
    x = sample_toy(toy, n_batches * batch, np.random.default_rng(seed))
    return x.astype(DTYPE).reshape(n_batches, batch, 2)


def check_agree(name, td_step, torch_step, xs_td, xs_pt, rtol=1e-4):
    """The same loss on the same weights and data, and along 5 Adam steps."""
    losses = []
    for k in range(5):
        a = float(td_step(xs_td[k % len(xs_td)]).item())
        b = float(torch_step(xs_pt[k % len(xs_pt)]).item())
        losses.append((a, b))
        assert abs(a - b) <= rtol * max(abs(b), 1.0), f"{name}: loss at step {k}: tinydgm {a} vs PyTorch {b}"
    return losses


def time_steps(cfg, td_step, torch_step, batches):
    """Interleaved paired timing of the two training steps on cycling batches."""
    xs_td = [td.tensor(x) for x in batches]
    xs_pt = [torch.tensor(x) for x in batches]
    counter = {"td": 0, "pt": 0}

    def cycle(side, xs, fn):
        def call():
            k = counter[side] = (counter[side] + 1) % len(xs)
            fn(xs[k])
        return call

    cases = {"tinydgm": cycle("td", xs_td, td_step), "PyTorch": cycle("pt", xs_pt, torch_step)}
    stats, _ = common.compare(cases, repeats=cfg.repeats, warmup=3, min_sample_s=cfg.sample_s,
                              settle_s=cfg.settle_s)
    for name, s in stats.items():
        print(f"  {name:10s} {common.fmt_ms(s):>24s} ms (contended samples {s.contended})", flush=True)
    print(f"  tinydgm / PyTorch {common.fmt_ratio(stats['tinydgm'], stats['PyTorch'])}", flush=True)
    return stats


class TinydgmStep:
    """model.loss(x) -> backward -> tinydgm.optim.Adam.step()."""

    def __init__(self, model):
        self.model = model
        self.opt = optim.Adam(list(model.parameters()), lr=LR)

    def step(self, x):
        self.model.zero_grad()
        loss = self.model.loss(x)
        loss.backward()
        self.opt.step()
        return loss


# ----------------------------------------------------------------------------- RealNVP

class TorchRealNVP(torch.nn.Module):
    """The twin of ``toy_realnvp(2, 8, (64, 64))``: per coupling k, mask b_k,

        (t, raw) = MLP(b x),  s = scale * tanh(raw) * (1 - b)
        y = b x + (1 - b) (x exp(s) + t),   log_det += sum s
    """

    def __init__(self, flow):
        super().__init__()
        self.masks, self.nets, self.scales = [], torch.nn.ModuleList(), torch.nn.ParameterList()
        for coupling in flow.transform.transforms:
            cond = coupling.conditioner
            layers = []
            for lin in list(cond.layers) + [cond.last]:
                w = lin.weight.numpy()                           # tinydgm layout (in, out)
                layer = torch.nn.Linear(*w.shape)
                with torch.no_grad():
                    layer.weight.copy_(torch.tensor(w.T))
                    layer.bias.copy_(torch.tensor(lin.bias.numpy()))
                layers.append(layer)
            self.nets.append(torch.nn.ModuleList(layers))
            self.scales.append(torch.nn.Parameter(torch.tensor(cond.scale.numpy())))
            self.masks.append(torch.tensor(coupling.mask.astype(DTYPE)))

    def log_prob(self, x):
        log_det = torch.zeros(x.shape[0])
        for b, net, scale in zip(self.masks, self.nets, self.scales):
            h = x_b = x * b
            for layer in net[:-1]:
                h = torch.relu(layer(h))
            t, raw = net[-1](h).chunk(2, dim=1)
            s = scale * torch.tanh(raw) * (1 - b)
            x = x_b + (1 - b) * (x * torch.exp(s) + t)
            log_det = log_det + s.sum(dim=1)
        return -0.5 * (x * x).sum(dim=1) - x.shape[1] * 0.5 * math.log(2 * math.pi) + log_det


class TorchStep:
    def __init__(self, model):
        self.model = model
        self.opt = torch.optim.Adam(model.parameters(), lr=LR)

    def step(self, x):
        self.opt.zero_grad(set_to_none=True)
        loss = -self.model.log_prob(x).mean()
        loss.backward()
        self.opt.step()
        return loss


def _perturb_last_layers(flow, rng):
    """Small random last layers, so that the loss check compares non-trivial couplings
    (a fresh coupling is the identity)."""
    for coupling in flow.transform.transforms:
        last = coupling.conditioner.last
        last.weight.data = (0.05 * rng.standard_normal(last.weight.shape)).astype(DTYPE)


@section("realnvp", "RealNVP training step (8 affine couplings, MLP 2-64-64-2, batch 512, 2-D toy)")
def bench_realnvp(cfg):
    from tinydgm.models.flows import toy_realnvp
    rng = np.random.default_rng(0)
    flow = toy_realnvp(2, 8, hidden=(64, 64), rng=rng, dtype="float32")
    _perturb_last_layers(flow, rng)
    twin = TorchRealNVP(flow)
    td_side, pt_side = TinydgmStep(flow), TorchStep(twin)
    batches = toy_batches(8, 512)
    losses = check_agree("RealNVP", td_side.step, pt_side.step, [td.tensor(x) for x in batches],
                         [torch.tensor(x) for x in batches])
    print("  same loss on both sides for 5 Adam steps (checked): "
          + ", ".join(f"{a:.4f}/{b:.4f}" for a, b in losses), flush=True)
    with common.ForeignLoad() as load:
        stats = time_steps(cfg, td_side.step, pt_side.step, batches)
    ratio, _ = common.paired_ratio(stats["tinydgm"], stats["PyTorch"])
    iqr = common.paired_ratio_iqr(stats["tinydgm"], stats["PyTorch"])
    table = common.markdown_table(["", "median ms [IQR]", "/ PyTorch (paired: median, min–max)"], [
        ["tinydgm", common.fmt_ms(stats["tinydgm"]), common.fmt_ratio(stats["tinydgm"], stats["PyTorch"])],
        ["PyTorch", common.fmt_ms(stats["PyTorch"]), "1"]])
    return "\n".join([
        "One step = loss (mean NLL of 512 draws of 8 Gaussians under the flow), backward, Adam "
        f"(lr {LR}). tinydgm: `tinydgm.models.flows.toy_realnvp(2, 8, hidden=(64, 64))` (affine couplings "
        "y = b x + (1 - b)(x exp(s) + t), (t, s) from an MLP 2-64-64-4 on b x, s = scale tanh(raw)). PyTorch: "
        "the same flow with `torch.nn.Linear`, weights copied. Same loss on both sides along 5 Adam steps "
        "(checked): " + ", ".join(f"{a:.4f} / {b:.4f}" for a, b in losses) + f". {cfg.repeats} interleaved "
        "repeats.", "", table, "",
        f"Target at most 1.0x PyTorch: {common.verdict(ratio, iqr, 1.0)}. {common.load_note(load, [stats])}"])


# ----------------------------------------------------------------------------- main

def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats (a smoke run)")
    parser.add_argument("--threads", type=int, default=2, help="threads for every side (default 2)")
    parser.add_argument("--out", help="write the markdown section to this file")
    parser.add_argument("--parts", default=None,
                        help="comma-separated parts to run (default all: " + ",".join(n for n, _, _ in SECTIONS) + ")")
    cfg = parser.parse_args(argv)
    cfg.repeats = 5 if cfg.quick else 21
    cfg.sample_s = 0.01 if cfg.quick else 0.05
    cfg.settle_s = 0.1          # let the other library's spinning BLAS/OpenMP threads sleep
    names = [n for n, _, _ in SECTIONS]
    parts = names if cfg.parts is None else cfg.parts.split(",")
    unknown = sorted(set(parts) - set(names))
    if unknown:
        parser.error(f"unknown parts {unknown}; the parts are {names}")

    pinned = common.pin_threads(cfg.threads)
    info = common.machine_info()
    print(common.machine_markdown(info, cfg.threads))
    print(f"- pinned: {pinned}; BLAS pools: {common.blas_info()}", flush=True)
    start, load0 = time.perf_counter(), os.getloadavg()
    bodies = []
    for k, (name, title, fn) in enumerate((s for s in SECTIONS if s[0] in parts), start=1):
        print(f"\n{k}. {title}", flush=True)
        bodies.append(f"### {k}. {title}\n\n" + fn(cfg))
    elapsed = time.perf_counter() - start
    load = os.getloadavg()
    print(f"\ntotal {elapsed:.0f} s; load average {load0[0]:.2f} at the start, {load[0]:.2f} at the end")

    command = "python benchmarks/bench_flows.py" + (" --quick" if cfg.quick else "") + f" --threads {cfg.threads}" + \
        (f" --parts {cfg.parts}" if cfg.parts else "") + (f" --out {cfg.out}" if cfg.out else "")
    out = ["## Normalizing flows (issue 6)", "",
           f"Command: `{command}` (one process, {elapsed:.0f} s; load average {load0[0]:.2f} at the start, "
           f"{load[0]:.2f} at the end).", "", common.machine_markdown(info, cfg.threads), ""]
    out += [body + "\n" for body in bodies]
    section_md = "\n".join(out)
    print("\n" + section_md)
    common.write_section(cfg.out, section_md)


if __name__ == "__main__":
    main()
