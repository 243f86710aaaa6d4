"""Timing helpers shared by the benchmark scripts.

A benchmark here compares tinydgm with the tool a user would pick instead (PyTorch on
the CPU, scikit-learn, raw NumPy) **in one process**, both sides pinned to the same
number of threads. The machines we run on are small and noisy, so:

- every case is warmed up first (caches, lazy imports, allocator pools, BLAS buffers);
- the cases of one comparison are timed **interleaved** (A B C, A B C, ...), so a burst
  of noise from the neighbours hits every side alike, and each repeat gives a *paired*
  ratio;
- each sample times ``number`` back-to-back calls (chosen so a sample lasts at least
  ``min_sample_s``), and we report the **median** over repeats with the spread
  (interquartile range, min and max);
- the garbage collector is paused inside a sample, as ``timeit`` does (tinydgm frees
  its graphs by reference counting, so there are no cycles to collect).

These scripts are the only place where torch, threadpoolctl and scikit-learn are
imported: they are benchmark-only dependencies (``pip install -e ".[bench]"``).
"""
import cProfile
import gc
import json
import os
import platform
import pstats
import statistics
import sys
import time

import numpy as np

# ----------------------------------------------------------------------------- threads

_limiter = None     # keeps threadpoolctl's limits alive for the whole run


def pin_threads(n):
    """Pin NumPy's BLAS (and every OpenMP runtime threadpoolctl finds), Numba and PyTorch to ``n``
    threads. Returns a description of what was pinned, for the report."""
    global _limiter
    from threadpoolctl import threadpool_limits
    _limiter = threadpool_limits(limits=n)
    pinned = {"threadpoolctl": n}
    import numba
    numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))    # tinydgm's Numba kernels
    pinned["numba"] = numba.get_num_threads()
    if "torch" in sys.modules:
        import torch
        torch.set_num_threads(n)
        pinned["torch"] = torch.get_num_threads()
    return pinned


def blas_info():
    """The BLAS libraries threadpoolctl sees: [(prefix, kernel architecture, version, threads)]."""
    from threadpoolctl import threadpool_info
    return [(d.get("prefix"), d.get("architecture"), d.get("version"), d.get("num_threads"))
            for d in threadpool_info() if d.get("user_api") == "blas"]


# ----------------------------------------------------------------------------- machine

def cpu_model():
    """The CPU model name from /proc/cpuinfo, with its family/model numbers (a VM often
    shows only "AMD EPYC"); platform.processor() elsewhere."""
    fields = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key in ("model name", "cpu family", "model") and key not in fields:
                    fields[key] = value.strip()
                if not line.strip() and fields:
                    break
    except OSError:
        pass
    if "model name" not in fields:
        return platform.processor() or "unknown"
    extra = f" (cpu family {fields['cpu family']}, model {fields['model']})" if "cpu family" in fields else ""
    return fields["model name"] + extra


def usable_cores():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count()


THREAD_ENV_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS",
                   "MKL_NUM_THREADS", "MKL_DEBUG_CPU_TYPE", "MKL_ENABLE_INSTRUCTIONS")


def tinydgm_revision():
    """The git commit of the checkout being measured, "+ local changes" when the tree is dirty."""
    import subprocess
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        rev = subprocess.run(["git", "-C", root, "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", root, "status", "--porcelain", "--untracked-files=no",
                                "--", "tinydgm"], capture_output=True, text=True).stdout.strip()
        return rev + (" + local changes to tinydgm/" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def machine_info():
    """A dict describing the machine and library versions (for the report header)."""
    info = {
        "cpu": cpu_model(),
        "cores": usable_cores(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "tinydgm": tinydgm_revision(),
        "numpy BLAS": "; ".join(f"{p} {v} (kernel {a})" for p, a, v, _ in blas_info()[:1]) or "unknown",
        "env": {k: os.environ[k] for k in THREAD_ENV_VARS if k in os.environ},
    }
    if "torch" in sys.modules:
        import torch
        info["torch"] = torch.__version__
        cfg = torch.__config__.show()
        info["torch BLAS"] = "MKL" if "BLAS_INFO=mkl" in cfg else ("OpenBLAS" if "open" in cfg.lower() else "?")
        info["torch CPU capability"] = torch.backends.cpu.get_cpu_capability()
    return info


def machine_markdown(info, threads):
    env = ", ".join(f"{k}={v}" for k, v in info["env"].items()) or "none set"
    lines = [
        f"- CPU: {info['cpu']}, {info['cores']} usable cores; **{threads} threads** on every side",
        f"- tinydgm at commit {info['tinydgm']}",
        f"- Python {info['python']}, NumPy {info['numpy']} with {info['numpy BLAS']}",
    ]
    if "torch" in info:
        lines.append(f"- PyTorch {info['torch']} (CPU build, BLAS {info['torch BLAS']}, "
                     f"CPU capability {info['torch CPU capability']})")
    lines.append(f"- thread/BLAS environment variables: {env}")
    return "\n".join(lines)


class ForeignLoad:
    """CPU time that *other* processes used while a block ran, as a fraction of all cores.

        with ForeignLoad() as load: ...      # then load.fraction, e.g. 0.03 = 3 %

    From /proc/stat (all CPUs' busy ticks) minus this process's own CPU time; None where
    /proc/stat does not exist. On a 2-core machine, other processes using more than a few
    percent make 2-thread BLAS calls much slower (a descheduled worker stalls the call).
    """

    fraction = None

    @staticmethod
    def _busy_seconds():
        try:
            with open("/proc/stat") as f:
                fields = [int(v) for v in f.readline().split()[1:]]
        except OSError:
            return None
        user, nice, system, idle, iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
        return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")

    def __enter__(self):
        self._busy, self._own, self._wall = self._busy_seconds(), time.process_time(), time.perf_counter()
        return self

    def __exit__(self, *exc):
        busy = self._busy_seconds()
        if busy is not None and self._busy is not None:
            wall = time.perf_counter() - self._wall
            own = time.process_time() - self._own
            cores = os.cpu_count() or 1
            self.fraction = max(0.0, (busy - self._busy - own) / (wall * cores))
        return False

    def describe(self):
        return "unknown" if self.fraction is None else f"{self.fraction:.0%}"


def run_queue_wait():
    """Seconds that this process's threads have spent runnable but waiting for a CPU
    (summed over threads, from /proc/self/task/*/schedstat); None where unavailable.

    Its growth during a sample measures contention: another process (or another
    library's spinning thread pool) held a core we wanted.
    """
    try:
        tids = os.listdir("/proc/self/task")
    except OSError:
        return None
    total = 0
    for tid in tids:
        try:
            with open(f"/proc/self/task/{tid}/schedstat") as f:
                total += int(f.read().split()[1])
        except (OSError, IndexError, ValueError):
            pass            # the thread ended meanwhile
    return total / 1e9


# ----------------------------------------------------------------------------- timing

class Stats:
    """Per-call times (seconds) of one case over the repeats."""

    def __init__(self, times, contended=0):
        self.raw = list(times)          # in repeat order, for paired ratios
        self.times = sorted(times)
        self.contended = contended      # samples kept although the CPU was contended

    @property
    def median(self):
        return statistics.median(self.times)

    def quantile(self, q):
        t = self.times
        if len(t) == 1:
            return t[0]
        pos = q * (len(t) - 1)
        lo = int(pos)
        hi = min(lo + 1, len(t) - 1)
        return t[lo] + (t[hi] - t[lo]) * (pos - lo)

    @property
    def iqr(self):
        return self.quantile(0.25), self.quantile(0.75)

    @property
    def min(self):
        return self.times[0]

    @property
    def max(self):
        return self.times[-1]


def _time_once(fn, number):
    gc_was_on = gc.isenabled()
    gc.disable()
    try:
        start = time.perf_counter()
        for _ in range(number):
            fn()
        return (time.perf_counter() - start) / number
    finally:
        if gc_was_on:
            gc.enable()


def calibrate(fn, min_sample_s):
    """How many back-to-back calls of ``fn`` make a sample of at least ``min_sample_s``."""
    number = 1
    while True:
        t = _time_once(fn, number) * number
        if t >= min_sample_s or number >= 1 << 20:
            return number
        number = max(number * 2, int(number * min_sample_s / max(t, 1e-9) * 1.2))


def compare(cases, repeats=15, warmup=3, min_sample_s=0.02, settle_s=0.0,
            max_contention=0.05, retries=4):
    """Time the callables of ``cases`` ({name: fn}) interleaved.

    Returns ({name: Stats of the per-call time}, {name: number of calls per sample}).
    The order inside each round rotates, so no case always runs right after another.

    Each sample starts with one untimed call (the steady state of a loop is what we
    measure, not the first call after another library ran). ``settle_s`` > 0 sleeps
    before every sample: NumPy's OpenBLAS threads and PyTorch's OpenMP threads busy-wait
    for a while after each parallel call, and on a machine with few cores the spinning
    threads of one library slow down the next call of the other (up to ~2x on 2 cores).

    A sample during which our threads waited for a CPU for more than ``max_contention``
    of its duration (another process took a core: with 2 threads on 2 cores one
    descheduled BLAS worker stalls the whole call, 10x slowdowns happen) is taken again,
    up to ``retries`` times after a pause; ``Stats.contended`` counts the ones kept anyway.
    """
    names = list(cases)
    for name in names:
        for _ in range(warmup):
            cases[name]()
    numbers = {name: calibrate(cases[name], min_sample_s) for name in names}
    samples = {name: [] for name in names}
    contended = {name: 0 for name in names}
    for r in range(repeats):
        gc.collect()
        k = r % len(names)
        for name in names[k:] + names[:k]:
            for attempt in range(retries + 1):
                if settle_s or attempt:
                    time.sleep(settle_s + 0.2 * attempt)
                cases[name]()
                wait0 = run_queue_wait()
                t = _time_once(cases[name], numbers[name])
                wait1 = run_queue_wait()
                quiet = wait0 is None or (wait1 - wait0) <= max_contention * t * numbers[name]
                if quiet:
                    break
            contended[name] += not quiet
            samples[name].append(t)
    return {name: Stats(samples[name], contended[name]) for name in names}, numbers


def paired_ratio(a, b):
    """Median and (min, max) of the per-repeat ratios a/b of two interleaved cases."""
    ratios = sorted(x / y for x, y in zip(a.raw, b.raw))
    return statistics.median(ratios), (ratios[0], ratios[-1])


def paired_ratio_iqr(a, b):
    """Interquartile range (q1, q3) of the per-repeat ratios a/b."""
    return Stats([x / y for x, y in zip(a.raw, b.raw)]).iqr


def verdict(ratio, iqr, target):
    """"met (0.99x; ...)" / "NOT met (...)", with the spread of the paired ratios."""
    word = "met" if ratio <= target else "NOT met"
    note = ""
    if iqr[0] <= target <= iqr[1]:
        note = "; the target lies inside that range: parity within this machine's noise"
    return (f"{word} ({ratio:.2f}x; interquartile range of the paired ratios "
            f"{iqr[0]:.2f}–{iqr[1]:.2f}{note})")


# ----------------------------------------------------------------------------- formatting

def fmt_time(seconds):
    """A time in the most readable unit: 12.3 µs, 4.56 ms, 1.23 s."""
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.2f} s"


def fmt_stats(stats):
    """``median [q1–q3]``."""
    q1, q3 = stats.iqr
    return f"{fmt_time(stats.median)} [{fmt_time(q1)}–{fmt_time(q3)}]"


def markdown_table(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def fmt_ms(stats):
    """``median [q1–q3]`` in milliseconds, without the unit (for tables headed "ms")."""
    q1, q3 = stats.iqr
    return f"{stats.median * 1e3:.3g} [{q1 * 1e3:.3g}–{q3 * 1e3:.3g}]"


def fmt_ratio(a, b):
    """``0.93x (0.88–1.02)``: the median and min–max of the paired ratios a/b."""
    ratio, (lo, hi) = paired_ratio(a, b)
    return f"{ratio:.2f}x ({lo:.2f}–{hi:.2f})"


def load_note(load, stats_list=()):
    """One sentence for the report: the CPU other processes used during a part (a
    ``ForeignLoad``) and the samples kept although our threads waited for a CPU
    (``stats_list``: dicts {name: Stats})."""
    note = f"Other processes used {load.describe()} of the machine's CPU time during this part"
    kept = {name: (s.contended, len(s.times)) for stats in stats_list for name, s in stats.items()
            if s.contended}
    if kept:
        note += ("; samples kept although our threads waited for a CPU (after retries): "
                 + ", ".join(f"{name} {c}/{n}" for name, (c, n) in kept.items()))
    else:
        note += "; no sample was taken under CPU contention (contended samples are retaken)"
    return note + "."


def write_section(path, section):
    """Write a BENCHMARKS.md section to ``path`` (nothing when path is None) and say so."""
    if path:
        with open(path, "w") as f:
            f.write(section)
        print(f"wrote {path}")


# ----------------------------------------------------------------------------- training steps against PyTorch
# The twin benchmarks (bench_latent, bench_latent_variants, bench_flows, bench_autoregressive) time one
# tinydgm training step against its PyTorch twin on the same cycling batches. torch and tinydgm are
# imported inside these functions, so the scripts that compare with neither keep importing this module alone.

def linear_layers(net):
    """The Linear layers of a tinydgm Sequential, in order."""
    return [m for m in net if type(m).__name__ == "Linear"]


def torch_linear(lin, dtype):
    """torch.nn.Linear with a tinydgm Linear's weight (stored (in, out): transposed) and bias."""
    import torch
    w = lin.weight.numpy()
    layer = torch.nn.Linear(*w.shape, dtype=dtype)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor(w.T.copy(), dtype=dtype))
        layer.bias.copy_(torch.tensor(lin.bias.numpy(), dtype=dtype))
    return layer


def torch_mlp(net, dtype, activation="relu"):
    """[Linear, act, ..., Linear] with a tinydgm MLP's weights copied; act is ReLU or (activation "tanh") Tanh."""
    import torch
    lins = linear_layers(net)
    layers = []
    for i, lin in enumerate(lins):
        layers.append(torch_linear(lin, dtype))
        if i < len(lins) - 1:
            layers.append(torch.nn.ReLU() if activation == "relu" else torch.nn.Tanh())
    return torch.nn.Sequential(*layers)


def cycling(fn, xs):
    """A no-argument callable that calls ``fn`` on the next item of ``xs`` (xs[1], xs[2], ..., xs[0], ...)."""
    state = {"i": 0}

    def call():
        state["i"] = (state["i"] + 1) % len(xs)
        fn(xs[state["i"]])
    return call


class TinydgmStep:
    """One tinydgm training step: model.loss(x) -> backward -> tinydgm.optim.Adam.step(); with ``eps``
    (a latent-variable model and noise shared with its twin) the loss is -model.objective(x, eps).mean()."""

    def __init__(self, model, lr):
        from tinydgm import optim
        self.model = model
        self.opt = optim.Adam(list(model.parameters()), lr=lr)

    def step(self, x, eps=None):
        self.opt.zero_grad()
        loss = self.model.loss(x) if eps is None else -self.model.objective(x, eps=eps).mean()
        loss.backward()
        self.opt.step()
        return loss


class TorchStep:
    """One step of a PyTorch twin whose ``loss(x, eps)`` draws its own noise when ``eps`` is None."""

    def __init__(self, model, lr):
        import torch
        self.model = model
        self.opt = torch.optim.Adam(model.parameters(), lr=lr)

    def step(self, x, eps=None):
        self.opt.zero_grad(set_to_none=True)
        loss = self.model.loss(x, eps)
        loss.backward()
        self.opt.step()
        return loss


def check_losses(name, step_pair, steps=5, rtol=1e-4, floor=1.0):
    """Run ``step_pair(i)`` -> (tinydgm loss, PyTorch loss) for i = 0 .. steps-1 and assert that they agree:
    |a - b| <= rtol * max(|b|, floor). Returns the [(a, b)] of every step."""
    losses = []
    for i in range(steps):
        loss_td, loss_pt = step_pair(i)
        a, b = float(loss_td.item()), float(loss_pt.item())
        losses.append((a, b))
        assert abs(a - b) <= rtol * max(abs(b), floor), f"{name}: loss at step {i}: tinydgm {a} vs PyTorch {b}"
    return losses


def time_steps(td_step, pt_step, batches, repeats, sample_s, settle_s, warmup):
    """Interleaved paired timing of the two training steps on cycling batches; prints each side's
    median [IQR] and the paired ratio. Returns {"tinydgm": Stats, "PyTorch": Stats}."""
    import torch
    import tinydgm as td
    xs_td = [td.tensor(x) for x in batches]
    xs_pt = [torch.tensor(x) for x in batches]
    cases = {"tinydgm": cycling(td_step, xs_td), "PyTorch": cycling(pt_step, xs_pt)}
    stats, _ = compare(cases, repeats=repeats, warmup=warmup, min_sample_s=sample_s, settle_s=settle_s)
    print_pair(stats)
    return stats


def print_pair(stats):
    """Print each side's median [IQR] (of {"tinydgm": Stats, "PyTorch": Stats}) and the paired ratio."""
    for name, s in stats.items():
        print(f"  {name:10s} {fmt_ms(s):>24s} ms (contended samples {s.contended})", flush=True)
    print(f"  tinydgm / PyTorch {fmt_ratio(stats['tinydgm'], stats['PyTorch'])}", flush=True)


def pair_table(stats, detail=False):
    """The markdown table of a tinydgm / PyTorch pair ({"tinydgm": Stats, "PyTorch": Stats}): median ms [IQR]
    and the paired ratio; ``detail`` adds the ratio of the minima and the contended samples kept."""
    td_s, pt_s = stats["tinydgm"], stats["PyTorch"]
    header = ["", "median ms [IQR]", "/ PyTorch (paired: median, min–max)"]
    rows = [["tinydgm", fmt_ms(td_s), fmt_ratio(td_s, pt_s)], ["PyTorch", fmt_ms(pt_s), "1"]]
    if detail:
        header += ["ratio of minima", "contended samples kept"]
        rows[0] += [f"{td_s.min / pt_s.min:.2f}x", td_s.contended]
        rows[1] += ["1", pt_s.contended]
    return markdown_table(header, rows)


def back_to_back(td_step, pt_step, batches, rounds, calls=5):
    """Ratios from samples taken strictly back to back (tinydgm then PyTorch, then the other way
    round), no pause, no retries: the ratio a neighbour's burst hits least. (median, (q1, q3))."""
    import torch
    import tinydgm as td
    xs_td = [td.tensor(x) for x in batches]
    xs_pt = [torch.tensor(x) for x in batches]

    def run(fn, xs):
        start = time.perf_counter()
        for i in range(calls):
            fn(xs[i % len(xs)])
        return time.perf_counter() - start

    ratios = []
    for r in range(rounds):
        if r % 2:
            b = run(pt_step, xs_pt)
            a = run(td_step, xs_td)
        else:
            a = run(td_step, xs_td)
            b = run(pt_step, xs_pt)
        ratios.append(a / b)
    s = Stats(ratios)
    return s.median, s.iqr


# ----------------------------------------------------------------------------- running the parts of a script

def part_registry():
    """(sections, section): the list of (name, title, fn) parts of a script, in registration order,
    and the decorator ``@section(name, title)`` that registers ``fn(cfg) -> markdown`` as part ``name``."""
    sections = []

    def section(name, title):
        def register(fn):
            sections.append((name, title, fn))
            return fn
        return register
    return sections, section


def parts_parser(doc, sections, quick_help="fewer repeats (a smoke run)"):
    """The argument parser the part-based scripts share: --quick, --threads, --out and --parts (the
    names of ``sections``); the script adds its own options."""
    import argparse
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument("--threads", type=int, default=2, help="threads for every side (default 2)")
    parser.add_argument("--out", help="write the markdown section to this file")
    parser.add_argument("--parts", default=None,
                        help="comma-separated parts to run (default all: " + ",".join(n for n, _, _ in sections) + ")")
    return parser


def chosen_parts(parser, cfg, sections):
    """The names of the ``sections`` ([(name, title, fn)]) that ``cfg.parts`` asks for (all when None);
    an unknown name is a usage error of ``parser``."""
    names = [n for n, _, _ in sections]
    parts = names if cfg.parts is None else cfg.parts.split(",")
    unknown = sorted(set(parts) - set(names))
    if unknown:
        parser.error(f"unknown parts {unknown}; the parts are {names}")
    return parts


def run_sections(cfg, sections, parts, pinned):
    """Print the machine header, then run the chosen sections in order, each ``fn(cfg)`` returning its
    markdown. Returns (machine info, ["### k. title\\n\\n" + markdown], elapsed s, load average before, after)."""
    info = machine_info()
    print(machine_markdown(info, cfg.threads))
    print(f"- pinned: {pinned}; BLAS pools: {blas_info()}", flush=True)
    start, load0 = time.perf_counter(), os.getloadavg()
    bodies = []
    for k, (name, title, fn) in enumerate((s for s in sections if s[0] in parts), start=1):
        print(f"\n{k}. {title}", flush=True)
        bodies.append(f"### {k}. {title}\n\n" + fn(cfg))
    elapsed = time.perf_counter() - start
    load = os.getloadavg()
    print(f"\ntotal {elapsed:.0f} s; load average {load0[0]:.2f} at the start, {load[0]:.2f} at the end")
    return info, bodies, elapsed, load0, load


def finish_section(path, head, bodies):
    """Join the ``head`` lines and the part ``bodies`` into the markdown section, print it and write it
    to ``path`` (see write_section)."""
    section_md = "\n".join(head + [body + "\n" for body in bodies])
    print("\n" + section_md)
    write_section(path, section_md)


def command_head(command, elapsed, load0, load, info, threads):
    """The head lines of a section: the command with TINYDGM_DATA, time and load, then the machine."""
    return [f"Command: `TINYDGM_DATA=<folder with mnist.npz> {command}` (one process, {elapsed:.0f} s; load "
            f"average {load0[0]:.2f} at the start, {load[0]:.2f} at the end, on a 2-core machine that other "
            "processes shared during the run).", "", machine_markdown(info, threads), ""]


def add_repeat_options(parser, repeats_help="interleaved repeats per case (default 11)"):
    """--repeats and --retries, as every paired-step benchmark takes them."""
    parser.add_argument("--repeats", type=int, default=11, help=repeats_help)
    parser.add_argument("--retries", type=int, default=1,
                        help="retakes of a sample during which another process held a core (default 1: on a "
                             "crowded machine every sample is contended, and retaking them all multiplies the run)")


def profile_steps(td_call, pt_call, n):
    """Time n PyTorch steps, then cProfile n tinydgm steps (both already warmed up): where the time goes."""
    t0 = time.perf_counter()
    for k in range(n):
        pt_call(k)
    print(f"PyTorch: {(time.perf_counter() - t0) / n * 1e3:.1f} ms per step")
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.enable()
    for k in range(n):
        td_call(k)
    prof.disable()
    print(f"tinydgm: {(time.perf_counter() - t0) / n * 1e3:.1f} ms per step (under cProfile)")
    pstats.Stats(prof).sort_stats("tottime").print_stats(25)


def load_runs(work, models, sides):
    """{(model, side): arrays of <work>/<model>_<side>.npz with its .json as "meta"} for the runs saved."""
    runs = {}
    for name in models:
        for side in sides:
            base = os.path.join(work, f"{name}_{side}")
            if os.path.exists(base + ".json"):
                with open(base + ".json") as f:
                    meta = json.load(f)
                runs[(name, side)] = dict(np.load(base + ".npz"), meta=meta)
    return runs
