"""First-call cost of tinydgm's Numba kernels: compilation on a cold cache, loading from a warm one.

    python benchmarks/bench_compile.py [--quick] [--threads N] [--out SECTION.md] [--cases a,b,...]

Every kernel in tinydgm/kernels/ is compiled by Numba the first time it is called with new
argument types (a dtype, an array layout). With ``cache=True`` the machine code is written to
a cache (``__pycache__`` next to the module, or ``NUMBA_CACHE_DIR``) and later processes load it
instead of compiling. For each case below (a kernel's public entry point on small arrays) this
script starts fresh Python processes:

- cold: a new, empty ``NUMBA_CACHE_DIR``: the first call compiles (and writes the cache);
- warm: a second process on the same cache directory: the first call loads the cache (and pays
  Numba's one-time start in a fresh process: its compiler and runtime are initialised by the
  first kernel called, cached or not);

and reports, per process, the import time of the kernel's module, the first call, and the
second call (the steady-state cost of the call itself; the first call minus it is the
compilation or cache-loading overhead). Numba's own counters say what the warm process did:
signatures loaded from the cache (hits) and compiled anyway (misses). The kernels that take a
Numba function as an argument (the Metropolis–Hastings kernels take the log-density or the
flip difference) are compiled again in every process although their cache files are written:
Numba does not find the cached entry for a signature that contains a function argument.
``import numba`` itself is timed once, apart.
"""
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# name -> (module imported and timed, what is called, setup code, the call timed twice)
CASES = {
    "adam": ("tinydgm.kernels.adam", "adam_update, float32", """
p, g = np.ones(1000, np.float32), np.full(1000, 0.1, np.float32)
m, v = np.zeros_like(p), np.zeros_like(p)""",
             "mod.adam_update(p, g, m, v, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, t=1)"),
    "sigmoid": ("tinydgm.kernels.sigmoid", "sigmoid_array, float32", "a = np.linspace(-5, 5, 1000, dtype=np.float32)",
                "mod.sigmoid_array(a)"),
    "nade_logits": ("tinydgm.kernels.nade_logits", "nade_logits forward + backward, float32, serial build", """
gen = np.random.default_rng(0)
x = (gen.random((8, 20)) < 0.3).astype(np.float32)
W, V, c = gen.normal(size=(20, 16)).astype(np.float32), gen.normal(size=(20, 16)).astype(np.float32), np.zeros(16, np.float32)
def call():
    y, states = mod.nade_logits_kernel(x, W, c, V)
    mod.nade_logits_backward_kernel(x, W, V, y, states, need_x=False)""", "call()"),
    "nade_logits_parallel": ("tinydgm.kernels.nade_logits", "the same, parallel build", """
mod.PARALLEL_ABOVE = 0
gen = np.random.default_rng(0)
x = (gen.random((8, 20)) < 0.3).astype(np.float32)
W, V, c = gen.normal(size=(20, 16)).astype(np.float32), gen.normal(size=(20, 16)).astype(np.float32), np.zeros(16, np.float32)
def call():
    y, states = mod.nade_logits_kernel(x, W, c, V)
    mod.nade_logits_backward_kernel(x, W, V, y, states, need_x=False)""", "call()"),
    "nade_sampler": ("tinydgm.kernels.nade_sampler", "nade_sample_kernel, float32", """
gen = np.random.default_rng(0)
W, V = gen.normal(size=(20, 16)).astype(np.float32), gen.normal(size=(20, 16)).astype(np.float32)
c, b, u = np.zeros(16, np.float32), np.zeros(20, np.float32), gen.random((8, 20))""",
                     "mod.nade_sample_kernel(W, c, V, b, u)"),
    "made_sampler": ("tinydgm.kernels.made_sampler", "MADE.sample (the MADE kernel), float32", """
from tinydgm.models.autoregressive.made import MADE
made = MADE(12, [16], rng=np.random.default_rng(0), dtype="float32")""",
                     "made.sample(4, rng=np.random.default_rng(1))"),
    "maf_sampler": ("tinydgm.kernels.maf_sampler", "MAFLayer.solve (the affine kernel), float64", """
import tinydgm as td
from tinydgm.models.flows.maf_iaf import MAFLayer
layer = MAFLayer(4, (16,), rng=np.random.default_rng(0), dtype="float64")
y = td.tensor(np.random.default_rng(1).normal(size=(8, 4)))
def call():
    with td.no_grad():                  # the kernel path: no graph to record
        layer.solve(y, "sample")""", "call()"),
    "gibbs_fvbm": ("tinydgm.kernels.gibbs", "gibbs_fvbm (FVBM Gibbs sweeps)", """
W = np.array([[0, .5, -.3], [.5, 0, .2], [-.3, .2, 0]]); b = np.zeros(3)""",
                     "mod.gibbs_fvbm(W, b, np.zeros((4, 3)), 5, np.random.default_rng(0))"),
    "mh": ("tinydgm.kernels.mh", "metropolis_hastings with gaussian_mixture_log_p passed in", """
params = (np.log(np.array([0.5, 0.5])), np.array([[0.0, 0.0], [1.0, 1.0]]), np.array([1.0, 0.5]))""",
                     "mod.metropolis_hastings(mod.gaussian_mixture_log_p, params, np.zeros((4, 2)), 5, "
                     "np.random.default_rng(0))"),
    "mh_binary": ("tinydgm.kernels.mh", "metropolis_hastings_binary with boltzmann_flip_delta passed in", """
W = np.array([[0, .5, -.3], [.5, 0, .2], [-.3, .2, 0]]); b = np.zeros(3)""",
                     "mod.metropolis_hastings_binary(mod.boltzmann_flip_delta, (W, b), np.zeros((4, 3)), 5, "
                     "np.random.default_rng(0))"),
    "rbm_pcd": ("tinydgm.kernels.rbm_gibbs", "BernoulliRBM.step (PCD-1 kernels), float32", """
from tinydgm.models.energy.rbm import BernoulliRBM
rbm = BernoulliRBM(30, 10, rng=np.random.default_rng(0), dtype="float32")
v = (np.random.default_rng(1).random((16, 30)) < 0.2).astype(np.float32)""",
                               "rbm.step(v, rng=np.random.default_rng(2))"),
    "uniforms": ("tinydgm.kernels.uniforms", "uniform, float32", "", "mod.uniform(np.random.default_rng(0), (10, 10), 'float32')"),
}

_PROGRAM = """
import importlib, json, time
import numpy as np
t0 = time.perf_counter()
mod = importlib.import_module({module!r})
t1 = time.perf_counter()
{setup}
t2 = time.perf_counter()
{call}
t3 = time.perf_counter()
{call}
t4 = time.perf_counter()
import sys
from numba.core.dispatcher import Dispatcher
hits = misses = 0
for m in list(sys.modules.values()):
    if getattr(m, "__name__", "").startswith("tinydgm.kernels"):
        found = list(vars(m).values())
        for v in list(found):                   # dispatchers kept in a dict or tuple of builds
            if isinstance(v, dict):
                found += [w for x in v.values() for w in (x if isinstance(x, tuple) else (x,))]
            elif isinstance(v, tuple):
                found += list(v)
        for f in {{id(f): f for f in found if isinstance(f, Dispatcher)}}.values():
            hits += sum(f.stats.cache_hits.values())
            misses += sum(f.stats.cache_misses.values())
print(json.dumps({{"import_s": t1 - t0, "first_s": t3 - t2, "second_s": t4 - t3, "hits": hits, "misses": misses}}))
"""

_IMPORT_NUMBA = """
import time
import numpy
t0 = time.perf_counter()
import numba
print(time.perf_counter() - t0)
"""


def _env(cache_dir, threads):
    env = dict(os.environ)
    env["NUMBA_CACHE_DIR"] = cache_dir
    env["NUMBA_NUM_THREADS"] = str(threads)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    return env


def run_case(name, cache_dir, threads):
    module, _, setup, call = CASES[name]
    program = _PROGRAM.format(module=module, setup=setup.strip(), call=call)
    out = subprocess.run([sys.executable, "-c", program], env=_env(cache_dir, threads), capture_output=True,
                         text=True, cwd=ROOT)
    if out.returncode != 0:
        raise RuntimeError(f"bench_compile: case {name!r} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def cache_files(cache_dir):
    """(index files, object files) Numba wrote under cache_dir."""
    index = objects = 0
    for _, _, files in os.walk(cache_dir):
        index += sum(f.endswith(".nbi") for f in files)
        objects += sum(f.endswith(".nbc") for f in files)
    return index, objects


def import_numba_s(threads):
    with tempfile.TemporaryDirectory() as cache_dir:
        out = subprocess.run([sys.executable, "-c", _IMPORT_NUMBA], env=_env(cache_dir, threads), capture_output=True,
                             text=True, check=True)
    return float(out.stdout.strip())


def measure(name, threads, repeats):
    """The medians over ``repeats`` (fresh cache directory each) of the cold and warm processes."""
    cold, warm, files = [], [], None
    for _ in range(repeats):
        with tempfile.TemporaryDirectory(prefix="tinydgm-numba-cache-") as cache_dir:
            cold.append(run_case(name, cache_dir, threads))
            files = cache_files(cache_dir)
            warm.append(run_case(name, cache_dir, threads))

    def med(runs, key):
        return common.Stats([r[key] for r in runs]).median
    result = {"files": files, "warm_hits": warm[-1]["hits"], "warm_misses": warm[-1]["misses"],
              "cold_misses": cold[-1]["misses"]}
    for label, runs in (("cold", cold), ("warm", warm)):
        result[label] = {key: med(runs, key) for key in ("import_s", "first_s", "second_s")}
    return result


def verdict(r):
    """From Numba's own counters (``Dispatcher.stats``): signatures loaded from the cache (hits) and
    compiled (misses) in the warm process, summed over the dispatchers of tinydgm.kernels."""
    index, objects = r["files"]
    if objects == 0:
        return f"not cached: {r['warm_misses']} compilations in every process"
    if r["warm_misses"]:
        return (f"partly cached: {r['warm_hits']} loaded, {r['warm_misses']} compiled again in every process "
                f"({objects} object files written)")
    return f"cached: {r['warm_hits']} loaded, 0 compiled ({objects} object files)"


def main(argv=None):
    import argparse
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one cold/warm pair per case (default 3)")
    parser.add_argument("--threads", type=int, default=2, help="NUMBA_NUM_THREADS of the processes (default 2)")
    parser.add_argument("--out", help="write the markdown section to this file")
    parser.add_argument("--cases", help="comma-separated case names (default all: " + ", ".join(CASES) + ")")
    cfg = parser.parse_args(argv)
    names = list(CASES) if not cfg.cases else cfg.cases.split(",")
    unknown = [n for n in names if n not in CASES]
    if unknown:
        parser.error(f"unknown cases {unknown}; the cases are {list(CASES)}")
    repeats = 1 if cfg.quick else 3
    start, load0 = time.perf_counter(), os.getloadavg()
    numba_s = import_numba_s(cfg.threads)
    print(f"import numba: {numba_s:.2f} s", flush=True)
    results = {}
    for name in names:
        results[name] = r = measure(name, cfg.threads, repeats)
        print(f"  {name:44s} cold first call {r['cold']['first_s']:.2f} s, warm {r['warm']['first_s']:.3f} s, "
              f"steady {r['warm']['second_s'] * 1e3:.2f} ms; {verdict(r)}", flush=True)
    elapsed, load = time.perf_counter() - start, os.getloadavg()
    rows = []
    for name, r in results.items():
        rows.append([f"{name}: {CASES[name][1]}", f"{r['cold']['import_s']:.2f}", f"{r['cold']['first_s']:.2f}",
                     f"{r['warm']['import_s']:.2f}", f"{r['warm']['first_s']:.3f}",
                     f"{r['warm']['second_s'] * 1e3:.2f}", verdict(r)])
    total_cold = sum(r["cold"]["first_s"] for r in results.values())
    total_warm = sum(r["warm"]["first_s"] for r in results.values())
    command = "python benchmarks/bench_compile.py" + (" --quick" if cfg.quick else "") + f" --threads {cfg.threads}" + \
        (f" --cases {cfg.cases}" if cfg.cases else "") + (f" --out {cfg.out}" if cfg.out else "")
    info = common.machine_info()
    section = "\n".join([
        "### Numba compilation: first calls on a cold and a warm cache", "",
        f"Command: `{command}` ({elapsed:.0f} s; load average {load0[0]:.2f} at the start, {load[0]:.2f} at the end; "
        f"medians of {repeats} fresh cache directories per case).", "",
        f"- CPU: {info['cpu']}, {info['cores']} usable cores; NUMBA_NUM_THREADS={cfg.threads}",
        f"- tinydgm at commit {info['tinydgm']}; Python {info['python']}, NumPy {info['numpy']}, "
        f"Numba {_numba_version()}", "",
        f"`import numba` alone: {numba_s:.2f} s (paid once per process by the first kernel module imported).", "",
        common.markdown_table(["kernel (entry point)", "cold: import s", "cold: first call s", "warm: import s",
                               "warm: first call s", "second call ms", "cache"], rows), "",
        f"All cases together: {total_cold:.1f} s of first calls on a cold cache, {total_warm:.2f} s on a warm one.", ""])
    print("\n" + section)
    common.write_section(cfg.out, section)


def _numba_version():
    import numba
    return numba.__version__


if __name__ == "__main__":
    main()
