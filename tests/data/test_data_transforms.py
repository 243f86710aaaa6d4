"""tinydgm/data/transforms.py: binarization, dequantization, scaling, the logit transform
(inverse, log-det against the engine's brute-force Jacobian, gradcheck) and ``batches``."""
import math

import numpy as np
import pytest
from scipy import stats

import tinydgm as td
from tinydgm.data import transforms as T

PIXELS = np.arange(256, dtype=np.uint8)


# ----------------------------------------------------------------------------- generators

def test_as_generator():
    g = np.random.default_rng(0)
    assert T.as_generator(g) is g
    np.testing.assert_array_equal(T.as_generator(3).random(4), np.random.default_rng(3).random(4))
    td.seed(5)
    assert T.as_generator(None) is td.backend.default_generator()
    for bad in (0.5, True, "0", np.random.RandomState(0)):
        with pytest.raises(TypeError, match="rng must be a numpy.random.Generator"):
            T.as_generator(bad)


# ----------------------------------------------------------------------------- binarization

def test_dynamic_binarize_is_bernoulli_of_pixel_over_255():
    x = np.repeat(PIXELS[None], 4000, axis=0)                       # every gray level 4000 times
    b = T.dynamic_binarize(x, 0)
    assert b.shape == x.shape and b.dtype == np.uint8 and set(np.unique(b)) <= {0, 1}
    assert (b[:, 0] == 0).all() and (b[:, 255] == 1).all()          # p = 0 and p = 1 are exact
    p = PIXELS / 255
    z = (b.mean(axis=0) - p) / np.sqrt(np.maximum(p * (1 - p), 1e-12) / 4000)
    assert np.abs(z[1:-1]).max() < 5                                # each level's mean within 5 s.e.
    np.testing.assert_array_equal(b, T.dynamic_binarize(x, np.random.default_rng(0)))   # seeded
    rng = np.random.default_rng(0)
    assert not np.array_equal(T.dynamic_binarize(x, rng), T.dynamic_binarize(x, rng))  # fresh draws


def test_dynamic_binarize_takes_probabilities_and_dtype():
    p = np.array([[0.0, 0.25, 1.0]])
    b = T.dynamic_binarize(np.repeat(p, 20000, axis=0), 1, dtype=np.float32)
    assert b.dtype == np.float32
    np.testing.assert_allclose(b.mean(axis=0), [0.0, 0.25, 1.0], atol=0.01)
    # the same rule as for pixels: U < p with the same draws
    np.testing.assert_array_equal(T.dynamic_binarize(PIXELS, 2), T.dynamic_binarize(PIXELS / 255, 2))


@pytest.mark.parametrize("bad, match", [
    (np.array([0, 256]), r"integer pixels must lie in 0\.\.255, got range \[0, 256\]"),
    (np.array([-1, 3]), r"integer pixels must lie in 0\.\.255"),
    (np.array([0.5, 1.5]), r"floating pixels must lie in \[0, 1\], got range \[0\.5, 1\.5\]"),
    (np.array([0.5, np.nan]), r"floating pixels must lie in \[0, 1\]"),
])
def test_dynamic_binarize_rejects_out_of_range(bad, match):
    with pytest.raises(ValueError, match="dynamic_binarize: " + match):
        T.dynamic_binarize(bad, 0)
    with pytest.raises(TypeError, match="dynamic_binarize: expected integer pixels"):
        T.dynamic_binarize(np.array(["a"]), 0)


# ----------------------------------------------------------------------------- scaling

def test_scaling():
    y = T.scale_to_unit(PIXELS)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, PIXELS / 255, rtol=1e-7)
    assert y[0] == 0 and y[-1] == 1
    s = T.scale_to_symmetric(PIXELS, dtype="float64")
    assert s.dtype == np.float64 and s[0] == -1 and s[-1] == 1
    np.testing.assert_allclose(s, 2 * (PIXELS / 255) - 1)
    np.testing.assert_allclose(T.scale_to_symmetric(np.array([0.0, 0.25, 1.0])), [-1, -0.5, 1])
    np.testing.assert_allclose(T.symmetric_to_unit(s), PIXELS / 255)
    t = T.symmetric_to_unit(td.tensor(s))                           # also on Tensors
    assert isinstance(t, td.Tensor)
    np.testing.assert_allclose(t.numpy(), PIXELS / 255)
    with td.default_dtype("float64"):
        assert T.scale_to_unit(PIXELS).dtype == np.float64
    with pytest.raises(ValueError, match="expected a floating dtype, got int32"):
        T.scale_to_unit(PIXELS, dtype="int32")
    with pytest.raises(ValueError, match=r"scale_to_symmetric: integer pixels must lie in 0\.\.255"):
        T.scale_to_symmetric(np.array([300]))


# ----------------------------------------------------------------------------- dequantization

@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_uniform_dequantize_lands_in_each_pixels_bin(dtype):
    x = np.repeat(PIXELS[None], 500, axis=0)
    y = T.uniform_dequantize(x, 0, dtype=dtype)
    assert y.dtype == np.dtype(dtype) and y.shape == x.shape
    assert (np.floor(y.astype(np.float64) * 256) == x).all()      # y in [k/256, (k+1)/256)
    assert (y >= 0).all() and (y < 1).all()
    u = y.astype(np.float64) * 256 - x                              # the noise: U[0, 1)
    assert stats.kstest(u.ravel(), "uniform").pvalue > 1e-3
    np.testing.assert_array_equal(y, T.uniform_dequantize(x, np.random.default_rng(0), dtype=dtype))
    assert T.uniform_dequantize(x[:2]).dtype == np.float32         # default dtype


def test_uniform_dequantize_stays_below_the_next_bin_in_float32(monkeypatch):
    """u just below 1 makes (k + u)/256 round up to (k+1)/256 in float32: it is clamped."""
    class AlmostOne:
        def random(self, shape):
            return np.full(shape, np.nextafter(1.0, 0.0))
    monkeypatch.setattr(T, "as_generator", lambda rng: AlmostOne())
    y = T.uniform_dequantize(PIXELS, None, dtype="float32")
    assert (np.floor(y.astype(np.float64) * 256) == PIXELS).all() and y.max() < 1
    assert (y > (PIXELS + 0.999) / 256).all()


def test_uniform_dequantize_on_tensors(device):
    x = td.tensor(np.arange(6.0).reshape(2, 3) * 50, dtype="float64", device=device, requires_grad=True)
    y = T.uniform_dequantize(x, 4)
    assert isinstance(y, td.Tensor) and y.device == device and y.dtype == np.float64
    expected = T.uniform_dequantize(np.arange(6).reshape(2, 3) * 50, 4, dtype="float64")
    np.testing.assert_allclose(y.numpy(), expected, rtol=1e-15)      # the same noise as the NumPy path
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), np.full((2, 3), 1 / 256))
    assert T.uniform_dequantize(td.tensor([[3.0]]), 0).dtype == np.float32
    with pytest.raises(TypeError, match="a Tensor input must be floating"):
        T.uniform_dequantize(td.tensor(np.array([1, 2])), 0)
    with pytest.raises(TypeError, match="uniform_dequantize: expected integer pixels"):
        T.uniform_dequantize(np.array([0.5]), 0)
    with pytest.raises(ValueError, match=r"pixels must lie in 0\.\.255, got range \[0, 256\]"):
        T.uniform_dequantize(np.array([0, 256]), 0)


# ----------------------------------------------------------------------------- logit transform

def _unit(shape, seed=0):
    return np.random.default_rng(seed).uniform(0.001, 0.999, size=shape)


@pytest.mark.parametrize("alpha", [0.05, 0.0, 0.2])
def test_logit_transform_values_and_inverse(alpha, device):
    x = _unit((3, 2, 2, 2))
    y, log_det = T.logit_transform(td.tensor(x, dtype="float64", device=device), alpha)
    p = alpha + (1 - 2 * alpha) * x
    np.testing.assert_allclose(y.numpy(), np.log(p / (1 - p)), rtol=1e-12)
    expected = (np.log(1 - 2 * alpha) - np.log(p) - np.log(1 - p)).reshape(3, -1).sum(axis=1)
    assert log_det.shape == (3,)
    np.testing.assert_allclose(log_det.numpy(), expected, rtol=1e-12)
    x_back, inv_log_det = T.inverse_logit_transform(y, alpha)
    np.testing.assert_allclose(x_back.numpy(), x, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(inv_log_det.numpy(), -expected, rtol=1e-10)


def test_logit_transform_keeps_float32_and_takes_arrays():
    y, log_det = T.logit_transform(np.full((2, 3), 0.5, dtype=np.float32))
    assert isinstance(y, td.Tensor) and y.dtype == np.float32 and log_det.dtype == np.float32
    np.testing.assert_allclose(y.numpy(), 0.0, atol=1e-7)
    x, log_det = T.inverse_logit_transform(td.tensor([[40.0, -40.0]]), 0.05)   # far tails stay finite
    np.testing.assert_allclose(x.numpy(), [[0.95 / 0.9, -0.05 / 0.9]], rtol=1e-6)
    np.testing.assert_allclose(log_det.numpy(), [-80 - 2 * math.log(0.9)], rtol=1e-6)


def _brute_force_log_det(fn, x):
    """log|det J| per example from the engine's full Jacobian (N, D, N, D), which must be
    block diagonal across examples."""
    n = x.shape[0]
    jac = td.jacobian(lambda t: fn(t)[0].reshape(n, -1), td.tensor(x.reshape(n, -1), dtype="float64"))
    jac = np.asarray(jac)
    blocks = np.stack([jac[i, :, i, :] for i in range(n)])
    off = jac.copy()
    for i in range(n):
        off[i, :, i, :] = 0
    assert not off.any()                                            # examples do not interact
    return np.linalg.slogdet(blocks)[1]


def test_logit_transform_log_det_equals_the_jacobian():
    x = _unit((3, 5), seed=1)
    fwd = lambda t: T.logit_transform(t, 0.05)                      # noqa: E731
    np.testing.assert_allclose(fwd(td.tensor(x, dtype="float64"))[1].numpy(),
                               _brute_force_log_det(fwd, x), rtol=1e-10)
    y = np.random.default_rng(2).normal(scale=3.0, size=(3, 5))
    inv = lambda t: T.inverse_logit_transform(t, 0.05)               # noqa: E731
    np.testing.assert_allclose(inv(td.tensor(y, dtype="float64"))[1].numpy(),
                               _brute_force_log_det(inv, y), rtol=1e-10)


def test_logit_transform_gradcheck():
    x = td.tensor(_unit((2, 3), seed=3), dtype="float64", requires_grad=True)
    y = td.tensor(np.random.default_rng(4).normal(size=(2, 3)), dtype="float64", requires_grad=True)
    forward = lambda t: T.logit_transform(t, 0.05)                  # noqa: E731  (y, log_det)
    inverse = lambda t: T.inverse_logit_transform(t, 0.05)          # noqa: E731
    for fn, inputs in ((forward, [x]), (inverse, [y])):
        assert td.gradcheck(fn, inputs)
        assert td.gradgradcheck(fn, inputs)


def test_logit_transform_errors():
    with pytest.raises(ValueError, match=r"logit_transform: x must lie in \[0, 1\] .*got range \[-0\.1, 0\.5\]"):
        T.logit_transform(td.tensor([[-0.1, 0.5]]))
    with pytest.raises(ValueError, match=r"alpha must lie in \[0, 0\.5\), got 0\.5"):
        T.logit_transform(td.tensor([[0.5]]), alpha=0.5)
    with pytest.raises(ValueError, match="inverse_logit_transform: alpha"):
        T.inverse_logit_transform(td.tensor([[0.5]]), alpha=-0.1)
    with pytest.raises(TypeError, match="expected a floating Tensor, got dtype"):
        T.logit_transform(td.tensor(np.array([[0, 1]])))
    with pytest.raises(ValueError, match="expected a batch"):
        T.logit_transform(td.tensor(0.5))


# ----------------------------------------------------------------------------- batches

@pytest.mark.parametrize("n, batch_size, drop_last", [(10, 3, False), (10, 3, True), (12, 4, False),
                                                      (12, 4, True), (5, 8, False), (5, 8, True), (0, 2, False)])
def test_batches_cover_every_index_once(n, batch_size, drop_last):
    x = np.arange(n)
    out = list(T.batches(x, batch_size, rng=0, drop_last=drop_last))
    assert len(out) == T.n_batches(n, batch_size, drop_last)
    sizes = [len(b) for b in out]
    if drop_last:
        assert all(s == batch_size for s in sizes)
        seen = np.concatenate(out) if out else np.array([], int)
        assert len(np.unique(seen)) == len(seen) == n - n % batch_size
    else:
        assert all(s == batch_size for s in sizes[:-1]) and sum(sizes) == n
        np.testing.assert_array_equal(np.sort(np.concatenate(out) if out else x), x)
    if n > batch_size:
        assert not np.array_equal(np.concatenate(out), x[:sum(sizes)])     # shuffled


def test_batches_are_seeded_and_epochs_differ():
    x = np.arange(100)
    first = [b.copy() for b in T.batches(x, 16, rng=7)]
    again = list(T.batches(x, 16, rng=np.random.default_rng(7)))
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(np.concatenate(first), np.concatenate(list(T.batches(x, 16, rng=8))))
    rng = np.random.default_rng(7)
    epoch1 = np.concatenate(list(T.batches(x, 16, rng=rng)))
    epoch2 = np.concatenate(list(T.batches(x, 16, rng=rng)))
    assert not np.array_equal(epoch1, epoch2)
    np.testing.assert_array_equal(np.sort(epoch2), x)
    td.seed(3)
    a = np.concatenate(list(T.batches(x, 16)))
    td.seed(3)
    np.testing.assert_array_equal(a, np.concatenate(list(T.batches(x, 16))))


def test_batches_without_shuffle_are_ordered_views():
    x = np.arange(20.0).reshape(10, 2)
    out = list(T.batches(x, 4, shuffle=False))
    np.testing.assert_array_equal(np.concatenate(out), x)
    assert [len(b) for b in out] == [4, 4, 2] and all(np.shares_memory(b, x) for b in out)
    assert [len(b) for b in T.batches(x, 4, shuffle=False, drop_last=True)] == [4, 4]


def test_batches_of_tuples_keep_rows_together():
    images = np.arange(30.0).reshape(10, 3)
    labels = np.arange(10) * 10
    out = list(T.batches((images, labels), 4, rng=1))
    assert all(isinstance(b, tuple) and len(b) == 2 for b in out)
    for xb, yb in out:
        np.testing.assert_array_equal(xb[:, 0] / 3 * 10, yb)        # row i of each array belongs together
    np.testing.assert_array_equal(np.sort(np.concatenate([yb for _, yb in out])), labels)
    assert isinstance(next(T.batches([images, labels], 4, rng=1)), tuple)


def test_batches_errors():
    with pytest.raises(ValueError, match=r"batches: all arrays must have the same length "
                                         r"\(first dimension\), got lengths \[10, 9\]"):
        T.batches((np.zeros(10), np.zeros(9)), 2)
    with pytest.raises(ValueError, match="batches: x is an empty tuple"):
        T.batches((), 2)
    for bad in (0, -1, 2.0, True):
        with pytest.raises(ValueError, match="batch_size must be a positive integer"):
            T.batches(np.zeros(4), bad)


def test_log_det_of_dequantize_then_logit_counts_the_bits_per_dim_convention():
    """RealNVP's pipeline on one image: pixels -> (x + u)/256 -> logit. The Jacobian of the
    whole map from x + u is (1/256) * d logit/dy, so its log-det is the logit's minus D log 256."""
    x = np.random.default_rng(5).integers(0, 256, size=(2, 4))
    y = T.uniform_dequantize(x, 0, dtype="float64")
    _, log_det = T.logit_transform(td.tensor(y))
    xu = td.tensor(y * 256)
    full = _brute_force_log_det(lambda t: T.logit_transform(t / 256), xu.numpy())
    np.testing.assert_allclose(full, log_det.numpy() - 4 * math.log(256), rtol=1e-10)
