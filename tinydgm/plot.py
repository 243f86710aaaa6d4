"""Figures as PNG files: image grids, 2-D density heatmaps with samples, training curves.

    image_grid(model.sample(64, rng), "out/samples.png")            # (N, 1, 28, 28) in [0, 1]
    density_2d(flow.log_prob, "out/density.png", samples=x[:500], extent=(-4, 4, -4, 4))
    training_curves(history, "out/curves.png")
    chains_2d(log_p, chains, "out/chains.png")                      # MCMC paths over a 2-D density

Each function writes one PNG (creating its parent folders) and returns the path.

Headless by construction: this module never imports ``matplotlib.pyplot``. It draws on
a ``matplotlib.figure.Figure`` attached to the Agg canvas (``FigureCanvasAgg``) and saves
that. So it works on a server without a display, it does not switch matplotlib's global
backend (calling ``matplotlib.use("Agg")`` here would clobber the interactive backend of a
user who works in a notebook or with pyplot windows), and its figures never enter
pyplot's figure registry (no "too many open figures", nothing to close).

``tile_images`` (the grid as an array), ``density_grid`` (log densities on the grid),
``grid_log_density`` (an unnormalised 2-D log-density normalised on that grid) and
``wrap_title`` (a title broken into lines that fit the figure) are the pure functions
behind the pictures, for tests and for users who plot themselves. Every title is wrapped
to the figure's width, so long titles never run off the picture.
"""
import math
import os
import textwrap

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from tinydgm import backend
from tinydgm.autodiff.core import Tensor, no_grad, tensor

__all__ = ["image_grid", "tile_images", "density_2d", "density_grid", "grid_log_density", "training_curves",
           "chains_2d", "wrap_title"]

DPI = 100
TITLE_PX = 28          # the band above an image grid that holds a one-line title
LINE_PX = 21           # each further line of a wrapped title (12-point text, 1.2 line spacing, at 100 dpi)
EM_WIDTH = 0.55        # an average glyph's width, in units of the font size


def _cpu():
    """Plots are host data: the CPU array module."""
    return backend.module_for_device("cpu")


def _host(x):
    """A NumPy array from a Tensor, a NumPy/CuPy array or array-like data."""
    if isinstance(x, Tensor):
        return x.numpy()
    if backend.is_array(x):
        return backend.to_numpy(x)
    return _cpu().asarray(x)


def _new_figure(width_px, height_px):
    figure = Figure(figsize=(width_px / DPI, height_px / DPI), dpi=DPI)
    FigureCanvasAgg(figure)
    return figure


def wrap_title(text, width_px, fontsize=12):
    """``text`` broken at spaces into lines of at most width_px / (0.55 fontsize * dpi / 72)
    characters (an average glyph is about 0.55 em wide), so each line fits ``width_px``
    pixels; line breaks already in ``text`` are kept. Returns the text with newlines."""
    chars = max(12, int(width_px / (EM_WIDTH * fontsize * DPI / 72)))
    return "\n".join(line for part in str(text).split("\n") for line in (textwrap.wrap(part, chars) or [""]))


def _save(figure, path):
    path = os.fspath(path)
    directory = os.path.dirname(path)
    if directory:
        os.makedirs(directory, exist_ok=True)
    figure.savefig(path, format="png", dpi=DPI)
    return path


# ----------------------------------------------------------------------------- image grids

def _as_images(images, who):
    """(N, H, W) or (N, H, W, 3) float64 in [0, 1] from the accepted layouts and dtypes."""
    x = original = _host(images)
    if x.ndim == 4 and x.shape[1] in (1, 3):
        x = x.transpose(0, 2, 3, 1)                 # (N, C, H, W) -> (N, H, W, C); wins when ambiguous
    if x.ndim == 4 and x.shape[-1] == 1:
        x = x[..., 0]
    if not (x.ndim == 3 or (x.ndim == 4 and x.shape[-1] == 3)):
        raise ValueError(f"{who}: images must have shape (N, H, W), (N, 1, H, W), (N, 3, H, W) or (N, H, W, 3), "
                         f"got shape {tuple(original.shape)}")
    if x.shape[0] == 0 or x.shape[1] == 0 or x.shape[2] == 0:
        raise ValueError(f"{who}: no images to show (shape {tuple(original.shape)})")
    cpu = _cpu()
    if x.dtype == cpu.uint8:
        return x.astype(cpu.float64) / 255.0
    if x.dtype.kind == "b":
        return x.astype(cpu.float64)
    if x.dtype.kind not in "fiu":
        raise TypeError(f"{who}: images must be numbers (uint8 or floats in [0, 1]), got dtype {x.dtype}")
    x = x.astype(cpu.float64)
    if not cpu.isfinite(x).all():
        raise ValueError(f"{who}: images contain {int((~cpu.isfinite(x)).sum())} NaN or infinite values")
    low, high = float(x.min()), float(x.max())
    if low < -1e-6 or high > 1 + 1e-6:
        raise ValueError(f"{who}: float images must lie in [0, 1], got values in [{low:.4g}, {high:.4g}] "
                         "(rescale [-1, 1] data with (x + 1) / 2, or pass uint8)")
    return cpu.clip(x, 0.0, 1.0)


def tile_images(images, nrow=None, padding=1, pad_value=1.0):
    """The images tiled row by row into one array, ``nrow`` images per row (default
    ceil(sqrt(N))), with ``padding`` pixels of ``pad_value`` around and between them.

    Image k sits at grid row k // nrow, column k % nrow, i.e. at pixel
    (padding + (k // nrow) (H + padding), padding + (k % nrow) (W + padding)).
    Returns float64 in [0, 1] of shape (rows (H + p) + p, nrow (W + p) + p), with a last
    axis of 3 for colour images. Accepts the layouts and dtypes of ``image_grid``.
    """
    x = _as_images(images, "tile_images")
    n, h, w = x.shape[:3]
    if nrow is None:
        nrow = math.ceil(math.sqrt(n))
    if isinstance(nrow, bool) or not isinstance(nrow, int) or nrow < 1:
        raise ValueError(f"tile_images: nrow must be an integer >= 1, got {nrow!r}")
    if isinstance(padding, bool) or not isinstance(padding, int) or padding < 0:
        raise ValueError(f"tile_images: padding must be an integer >= 0, got {padding!r}")
    nrow = min(nrow, n)
    rows = math.ceil(n / nrow)
    p = padding
    grid = _cpu().full((rows * (h + p) + p, nrow * (w + p) + p) + x.shape[3:], float(pad_value))
    for k in range(n):
        top, left = p + (k // nrow) * (h + p), p + (k % nrow) * (w + p)
        grid[top:top + h, left:left + w] = x[k]
    return grid


def image_grid(images, path, nrow=None, title=None, cmap="gray", scale=None, padding=1, pad_value=1.0):
    """Save the images as one grid (see ``tile_images``) to the PNG ``path``.

    images: (N, H, W), (N, 1, H, W), (N, 3, H, W) or (N, H, W, 3), as an array or Tensor,
    floats in [0, 1] or uint8. Each image pixel becomes ``scale`` x ``scale`` PNG pixels
    (default: the largest integer that keeps the grid within about 512 pixels, at least 1),
    so the PNG is exactly (grid height * scale [+ a title band]) x (grid width * scale); the
    title is wrapped to the width (``wrap_title``) and its band is 28 pixels for one line
    plus 21 for each further line. ``cmap`` colours grey-scale images. Returns ``path``.
    """
    grid = tile_images(images, nrow, padding, pad_value)
    gh, gw = grid.shape[:2]
    if scale is None:
        scale = max(1, 512 // max(gh, gw))
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
        raise ValueError(f"image_grid: scale must be an integer >= 1, got {scale!r}")
    width = gw * scale
    if title:
        title = wrap_title(title, width - 8)
    band = TITLE_PX + LINE_PX * title.count("\n") if title else 0
    height = gh * scale + band
    figure = _new_figure(width, height)
    ax = figure.add_axes((0.0, 0.0, 1.0, gh * scale / height))
    ax.imshow(grid, cmap=cmap if grid.ndim == 2 else None, vmin=0.0, vmax=1.0,
              interpolation="nearest", aspect="auto")
    ax.set_axis_off()
    if title:
        figure.text(0.5, 1.0 - 0.5 * band / height, title, ha="center", va="center", fontsize=12)
    return _save(figure, path)


# ----------------------------------------------------------------------------- 2-D densities

def _check_extent(extent, who):
    try:
        x0, x1, y0, y1 = (float(v) for v in extent)
    except (TypeError, ValueError):
        raise ValueError(f"{who}: extent must be four numbers (x_min, x_max, y_min, y_max), got {extent!r}") from None
    if not (x0 < x1 and y0 < y1) or not all(math.isfinite(v) for v in (x0, x1, y0, y1)):
        raise ValueError(f"{who}: extent must satisfy x_min < x_max and y_min < y_max (finite), got {extent!r}")
    return x0, x1, y0, y1


def density_grid(log_density_fn, extent=(-4.0, 4.0, -4.0, 4.0), resolution=200, batch_size=65536,
                 dtype=None, device=None):
    """Evaluate ``log_density_fn`` on a ``resolution`` x ``resolution`` grid over ``extent``.

    xs = linspace(x_min, x_max, resolution), ys = linspace(y_min, y_max, resolution); the
    function receives Tensors of points (M, 2) (columns x, y; in ``dtype``, default the
    default float dtype, on ``device``), under no_grad, at most ``batch_size`` at a time,
    and returns M log densities (a Tensor or array). Returns (xs, ys, log_p) with
    log_p[i, j] = log p(xs[j], ys[i]) (rows follow y, as an image with origin "lower").
    """
    x0, x1, y0, y1 = _check_extent(extent, "density_grid")
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 2:
        raise ValueError(f"density_grid: resolution must be an integer >= 2, got {resolution!r}")
    cpu = _cpu()
    xs, ys = cpu.linspace(x0, x1, resolution), cpu.linspace(y0, y1, resolution)
    grid_x, grid_y = cpu.meshgrid(xs, ys)
    points = cpu.stack([grid_x.ravel(), grid_y.ravel()], axis=1)
    dtype = backend.get_default_dtype() if dtype is None else dtype
    values = []
    with no_grad():
        for start in range(0, len(points), batch_size):
            chunk = points[start:start + batch_size]
            out = _host(log_density_fn(tensor(chunk, dtype=dtype, device=device)))
            if out.shape != (len(chunk),):
                raise ValueError(f"density_grid: log_density_fn must return one value per point, shape "
                                 f"({len(chunk)},), got shape {tuple(out.shape)}")
            values.append(out.astype(cpu.float64))
    return xs, ys, cpu.concatenate(values).reshape(resolution, resolution)


def density_2d(log_density, path, samples=None, extent=(-4.0, 4.0, -4.0, 4.0), resolution=200, title=None,
               cmap="viridis", size_px=500):
    """Heatmap of p = exp(log p) over ``extent`` with ``samples`` (M, 2) overlaid; a
    ``size_px`` x ``size_px`` PNG at ``path``. Returns ``path``.

    log_density: a function of a (M, 2) Tensor of points (see ``density_grid``), or the
    log densities already evaluated on a grid, shape (ny, nx), rows following y from
    y_min to y_max. Unnormalised log densities are fine: the picture shows
    exp(log p - max log p), the density up to a constant (no overflow).
    """
    x0, x1, y0, y1 = _check_extent(extent, "density_2d")
    cpu = _cpu()
    if callable(log_density):
        log_p = density_grid(log_density, extent, resolution)[2]
    else:
        log_p = _host(log_density).astype(cpu.float64)
        if log_p.ndim != 2 or min(log_p.shape) < 2:
            raise ValueError("density_2d: grid values must be a 2-D array (ny, nx) with at least 2 points per "
                             f"axis, got shape {tuple(log_p.shape)}")
    if cpu.isnan(log_p).any():
        raise ValueError(f"density_2d: the log density is NaN at {int(cpu.isnan(log_p).sum())} of "
                         f"{log_p.size} grid points")
    top = log_p.max()
    if not cpu.isfinite(top):
        raise ValueError(f"density_2d: the log density's maximum on the grid is {top}; nothing to show")
    if samples is not None:
        samples = _host(samples)
        if samples.ndim != 2 or samples.shape[1] != 2:
            raise ValueError(f"density_2d: samples must have shape (M, 2), got shape {tuple(samples.shape)}")

    figure = _new_figure(size_px, size_px)
    ax = figure.add_subplot()
    ax.imshow(cpu.exp(log_p - top), origin="lower", extent=(x0, x1, y0, y1), cmap=cmap, aspect="auto",
              interpolation="nearest")
    if samples is not None and len(samples):
        ax.scatter(samples[:, 0], samples[:, 1], s=3, c="white", alpha=0.6, linewidths=0)
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_xlabel("$x_1$")
    ax.set_ylabel("$x_2$")
    if title:
        ax.set_title(wrap_title(title, 0.8 * size_px, fontsize=11), fontsize=11)
    figure.tight_layout()
    return _save(figure, path)


def grid_log_density(log_f, extent=(-4.0, 4.0, -4.0, 4.0), resolution=100, dtype=None, device=None):
    """An unnormalised 2-D log-density log f (a function of a (M, 2) Tensor, e.g. an EBM's
    f = -E) normalised on the ``density_grid`` grid:

        log p = log f - log( sum_grid f * cell area ),

    a Riemann sum for Z = integral of f over ``extent`` (the mass outside is ignored).
    Returns (xs, ys, log_p (ny, nx)), so exp(log_p) sums to 1 / cell area."""
    xs, ys, log_f_grid = density_grid(log_f, extent, resolution, dtype=dtype, device=device)
    cell = (xs[1] - xs[0]) * (ys[1] - ys[0])
    top = log_f_grid.max()
    log_z = top + math.log(float(_cpu().exp(log_f_grid - top).sum()) * cell)
    return xs, ys, log_f_grid - log_z


def chains_2d(log_density, chains, path, extent=(-4.0, 4.0, -4.0, 4.0), resolution=150, title=None,
              max_chains=8, size_px=500):
    """MCMC trajectories over a 2-D density: the density exp(log p) as a heatmap (as in
    ``density_2d``) and the first ``max_chains`` chains of ``chains`` (T, C, 2) as lines,
    each chain's start a circle and its end a cross (named in the legend). ``log_density``:
    a function of a (M, 2) Tensor or the grid values (ny, nx). Returns ``path``."""
    x0, x1, y0, y1 = _check_extent(extent, "chains_2d")
    chains = _host(chains)
    if chains.ndim != 3 or chains.shape[2] != 2 or chains.shape[0] < 1:
        raise ValueError(f"chains_2d: chains must have shape (T, C, 2) with T >= 1, got shape {tuple(chains.shape)}")
    cpu = _cpu()
    log_p = density_grid(log_density, extent, resolution)[2] if callable(log_density) else _host(log_density)
    figure = _new_figure(size_px, size_px)
    ax = figure.add_subplot()
    ax.imshow(cpu.exp(log_p - log_p.max()), origin="lower", extent=(x0, x1, y0, y1), cmap="viridis",
              aspect="auto", interpolation="nearest")
    for c in range(min(max_chains, chains.shape[1])):
        path_c = chains[:, c]
        line, = ax.plot(path_c[:, 0], path_c[:, 1], lw=0.8, alpha=0.9)
        ax.plot(path_c[0, 0], path_c[0, 1], "o", color=line.get_color(), ms=5, mec="white", mew=0.6)
        ax.plot(path_c[-1, 0], path_c[-1, 1], "X", color=line.get_color(), ms=8, mec="white", mew=0.6)
    # the legend names the markers once, in neutral colours (each chain keeps its own colour)
    ax.plot([], [], "o", color="0.5", mec="white", label="start of a chain")
    ax.plot([], [], "X", color="0.5", mec="white", ms=8, label="end of a chain")
    ax.legend(loc="upper right", fontsize=8, framealpha=0.8)
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_xlabel("$x_1$")
    ax.set_ylabel("$x_2$")
    if title:
        ax.set_title(wrap_title(title, 0.8 * size_px, fontsize=11), fontsize=11)
    figure.tight_layout()
    return _save(figure, path)


# ----------------------------------------------------------------------------- training curves

def _moving_average(values, window):
    cpu = _cpu()
    sums = cpu.cumsum(cpu.concatenate([[0.0], values]))
    return (sums[window:] - sums[:-window]) / window


def training_curves(history, path, keys=("loss", "valid_loss"), title=None, size_px=(800, 450)):
    """Plot the history of ``train.fit`` (a dict of arrays) against the step; a PNG of
    ``size_px`` (width, height). Returns ``path``.

    A series as long as history["loss"] is per step: drawn faintly and as a moving
    average over ~2% of the run. Any other series is per epoch and drawn at the step
    where each epoch ended (``(e + 1) * steps / epochs``). All-NaN series (valid_loss of
    a run without validation data) are skipped; a key that is missing raises KeyError.
    """
    if isinstance(keys, str):
        keys = (keys,)
    missing = [k for k in keys if k not in history]
    if missing:
        raise KeyError(f"training_curves: history has no {missing} (it has {sorted(history)})")
    cpu = _cpu()
    series = {k: _host(history[k]).astype(cpu.float64).ravel() for k in keys}
    steps = len(_host(history["loss"]).ravel()) if "loss" in history else None
    drawable = {k: v for k, v in series.items() if len(v) and not cpu.isnan(v).all()}
    if not drawable:
        raise ValueError(f"training_curves: nothing to plot: {list(keys)} are empty or all NaN")

    figure = _new_figure(*size_px)
    ax = figure.add_subplot()
    for k, v in drawable.items():
        n = len(v)
        if steps is None:
            ax.plot(cpu.arange(1, n + 1), v, marker="o" if n < 50 else None, label=k)
        elif n == steps:
            x = cpu.arange(1, n + 1)
            window = max(1, n // 50)
            line, = ax.plot(x, v, alpha=0.25, linewidth=0.8)
            ax.plot(x[window - 1:], _moving_average(v, window), color=line.get_color(),
                    label=k if window == 1 else f"{k} (moving average of {window})")
        else:
            x = cpu.arange(1, n + 1) * (steps / n)
            ax.plot(x, v, marker="o", markersize=3, label=k)
    ax.set_xlabel("step" if steps is not None else "index")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    ax.legend()
    if title:
        ax.set_title(wrap_title(title, 0.85 * size_px[0], fontsize=11), fontsize=11)
    figure.tight_layout()
    return _save(figure, path)


# ----------------------------------------------------------------------------- RBM filters and samples

__all__ += ["filter_images", "rbm_filters", "rbm_samples"]


def filter_images(W, image_shape=(28, 28), n=100):
    """The first ``n`` hidden units' weight vectors (columns of W (D, H), D = prod(image_shape))
    as images (n, *image_shape) in [0, 1], each rescaled by its own min and max (a constant
    filter becomes 0.5): what an RBM's hidden units respond to."""
    w = _host(W)
    if w.ndim != 2 or w.shape[0] != math.prod(image_shape):
        raise ValueError(f"filter_images: W must have shape (D, H) with D = prod(image_shape) = "
                         f"{math.prod(image_shape)}, got shape {tuple(w.shape)}")
    w = w[:, :n].T.astype(_cpu().float64)
    low, high = w.min(axis=1, keepdims=True), w.max(axis=1, keepdims=True)
    span = high - low
    safe = _cpu().where(span > 0, span, 1.0)
    x = _cpu().where(span > 0, (w - low) / safe, 0.5)
    return x.reshape((-1,) + tuple(image_shape))


def rbm_filters(model_or_W, path, image_shape=(28, 28), n=100, title="RBM filters", scale=3):
    """A PNG grid of the first ``n`` filters (columns of W) of an RBM (a model with ``W``, e.g.
    ``BernoulliRBM``, or the array W (D, H)), each pixel ``scale`` x ``scale`` PNG pixels
    (3 by default: 100 MNIST filters make an 873-pixel square). Returns ``path``."""
    W = getattr(model_or_W, "W", model_or_W)
    return image_grid(filter_images(W, image_shape, n), path, title=title, scale=scale)


def rbm_samples(model, path, n=64, rng=None, k=1000, image_shape=(28, 28), title="RBM samples", scale=None):
    """A PNG grid of ``n`` samples of ``model.sample(n, rng, k=k, mean=True)`` (the last
    p(v = 1 | h) of each Gibbs chain: BernoulliRBM, DBN, DBM), shown as images. Returns ``path``."""
    x = _host(model.sample(n, rng, k=k, mean=True))
    return image_grid(x.reshape((-1,) + tuple(image_shape)), path, title=title, scale=scale)
