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

maf: MAF training step, same set-up: 5 Gaussian MADE layers 2 -> 64 -> 64 -> (2 mu, 2 alpha), ReLU,
the features reversed between layers (``build_maf``); PyTorch twin with masked linear = x @ (W * M) + b.
Target: at most 1.0x PyTorch. maf_sampling: MAF sampling with the Numba kernel (tinydgm.kernels.
maf_sampler) against the naive sequential loops (D passes per layer, tinydgm engine and PyTorch).
"""
import math
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

import tinydgm as td  # noqa: E402

DTYPE = np.float32
LR = 1e-3
SECTIONS, section = common.part_registry()      # (name, title, fn) in registration order; @section(name, title)


def toy_batches(n_batches, batch, toy="eight_gaussians", seed=0):
    """(n_batches, batch, 2) float32 draws of a 2-D toy density."""
    from tinydgm.data.toy import sample_toy
    x = sample_toy(toy, n_batches * batch, np.random.default_rng(seed))
    return x.astype(DTYPE).reshape(n_batches, batch, 2)


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


def compare_training_steps(name, flow, twin, cfg, describe):
    """Time one Adam step of ``flow`` against its PyTorch ``twin`` (same weights, checked to give the
    same losses over 5 steps) and return the markdown: ``describe`` (what one step is) + the
    losses, the table and the verdict against the 1.0x target."""
    td_side, pt_side = common.TinydgmStep(flow, LR), TorchStep(twin)
    batches = toy_batches(8, 512)
    xs_td, xs_pt = [td.tensor(x) for x in batches], [torch.tensor(x) for x in batches]
    losses = common.check_losses(name, lambda k: (td_side.step(xs_td[k % len(xs_td)]),
                                                  pt_side.step(xs_pt[k % len(xs_pt)])))
    print("  same loss on both sides for 5 Adam steps (checked): "
          + ", ".join(f"{a:.4f}/{b:.4f}" for a, b in losses), flush=True)
    with common.ForeignLoad() as load:
        stats = common.time_steps(td_side.step, pt_side.step, batches, cfg.repeats, cfg.sample_s, cfg.settle_s,
                                  warmup=3)
    ratio, _ = common.paired_ratio(stats["tinydgm"], stats["PyTorch"])
    iqr = common.paired_ratio_iqr(stats["tinydgm"], stats["PyTorch"])
    table = common.pair_table(stats)
    return "\n".join([
        describe + " Same loss on both sides along 5 Adam steps (checked): "
        + ", ".join(f"{a:.4f} / {b:.4f}" for a, b in losses) + f". {cfg.repeats} interleaved repeats.", "",
        table, "",
        f"Target at most 1.0x PyTorch: {common.verdict(ratio, iqr, 1.0)}. {common.load_note(load, [stats])}"])


@section("realnvp", "RealNVP training step (8 affine couplings, MLP 2-64-64-2, batch 512, 2-D toy)")
def bench_realnvp(cfg):
    from tinydgm.models.flows import toy_realnvp
    rng = np.random.default_rng(0)
    flow = toy_realnvp(2, 8, hidden=(64, 64), rng=rng, dtype="float32")
    _perturb_last_layers(flow, rng)
    return compare_training_steps("RealNVP", flow, TorchRealNVP(flow), cfg,
        "One step = loss (mean NLL of 512 draws of 8 Gaussians under the flow), backward, Adam "
        f"(lr {LR}). tinydgm: `tinydgm.models.flows.toy_realnvp(2, 8, hidden=(64, 64))` (affine couplings "
        "y = b x + (1 - b)(x exp(s) + t), (t, s) from an MLP 2-64-64-4 on b x, s = scale tanh(raw)). PyTorch: "
        "the same flow with `torch.nn.Linear`, weights copied.")


# ----------------------------------------------------------------------------- MAF

class TorchMAF(torch.nn.Module):
    """The twin of ``build_maf(2, 5, hidden_sizes)``: per MADE layer (masked linear =
    weight * mask, ReLU), mu, raw = y.chunk(2), alpha = B tanh(raw / B) (the layers' soft bound B,
    none when B is None); u = (x - mu) exp(-alpha), log_det -= sum alpha; the features reversed
    between layers."""

    def __init__(self, flow):
        super().__init__()
        from tinydgm.models.flows import MAFLayer
        self.weights, self.biases, self.masks = torch.nn.ParameterList(), torch.nn.ParameterList(), []
        self.layers = []                                        # (first index, count) per MADE
        self.alpha_bound = None
        for t in flow.transform.transforms:
            if not isinstance(t, MAFLayer):
                continue
            self.alpha_bound = t.alpha_bound
            self.layers.append((len(self.weights), len(t.made.layers)))
            for lin in t.made.layers:                           # tinydgm layout (in, out): x @ (W * M) + b
                self.weights.append(torch.nn.Parameter(torch.tensor(lin.weight.numpy())))
                self.biases.append(torch.nn.Parameter(torch.tensor(lin.bias.numpy())))
                self.masks.append(torch.tensor(lin.mask))

    def params(self, x, first, count):
        h = x
        for k in range(first, first + count):
            h = h @ (self.weights[k] * self.masks[k]) + self.biases[k]
            if k < first + count - 1:
                h = torch.relu(h)
        mu, raw = h.chunk(2, dim=1)
        if self.alpha_bound is None:
            return mu, raw
        return mu, self.alpha_bound * torch.tanh(raw / self.alpha_bound)

    def log_prob(self, x):
        log_det = torch.zeros(x.shape[0], dtype=x.dtype)
        for i, (first, count) in enumerate(self.layers):
            if i > 0:
                x = x.flip(1)
            mu, alpha = self.params(x, first, count)
            x = (x - mu) * torch.exp(-alpha)
            log_det = log_det - alpha.sum(dim=1)
        return -0.5 * (x * x).sum(dim=1) - x.shape[1] * 0.5 * math.log(2 * math.pi) + log_det

    def sample_naive(self, z):
        """D passes per layer (torch.no_grad), the layers inverted in reverse order."""
        with torch.no_grad():
            for i in reversed(range(len(self.layers))):
                first, count = self.layers[i]
                x = torch.zeros_like(z)
                for d in range(z.shape[1]):                     # natural ordering inside each MADE
                    mu, alpha = self.params(x, first, count)
                    x[:, d] = z[:, d] * torch.exp(alpha[:, d]) + mu[:, d]
                z = x.flip(1) if i > 0 else x
        return z


MAF_HIDDEN = (64, 64)


@section("maf", f"MAF training step (5 MADE layers {MAF_HIDDEN[0]}-{MAF_HIDDEN[1]}, batch 512, 2-D toy)")
def bench_maf(cfg):
    from tinydgm.models.flows import build_maf
    flow = build_maf(2, n_layers=5, hidden_sizes=MAF_HIDDEN, rng=np.random.default_rng(0), dtype="float32")
    return compare_training_steps("MAF", flow, TorchMAF(flow), cfg,
        "One step = loss (mean NLL of 512 draws of 8 Gaussians), backward, Adam "
        f"(lr {LR}). tinydgm: `tinydgm.models.flows.build_maf(2, n_layers=5, hidden_sizes={MAF_HIDDEN})` "
        "(5 Gaussian MADEs 2-64-64-4 with ReLU, alpha = 8 tanh(raw / 8), u = (x - mu) exp(-alpha), the features "
        "reversed between layers, no batch norm). PyTorch: the same flow, masked linear = x @ (W * M) + b, weights copied.")


def _maf_naive_sample(flow, z):
    """The naive sequential loop through the engine: each MAF layer inverted by
    ``maf_sampler.autoregressive_affine_naive`` (D forward passes of the MADE)."""
    from tinydgm.kernels import made_sampler, maf_sampler
    from tinydgm.models.flows import MAFLayer

    for t in reversed(list(flow.transform.transforms)):
        if isinstance(t, MAFLayer):
            def params(v, t=t):
                mu, alpha = t.params(td.Tensor(v.astype(DTYPE)))
                return mu.data, alpha.data
            order = made_sampler.ordering_positions(t.made.ordering)
            x, _ = maf_sampler.autoregressive_affine_naive(params, z.data.astype(np.float64), order, "sample")
            z = td.Tensor(x.astype(DTYPE))
        else:
            z, _ = t.inverse(z)
    return z


@section("maf_sampling", "MAF sampling: the Numba loop against the naive sequential loops")
def bench_maf_sampling(cfg):
    from tinydgm.models.flows import build_maf
    rows, notes = [], []
    for n_dims, hidden, n in [(2, MAF_HIDDEN, 1000), (63, (512, 512), 200)]:
        flow = build_maf(n_dims, n_layers=5, hidden_sizes=hidden, rng=np.random.default_rng(1), dtype="float32")
        twin = TorchMAF(flow)
        z_np = np.random.default_rng(2).standard_normal((n, n_dims)).astype(DTYPE)
        z_td, z_pt = td.tensor(z_np), torch.tensor(z_np)

        def fast():
            with td.no_grad():
                return flow.transform.inverse(z_td)[0]

        def naive():
            with td.no_grad():
                return _maf_naive_sample(flow, z_td)

        a, b, c = fast().numpy(), naive().numpy(), twin.sample_naive(z_pt).numpy()
        diff = max(float(np.abs(a - b).max()), float(np.abs(a - c).max())) / max(float(np.abs(a).max()), 1.0)
        assert diff < 1e-3, f"MAF samples differ: {diff}"
        cases = {"tinydgm Numba kernel": fast, "tinydgm naive (D passes)": naive,
                 "PyTorch naive (D passes)": lambda: twin.sample_naive(z_pt)}
        with common.ForeignLoad() as load:
            stats, _ = common.compare(cases, repeats=cfg.repeats, warmup=2, min_sample_s=cfg.sample_s,
                                      settle_s=cfg.settle_s)
        base = stats["tinydgm Numba kernel"]
        for name, s in stats.items():
            print(f"  D={n_dims} {name:28s} {common.fmt_ms(s):>24s} ms", flush=True)
            rows.append([f"D = {n_dims}, MADE {hidden[0]}-{hidden[1]}, {n} samples", name, common.fmt_ms(s),
                         common.fmt_ratio(s, base)])
        notes.append(f"D = {n_dims}: same samples on all three (max relative difference {diff:.1e}, float32 "
                     f"engine vs float64 kernel). {common.load_note(load, [stats])}")
    table = common.markdown_table(["flow", "sampler", "median ms [IQR]", "/ Numba kernel (paired)"], rows)
    return "\n".join([
        "Samples from `build_maf(D, n_layers=5, hidden_sizes=...)` (float32; the same base draws z for "
        "every sampler). Numba kernel: `flow.sample` (each MAF layer's inverse through "
        "`tinydgm.kernels.maf_sampler`, incremental first layer, each hidden unit computed once, float64). "
        "Naive: D forward passes of each MADE through the engine (`maf_sampler.autoregressive_affine_naive`), "
        "and the same loop in PyTorch. D = 63 is BSDS300's dimension.", "", table, ""] + notes)

# ----------------------------------------------------------------------------- main

def main(argv=None):
    parser = common.parts_parser(__doc__, SECTIONS)
    cfg = parser.parse_args(argv)
    cfg.repeats = 5 if cfg.quick else 21
    cfg.sample_s = 0.01 if cfg.quick else 0.05
    cfg.settle_s = 0.1          # let the other library's spinning BLAS/OpenMP threads sleep
    parts = common.chosen_parts(parser, cfg, SECTIONS)

    pinned = common.pin_threads(cfg.threads)
    info, bodies, elapsed, load0, load = common.run_sections(cfg, SECTIONS, parts, pinned)

    command = "python benchmarks/bench_flows.py" + (" --quick" if cfg.quick else "") + f" --threads {cfg.threads}" + \
        (f" --parts {cfg.parts}" if cfg.parts else "") + (f" --out {cfg.out}" if cfg.out else "")
    out = ["## Normalizing flows", "",
           f"Command: `{command}` (one process, {elapsed:.0f} s; load average {load0[0]:.2f} at the start, "
           f"{load[0]:.2f} at the end).", "", common.machine_markdown(info, cfg.threads), ""]
    common.finish_section(cfg.out, out, bodies)


if __name__ == "__main__":
    main()
