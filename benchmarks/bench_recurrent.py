"""Recurrent layers and PixelRNN benchmark (issue 17), side by side with PyTorch on the CPU, in one process.

    python benchmarks/bench_recurrent.py [--quick] [--threads N] [--out SECTION.md] [--parts lstm,cell,pixelrnn]

lstm: forward + backward of one LSTM sequence layer over a batch-first sequence (N, T, D), loss =
sum(v * outputs) with a fixed v, at small sizes: tinydgm's ``nn.LSTM`` (one fused op for the loop,
backpropagation through time on the arrays) against ``torch.nn.LSTM(batch_first=True)`` with the same
weights, float32. Before timing, outputs and gradients are checked equal in float64. Target: at most
2x PyTorch.

cell: one step of ``nn.LSTMCell`` (forward + backward of sum(v * h')), the per-step cost that the
variational RNN pays (its z_t depends on h_{t-1}, so it cannot use the fused loop), against
``torch.nn.LSTMCell``. Reported, no target.

pixelrnn: the slow sequential training of PixelRNN (intro lecture part III, "Pixel RNN"): one Adam
training step of a Row LSTM PixelRNN on a batch of 28x28 binary images against a PixelCNN of about
the same number of parameters, both tinydgm (the Row LSTM loops over the 28 rows, the PixelCNN is
one pass), and the time to sample one batch with each model's fast sampler.
"""
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

import tinydgm as td  # noqa: E402
from tinydgm.models.autoregressive import PixelCNN, PixelRNN  # noqa: E402
from tinydgm.nn import LSTM, LSTMCell  # noqa: E402

SECTIONS, section = common.part_registry()
SIZES = [(16, 20, 2, 32), (32, 28, 28, 64), (64, 28, 28, 128)]       # (N, T, D, H)


def copy_lstm(ours, theirs, cell_names=("weight_ih", "weight_hh", "bias_ih", "bias_hh")):
    """torch LSTM(Cell) weights -> tinydgm LSTMCell (transposed; the two biases summed)."""
    w_ih, w_hh, b_ih, b_hh = (getattr(theirs, name).detach().numpy() for name in cell_names)
    cell = ours.cell if hasattr(ours, "cell") else ours
    cell.weight_ih.data[...] = w_ih.T
    cell.weight_hh.data[...] = w_hh.T
    cell.bias_ih.data[...] = b_ih + b_hh


def lstm_pair(n, t, d, h, dtype):
    torch.manual_seed(0)
    theirs = torch.nn.LSTM(d, h, batch_first=True).to(getattr(torch, dtype))
    ours = LSTM(d, h, dtype=dtype)
    copy_lstm(ours, theirs, ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"))
    rng = np.random.default_rng(1)
    x, v = rng.standard_normal((n, t, d)).astype(dtype), rng.standard_normal((n, t, h)).astype(dtype)
    return ours, theirs, x, v


def check_lstm(n, t, d, h):
    """Outputs and input / W_hh gradients equal in float64 (1e-10 relative)."""
    ours, theirs, x, v = lstm_pair(n, t, d, h, "float64")
    xs = td.tensor(x, requires_grad=True)
    (ours(xs)[0] * td.tensor(v)).sum().backward()
    xt = torch.tensor(x, requires_grad=True)
    out_t = theirs(xt)[0]
    (out_t * torch.tensor(v)).sum().backward()
    np.testing.assert_allclose(xs.grad.numpy(), xt.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ours.cell.weight_hh.grad.numpy(), theirs.weight_hh_l0.grad.numpy().T, rtol=1e-10,
                               atol=1e-12)


@section("lstm", "LSTM sequence layer: forward + backward vs torch.nn.LSTM")
def part_lstm(cfg):
    rows = []
    for n, t, d, h in SIZES:
        check_lstm(n, t, d, h)
        ours, theirs, x, v = lstm_pair(n, t, d, h, "float32")
        x_td, v_td = td.tensor(x), td.tensor(v)
        x_pt, v_pt = torch.tensor(x), torch.tensor(v)
        params_td = ours.parameters()

        def step_td():
            for p in params_td:
                p.grad = None
            (ours(x_td)[0] * v_td).sum().backward()

        def step_pt():
            theirs.zero_grad(set_to_none=True)
            (theirs(x_pt)[0] * v_pt).sum().backward()
        stats, _ = common.compare({"tinydgm": step_td, "PyTorch": step_pt}, repeats=cfg.repeats,
                                  min_sample_s=0.05)
        ratio, _ = common.paired_ratio(stats["tinydgm"], stats["PyTorch"])
        iqr = common.paired_ratio_iqr(stats["tinydgm"], stats["PyTorch"])
        print(f"  N={n} T={t} D={d} H={h}: tinydgm {common.fmt_ms(stats['tinydgm'])} ms, PyTorch "
              f"{common.fmt_ms(stats['PyTorch'])} ms, {common.fmt_ratio(stats['tinydgm'], stats['PyTorch'])}", flush=True)
        rows.append([f"{n} x {t} x {d} -> {h}", common.fmt_ms(stats["tinydgm"]), common.fmt_ms(stats["PyTorch"]),
                     common.fmt_ratio(stats["tinydgm"], stats["PyTorch"]), common.verdict(ratio, iqr, 2.0)])
    return common.markdown_table(["N x T x D -> H", "tinydgm ms [IQR]", "PyTorch ms [IQR]",
                                  "tinydgm / PyTorch (paired: median, min–max)", "target <= 2x"], rows)


@section("cell", "LSTMCell: one step, forward + backward vs torch.nn.LSTMCell")
def part_cell(cfg):
    rows = []
    for n, _, d, h in SIZES:
        torch.manual_seed(0)
        theirs = torch.nn.LSTMCell(d, h)
        ours = LSTMCell(d, h)
        copy_lstm(ours, theirs)
        rng = np.random.default_rng(2)
        x, hc, v = (rng.standard_normal(s).astype(np.float32) for s in ((n, d), (n, h), (n, h)))
        x_td, h_td, v_td = td.tensor(x), td.tensor(hc), td.tensor(v)
        x_pt, h_pt, v_pt = torch.tensor(x), torch.tensor(hc), torch.tensor(v)

        def step_td():
            for p in ours.parameters():
                p.grad = None
            (ours(x_td, (h_td, h_td))[0] * v_td).sum().backward()

        def step_pt():
            theirs.zero_grad(set_to_none=True)
            (theirs(x_pt, (h_pt, h_pt))[0] * v_pt).sum().backward()
        stats, _ = common.compare({"tinydgm": step_td, "PyTorch": step_pt}, repeats=cfg.repeats, min_sample_s=0.05)
        print(f"  N={n} D={d} H={h}: {common.fmt_ratio(stats['tinydgm'], stats['PyTorch'])}", flush=True)
        rows.append([f"{n} x {d} -> {h}", f"{stats['tinydgm'].median * 1e6:.0f}", f"{stats['PyTorch'].median * 1e6:.0f}",
                     common.fmt_ratio(stats["tinydgm"], stats["PyTorch"])])
    return common.markdown_table(["N x D -> H", "tinydgm µs", "PyTorch µs", "tinydgm / PyTorch (paired)"], rows)


@section("pixelrnn", "PixelRNN (Row LSTM) training step and sampling vs a PixelCNN of the same size")
def part_pixelrnn(cfg):
    batch = 16
    rng = np.random.default_rng(3)
    x = td.tensor((rng.random((batch, 1, 28, 28)) < 0.2).astype(np.float32))
    pixelrnn = PixelRNN(channels=32, n_layers=2, kernel_size=7, rng=np.random.default_rng(0))
    pixelcnn = PixelCNN(channels=64, n_residual=3, kernel_size=7, rng=np.random.default_rng(0))
    models = {"PixelRNN": pixelrnn, "PixelCNN": pixelcnn}
    optimizers = {name: td.optim.Adam(m.parameters(), lr=1e-3) for name, m in models.items()}

    def stepper(name):
        def step():
            optimizers[name].zero_grad()
            models[name].loss(x).backward()
            optimizers[name].step()
        return step
    stats, _ = common.compare({name: stepper(name) for name in models}, repeats=cfg.repeats, min_sample_s=0.2)
    rows = []
    for name, model in models.items():
        n_samples = 4
        start = time.perf_counter()
        model.sample(n_samples, rng=np.random.default_rng(4))
        sample_s = (time.perf_counter() - start) / n_samples
        rows.append([name, f"{model.num_parameters():,}", common.fmt_ms(stats[name]),
                     common.fmt_ratio(stats[name], stats["PixelCNN"]), f"{sample_s:.2f}"])
        print(f"  {name}: step {common.fmt_ms(stats[name])} ms, sample {sample_s:.2f} s per image", flush=True)
    return common.markdown_table(["model", "parameters", f"training step ms [IQR] (batch {batch}, 28x28)",
                                  "/ PixelCNN step (paired)", "s per sampled image (fast sampler, 4 images)"], rows)


def main():
    parser = common.parts_parser(__doc__, SECTIONS)
    cfg = parser.parse_args()
    cfg.repeats = 5 if cfg.quick else 15
    parts = common.chosen_parts(parser, cfg, SECTIONS)
    pinned = common.pin_threads(cfg.threads)
    info, bodies, elapsed, load0, load = common.run_sections(cfg, SECTIONS, parts, pinned)
    head = ["## Recurrent layers and PixelRNN", "", common.machine_markdown(info, cfg.threads),
            f"- load average {load0[0]:.2f} at the start, {load[0]:.2f} at the end; {elapsed:.0f} s in all", ""]
    common.finish_section(cfg.out, head, bodies)


if __name__ == "__main__":
    main()
