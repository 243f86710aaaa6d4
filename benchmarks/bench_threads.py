"""Training steps on a shared CPU: tinydgm's and PyTorch's slowdown beside CPU-bound background processes.

    python benchmarks/bench_threads.py [--quick] [--threads N] [--background K] [--out SECTION.md]
                                       [--parts pixelcnn,rbm]

Two training steps, each with a PyTorch twin (weights copied):

1. PixelCNN, the model's default architecture, batch 32 of 28x28 binarized MNIST, Adam
   (``tinydgm.models.autoregressive.pixelcnn.PixelCNN`` against bench_autoregressive's ``TorchPixelCNN``);
2. RBM 784 x 500, one PCD-1 update on a batch of 100 binarized MNIST images, float32
   (``BernoulliRBM.step``, kernels in tinydgm/kernels/rbm_gibbs.py, against the same update in
   PyTorch: p(h | v) for the data, one Gibbs step of the persistent chains, SGD on data minus model
   moments).

Each side runs at N threads (``--threads``, default 2: every core of the machine this was written
on) and at 1 thread (tinydgm: ``tinydgm.set_num_threads(1)``, the policy for a shared CPU, see
tinydgm/threads.py; PyTorch: ``torch.set_num_threads(1)``), under two conditions, alternated
within every repeat: alone, and beside K CPU-bound background processes (``--background``, default
2: one per core; each runs ``while True: pass``). The report gives each side's median step time
in both conditions and its slowdown (loaded / alone, the median of per-repeat paired ratios).
Target: tinydgm's slowdown no worse than PyTorch's under the same load.

Other processes on the machine (the "alone" condition is only as quiet as the machine) are
recorded as the share of CPU time they used in each condition.
"""
import os
import subprocess
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
import bench_autoregressive as ar  # noqa: E402

import tinydgm as td  # noqa: E402

SECTIONS, section = common.part_registry()


class Background:
    """K processes spinning on the CPU while the block runs."""

    def __init__(self, k):
        self.k, self.procs = k, []

    def __enter__(self):
        self.procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(self.k)]
        time.sleep(0.3)             # let them get scheduled
        return self

    def __exit__(self, *exc):
        for p in self.procs:
            p.kill()
        for p in self.procs:
            p.wait()
        self.procs = []
        return False


def measure(sides, steps, repeats, background, threads):
    """sides: {name: (library, n_threads, step_fn)}. Returns ({(name, condition): Stats of s per step},
    {condition: ForeignLoad fractions})."""
    times = {(name, cond): [] for name in sides for cond in ("alone", "loaded")}
    foreign = {"alone": [], "loaded": []}

    def use(library, n):
        if library == "tinydgm":
            td.set_num_threads(n)
        else:
            torch.set_num_threads(n)

    for name, (library, n, fn) in sides.items():     # warm-up (compilation, allocator pools)
        use(library, n)
        fn()
        fn()
    names = list(sides)
    for r in range(repeats):
        conditions = ("alone", "loaded") if r % 2 == 0 else ("loaded", "alone")
        for cond in conditions:
            load = Background(background if cond == "loaded" else 0)
            with load, common.ForeignLoad() as other:
                k = r % len(names)
                for name in names[k:] + names[:k]:
                    library, n, fn = sides[name]
                    use(library, n)
                    time.sleep(0.1)                      # the other library's spinning threads go to sleep
                    fn()
                    start = time.perf_counter()
                    for _ in range(steps):
                        fn()
                    times[(name, cond)].append((time.perf_counter() - start) / steps)
            # our own background processes are "other processes" too: subtract their cores
            fraction = other.fraction
            if fraction is not None and cond == "loaded":
                fraction = max(0.0, fraction - min(background, common.usable_cores()) / (os.cpu_count() or 1))
            foreign[cond].append(fraction)
    td.set_num_threads(threads)
    torch.set_num_threads(threads)
    return {key: common.Stats(t) for key, t in times.items()}, foreign


def report(title, sides, stats, foreign, cfg):
    rows = []
    slowdown = {}
    for name in sides:
        alone, loaded = stats[(name, "alone")], stats[(name, "loaded")]
        ratio, (lo, hi) = common.paired_ratio(loaded, alone)
        slowdown[name] = ratio
        rows.append([name, common.fmt_ms(alone), common.fmt_ms(loaded), f"{ratio:.2f}x ({lo:.2f}–{hi:.2f})"])
    table = common.markdown_table([title, "alone: median ms [IQR]", f"beside {cfg.background} busy processes: ms",
                                   "slowdown (paired: median, min–max)"], rows)

    def share(values):
        values = [v for v in values if v is not None]
        return "unknown" if not values else f"{100 * float(np.median(values)):.0f}%"
    td_n, pt_n = f"tinydgm, {cfg.threads} threads", f"PyTorch, {cfg.threads} threads"
    td_1, pt_1 = "tinydgm, 1 thread", "PyTorch, 1 thread"
    best_td = min(slowdown[td_n], slowdown[td_1])
    verdict = ("met" if best_td <= slowdown[pt_n] else "NOT met")
    lines = [table, "",
             f"Target: tinydgm's slowdown no worse than PyTorch's under the same load — {verdict}: tinydgm "
             f"{slowdown[td_n]:.2f}x at {cfg.threads} threads and {slowdown[td_1]:.2f}x at 1 thread (the policy on a "
             f"shared CPU), PyTorch {slowdown[pt_n]:.2f}x at {cfg.threads} threads and {slowdown[pt_1]:.2f}x at 1 thread. "
             f"Loaded step time, tinydgm at 1 thread over PyTorch at {cfg.threads} threads: "
             f"{stats[(td_1, 'loaded')].median / stats[(pt_n, 'loaded')].median:.2f}x.", "",
             f"Other processes (not ours) used {share(foreign['alone'])} of the machine's CPU time in the \"alone\" "
             f"samples and {share(foreign['loaded'])} beside the background processes (median over repeats).", ""]
    return "\n".join(lines)


def sides_for(td_step, pt_step, threads):
    return {f"tinydgm, {threads} threads": ("tinydgm", threads, td_step),
            "tinydgm, 1 thread": ("tinydgm", 1, td_step),
            f"PyTorch, {threads} threads": ("torch", threads, pt_step),
            "PyTorch, 1 thread": ("torch", 1, pt_step)}


@section("pixelcnn", "PixelCNN training step, batch 32, beside busy processes")
def part_pixelcnn(cfg):
    model = ar.pixelcnn_model()
    batches, source = ar.binary_batches(4, 32, seed=1)
    batches = batches.reshape(4, 32, 1, ar.SIDE, ar.SIDE)
    td_step, pt_model = common.TinydgmStep(model, ar.LR), ar.TorchPixelCNN(model)
    xs_td, xs_pt = [td.tensor(x) for x in batches], [torch.tensor(x) for x in batches]
    sides = sides_for(common.cycling(td_step.step, xs_td), common.cycling(pt_model.step, xs_pt), cfg.threads)
    stats, foreign = measure(sides, cfg.steps, cfg.repeats, cfg.background, cfg.threads)
    for key, s in stats.items():
        print(f"  {key[0]:24s} {key[1]:7s} {common.fmt_ms(s):>24s} ms", flush=True)
    return (f"`PixelCNN()` (the model's defaults: 64 channels, 5 residual blocks), batch 32 of {source}; "
            f"Adam; the PyTorch twin with the same masked convolutions and weights. {cfg.repeats} repeats of "
            f"{cfg.steps} steps per side and condition.\n\n" + report("PixelCNN step", sides, stats, foreign, cfg))


class TorchRBM:
    """PCD-1 for a Bernoulli RBM in PyTorch: the update of tinydgm's ``BernoulliRBM.step`` (and of
    scikit-learn's BernoulliRBM): data phase p(h | v); one Gibbs step of the persistent chains
    v_m ~ p(v | h_chain), p(h | v_m), h_chain ~ p(h | v_m); SGD on the moments' difference."""

    def __init__(self, rbm, n_chains, lr=0.1, seed=0):
        self.W, self.b, self.c = (torch.tensor(p.numpy().copy()) for p in (rbm.W, rbm.b, rbm.c))
        self.gen = torch.Generator().manual_seed(seed)
        self.h_chain = torch.zeros(n_chains, self.W.shape[1])
        self.lr = lr

    def step(self, v):
        with torch.no_grad():
            p_h = torch.sigmoid(v @ self.W + self.c)
            v_m = torch.bernoulli(torch.sigmoid(self.h_chain @ self.W.T + self.b), generator=self.gen)
            p_h_m = torch.sigmoid(v_m @ self.W + self.c)
            self.h_chain = torch.bernoulli(p_h_m, generator=self.gen)
            n = v.shape[0]
            self.W += self.lr * (v.T @ p_h - v_m.T @ p_h_m) / n
            self.b += self.lr * (v - v_m).mean(0)
            self.c += self.lr * (p_h - p_h_m).mean(0)


@section("rbm", "RBM PCD-1 step, 784 x 500, batch 100, beside busy processes")
def part_rbm(cfg):
    from tinydgm.models.energy.rbm import BernoulliRBM
    batches, source = ar.binary_batches(8, 100, seed=2)
    rbm = BernoulliRBM(ar.D, 500, rng=td.rng(0), dtype="float32")
    gen = np.random.default_rng(0)
    pt_rbm = TorchRBM(rbm, 100)
    xs_pt = [torch.tensor(x) for x in batches]
    sides = sides_for(common.cycling(lambda v: rbm.step(v, lr=0.1, k=1, persistent=True, rng=gen), list(batches)),
                      common.cycling(pt_rbm.step, xs_pt), cfg.threads)
    stats, foreign = measure(sides, cfg.steps * 4, cfg.repeats, cfg.background, cfg.threads)
    for key, s in stats.items():
        print(f"  {key[0]:24s} {key[1]:7s} {common.fmt_ms(s):>24s} ms", flush=True)
    return (f"`BernoulliRBM(784, 500)`, float32, `step(v, lr=0.1, k=1, persistent=True)` on batches of 100 of "
            f"{source}; the PyTorch twin runs the same PCD-1 update (its own random numbers). {cfg.repeats} repeats "
            f"of {cfg.steps * 4} steps per side and condition.\n\n"
            + report("RBM PCD-1 step", sides, stats, foreign, cfg))


def main(argv=None):
    parser = common.parts_parser(__doc__, SECTIONS)
    parser.add_argument("--background", type=int, default=2, help="busy background processes (default 2)")
    cfg = parser.parse_args(argv)
    parts = common.chosen_parts(parser, cfg, SECTIONS)
    cfg.repeats = 3 if cfg.quick else 7
    cfg.steps = 2 if cfg.quick else 5
    pinned = common.pin_threads(cfg.threads)
    info, bodies, elapsed, load0, load = common.run_sections(cfg, SECTIONS, parts, pinned)
    command = "python benchmarks/bench_threads.py" + (" --quick" if cfg.quick else "") + f" --threads {cfg.threads}" + \
        f" --background {cfg.background}" + (f" --parts {cfg.parts}" if cfg.parts else "") + \
        (f" --out {cfg.out}" if cfg.out else "")
    head = ["## Training on a shared CPU", "",
            f"Command: `{command}` (one process, {elapsed:.0f} s; load average {load0[0]:.2f} at the start, "
            f"{load[0]:.2f} at the end).", "", common.machine_markdown(info, cfg.threads), ""]
    common.finish_section(cfg.out, head, bodies)


if __name__ == "__main__":
    main()
