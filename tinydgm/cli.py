"""The command line: ``python -m tinydgm <command>``.

    demo        run the demo gallery (the scripts in demos/) and write figures and reports
    gradcheck   check every op of the engine against finite differences
    info        versions, devices and BLAS threads

``main(argv)`` returns the exit status (0 success, 1 a check failed, 2 a usage error such
as an unavailable device) instead of exiting, so tests can call it in-process.
"""
import argparse
import importlib.metadata
import importlib.util
import json
import platform
import sys
import time
from pathlib import Path

import tinydgm
from tinydgm import backend

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _error(command, message):
    print(f"tinydgm {command}: error: {message}", file=sys.stderr)
    return EXIT_USAGE


# ----------------------------------------------------------------------------- demo

NO_DEMOS = ("the demo scripts are not part of the installed package: they live in the demos/ folder of "
            "the tinydgm source repository. From a checkout, run `python -m tinydgm demo` (the whole "
            "gallery) or `python demos/<family>.py` (one family) there.")


def demos_folder():
    """demos/ beside the package in a source checkout; None in an installed copy without it."""
    folder = Path(tinydgm.__file__).resolve().parent.parent / "demos"
    return folder if (folder / "_common.py").is_file() else None


def discover(folder):
    """The demo scripts: every demos/*.py whose name does not start with "_", in name order."""
    return sorted(p for p in Path(folder).glob("*.py") if not p.name.startswith("_"))


def load_demo(path):
    """Import a demo script by its path (the scripts import their shared ``_common`` by name)."""
    folder = str(Path(path).parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    spec = importlib.util.spec_from_file_location(f"tinydgm_demos.{Path(path).stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def cmd_demo(args):
    try:
        backend.module_for_device(args.device)        # fail at once, before any work
    except (RuntimeError, ValueError) as err:
        return _error("demo", err)
    folder = demos_folder()
    if folder is None:
        return _error("demo", NO_DEMOS)
    scripts = discover(folder)
    unknown = sorted(set(args.only or ()) - {p.stem for p in scripts})
    if unknown:
        return _error("demo", f"no demo named {', '.join(unknown)} in {folder} "
                              f"(there are: {', '.join(p.stem for p in scripts)})")
    scripts = [p for p in scripts if not args.only or p.stem in args.only]
    out = Path(args.out).resolve()
    print(f"tinydgm demo: {len(scripts)} demos from {folder}, writing to {out} on {args.device}"
          + (" (quick)" if args.quick else ""))
    start = time.perf_counter()
    summaries = {}
    for path in scripts:
        argv = ["--out", str(out / path.stem), "--seed", str(args.seed), "--device", args.device]
        code = load_demo(path).main(argv + (["--quick"] if args.quick else []))
        if code != EXIT_OK:
            return code
        summaries[path.stem] = json.loads((out / path.stem / "summary.json").read_text())
    seconds = time.perf_counter() - start
    (out / "summary.json").write_text(json.dumps({"seed": args.seed, "quick": args.quick, "device": args.device,
                                                  "seconds": round(seconds, 2), "demos": summaries}, indent=2) + "\n")
    print(f"tinydgm demo: done in {seconds:.1f} s; files in {out}:")
    for name, summary in summaries.items():
        print(f"  {name + '/':<16} " + ", ".join(summary["files"] + ["summary.json"]))
    print("  summary.json")
    return EXIT_OK


# ----------------------------------------------------------------------------- gradcheck

def cmd_gradcheck(args):
    from tinydgm.autodiff import catalog
    try:
        backend.module_for_device(args.device)
        selected = catalog.entries(args.ops)
    except (RuntimeError, ValueError) as err:
        return _error("gradcheck", err)
    names = [e.name for e in selected]
    results = catalog.check_all(device=args.device, ops=names, second_order=not args.first_order_only)
    print(catalog.format_table(results))
    bad = [r for r in results if not r.passed]
    for r in bad:
        print(f"\n{r.name} ({r.status}): {r.message}")
    print(f"\n{len(results) - len(bad)} of {len(results)} entries pass on {args.device}")
    return EXIT_FAILED if bad else EXIT_OK


# ----------------------------------------------------------------------------- info

def _version(distribution):
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _cuda_line():
    if backend.cuda_standin_active():
        return "cuda: the CuPy stand-in (tinydgm.standin, NumPy on the CPU, for tests; TINYDGM_CUDA_STANDIN is set)"
    if backend.cupy is None:
        try:
            backend.module_for_device("cuda")
        except RuntimeError as err:
            return f"cuda: unavailable ({err})"
    if not backend.cuda_available():
        return "cuda: unavailable (CuPy is installed but finds no CUDA device)"
    cp = backend.cupy
    names = []
    for i in range(cp.cuda.runtime.getDeviceCount()):
        name = cp.cuda.runtime.getDeviceProperties(i)["name"]
        names.append(name.decode() if isinstance(name, bytes) else str(name))
    return f"cuda: available, {len(names)} device(s): " + ", ".join(names)


def _blas_lines():
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return ["BLAS threads: threadpoolctl not installed (pip install threadpoolctl to see them)"]
    pools = threadpool_info()
    if not pools:
        return ["BLAS threads: no thread pool found"]
    return [f"BLAS threads: {p.get('internal_api', '?')} ({p.get('user_api', '?')}) "
            f"{p.get('num_threads', '?')} threads, {p.get('filepath', '')}" for p in pools]


def cmd_info(args):
    cupy_version = backend.cupy.__version__ if backend.cupy is not None else "not installed"
    lines = [
        f"tinydgm {tinydgm.__version__} ({tinydgm.__file__.rsplit('/', 1)[0]})",
        f"python {platform.python_version()} ({platform.platform()})",
        "numpy " + _version("numpy"),
        "numba " + _version("numba"),
        "cupy " + cupy_version,
        "matplotlib " + _version("matplotlib"),
        f"default dtype: {backend.get_default_dtype()}",
        "devices: cpu" + (", cuda" if backend.cuda_available() or backend.cuda_standin_active() else ""),
        _cuda_line(),
        *_blas_lines(),
    ]
    print("\n".join(lines))
    return EXIT_OK


# ----------------------------------------------------------------------------- parser

def build_parser():
    parser = argparse.ArgumentParser(
        prog="python -m tinydgm",
        formatter_class=lambda prog: argparse.HelpFormatter(prog, max_help_position=28),
        description="tinydgm: deep generative models on a small, gradient-checked autodiff engine.")
    parser.add_argument("-V", "--version", action="version", version=f"tinydgm {tinydgm.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = sub.add_parser("demo", help="run the demo gallery (demos/*.py) and write figures",
                          description="Run every script of the repository's demos/ folder (one per model "
                                      "family) on embedded data and write its figures, reports and "
                                      "summary.json to DIR/<family>/, and all summaries to DIR/summary.json.")
    demo.add_argument("--out", default="tinydgm_out", metavar="DIR",
                      help="output folder (default: ./tinydgm_out)")
    demo.add_argument("--seed", type=int, default=0, metavar="N", help="random seed (default: 0)")
    demo.add_argument("--quick", action="store_true", help="fewer steps and points (a smoke test)")
    demo.add_argument("--device", default="cpu", choices=backend.DEVICES,
                      help="cpu (NumPy) or cuda (CuPy) (default: cpu)")
    demo.add_argument("--only", nargs="+", metavar="NAME", help="only these demos, e.g. --only engine flows")
    demo.set_defaults(handler=cmd_demo)

    check = sub.add_parser("gradcheck", help="check every op of the engine against finite differences",
                           description="Run the op catalogue through gradcheck and gradgradcheck "
                                       "(float64) and print a table; exit status 1 if any op fails.")
    check.add_argument("--device", default="cpu", choices=backend.DEVICES, help="device (default: cpu)")
    check.add_argument("--ops", nargs="+", metavar="NAME",
                       help="only these ops or variants, e.g. --ops add exp 'matmul[batched]'")
    check.add_argument("--first-order-only", action="store_true", help="skip gradgradcheck")
    check.set_defaults(handler=cmd_gradcheck)

    info = sub.add_parser("info", help="show versions, devices and BLAS threads",
                          description="Versions of tinydgm and its dependencies, the devices "
                                      "available and the BLAS thread pools.")
    info.set_defaults(handler=cmd_info)
    return parser


def main(argv=None):
    """Parse ``argv`` (default: sys.argv[1:]) and run the command; returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:          # --help, --version, usage errors
        return exit_.code if isinstance(exit_.code, int) else EXIT_USAGE
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    return args.handler(args)
