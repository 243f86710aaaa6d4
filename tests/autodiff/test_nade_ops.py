"""The fused NADE op (tinydgm/autodiff/nade_ops.py): equal to the readable composition in
NADE.logits_reference, gradient-checked to first and second order (x, W, c, V), the fused
backward equal to the differentiable one, float32 training steps equal to the reference."""
import numpy as np
import pytest

import tinydgm as td
from tinydgm import optim
from tinydgm.autodiff.nade_ops import _backward_ops, nade_logits
from tinydgm.models.autoregressive.nade import NADE


def _leaves(n=4, d=7, h=5, seed=0, real=False, device="cpu"):
    gen = np.random.default_rng(seed)
    x = (gen.random((n, d)) < 0.4).astype(np.float64)
    if real:
        x *= gen.normal(0, 1.0, (n, d))
    arrays = [x, gen.normal(0, 1.0, (d, h)), gen.normal(0, 1.0, h), gen.normal(0, 1.0, (d, h))]
    return [td.tensor(a, dtype="float64", device=device, requires_grad=k > 0 or real) for k, a in enumerate(arrays)]


def _model_with(W, c, V, b=None):
    model = NADE(W.shape[0], W.shape[1], dtype=W.dtype, device=W.device)
    model.W.data, model.c.data, model.V.data = W.data, c.data, V.data
    if b is not None:
        model.b.data = b
    return model


def test_op_equals_the_reference_composition(device):
    x, W, c, V = _leaves(5, 9, 4, seed=1, device=device)
    model = _model_with(W, c, V)
    np.testing.assert_allclose(nade_logits(x, W, c, V).numpy(), (model.logits_reference(x) - model.b).numpy(),
                               rtol=1e-12, atol=1e-12)


def test_gradients_equal_the_reference_composition(device):
    x, W, c, V = _leaves(5, 9, 4, seed=2, real=True, device=device)
    g = td.tensor(np.random.default_rng(3).normal(size=(5, 9)), dtype="float64", device=device)
    fused = td.grad(nade_logits(x, W, c, V), [x, W, c, V], grad_outputs=g)
    model = _model_with(W, c, V)
    model.W, model.c, model.V = W, c, V
    reference = td.grad(model.logits_reference(x), [x, W, c, V], grad_outputs=g)
    for a, b in zip(fused, reference):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-10, atol=1e-12)


def test_fused_backward_equals_the_differentiable_backward():
    """The kernel's gradients (no graph) and the engine-op gradients (create_graph) agree."""
    x, W, c, V = _leaves(6, 8, 5, seed=4, real=True)
    g = td.tensor(np.random.default_rng(5).normal(size=(6, 8)), dtype="float64")
    fused = td.grad(nade_logits(x, W, c, V), [x, W, c, V], grad_outputs=g)
    with td.no_grad():
        composed = _backward_ops(x, W, c, V, g)
    for a, b in zip(fused, composed):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-11, atol=1e-12)


@pytest.mark.parametrize("real", [False, True], ids=["binary-x", "real-x"])
def test_gradcheck(real):
    assert td.gradcheck(nade_logits, _leaves(3, 6, 4, seed=6, real=real))


@pytest.mark.parametrize("real", [False, True], ids=["binary-x", "real-x"])
def test_gradgradcheck(real):
    assert td.gradgradcheck(nade_logits, _leaves(3, 5, 3, seed=7, real=real))


def test_x_gets_no_gradient_unless_it_requires_one():
    x, W, c, V = _leaves(3, 5, 2, seed=8)
    nade_logits(x, W, c, V).sum().backward()
    assert x.grad is None and W.grad is not None and c.grad.shape == (2,)


def test_float32_training_steps_follow_the_reference():
    """Five Adam steps of a float32 NADE on binary data: fused and reference logits give the same losses."""
    gen = np.random.default_rng(9)
    x = td.tensor((gen.random((32, 30)) < 0.3).astype(np.float32))
    losses = {}
    for path in ("logits", "logits_reference"):
        model = NADE(30, 20, rng=td.rng(0))
        logits_fn = getattr(model, path)
        opt = optim.Adam(model.parameters(), lr=1e-2)
        losses[path] = []
        for _ in range(5):
            opt.zero_grad()
            loss = td.binary_cross_entropy_with_logits(logits_fn(x), x).sum(axis=1).mean()
            loss.backward()
            opt.step()
            losses[path].append(loss.item())
    assert losses["logits"][-1] < losses["logits"][0] - 0.5
    np.testing.assert_allclose(losses["logits"], losses["logits_reference"], rtol=1e-5)


def test_bad_arguments_raise():
    x, W, c, V = _leaves(2, 5, 3)
    with pytest.raises(ValueError, match=r"nade_logits: expected x \(N, D\), W \(D, H\), c \(H,\), V \(D, H\)"):
        nade_logits(x[:, :4], W, c, V)
    with pytest.raises(ValueError, match="nade_logits: c must have 1 dimensions"):
        nade_logits(x, W, V, V)
    with pytest.raises(TypeError, match="must share one dtype"):
        nade_logits(x.astype("float32"), W, c, V)
    with pytest.raises(TypeError, match="x must be floating"):
        nade_logits(td.tensor(np.zeros((2, 5), dtype=np.int64)), W, c, V)
