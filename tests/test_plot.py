"""tinydgm.plot: exact tiling, PNGs of the promised pixel size whose pixels show the data,
the density evaluated on the stated grid, training curves, headless operation, bad input."""
import os
import subprocess
import sys

import matplotlib.image as mpimg
import numpy as np
import pytest

import tinydgm as td
from tinydgm import plot

TOL = 2 / 255            # 8-bit PNG quantisation plus the colormap's 256-entry table: 2 levels


def _upscale(grid, scale):
    return np.repeat(np.repeat(grid, scale, axis=0), scale, axis=1)


# ----------------------------------------------------------------------------- tile_images

def test_tile_images_places_each_image_exactly():
    rng = np.random.default_rng(0)
    images = rng.random((5, 2, 3))
    grid = plot.tile_images(images, nrow=2, padding=1, pad_value=0.25)
    assert grid.shape == (3 * (2 + 1) + 1, 2 * (3 + 1) + 1)          # 3 rows of 2, 1-pixel padding
    mask = np.ones(grid.shape, bool)
    for k in range(5):
        top, left = 1 + (k // 2) * 3, 1 + (k % 2) * 4
        np.testing.assert_array_equal(grid[top:top + 2, left:left + 3], images[k])
        mask[top:top + 2, left:left + 3] = False
    assert np.all(grid[mask] == 0.25)             # padding and the empty sixth cell


def test_tile_images_defaults_and_padding_zero():
    images = np.arange(9 * 4, dtype=np.float64).reshape(9, 2, 2) / 35
    grid = plot.tile_images(images, padding=0)    # nrow = ceil(sqrt(9)) = 3
    np.testing.assert_array_equal(grid, images.reshape(3, 3, 2, 2).transpose(0, 2, 1, 3).reshape(6, 6))
    assert plot.tile_images(images[:2], nrow=10).shape == (4, 7)      # nrow is capped at N


def test_tile_images_layouts_dtypes_and_tensors():
    rng = np.random.default_rng(1)
    gray = rng.random((4, 5, 6))
    expected = plot.tile_images(gray)
    np.testing.assert_array_equal(plot.tile_images(gray[:, None]), expected)             # (N, 1, H, W)
    np.testing.assert_array_equal(plot.tile_images(gray[..., None]), expected)           # (N, H, W, 1)
    np.testing.assert_array_equal(plot.tile_images(td.tensor(gray, dtype="float64")), expected)

    rgb = rng.random((4, 5, 6, 3))
    colour = plot.tile_images(rgb, nrow=2)
    assert colour.shape == (2 * 6 + 1, 2 * 7 + 1, 3)
    np.testing.assert_array_equal(plot.tile_images(rgb.transpose(0, 3, 1, 2), nrow=2), colour)   # (N, 3, H, W)
    np.testing.assert_array_equal(colour[1:6, 8:14], rgb[1])

    pixels = rng.integers(0, 256, size=(2, 3, 3), dtype=np.uint8)
    np.testing.assert_array_equal(plot.tile_images(pixels, nrow=2, padding=0),
                                  np.concatenate(pixels / 255.0, axis=1))


@pytest.mark.parametrize("images, match", [
    (np.zeros((3, 4)), r"shape \(N, H, W\)"),
    (np.zeros((2, 2, 4, 4, 1)), "got shape"),
    (np.zeros((2, 2, 4, 4)), r"got shape \(2, 2, 4, 4\)"),           # 2 channels
    (np.zeros((0, 4, 4)), "no images"),
    (np.full((2, 3, 3), 1.5), r"in \[0, 1\]"),
    (np.full((2, 3, 3), -1.0), r"\(x \+ 1\) / 2"),
    (np.array([[[np.nan]]]), "NaN"),
    (np.zeros((2, 3, 3), dtype=complex), "dtype"),
])
def test_tile_images_rejects_bad_input(images, match):
    with pytest.raises((ValueError, TypeError), match=match):
        plot.tile_images(images)


def test_tile_images_rejects_bad_nrow_and_padding():
    with pytest.raises(ValueError, match="nrow"):
        plot.tile_images(np.zeros((2, 3, 3)), nrow=0)
    with pytest.raises(ValueError, match="padding"):
        plot.tile_images(np.zeros((2, 3, 3)), padding=-1)


# ----------------------------------------------------------------------------- image_grid

def test_image_grid_png_has_the_grid_pixels(tmp_path):
    rng = np.random.default_rng(2)
    images = rng.random((5, 4, 3))
    path = plot.image_grid(images, tmp_path / "deep" / "dir" / "grid.png", nrow=2, scale=3)
    assert path == os.fspath(tmp_path / "deep" / "dir" / "grid.png")
    png = mpimg.imread(path)
    grid = plot.tile_images(images, nrow=2)
    assert png.shape[:2] == (grid.shape[0] * 3, grid.shape[1] * 3)
    np.testing.assert_allclose(png[..., 0], _upscale(grid, 3), atol=TOL)
    np.testing.assert_array_equal(png[..., 0], png[..., 2])          # grey colormap


def test_image_grid_colour_title_and_default_scale(tmp_path):
    rng = np.random.default_rng(3)
    rgb = rng.random((3, 3, 5, 4))                                   # (N, 3, H, W)
    grid = plot.tile_images(rgb)
    png = mpimg.imread(plot.image_grid(rgb, tmp_path / "rgb.png", scale=2, title="samples"))
    band = plot.TITLE_PX
    assert png.shape[:2] == (grid.shape[0] * 2 + band, grid.shape[1] * 2)
    np.testing.assert_allclose(png[band:, :, :3], _upscale(grid, 2), atol=TOL)

    mnist_like = (rng.random((64, 1, 28, 28)) * 255).astype(np.uint8)
    png = mpimg.imread(plot.image_grid(mnist_like, tmp_path / "mnist.png"))
    side = 8 * 29 + 1
    assert png.shape[:2] == (side * (512 // side), side * (512 // side))


def test_wrap_title_breaks_long_titles_to_fit_the_width():
    title = "NADE: 36 samples after 20 epochs on 1000 binarized MNIST images (test NLL 120.3 nats)"
    wrapped = plot.wrap_title(title, 300)
    chars = int(300 / (plot.EM_WIDTH * 12 * plot.DPI / 72))
    lines = wrapped.split("\n")
    assert len(lines) > 1 and max(len(line) for line in lines) <= chars
    assert " ".join(lines) == title                                  # only spaces became breaks
    assert plot.wrap_title("short", 300) == "short"
    assert plot.wrap_title("a\nb", 300) == "a\nb"                  # breaks already there are kept


def test_image_grid_band_grows_with_the_wrapped_title(tmp_path):
    images = np.random.default_rng(5).random((4, 6, 6))
    grid = plot.tile_images(images, nrow=4)
    title = "a title far too long for a grid of four tiny images, so it must wrap"
    lines = plot.wrap_title(title, grid.shape[1] * 4 - 8).count("\n") + 1
    png = mpimg.imread(plot.image_grid(images, tmp_path / "t.png", nrow=4, scale=4, title=title))
    band = plot.TITLE_PX + plot.LINE_PX * (lines - 1)
    assert lines >= 3
    assert png.shape[:2] == (grid.shape[0] * 4 + band, grid.shape[1] * 4)
    np.testing.assert_allclose(png[band:, :, 0], _upscale(grid, 4), atol=TOL)   # the title stays in its band


# ----------------------------------------------------------------------------- densities

def _gaussian_log_p(points):
    return -0.5 * (points * points).sum(axis=1) - np.log(2 * np.pi)


def test_density_grid_evaluates_on_the_stated_grid():
    seen = []

    def log_p(points):
        assert isinstance(points, td.Tensor) and points.shape[1] == 2
        assert not td.is_grad_enabled()
        seen.append(points.numpy())
        return _gaussian_log_p(points)

    xs, ys, values = plot.density_grid(log_p, extent=(-1, 3, -2, 0), resolution=7, batch_size=10,
                                       dtype="float64")
    np.testing.assert_array_equal(xs, np.linspace(-1, 3, 7))
    np.testing.assert_array_equal(ys, np.linspace(-2, 0, 7))
    points = np.concatenate(seen)
    assert [len(s) for s in seen] == [10, 10, 10, 10, 9]             # chunks of batch_size
    grid_x, grid_y = np.meshgrid(xs, ys)
    np.testing.assert_array_equal(points, np.stack([grid_x.ravel(), grid_y.ravel()], 1))
    # values[i, j] = log p(xs[j], ys[i])
    expected = -0.5 * (xs[None, :] ** 2 + ys[:, None] ** 2) - np.log(2 * np.pi)
    np.testing.assert_allclose(values, expected, rtol=1e-12)


def test_density_2d_writes_png_with_samples(tmp_path):
    rng = np.random.default_rng(4)
    samples = rng.standard_normal((300, 2))
    path = plot.density_2d(_gaussian_log_p, tmp_path / "d" / "density.png", samples=td.tensor(samples),
                           extent=(-3, 3, -3, 3), resolution=50, title="N(0, I)")
    png = mpimg.imread(path)
    assert png.shape[:2] == (500, 500)
    assert png[..., :3].std() > 0.05                                   # not a blank canvas

    xs, ys, values = plot.density_grid(_gaussian_log_p, (-3, 3, -3, 3), 40)
    grid_path = plot.density_2d(values, tmp_path / "grid.png", extent=(-3, 3, -3, 3), size_px=300)
    assert mpimg.imread(grid_path).shape[:2] == (300, 300)


def test_density_2d_rejects_bad_input(tmp_path):
    out = tmp_path / "x.png"
    with pytest.raises(ValueError, match=r"samples must have shape \(M, 2\)"):
        plot.density_2d(_gaussian_log_p, out, samples=np.zeros((5, 3)), resolution=10)
    with pytest.raises(ValueError, match="one value per point"):
        plot.density_2d(lambda p: p, out, resolution=10)
    with pytest.raises(ValueError, match="NaN at 4 of"):
        plot.density_2d(np.array([[np.nan, np.nan], [np.nan, np.nan]]), out)
    with pytest.raises(ValueError, match="2-D array"):
        plot.density_2d(np.zeros(10), out)
    with pytest.raises(ValueError, match="extent"):
        plot.density_2d(_gaussian_log_p, out, extent=(1, -1, 0, 1))
    with pytest.raises(ValueError, match="resolution"):
        plot.density_grid(_gaussian_log_p, resolution=1)
    with pytest.raises(ValueError, match="nothing to show"):
        plot.density_2d(np.full((3, 3), -np.inf), out)
    assert not out.exists()


# ----------------------------------------------------------------------------- training curves

def _history(epochs=5, steps=20):
    rng = np.random.default_rng(5)
    loss = np.exp(-np.arange(epochs * steps) / 30) + 0.05 * rng.random(epochs * steps)
    return {"loss": loss, "lr": np.full(epochs * steps, 1e-3),
            "epoch_loss": loss.reshape(epochs, steps).mean(1),
            "valid_loss": loss.reshape(epochs, steps)[:, -1] + 0.1, "time": np.ones(epochs)}


def test_training_curves_png(tmp_path):
    path = plot.training_curves(_history(), tmp_path / "c" / "curves.png", title="run")
    png = mpimg.imread(path)
    assert png.shape[:2] == (450, 800)
    assert png[..., :3].std() > 0.01
    history = _history()
    history["valid_loss"] = np.full(5, np.nan)                          # fit without valid_data
    plot.training_curves(history, tmp_path / "no_valid.png")
    png = mpimg.imread(plot.training_curves(history, tmp_path / "small.png", keys="epoch_loss",
                                            size_px=(400, 300)))
    assert png.shape[:2] == (300, 400)


def test_training_curves_bad_input(tmp_path):
    with pytest.raises(KeyError, match="valid_loss"):
        plot.training_curves({"loss": np.ones(3)}, tmp_path / "x.png")
    with pytest.raises(ValueError, match="nothing to plot"):
        plot.training_curves({"loss": np.array([]), "valid_loss": np.array([])}, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


# ----------------------------------------------------------------------------- headless

def test_plotting_neither_imports_pyplot_nor_switches_the_backend(tmp_path):
    """A user's interactive backend stays selected; pyplot is never imported."""
    code = (
        "import sys, matplotlib, numpy as np\n"
        "matplotlib.rcParams['backend'] = 'svg'\n"              # stands in for a user's choice
        "from tinydgm import plot\n"
        f"plot.image_grid(np.zeros((4, 3, 3)), {str(tmp_path / 'g.png')!r})\n"
        "print(matplotlib.rcParams['backend'], 'matplotlib.pyplot' in sys.modules)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.split() == ["svg", "False"]
    assert (tmp_path / "g.png").exists()


# ----------------------------------------------------------------------------- normalised grids, chains

def test_grid_log_density_is_normalised_on_its_grid():
    xs, ys, log_p = plot.grid_log_density(lambda x: -(x * x).sum(axis=1) + 7.0, resolution=40, dtype="float64")
    cell = (xs[1] - xs[0]) * (ys[1] - ys[0])
    assert np.exp(log_p).sum() * cell == pytest.approx(1.0, rel=1e-10)
    # differences of log p are those of log f: only the constant changed
    assert log_p[3, 5] - log_p[20, 20] == pytest.approx(-(xs[5] ** 2 + ys[3] ** 2) + xs[20] ** 2 + ys[20] ** 2)


def test_chains_2d_draws_the_chains_with_a_legend(tmp_path):
    t = np.linspace(0, 1, 30)
    chains = np.stack([np.stack([3 * t - 1.5, 0 * t], 1), np.stack([0 * t, 3 * t - 1.5], 1)], axis=1)   # (30, 2, 2)
    path = plot.chains_2d(_gaussian_log_p, chains, tmp_path / "chains.png", extent=(-2, 2, -2, 2), resolution=30,
                          title="two straight chains")
    png = mpimg.imread(path)
    assert png.shape[:2] == (500, 500) and png[..., :3].std() > 0.05
    with pytest.raises(ValueError, match=r"chains_2d: chains must have shape \(T, C, 2\).*got shape \(30, 2\)"):
        plot.chains_2d(_gaussian_log_p, chains[:, 0], tmp_path / "bad.png")
