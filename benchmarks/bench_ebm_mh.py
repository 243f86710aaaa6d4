"""Metropolis–Hastings steps per second (issue 4): the Numba kernels of tinydgm.kernels.mh
against their vectorized NumPy twin (a Python loop over steps, NumPy over chains) and a plain
Python loop (one chain, one step at a time, math module).

    python benchmarks/bench_ebm_mh.py [--quick] [--threads N] [--out SECTION.md]

Two targets, many chains, the same random numbers on every side (drawn once from
numpy.random.default_rng(0)), so every side must return the same chains (checked):

1. continuous: the 8-Gaussians mixture in R^2 (``gaussian_mixture_log_p``), random-walk
   proposals, 1000 chains x 200 steps, and 10 chains x 5000 steps (where the twin's per-step
   Python overhead dominates);
2. binary: a Boltzmann machine on {0, 1}^100 (``boltzmann_flip_delta``, O(D) per flip),
   single-site flip proposals, 100 chains x 2000 steps.

Reported: chain-steps (one proposal + accept/reject of one chain) per second, and the
speed-up of the Numba kernel (serial, and ``parallel=True`` with prange over chains) over
the NumPy twin and over the plain Python loop (timed on fewer chains and scaled per step).
"""
import argparse
import math
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

from tinydgm.kernels import mh  # noqa: E402


def eight_gaussians():
    angles = 2 * math.pi * np.arange(8) / 8
    means = 2.0 * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    return np.full(8, -math.log(8.0)), np.ascontiguousarray(means), np.full(8, 0.2)


def python_loop_continuous(params, x, eps, log_u, step):
    """The textbook loop: for each step, for each chain, propose, evaluate log p, accept."""
    log_w, means, stds = (a.tolist() for a in params)

    def log_p(z):
        terms = [lw - 0.5 * ((z[0] - m[0]) ** 2 + (z[1] - m[1]) ** 2) / (s * s) - 2 * math.log(s)
                 for lw, m, s in zip(log_w, means, stds)]
        top = max(terms)
        return top + math.log(sum(math.exp(t - top) for t in terms))

    x = x.tolist()
    lp = [log_p(z) for z in x]
    for t in range(eps.shape[0]):
        e, lu = eps[t].tolist(), log_u[t].tolist()
        for c in range(len(x)):
            y = [x[c][0] + step * e[c][0], x[c][1] + step * e[c][1]]
            lp_y = log_p(y)
            if lu[c] < min(0.0, lp_y - lp[c]):
                x[c], lp[c] = y, lp_y
    return np.array(x)


def python_loop_binary(W, b, x, sites, log_u):
    W, b, x = W.tolist(), b.tolist(), x.tolist()
    for t in range(sites.shape[0]):
        s, lu = sites[t].tolist(), log_u[t].tolist()
        for c in range(len(x)):
            i, xc = s[c], x[c]
            field = sum(w * v for w, v in zip(W[i], xc))
            delta = (1 - 2 * xc[i]) * (2 * field + b[i])
            if lu[c] < min(0.0, delta):
                xc[i] = 1.0 - xc[i]
    return np.array(x)


def bench_case(name, kernel_fn, twin_fn, python_fn, n_chains, n_steps, python_chains, python_steps, cfg):
    ref = kernel_fn(False)
    for label, got in (("parallel kernel", kernel_fn(True)), ("NumPy twin", twin_fn())):
        if not np.allclose(got, ref, atol=1e-9):
            raise AssertionError(f"{name}: the {label} gives other chains than the serial kernel")
    py_x = python_fn()
    if python_steps == n_steps and not np.allclose(py_x, ref[:python_chains], atol=1e-9):
        raise AssertionError(f"{name}: the Python loop gives other chains")
    stats, _ = common.compare({"Numba kernel (serial)": lambda: kernel_fn(False),
                               "Numba kernel (parallel, prange over chains)": lambda: kernel_fn(True),
                               "NumPy twin (loop over steps)": twin_fn},
                              repeats=cfg.repeats, warmup=1, min_sample_s=0.05)
    started = time.perf_counter()
    python_fn()
    python_per_step = (time.perf_counter() - started) / (python_chains * python_steps)
    per_step = {k: s.median / (n_chains * n_steps) for k, s in stats.items()}
    per_step["plain Python loop"] = python_per_step
    return {"name": name, "stats": stats, "per_step": per_step, "n_chains": n_chains, "n_steps": n_steps,
            "python": (python_chains, python_steps)}


def continuous(cfg, C=1000, T=200):
    rng = np.random.default_rng(0)
    params = eight_gaussians()
    x0 = rng.normal(0, 1, (C, 2))
    eps, log_u = rng.standard_normal((T, C, 2)), np.log(rng.random((T, C)))
    pc, pt = (min(C, 50), T) if not cfg.quick else (min(C, 20), T)

    def kernel(parallel):
        x = x0.copy()
        mh.mh_kernel(mh.gaussian_mixture_log_p, params, x, eps, log_u, 0.5, parallel=parallel)
        return x

    def twin():
        x = x0.copy()
        mh.mh_xp(mh.gaussian_mixture_log_p_xp, params, x, eps, log_u, 0.5)
        return x

    return bench_case("8-Gaussians mixture in R^2, random walk", kernel, twin,
                      lambda: python_loop_continuous(params, x0[:pc], eps[:pt, :pc], log_u[:pt, :pc], 0.5),
                      C, T, pc, pt, cfg)


def binary(cfg):
    rng = np.random.default_rng(0)
    D, C, T = 100, 100, 2000
    W = np.triu(rng.normal(0, 0.05, (D, D)), 1)
    W = W + W.T
    b = rng.normal(0, 0.5, D)
    x0 = (rng.random((C, D)) < 0.5).astype(float)
    sites, log_u = rng.integers(0, D, (T, C)), np.log(rng.random((T, C)))
    pc, pt = (10, T) if not cfg.quick else (5, T)

    def kernel(parallel):
        x = x0.copy()
        mh.mh_binary_kernel(mh.boltzmann_flip_delta, (W, b), x, sites, log_u, parallel=parallel)
        return x

    def twin():
        x = x0.copy()
        mh.mh_binary_xp(mh.boltzmann_flip_delta_xp, (W, b), x, sites, log_u)
        return x

    return bench_case(f"Boltzmann machine on {{0,1}}^{D}, single-site flips", kernel, twin,
                      lambda: python_loop_binary(W, b, x0[:pc], sites[:pt, :pc], log_u[:pt, :pc]),
                      C, T, pc, pt, cfg)


def table(res):
    ref = res["per_step"]["plain Python loop"]
    twin = res["per_step"]["NumPy twin (loop over steps)"]
    rows = []
    for name, per in res["per_step"].items():
        measured = (f"{res['n_chains']} chains x {res['n_steps']} steps" if name != "plain Python loop" else
                    f"{res['python'][0]} chains x {res['python'][1]} steps (one run)")
        rows.append([name, measured, f"{1 / per / 1e6:.3g}", f"{twin / per:.3g}x", f"{ref / per:.3g}x"])
    return common.markdown_table([res["name"], "measured", "million chain-steps / s", "vs NumPy twin",
                                  "vs Python loop"], rows)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats (a smoke run)")
    parser.add_argument("--threads", type=int, default=2, help="threads for every side (default 2)")
    parser.add_argument("--out", help="write the markdown section to this file")
    cfg = parser.parse_args(argv)
    cfg.repeats = 3 if cfg.quick else 11
    pinned = common.pin_threads(cfg.threads)
    info = common.machine_info()
    print(common.machine_markdown(info, cfg.threads))
    print(f"- pinned: {pinned}", flush=True)
    start, load0 = time.perf_counter(), os.getloadavg()
    with common.ForeignLoad() as load:
        results = [continuous(cfg), continuous(cfg, C=10, T=5000), binary(cfg)]
    elapsed = time.perf_counter() - start
    load1 = os.getloadavg()
    command = "python benchmarks/bench_ebm_mh.py" + (" --quick" if cfg.quick else "") + f" --threads {cfg.threads}" + \
        (f" --out {cfg.out}" if cfg.out else "")
    out = ["### Metropolis–Hastings steps per second", "",
           f"Command: `{command}` (one process, {elapsed:.0f} s; load average {load0[0]:.2f} at the start, "
           f"{load1[0]:.2f} at the end).", "", common.machine_markdown(info, cfg.threads), "",
           "Every side gets the same proposal noise and log-uniforms and returns the same chains (checked). "
           "A chain-step is one proposal and its accept/reject for one chain. Numba and NumPy sides: medians of "
           f"{cfg.repeats} interleaved repeats; the plain Python loop: one run on fewer chains, per step.", ""]
    for res in results:
        out += [table(res), ""]
        print("\n" + table(res), flush=True)
    out += [common.load_note(load, [r["stats"] for r in results]), ""]
    common.write_section(cfg.out, "\n".join(out))


if __name__ == "__main__":
    main()
