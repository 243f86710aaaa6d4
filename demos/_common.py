"""What every demo script shares, none of it about a model: the command line, the device,
the output folder, figure titles and summary.json.

Every script in demos/ (a file not starting with "_") has the same small interface, which
``python -m tinydgm demo`` relies on to find and run it:

    def run(out_dir, seed, quick, device, log):   # writes its files into out_dir (a Path),
        ...                                       # logs one line per result with log(str),
        return {"files": [...], ...}              # and returns a JSON-able summary

    def main(argv=None):                          # python demos/<family>.py [options]
        return _common.main(run, __doc__, argv)

``main`` parses ``[--device cpu|cuda] [--quick] [--out DIR] [--seed N]``, stops at once
(exit status 2, with the install hint) when ``--device cuda`` cannot run, runs ``run`` and
writes its summary, with the options, the seconds and the file names, to DIR/summary.json.
"""
import argparse
import contextlib
import json
import math
import sys
import time
from pathlib import Path

from tinydgm import backend
from tinydgm.plot import wrap_title

__all__ = ["QUICK_MARK", "main", "parse_args", "device_error", "title", "figure", "suptitle", "save", "one_blas_thread",
           "write_summary", "finite", "collect", "host"]

QUICK_MARK = "quick (smoke test)"
EXIT_OK, EXIT_USAGE = 0, 2


def parse_args(argv, description, name):
    parser = argparse.ArgumentParser(prog=f"python demos/{name}.py", description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=backend.DEVICES,
                        help="cpu (NumPy) or cuda (CuPy); default cpu")
    parser.add_argument("--quick", action="store_true",
                        help=f"a few steps of everything: a smoke test (titles say '{QUICK_MARK}')")
    parser.add_argument("--out", default=f"demo_out/{name}", metavar="DIR",
                        help=f"output folder (default: ./demo_out/{name})")
    parser.add_argument("--seed", type=int, default=0, metavar="N", help="random seed (default: 0)")
    return parser.parse_args(argv)


def device_error(device):
    """None when ``device`` can run, else the message (for cuda without CuPy: the install hint)."""
    try:
        backend.module_for_device(device)
    except (RuntimeError, ValueError) as err:
        return str(err)
    return None


def main(run, doc, argv=None, name=None):
    """The command line of a demo script: parse, check the device, run, write summary.json.
    Returns the exit status (0, or 2 when the device cannot run)."""
    name = name or Path(sys.modules[run.__module__].__file__).stem
    args = parse_args(argv, doc.split("\n\n")[0], name)
    error = device_error(args.device)
    if error:
        print(f"demos/{name}.py: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    print(f"demos/{name}.py: writing to {out_dir.resolve()} on {args.device}"
          + (f" ({QUICK_MARK})" if args.quick else ""))
    start = time.perf_counter()
    summary = run(out_dir, args.seed, args.quick, args.device, print)
    seconds = time.perf_counter() - start
    write_summary(out_dir, {"demo": name, "seed": args.seed, "quick": args.quick, "device": args.device,
                            "seconds": round(seconds, 2), **summary})
    print(f"demos/{name}.py: done in {seconds:.1f} s: " + ", ".join(summary["files"]) + ", summary.json")
    return EXIT_OK


# ----------------------------------------------------------------------------- figures

def title(text, quick):
    """A figure title; in a quick run it starts with "quick (smoke test):" so nobody takes a
    few steps of training for a result."""
    return f"{QUICK_MARK}: {text}" if quick else text


def figure(width, height):
    """A matplotlib Figure (inches at 100 dpi) on the Agg canvas: no pyplot, no display."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def suptitle(fig, text, fontsize=12):
    """The figure's title, wrapped to its width."""
    fig.suptitle(wrap_title(text, fig.get_figwidth() * fig.dpi * 0.95, fontsize), fontsize=fontsize)


def save(fig, path):
    fig.savefig(path)
    return Path(path).name


@contextlib.contextmanager
def one_blas_thread():
    """Limit BLAS to one thread where threadpoolctl is installed: the 2-D toys multiply tiny
    matrices, where threads only add contention (a no-op without threadpoolctl)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield
        return
    with threadpool_limits(1):
        yield


def host(x):
    """A NumPy array from a Tensor or a NumPy/CuPy array (a model's samples, for the figures)."""
    return x.numpy() if hasattr(x, "numpy") else backend.to_numpy(x)


# ----------------------------------------------------------------------------- summary

def collect(parts):
    """One summary from the parts of a demo ({part: summary}): each part lists the figures it
    drew ("figures": {file name: title}) and any other files ("files"); the result lists
    them all, "files" in the order written and "figures" with their titles (so tests and
    readers can check what each picture claims)."""
    files, figures = [], {}
    for part in parts.values():
        drawn, listed = part.pop("figures", {}), part.pop("files", [])
        files += listed + [name for name in drawn if name not in listed]
        figures.update(drawn)
    return {**parts, "files": files, "figures": figures}


def finite(value):
    """A float for summary.json (NaN and infinities become None, which JSON can hold)."""
    value = float(value)
    return value if math.isfinite(value) else None


def _plain(obj):
    if hasattr(obj, "tolist"):                     # NumPy/CuPy scalars and arrays
        return obj.tolist()
    raise TypeError(f"summary.json: cannot write {type(obj).__name__}")


def write_summary(out_dir, summary):
    path = Path(out_dir) / "summary.json"
    path.write_text(json.dumps(summary, indent=2, default=_plain, allow_nan=False) + "\n")
    return path
