"""Latent-variable models benchmark (issue 13), side by side with PyTorch on the CPU, in one process.

    TINYDGM_DATA=<folder with binarized_mnist.npz> python benchmarks/bench_latent.py \
        [--quick] [--threads N] [--out SECTION.md] [--parts vae,iwae,ops,importance] [--n-test 10000] [--k 5000]

vae: one training step of the VAE 784-400-20 (Kingma & Welling 2014): MLP encoder 784 -> 400 (ReLU)
-> (20 mu, 20 log_var), MLP decoder 20 -> 400 (ReLU) -> 784 Bernoulli logits, one reparameterised
sample per image, the closed-form KL, loss = -mean ELBO, backward, Adam (lr 1e-3), batch 100, float32.
tinydgm: ``VAE(MLPEncoder(784, 20, (400,)), MLPDecoder(20, 784, (400,)))`` (``model.loss`` ->
``backward`` -> ``tinydgm.optim.Adam``); PyTorch: the same network with ``torch.nn.Linear``, the
tinydgm model's initial weights copied, ``torch.optim.Adam``. Target: at most 1.0x PyTorch.

iwae: the same architecture trained on the IWAE bound F_5 (Burda et al. 2016): 5 samples per image,
log w = log p(x|z) + log p(z) - log q(z|x), loss = -mean(logsumexp_i log w_i - log 5). Target: at
most 1.0x PyTorch.

ops: where the IWAE step's time goes: the calling thread's CPU time per engine op (tinydgm, forward and
backward apart, each op without the ops it calls) and per ATen op (``torch.profiler``), 100 steps a side.

Before any timing, each twin's loss is checked equal to tinydgm's in float64 on the same batch and
the same noise eps (asserted to 1e-9 relative), then along 5 float32 Adam steps with shared noise.

importance: the k = 5000 importance-sampled log-likelihood (Burda et al. 2016 sec. 5) of the
statically binarized MNIST test images under a VAE 784-400-20 trained briefly first (so the
weights are not those of initialisation): tinydgm's ``evaluate.importance_log_likelihood``
(100 images x 100 samples per pass, running log-sums in float64) against a PyTorch loop doing the
same (same chunking, same weights, its own noise from torch.randn). The test images are split in
blocks, each block timed on both sides back to back (alternating which goes first): the block
times add up to the total, and their ratios are paired. Peak memory: the high-water mark of the
resident set (VmHWM) of a fresh process that evaluates one block of 100 images, above its RSS
after setup, for each side; plus tracemalloc's peak for tinydgm (NumPy allocations are traced,
PyTorch's are not). The two estimates must agree within their standard errors.
"""
import argparse
import json
import math
import os
import subprocess
import sys
import time

import numpy as np
import torch
import torch.nn.functional as torch_F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

import tinydgm as td  # noqa: E402
from tinydgm.evaluate import importance_log_likelihood  # noqa: E402
from tinydgm.models.latent import IWAE, MLPDecoder, MLPEncoder, VAE  # noqa: E402

DTYPE = np.float32
D, HIDDEN, LATENT = 784, 400, 20
LR = 1e-3
LOG_2PI = math.log(2 * math.pi)
SECTIONS, section = common.part_registry()      # (name, title, fn) in registration order; @section(name, title)


def binarized_mnist():
    """Statically binarized MNIST through tinydgm's loader (``TINYDGM_DATA``), no download."""
    return td.data.load_binarized_mnist(download=False, progress=False)


def train_batches(n_batches, batch, seed=0):
    train = binarized_mnist()["train"]
    idx = np.random.default_rng(seed).choice(len(train), size=n_batches * batch, replace=False)
    return train[idx].reshape(n_batches, batch, D).astype(DTYPE)


# ----------------------------------------------------------------------------- the models

def make_model(kind="vae", seed=0, dtype="float32", k=5):
    """VAE or IWAE 784-400-20 with ReLU MLPs and a Bernoulli decoder."""
    gen = np.random.default_rng(seed)
    enc = MLPEncoder(D, LATENT, hidden=(HIDDEN,), activation="relu", rng=gen, dtype=dtype)
    dec = MLPDecoder(LATENT, D, hidden=(HIDDEN,), activation="relu", likelihood="bernoulli", rng=gen, dtype=dtype)
    if kind == "iwae":
        return IWAE(enc, dec, k=k, rng=np.random.default_rng(seed + 1))
    return VAE(enc, dec, rng=np.random.default_rng(seed + 1))


class TorchVAE(torch.nn.Module):
    """The twin of a tinydgm VAE / IWAE with MLP encoder and Bernoulli MLP decoder:

        (mu, log_var) = enc(x),  z = mu + exp(log_var / 2) eps                 (eq. 33)
        log p(x|z) = -sum_d BCEwithlogits(dec(z), x)
        VAE:  loss = -mean[log p(x|z) - KL],  KL = -1/2 sum(1 + log_var - mu^2 - exp(log_var))
        IWAE: log w = log p(x|z) + log N(z; 0, I) - log N(z; mu, exp(log_var)),
              loss = -mean[logsumexp_i log w_i - log k]
    """

    def __init__(self, model, dtype=torch.float32):
        super().__init__()
        self.encoder = common.torch_mlp(model.encoder.net, dtype)
        self.decoder = common.torch_mlp(model.decoder.net, dtype)
        self.latent_dim = model.latent_dim
        self.k = getattr(model, "k", None)
        self.dtype = dtype

    def encode(self, x):
        return self.encoder(x).chunk(2, dim=-1)

    def log_px_z(self, x, z):
        logits = self.decoder(z)
        return -torch_F.binary_cross_entropy_with_logits(logits, x.expand_as(logits), reduction="none").sum(-1)

    def log_weights(self, x, eps):
        """log w of shape (k, N) for noise eps (k, N, L)."""
        mu, log_var = self.encode(x)
        z = mu + torch.exp(0.5 * log_var) * eps
        log_pz = (-0.5 * LOG_2PI - 0.5 * z * z).sum(-1)
        r = (z - mu) * torch.exp(-0.5 * log_var)
        log_qz = (-0.5 * LOG_2PI - 0.5 * log_var - 0.5 * r * r).sum(-1)
        return self.log_px_z(x, z) + log_pz - log_qz

    def loss(self, x, eps=None):
        n = x.shape[0]
        if self.k is None:                                          # the VAE: S = 1, closed-form KL
            mu, log_var = self.encode(x)
            eps = torch.randn(n, self.latent_dim, dtype=self.dtype) if eps is None else eps.reshape(n, -1)
            z = mu + torch.exp(0.5 * log_var) * eps
            kl = -0.5 * (1 + log_var - mu * mu - torch.exp(log_var)).sum(-1)
            return -(self.log_px_z(x, z) - kl).mean()
        eps = torch.randn(self.k, n, self.latent_dim, dtype=self.dtype) if eps is None else eps
        log_w = self.log_weights(x, eps)
        return -(torch.logsumexp(log_w, dim=0) - math.log(log_w.shape[0])).mean()


# ----------------------------------------------------------------------------- the checks

def noise_shape(model, n):
    return (getattr(model, "k", 1), n, LATENT)


def check_float64(kind, x):
    """The twin's loss equals tinydgm's in float64 on the same batch and noise (1e-9 relative), and
    so do the gradients of the first encoder layer. Returns (tinydgm loss, PyTorch loss)."""
    model = make_model(kind, dtype="float64")
    twin = TorchVAE(model, dtype=torch.float64)
    eps = np.random.default_rng(7).standard_normal(noise_shape(model, len(x)))
    x64 = x.astype(np.float64)
    loss_td = -model.objective(td.tensor(x64), eps=td.tensor(eps)).mean()
    loss_td.backward()
    loss_pt = twin.loss(torch.tensor(x64), torch.tensor(eps))
    loss_pt.backward()
    a, b = float(loss_td.item()), float(loss_pt.item())
    assert abs(a - b) <= 1e-9 * abs(b), f"{kind}: float64 loss tinydgm {a!r} vs PyTorch {b!r}"
    g_td = common.linear_layers(model.encoder.net)[0].weight.grad
    g_td = g_td.numpy() if hasattr(g_td, "numpy") else np.asarray(g_td)
    g_pt = twin.encoder[0].weight.grad.numpy().T
    err = float(np.abs(g_td - g_pt).max() / np.abs(g_pt).max())
    assert err <= 1e-9, f"{kind}: float64 gradient of the first layer differs by {err:.2e} (relative)"
    return a, b, err


def check_steps(name, td_side, pt_side, batches, model, rtol=1e-4):
    """The same float32 loss along 5 Adam steps with the same batches and noise."""
    gen = np.random.default_rng(11)

    def step_pair(i):
        x = batches[i % len(batches)]
        eps = gen.standard_normal(noise_shape(model, len(x))).astype(DTYPE)
        return td_side.step(td.tensor(x), td.tensor(eps)), pt_side.step(torch.tensor(x), torch.tensor(eps))
    return common.check_losses(name, step_pair, rtol=rtol)


def compare_training_steps(kind, cfg, describe):
    model = make_model(kind)
    twin = TorchVAE(model)
    batches = train_batches(8, 100)
    a64, b64, gerr = check_float64(kind, batches[0])
    print(f"  float64 loss on the same batch and noise: tinydgm {a64:.12f}, PyTorch {b64:.12f} "
          f"(first-layer gradient max relative difference {gerr:.1e})", flush=True)
    td_side, pt_side = common.TinydgmStep(model, LR), common.TorchStep(twin, LR)
    losses = check_steps(kind, td_side, pt_side, batches, model)
    print("  same float32 loss for 5 Adam steps with shared noise (checked): "
          + ", ".join(f"{a:.4f}/{b:.4f}" for a, b in losses), flush=True)
    load_avg0 = os.getloadavg()
    with common.ForeignLoad() as load:
        stats = common.time_steps(td_side.step, pt_side.step, batches, cfg.repeats, cfg.sample_s, cfg.settle_s,
                                  warmup=5)
        b2b, b2b_iqr = common.back_to_back(td_side.step, pt_side.step, batches, rounds=cfg.b2b_rounds,
                                           calls=cfg.b2b_calls)
    load_avg1 = os.getloadavg()
    print(f"  back-to-back ratio {b2b:.2f}x [{b2b_iqr[0]:.2f}-{b2b_iqr[1]:.2f}]", flush=True)
    ratio, _ = common.paired_ratio(stats["tinydgm"], stats["PyTorch"])
    iqr = common.paired_ratio_iqr(stats["tinydgm"], stats["PyTorch"])
    table = common.pair_table(stats, detail=True)
    return "\n".join([
        describe + f" Same loss in float64 on the same batch and noise (checked to 1e-9: {a64:.9f} / {b64:.9f}; "
        f"first-layer gradients agree to {gerr:.0e}), and in float32 along 5 Adam steps with shared noise: "
        + ", ".join(f"{a:.3f} / {b:.3f}" for a, b in losses)
        + f". {cfg.repeats} interleaved repeats, {cfg.settle_s} s pause before each sample.", "",
        table, "",
        f"Target at most 1.0x PyTorch: {common.verdict(ratio, iqr, 1.0)}. Back to back ({cfg.b2b_rounds} rounds "
        f"of {cfg.b2b_calls} steps per side, no pause, alternating which side goes first): **{b2b:.2f}x** (IQR "
        f"{b2b_iqr[0]:.2f}–{b2b_iqr[1]:.2f}).", "",
        f"{common.load_note(load, [stats])} Load average {load_avg0[0]:.2f} before, {load_avg1[0]:.2f} after."])


@section("vae", "VAE 784-400-20 training step, batch 100")
def bench_vae(cfg):
    return compare_training_steps("vae", cfg,
        "One step = loss (-mean ELBO: one reparameterised sample per image, Bernoulli log p(x|z), closed-form "
        f"KL), backward, Adam (lr {LR}), float32. tinydgm: `VAE(MLPEncoder(784, 20, hidden=(400,)), "
        "MLPDecoder(20, 784, hidden=(400,)))` (ReLU), `model.loss(x)`, `tinydgm.optim.Adam`. PyTorch: the same "
        "network with `torch.nn.Linear` and `F.binary_cross_entropy_with_logits`, initial weights copied, "
        "`torch.randn` noise, `torch.optim.Adam`. Data: statically binarized MNIST (train split).")


@section("iwae", "IWAE k=5 training step, 784-400-20, batch 100")
def bench_iwae(cfg):
    return compare_training_steps("iwae", cfg,
        "One step = loss (-mean F_5: 5 reparameterised samples per image, log w = log p(x|z) + log p(z) - "
        "log q(z|x), log-mean-exp over the 5), backward, Adam (lr 1e-3), float32. tinydgm: `IWAE(MLPEncoder(784, "
        "20, hidden=(400,)), MLPDecoder(20, 784, hidden=(400,)), k=5)`. PyTorch: the same computation with "
        "`torch.nn.Linear`, `torch.logsumexp`, weights copied. Data: statically binarized MNIST (train split).")


class OpProfile:
    """Self CPU time (``time.thread_time``: the calling thread only, so waiting for a busy core is not
    counted) of every engine op's forward and backward in a tinydgm step: ``Function.__call__`` and each
    Function class's ``backward`` are wrapped while the profile is on, and an op's time excludes the
    ops it calls (a backward written with engine ops). BLAS's and Numba's worker threads are not
    counted: read this at one thread, or as the calling thread's share at two."""

    def __init__(self):
        from tinydgm.autodiff import core
        self.core, self.self_time, self.calls, self._stack, self._patched = core, {}, {}, [], {}

    def _timed(self, key, fn, *args):
        self._stack.append(0.0)
        start = time.thread_time()
        try:
            return fn(*args)
        finally:
            total = time.thread_time() - start
            nested = self._stack.pop()
            if self._stack:
                self._stack[-1] += total
            self.self_time[key] = self.self_time.get(key, 0.0) + total - nested
            self.calls[key] = self.calls.get(key, 0) + 1

    def __enter__(self):
        function, profile = self.core.Function, self
        self._call = function.__call__

        def call(fn, *inputs):
            cls = type(fn)
            if cls not in profile._patched:
                profile._patched[cls] = cls.__dict__.get("backward")
                backward = cls.backward
                cls.backward = lambda f, *g: profile._timed(("backward", cls.__name__), backward, f, *g)
            return profile._timed(("forward", cls.__name__), profile._call, fn, *inputs)
        function.__call__ = call
        return self

    def __exit__(self, *exc):
        self.core.Function.__call__ = self._call
        for cls, backward in self._patched.items():
            if backward is None:
                del cls.backward
            else:
                cls.backward = backward

    def rows(self, n_steps, total_s, top=14):
        """[(op, direction, ms per step, calls per step, % of the step)] of the ``top`` ops by self time."""
        ranked = sorted(self.self_time.items(), key=lambda kv: -kv[1])[:top]
        return [(name, way, t / n_steps * 1e3, self.calls[(way, name)] / n_steps, 100 * t / total_s)
                for (way, name), t in ranked]


@section("ops", "Where the IWAE k=5 step's time goes, per op, on both sides")
def bench_ops(cfg):
    """Self CPU time per engine op (tinydgm, ``OpProfile``) and per ATen op (PyTorch, ``torch.profiler``)
    over the same steps, after a warm-up; the optimizer's step is timed as one entry on each side."""
    model = make_model("iwae")
    td_side, pt_side = common.TinydgmStep(model, LR), common.TorchStep(TorchVAE(model), LR)
    batches = train_batches(8, 100)
    xs_td, xs_pt = [td.tensor(x) for x in batches], [torch.tensor(x) for x in batches]
    n = 20 if cfg.quick else 100
    for i in range(10):
        td_side.step(xs_td[i % 8])
        pt_side.step(xs_pt[i % 8])
    step_adam = td_side.opt.step
    with OpProfile() as prof:
        td_side.opt.step = lambda: prof._timed(("step", "Adam (fused kernel)"), step_adam)
        start = time.thread_time()
        for i in range(n):
            td_side.step(xs_td[i % 8])
        td_total = time.thread_time() - start
    td_side.opt.step = step_adam
    from torch.profiler import ProfilerActivity, profile
    start = time.thread_time()
    with profile(activities=[ProfilerActivity.CPU]) as pt_prof:
        for i in range(n):
            pt_side.step(xs_pt[i % 8])
    pt_total = time.thread_time() - start
    events = sorted(pt_prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
    pt_self = sum(e.self_cpu_time_total for e in events)
    td_rows = [[name, way, f"{ms:.3f}", f"{calls:g}", f"{pct:.0f}%"] for name, way, ms, calls, pct in
               prof.rows(n, td_total)]
    pt_rows = [[e.key, f"{e.self_cpu_time_total / n / 1e3:.3f}", f"{e.count / n:g}",
                f"{100 * e.self_cpu_time_total / pt_self:.0f}%"] for e in events[:14]]
    print(f"  tinydgm {td_total / n * 1e3:.2f} ms CPU per step (profiled), PyTorch {pt_total / n * 1e3:.2f}",
          flush=True)
    return "\n".join([
        f"{n} steps per side after 10 warm-up steps, {cfg.threads} thread(s), calling thread's CPU time. tinydgm: "
        f"{td_total / n * 1e3:.2f} ms per step while profiled; self time per engine op (an op's time excludes "
        "the engine ops its backward calls; `MatMul` holds every matrix product, forward and backward):", "",
        common.markdown_table(["op", "pass", "ms per step", "calls per step", "share of the step"], td_rows), "",
        f"PyTorch: {pt_total / n * 1e3:.2f} ms of the calling thread's CPU time per step under `torch.profiler` "
        "(its own overhead included); the profiler's self time per ATen op is wall-clock time on the calling "
        "thread (intra-op worker threads run inside it; on a busy machine the waits for a core are in it too), "
        "so read its shares:", "",
        common.markdown_table(["op", "ms per step (wall)", "calls per step", "share of the profiled ops"],
                              pt_rows)])


# ----------------------------------------------------------------------------- importance sampling

def torch_importance(twin, x, k, batch_size=100, chunk_size=100):
    """The PyTorch loop of tinydgm.evaluate.importance_log_likelihood: per batch of images, k
    samples chunk by chunk, running log sum w and log sum w^2 in float64. Returns (log_px, stderr)."""
    log_px, stderr = [], []
    with torch.no_grad():
        for start in range(0, len(x), batch_size):
            batch = x[start:start + batch_size]
            lse_w = lse_w2 = None
            for s in range(0, k, chunk_size):
                m = min(chunk_size, k - s)
                eps = torch.randn(m, batch.shape[0], twin.latent_dim, dtype=twin.dtype)
                log_w = twin.log_weights(batch, eps).double()
                cw, cw2 = torch.logsumexp(log_w, 0), torch.logsumexp(2 * log_w, 0)
                lse_w, lse_w2 = (cw, cw2) if lse_w is None else (torch.logaddexp(lse_w, cw),
                                                                 torch.logaddexp(lse_w2, cw2))
            log_px.append(lse_w - math.log(k))
            ess = 2 * lse_w - lse_w2
            stderr.append(torch.sqrt(torch.clamp(k * torch.exp(-ess) - 1, min=0) / (k - 1)))
    return torch.cat(log_px).numpy(), torch.cat(stderr).numpy()


def trained_vae(steps, seed=0):
    """A VAE 784-400-20 after ``steps`` Adam steps at batch 100 (binarized MNIST train)."""
    model = make_model("vae", seed=seed)
    side = common.TinydgmStep(model, LR)
    train = binarized_mnist()["train"]
    gen = np.random.default_rng(seed)
    for _ in range(steps):
        side.step(td.tensor(train[gen.choice(len(train), 100, replace=False)].astype(DTYPE)))
    return model


def check_log_weights(model, twin, x):
    """Both sides give the same log importance weights for the same noise (float32 rounding)."""
    eps = np.random.default_rng(3).standard_normal((50, len(x), LATENT)).astype(DTYPE)
    with td.no_grad():
        a = model.log_importance_weights(td.tensor(x), 50, eps=td.tensor(eps)).numpy()
    with torch.no_grad():
        b = twin.log_weights(torch.tensor(x), torch.tensor(eps)).numpy()
    err = float(np.abs(a - b).max() / np.abs(b).max())
    assert err < 1e-5, f"log importance weights differ by {err:.2e} (relative)"
    return err


def memory_probe(side, k, steps):
    """Run in a fresh process: peak RSS above the post-setup RSS for one block of 100 images (MiB),
    and for tinydgm also tracemalloc's peak (MiB)."""
    def status(key):
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024
    common.pin_threads(2)
    model = trained_vae(steps)
    x = binarized_mnist()["test"][:100].astype(DTYPE)
    twin = TorchVAE(model)
    xt = torch.tensor(x)
    # one small warm-up pass of each library, so lazy initialisation is not counted
    importance_log_likelihood(model, x[:2], k=4, batch_size=2, chunk_size=2)
    torch_importance(twin, xt[:2], 4, 2, 2)
    with open("/proc/self/clear_refs", "w") as f:        # resets VmHWM to the current RSS
        f.write("5")
    base = status("VmRSS")
    traced = None
    if side == "tinydgm":
        import tracemalloc
        tracemalloc.start()
        importance_log_likelihood(model, x, k=k)
        traced = tracemalloc.get_traced_memory()[1] / 2 ** 20
        tracemalloc.stop()
    else:
        torch_importance(twin, xt, k)
    print(f"MEMORY {status('VmHWM') - base:.1f} {traced}")


def measure_memory(side, k, steps):
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--memory-probe", side, "--k", str(k),
                          "--train-steps", str(steps)], capture_output=True, text=True, check=True).stdout
    line = [l for l in out.splitlines() if l.startswith("MEMORY")][-1].split()
    return float(line[1]), (None if line[2] == "None" else float(line[2]))


@section("importance", "k = 5000 importance-sampled log-likelihood of the MNIST test images")
def bench_importance(cfg):
    k, n_test, block = cfg.k, cfg.n_test, cfg.block
    model = trained_vae(cfg.train_steps)
    twin = TorchVAE(model)
    test = binarized_mnist()["test"]
    if n_test < len(test):          # the split is sorted by class: a fixed random subset, not the first images
        test = test[np.sort(np.random.default_rng(2016).choice(len(test), n_test, replace=False))]
    test = test.astype(DTYPE)
    if cfg.image_range:             # one slice of the images, for runs split over processes (see --json)
        first, last = (int(v) for v in cfg.image_range.split(":"))
        test, n_test = test[first:last], last - first
    err = check_log_weights(model, twin, test[:20])
    print(f"  log importance weights agree for the same noise (max relative difference {err:.1e})", flush=True)
    td_rng = np.random.default_rng(123)
    torch.manual_seed(123)
    times = {"tinydgm": [], "PyTorch": []}
    cpu_times = {"tinydgm": [], "PyTorch": []}       # process time: one thread per side, so the CPU work
    results = {"tinydgm": ([], []), "PyTorch": ([], [])}
    load_avg0 = os.getloadavg()

    def run(side, xb):
        start, cpu_start = time.perf_counter(), time.process_time()
        if side == "tinydgm":
            est = importance_log_likelihood(model, xb, k=k, batch_size=100, chunk_size=100, rng=td_rng)
            lp, se = est.log_px.numpy(), est.stderr.numpy()
        else:
            lp, se = torch_importance(twin, torch.tensor(xb), k)
        times[side].append(time.perf_counter() - start)
        cpu_times[side].append(time.process_time() - cpu_start)
        results[side][0].append(lp)
        results[side][1].append(se)

    with common.ForeignLoad() as load:
        for b, start in enumerate(range(0, n_test, block)):
            xb = test[start:start + block]
            order = ("tinydgm", "PyTorch") if b % 2 == 0 else ("PyTorch", "tinydgm")
            for side in order:
                run(side, xb)
            print(f"  block {b}: tinydgm {times['tinydgm'][-1]:.2f} s, PyTorch {times['PyTorch'][-1]:.2f} s "
                  f"(load {os.getloadavg()[0]:.2f})", flush=True)
    load_avg1 = os.getloadavg()
    if cfg.json:
        with open(cfg.json, "w") as f:
            json.dump({"wall": times, "cpu": cpu_times, "image_range": cfg.image_range,
                       "log_px": {side: np.concatenate(r[0]).tolist() for side, r in results.items()},
                       "stderr": {side: np.concatenate(r[1]).tolist() for side, r in results.items()}}, f)
    est = {}
    for side in times:
        lp, se = (np.concatenate(a) for a in results[side])
        est[side] = (float(lp.mean()), float(np.sqrt((se ** 2).sum())) / len(lp))
    diff = est["tinydgm"][0] - est["PyTorch"][0]
    joint_se = math.hypot(est["tinydgm"][1], est["PyTorch"][1])
    # the same images on both sides with independent noise: the per-image differences are independent
    # draws with mean 0 if both compute the same estimator, so their empirical spread gives an error
    # bar that does not lean on the delta method (which understates heavy-tailed weights)
    d = np.concatenate(results["tinydgm"][0]) - np.concatenate(results["PyTorch"][0])
    paired_se = float(d.std(ddof=1) / math.sqrt(len(d)))
    print(f"  estimates {est}; difference {diff:+.4f}, delta-method joint s.e. {joint_se:.4f}, "
          f"empirical paired s.e. {paired_se:.4f}", flush=True)
    assert abs(diff) <= 3 * paired_se + 1e-3, f"estimates differ: {est}, paired s.e. {paired_se}"
    total = {side: sum(t) for side, t in times.items()}
    ratios = common.Stats([a / b for a, b in zip(times["tinydgm"], times["PyTorch"])])
    print(f"  totals: tinydgm {total['tinydgm']:.1f} s, PyTorch {total['PyTorch']:.1f} s; "
          f"paired block ratio median {ratios.median:.2f}x", flush=True)
    mem = {side: measure_memory(side, k, cfg.train_steps) for side in ("tinydgm", "PyTorch")}
    print(f"  memory {mem}", flush=True)
    rows = [[side, f"{total[side]:.1f}", f"{common.fmt_time(total[side] / len(test) * 1000)}",
             f"{est[side][0]:.3f} ± {est[side][1]:.3f}", f"{mem[side][0]:.0f}",
             "—" if mem[side][1] is None else f"{mem[side][1]:.0f}"] for side in ("tinydgm", "PyTorch")]
    table = common.markdown_table(["", "total s", "per 1,000 images", "mean log p(x) ± s.e. (nats)",
                                   "peak RSS above setup, one block of 100 images (MiB)",
                                   "tracemalloc peak (MiB)"], rows)
    return "\n".join([
        f"The VAE 784-400-20 of part 1 after {cfg.train_steps} Adam steps (batch 100) on binarized MNIST, then "
        f"log p^_k(x) = log 1/k sum_i p(x, z_i) / q(z_i|x) with k = {k} for "
        + (f"all {len(test):,}" if len(test) == 10000 else f"a fixed random subset of {len(test):,} (seed 2016) of the 10,000")
        + " statically binarized MNIST test images, 100 images x 100 samples per pass, running log-sums of w and w^2 in float64, "
        "the delta-method standard error from the effective sample size. tinydgm: "
        "`tinydgm.evaluate.importance_log_likelihood(model, x, k, batch_size=100, chunk_size=100)`; PyTorch: the "
        "same loop by hand under `torch.no_grad()` (same weights; its own noise from `torch.randn`). Same log "
        f"weights for the same noise (checked: max relative difference {err:.0e}). The images ran in blocks of "
        f"{block}, each block on both sides back to back (alternating which went first).", "",
        table, "",
        f"tinydgm / PyTorch: **{total['tinydgm'] / total['PyTorch']:.2f}x** in total; paired block ratios median "
        f"{ratios.median:.2f}x (IQR {ratios.iqr[0]:.2f}–{ratios.iqr[1]:.2f}, min–max {ratios.min:.2f}–"
        f"{ratios.max:.2f}). The two estimates differ by {diff:+.3f} nats: {abs(diff) / paired_se:.1f} standard errors "
        f"of the mean per-image difference ({paired_se:.3f}, from the spread of the {len(d)} per-image differences; "
        "checked within 3), and "
        f"{abs(diff) / joint_se:.1f} times the two delta-method standard errors combined ({joint_se:.3f}), which "
        "understate the error when the importance weights are heavy-tailed.", "",
        "Memory: the peak resident set (VmHWM, reset through /proc/self/clear_refs after setup and a warm-up) of "
        "a fresh process evaluating one block of 100 images with the same k, minus its resident set after "
        "setup; the pass holds 100 x 100 (x, z) pairs whatever k is, so a block's peak is the whole run's. "
        "tracemalloc sees NumPy's buffers only (not PyTorch's), so it is given for tinydgm alone.", "",
        f"Other processes used {load.describe()} of the machine's CPU time during this part (blocks are not "
        f"retaken). Load average {load_avg0[0]:.2f} before, {load_avg1[0]:.2f} after."])


# ----------------------------------------------------------------------------- main

def main(argv=None):
    parser = common.parts_parser(__doc__, SECTIONS, quick_help="fewer repeats, small importance run (a smoke run)")
    parser.add_argument("--n-test", type=int, default=10000, help="test images for the importance part")
    parser.add_argument("--k", type=int, default=5000, help="importance samples per image")
    parser.add_argument("--block", type=int, default=1000, help="images per timed block (importance part)")
    parser.add_argument("--train-steps", type=int, default=500, help="Adam steps before the importance part")
    parser.add_argument("--memory-probe", choices=("tinydgm", "PyTorch"), help=argparse.SUPPRESS)
    parser.add_argument("--image-range", help="importance part: only images FIRST:LAST of the n-test images (a run "
                        "split over processes)")
    parser.add_argument("--json", help="importance part: also write per-block wall and CPU times and per-image "
                        "estimates to this JSON file")
    cfg = parser.parse_args(argv)
    if cfg.memory_probe:
        return memory_probe(cfg.memory_probe, cfg.k, cfg.train_steps)
    cfg.repeats = 5 if cfg.quick else 21
    cfg.b2b_rounds, cfg.b2b_calls = (6, 5) if cfg.quick else (20, 5)
    cfg.sample_s = 0.02 if cfg.quick else 0.1
    cfg.settle_s = 0.1          # let the other library's spinning BLAS/OpenMP threads sleep
    if cfg.quick:
        cfg.n_test, cfg.k, cfg.block, cfg.train_steps = min(cfg.n_test, 200), min(cfg.k, 200), 100, 50
    parts = common.chosen_parts(parser, cfg, SECTIONS)

    pinned = common.pin_threads(cfg.threads)
    info, bodies, elapsed, load0, load = common.run_sections(cfg, SECTIONS, parts, pinned)

    command = ("TINYDGM_DATA=<folder with binarized_mnist.npz> python benchmarks/bench_latent.py"
               + (" --quick" if cfg.quick else "") + f" --threads {cfg.threads}"
               + (f" --parts {cfg.parts}" if cfg.parts else "")
               + "".join(f" --{name.replace('_', '-')} {getattr(cfg, name)}" for name, default in
                         (("n_test", 10000), ("k", 5000), ("block", 1000), ("train_steps", 500))
                         if not cfg.quick and getattr(cfg, name) != default)
               + (f" --out {cfg.out}" if cfg.out else ""))
    out = ["## Latent-variable models", "",
           f"Command: `{command}` (one process, {elapsed:.0f} s; load average {load0[0]:.2f} at the start, "
           f"{load[0]:.2f} at the end).", "", common.machine_markdown(info, cfg.threads), ""]
    common.finish_section(cfg.out, out, bodies)


if __name__ == "__main__":
    main()
