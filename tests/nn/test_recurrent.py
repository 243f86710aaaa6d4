"""LSTM and GRU cells and sequence layers: the fused gate ops against their readable
engine-op versions (values, gradients, second derivatives), gradcheck and gradgradcheck of
cells and sequence layers w.r.t. inputs, states and weights, PyTorch's cells and layers with
the same weights (values, gradients, a Hessian-vector product) where torch is installed,
and the errors for bad shapes."""
import numpy as np
import pytest

import tinydgm as td
from tinydgm.nn.recurrent import (GRU, LSTM, GRUCell, LSTMCell, gru_gates, gru_gates_reference, lstm_gates,
                                  lstm_gates_reference, lstm_sequence, lstm_sequence_reference)


def f64(a, requires_grad=True):
    return td.tensor(a, dtype="float64", requires_grad=requires_grad)


def randn(*shape, seed=0, scale=1.0):
    return f64(scale * np.random.default_rng(seed).standard_normal(shape))


def with_weights(module, names, fn):
    """fn() with the module's named parameters replaced by gradcheck's inputs."""
    def call(*values):
        saved = {name: getattr(module, name) for name in names}
        for name, value in zip(names, values):
            object.__setattr__(module, name, value)
        try:
            return fn()
        finally:
            for name, value in saved.items():
                object.__setattr__(module, name, value)
    return call


def grads(y, xs, v):
    """d<v, y>/dx for each x (first order, no graph)."""
    return [g.numpy() for g in td.grad(y, xs, grad_outputs=f64(v, False))]


# ----------------------------------------------------------------------------- fused ops == readable ops

def test_lstm_gates_equal_the_readable_version_to_second_order():
    a, c = randn(3, 8, seed=1), randn(3, 2, seed=2)
    for fused, reference in [(lstm_gates(a, c), lstm_gates_reference(a, c))]:
        for y, y_ref in zip(fused, reference):
            np.testing.assert_allclose(y.numpy(), y_ref.numpy(), rtol=1e-13, atol=1e-14)
    v = np.random.default_rng(3).standard_normal((3, 2))
    for k in range(2):                                    # through h' and through c'
        fused = grads(lstm_gates(a, c)[k], [a, c], v)
        reference = grads(lstm_gates_reference(a, c)[k], [a, c], v)
        for g, g_ref in zip(fused, reference):
            np.testing.assert_allclose(g, g_ref, rtol=1e-12, atol=1e-14)
    td.gradcheck(lambda a, c: lstm_gates(a, c), [a, c])
    td.gradgradcheck(lambda a, c: lstm_gates(a, c), [a, c])


def test_gru_gates_equal_the_readable_version_to_second_order():
    x_proj, s, h = randn(3, 6, seed=4), randn(3, 6, seed=5), randn(3, 2, seed=6)
    np.testing.assert_allclose(gru_gates(x_proj, s, h).numpy(), gru_gates_reference(x_proj, s, h).numpy(),
                               rtol=1e-13, atol=1e-14)
    v = np.random.default_rng(7).standard_normal((3, 2))
    for g, g_ref in zip(grads(gru_gates(x_proj, s, h), [x_proj, s, h], v),
                        grads(gru_gates_reference(x_proj, s, h), [x_proj, s, h], v)):
        np.testing.assert_allclose(g, g_ref, rtol=1e-12, atol=1e-14)
    td.gradcheck(gru_gates, [x_proj, s, h])
    td.gradgradcheck(gru_gates, [x_proj, s, h])


def test_lstm_sequence_equals_the_step_by_step_loop():
    x_proj, h0, c0, w = randn(2, 5, 12, seed=8), randn(2, 3, seed=9), randn(2, 3, seed=10), randn(3, 12, seed=11)
    inputs = [x_proj, h0, c0, w]
    hs, c = lstm_sequence(*inputs)
    hs_ref, c_ref = lstm_sequence_reference(*inputs)
    np.testing.assert_allclose(hs.numpy(), hs_ref.numpy(), rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(c.numpy(), c_ref.numpy(), rtol=1e-13, atol=1e-14)
    # the array BPTT of the fused op == the engine's backward through the reference loop
    v_hs, v_c = np.random.default_rng(12).standard_normal((2, 5, 3)), np.random.default_rng(13).standard_normal((2, 3))
    fused = td.grad([hs, c], inputs, [f64(v_hs, False), f64(v_c, False)])
    reference = td.grad([hs_ref, c_ref], inputs, [f64(v_hs, False), f64(v_c, False)])
    for g, g_ref in zip(fused, reference):
        np.testing.assert_allclose(g.numpy(), g_ref.numpy(), rtol=1e-12, atol=1e-13)
    td.gradcheck(lstm_sequence, inputs)
    td.gradgradcheck(lstm_sequence, inputs)


def test_lstm_sequence_backward_needs_only_the_final_cell():
    """A loss of c_T alone (the outputs h_1..T dropped before backward) still differentiates."""
    x_proj, h0, c0, w = randn(2, 3, 8, seed=19), randn(2, 2, seed=20), randn(2, 2, seed=21), randn(2, 8, seed=22)
    c = lstm_sequence(x_proj, h0, c0, w)[1]
    g = td.grad(c.sum(), [x_proj, w])
    c_ref = lstm_sequence_reference(x_proj, h0, c0, w)[1]
    for a, b in zip(g, td.grad(c_ref.sum(), [x_proj, w])):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-12, atol=1e-14)


def test_lstm_sequence_second_order_uses_every_input():
    """With create_graph the fused op differentiates the reference loop: a Hessian-vector
    product w.r.t. W_hh against central differences of the first-order gradient."""
    x_proj, h0, c0, w = randn(2, 4, 8, seed=14), randn(2, 2, seed=15), randn(2, 2, seed=16), randn(2, 8, seed=17)
    u = np.random.default_rng(18).standard_normal(w.shape)

    def gradient(w_value):
        w_t = f64(w_value)
        hs, c = lstm_sequence(x_proj, h0, c0, w_t)
        return td.grad((hs ** 2).sum() + c.sum(), w_t)[0].numpy()

    hs, c = lstm_sequence(x_proj, h0, c0, w)
    g, = td.grad((hs ** 2).sum() + c.sum(), w, create_graph=True)
    hvp = td.grad((g * f64(u, False)).sum(), w)[0].numpy()
    eps = 1e-6
    numeric = (gradient(w.numpy() + eps * u) - gradient(w.numpy() - eps * u)) / (2 * eps)
    np.testing.assert_allclose(hvp, numeric, rtol=1e-6, atol=1e-8)
    assert np.abs(hvp).max() > 1e-3


# ----------------------------------------------------------------------------- cells and layers: derivatives

@pytest.mark.parametrize("cell_type", [LSTMCell, GRUCell])
def test_cells_pass_gradcheck_and_gradgradcheck(cell_type):
    cell = cell_type(3, 2, rng=np.random.default_rng(0), dtype="float64")
    x, h, c = randn(4, 3, seed=1), randn(4, 2, seed=2), randn(4, 2, seed=3)
    names = [name for name, _ in cell.named_parameters()]
    weights = [f64(p.numpy()) for _, p in cell.named_parameters()]
    if cell_type is LSTMCell:
        fn = lambda x, h, c, *w: with_weights(cell, names, lambda: cell(x, (h, c)))(*w)     # noqa: E731
        inputs = [x, h, c, *weights]
    else:
        fn = lambda x, h, *w: with_weights(cell, names, lambda: cell(x, h))(*w)            # noqa: E731
        inputs = [x, h, *weights]
    td.gradcheck(fn, inputs)
    td.gradgradcheck(fn, inputs)


@pytest.mark.parametrize("layer_type", [LSTM, GRU])
def test_sequence_layers_pass_gradcheck_and_gradgradcheck(layer_type):
    layer = layer_type(3, 2, rng=np.random.default_rng(1), dtype="float64")
    x, h = randn(2, 4, 3, seed=4), randn(2, 2, seed=5)
    names = [name.split(".")[-1] for name, _ in layer.named_parameters()]
    weights = [f64(p.numpy()) for _, p in layer.named_parameters()]

    def fn(x, h, *w):
        def run():
            state = (h, td.tanh(h)) if layer_type is LSTM else h
            outputs, final = layer(x, state)
            return outputs, (final[1] if layer_type is LSTM else final)
        return with_weights(layer.cell, names, run)(*w)
    td.gradcheck(fn, [x, h, *weights])
    td.gradgradcheck(fn, [x, h, *weights])


@pytest.mark.parametrize("layer_type", [LSTM, GRU])
def test_sequence_layers_equal_their_cells_step_by_step(layer_type):
    layer = layer_type(3, 4, rng=np.random.default_rng(2), dtype="float64")
    x = randn(2, 6, 3, seed=6)
    outputs, final = layer(x)
    state = None
    for t in range(6):
        state = layer.cell(x[:, t], state)
        h = state[0] if layer_type is LSTM else state
        np.testing.assert_allclose(outputs[:, t].numpy(), h.numpy(), rtol=1e-12, atol=1e-14)
    if layer_type is LSTM:
        np.testing.assert_allclose(final[0].numpy(), state[0].numpy(), rtol=1e-12)
        np.testing.assert_allclose(final[1].numpy(), state[1].numpy(), rtol=1e-12)
    assert outputs.shape == (2, 6, 4)


def test_float32_layers_stay_float32():
    x = td.tensor(np.random.default_rng(0).standard_normal((2, 3, 5)), dtype="float32")
    for layer in (LSTM(5, 4, rng=np.random.default_rng(0)), GRU(5, 4, rng=np.random.default_rng(0))):
        outputs, _ = layer(x)
        outputs.sum().backward()
        assert outputs.dtype == np.float32
        assert all(p.grad.dtype == np.float32 for p in layer.parameters())


@pytest.mark.parametrize("layer_type", [LSTM, GRU])
def test_sequence_layers_on_every_device_equal_the_cpu(layer_type, device):
    x = np.random.default_rng(7).standard_normal((2, 5, 3))
    results = []
    for dev in ("cpu", device):
        layer = layer_type(3, 4, rng=np.random.default_rng(0), dtype="float64", device=dev)
        x_dev = td.tensor(x, dtype="float64", device=dev, requires_grad=True)
        outputs = layer(x_dev)[0]
        (outputs ** 2).sum().backward()
        assert outputs.device == dev and layer.cell.weight_hh.grad.device == dev
        results.append([outputs.numpy(), x_dev.grad.numpy(), layer.cell.weight_hh.grad.numpy()])
    for a, b in zip(*results):
        np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-14)


# ----------------------------------------------------------------------------- against PyTorch

def _torch_pair(kind, input_size, hidden, seed):
    torch = pytest.importorskip("torch")
    torch.manual_seed(seed)
    cls = dict(LSTMCell=torch.nn.LSTMCell, GRUCell=torch.nn.GRUCell)[kind]
    reference = cls(input_size, hidden).double()
    ours = dict(LSTMCell=LSTMCell, GRUCell=GRUCell)[kind](input_size, hidden, dtype="float64")
    ours.weight_ih.data[...] = reference.weight_ih.detach().numpy().T
    ours.weight_hh.data[...] = reference.weight_hh.detach().numpy().T
    if kind == "LSTMCell":
        ours.bias_ih.data[...] = (reference.bias_ih + reference.bias_hh).detach().numpy()    # one bias
    else:
        ours.bias_ih.data[...] = reference.bias_ih.detach().numpy()
        ours.bias_hh.data[...] = reference.bias_hh.detach().numpy()
    return torch, reference, ours


@pytest.mark.parametrize("kind", ["LSTMCell", "GRUCell"])
def test_cells_match_pytorch_values_gradients_and_hessian_vector_product(kind):
    torch, reference, ours = _torch_pair(kind, 3, 4, seed=0)
    rng = np.random.default_rng(1)
    x, h, c = rng.standard_normal((5, 3)), rng.standard_normal((5, 4)), rng.standard_normal((5, 4))
    v = rng.standard_normal((5, 4))
    xt, ht, ct = (torch.tensor(a, requires_grad=True) for a in (x, h, c))
    xs, hs, cs = f64(x), f64(h), f64(c)
    if kind == "LSTMCell":
        out_t = reference(xt, (ht, ct))[0]
        out = ours(xs, (hs, cs))[0]
    else:
        out_t = reference(xt, ht)
        out = ours(xs, hs)
    np.testing.assert_allclose(out.numpy(), out_t.detach().numpy(), rtol=1e-12, atol=1e-14)
    # a scalar with curvature: sum(v * h'^2); gradients w.r.t. x, h and W_hh, then H u for W_hh
    loss_t = (torch.tensor(v) * out_t ** 2).sum()
    loss = (f64(v, False) * out ** 2).sum()
    g_t = torch.autograd.grad(loss_t, [xt, ht, reference.weight_hh], create_graph=True)
    g = td.grad(loss, [xs, hs, ours.weight_hh], create_graph=True)
    np.testing.assert_allclose(g[0].numpy(), g_t[0].detach().numpy(), rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(g[1].numpy(), g_t[1].detach().numpy(), rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(g[2].numpy(), g_t[2].detach().numpy().T, rtol=1e-10, atol=1e-13)
    u = rng.standard_normal((4, ours.weight_hh.shape[1]))
    hvp_t = torch.autograd.grad((g_t[2] * torch.tensor(u.T)).sum(), reference.weight_hh)[0].numpy().T
    hvp = td.grad((g[2] * f64(u, False)).sum(), ours.weight_hh)[0].numpy()
    np.testing.assert_allclose(hvp, hvp_t, rtol=1e-9, atol=1e-12)
    assert np.abs(hvp).max() > 1e-3


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_sequence_layers_match_pytorch(kind):
    torch = pytest.importorskip("torch")
    torch.manual_seed(3)
    reference = getattr(torch.nn, kind)(3, 4, batch_first=True).double()
    ours = dict(LSTM=LSTM, GRU=GRU)[kind](3, 4, dtype="float64")
    cell = ours.cell
    cell.weight_ih.data[...] = reference.weight_ih_l0.detach().numpy().T
    cell.weight_hh.data[...] = reference.weight_hh_l0.detach().numpy().T
    if kind == "LSTM":
        cell.bias_ih.data[...] = (reference.bias_ih_l0 + reference.bias_hh_l0).detach().numpy()
    else:
        cell.bias_ih.data[...] = reference.bias_ih_l0.detach().numpy()
        cell.bias_hh.data[...] = reference.bias_hh_l0.detach().numpy()
    x = np.random.default_rng(4).standard_normal((2, 7, 3))
    v = np.random.default_rng(5).standard_normal((2, 7, 4))
    xt = torch.tensor(x, requires_grad=True)
    out_t = reference(xt)[0]
    (torch.tensor(v) * out_t).sum().backward()
    xs = f64(x)
    out = ours(xs)[0]
    (f64(v, False) * out).sum().backward()
    np.testing.assert_allclose(out.numpy(), out_t.detach().numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(xs.grad.numpy(), xt.grad.numpy(), rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(cell.weight_hh.grad.numpy(), reference.weight_hh_l0.grad.numpy().T, rtol=1e-10,
                               atol=1e-13)
    np.testing.assert_allclose(cell.weight_ih.grad.numpy(), reference.weight_ih_l0.grad.numpy().T, rtol=1e-10,
                               atol=1e-13)


# ----------------------------------------------------------------------------- errors and repr

def test_bad_shapes_name_the_argument():
    cell = LSTMCell(3, 2, rng=np.random.default_rng(0), dtype="float64")
    with pytest.raises(ValueError, match="input_size=3"):
        cell(randn(4, 5))
    with pytest.raises(ValueError, match=r"h must have shape \(N, hidden_size\) = \(4, 2\)"):
        cell(randn(4, 3), (randn(4, 3), randn(4, 2)))
    with pytest.raises(ValueError, match=r"\(N, T, input_size\)"):
        LSTM(3, 2, dtype="float64")(randn(4, 3))
    with pytest.raises(ValueError, match=r"\(N, T, input_size\)"):
        GRU(3, 2, dtype="float64")(randn(4, 3))
    with pytest.raises(ValueError, match="hidden_size must be a positive int"):
        GRUCell(3, 0)
    with pytest.raises(ValueError, match="pre-activations"):
        lstm_gates(randn(2, 7), randn(2, 2))
    assert repr(LSTM(3, 2)).startswith("LSTM(3, 2): 48 parameters")          # 3 x 8 + 2 x 8 + 8
