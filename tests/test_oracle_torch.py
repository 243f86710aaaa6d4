"""tinydgm as an oracle for someone else's model (README, "Check your own implementation",
by hand): a Bernoulli MADE written in PyTorch and tinydgm's MADE with the same weights
agree in float64 on log p(x), on the gradients with respect to the input and every
weight and bias, and on a Hessian-vector product (double backward against
torch.autograd.functional.hvp).

The comparison is sharp, and the tests show it: a transposed mask, a weight copied
without its transpose, or one weight moved by 1e-6 all fail the same agreement test.
Runs where torch is installed; skipped otherwise.
"""
import numpy as np
import pytest

import tinydgm as td
from tinydgm.models import MADE

torch = pytest.importorskip("torch")

D, HIDDEN, N = 5, [8, 8], 4       # the middle layer is square (8 x 8): a transpose keeps its shape


class TorchMADE(torch.nn.Module):
    """The model under test: a Bernoulli MADE in PyTorch, written independently of tinydgm
    (natural ordering, hidden degrees m(k) = 1 + k mod (D - 1)), weights in (out, in) layout."""

    def __init__(self, d, hidden):
        super().__init__()
        sizes = [d] + hidden + [d]
        self.linears = torch.nn.ModuleList(torch.nn.Linear(a, b, dtype=torch.float64)
                                           for a, b in zip(sizes[:-1], sizes[1:]))
        m = [torch.arange(1, d + 1)] + [1 + torch.arange(h) % (d - 1) for h in hidden]
        masks = [m_l[:, None] >= m_prev[None, :] for m_prev, m_l in zip(m[:-1], m[1:])]
        masks.append(m[0][:, None] > m[-1][None, :])         # strict: output d sees degrees < d
        self.masks = [mask.double() for mask in masks]

    def log_prob(self, x):
        h = x
        for i, (linear, mask) in enumerate(zip(self.linears, self.masks)):
            h = torch.nn.functional.linear(h, linear.weight * mask, linear.bias)
            h = torch.relu(h) if i < len(self.linears) - 1 else h
        return -torch.nn.functional.binary_cross_entropy_with_logits(h, x, reduction="none").sum(-1)


def agree(a, b):
    """The README's agreement test: float64 round-off only."""
    return np.allclose(a, b, rtol=1e-10, atol=1e-12)


def models(transpose=True):
    torch.manual_seed(0)
    theirs = TorchMADE(D, HIDDEN)
    ours = MADE(D, HIDDEN, ordering="natural", connectivity="natural", dtype="float64")
    state = ours.state_dict()
    for i, linear in enumerate(theirs.linears):
        weight = linear.weight.detach().numpy()
        state[f"layers.{i}.weight"] = weight.T if transpose else weight
        state[f"layers.{i}.bias"] = linear.bias.detach().numpy()
    ours.load_state_dict(state)
    return theirs, ours


def compare(theirs, ours):
    """Both sides of each quantity as NumPy arrays: log p(x), d/dx and d/d(every parameter)
    of sum_n log p(x_n), and H v with H the Hessian of that sum w.r.t. x."""
    rng = np.random.default_rng(0)
    x_np = (rng.random((N, D)) < 0.5).astype(np.float64)
    v = rng.standard_normal((N, D))
    x_torch = torch.tensor(x_np, requires_grad=True)
    x = td.tensor(x_np, dtype="float64", requires_grad=True)

    log_p_torch, log_p = theirs.log_prob(x_torch), ours.log_prob(x)
    log_p_torch.sum().backward()
    log_p.sum().backward()
    pairs = {"log_p": (log_p.numpy(), log_p_torch.detach().numpy()),
             "grad_x": (x.grad.numpy(), x_torch.grad.numpy())}
    for i, (layer, linear) in enumerate(zip(ours.layers, theirs.linears)):
        pairs[f"grad_weight_{i}"] = (layer.weight.grad.numpy(), linear.weight.grad.numpy().T)
        pairs[f"grad_bias_{i}"] = (layer.bias.grad.numpy(), linear.bias.grad.numpy())

    _, hv_torch = torch.autograd.functional.hvp(lambda x: theirs.log_prob(x).sum(), x_torch.detach(),
                                                torch.tensor(v))
    g, = td.grad(ours.log_prob(x).sum(), [x], create_graph=True)
    hv, = td.grad((g * td.tensor(v, dtype="float64")).sum(), [x])
    pairs["hvp"] = (hv.numpy(), hv_torch.numpy())
    return pairs


def disagreeing(pairs):
    return sorted(name for name, (ours, theirs) in pairs.items() if not agree(ours, theirs))


def test_same_weights_agree_on_values_gradients_and_a_hessian_vector_product():
    pairs = compare(*models())
    assert disagreeing(pairs) == []
    worst = max(float(np.abs(a - b).max()) for a, b in pairs.values())
    assert worst < 1e-13
    # every compared quantity is a real signal, not zeros on both sides
    for name in ("log_p", "grad_x", "grad_weight_0", "grad_weight_1", "grad_weight_2", "hvp"):
        assert np.abs(pairs[name][1]).max() > 1e-3, name


def test_one_weight_moved_by_1e_minus_6_disagrees():
    theirs, ours = models()
    grad_w = compare(theirs, ours)["grad_weight_1"][0]
    j, k = np.unravel_index(np.argmax(np.abs(grad_w)), grad_w.shape)   # a weight that matters
    ours.layers[1].weight.data[j, k] += 1e-6
    ours.zero_grad()
    theirs.zero_grad()
    assert "log_p" in disagreeing(compare(theirs, ours))


def test_transposed_mask_in_tinydgm_disagrees():
    theirs, ours = models()
    mask = ours.layers[1].mask
    assert not np.array_equal(mask, mask.T)
    ours.layers[1].set_mask(mask.T)            # the square middle layer: the shape still fits
    assert {"log_p", "grad_x", "hvp"} <= set(disagreeing(compare(theirs, ours)))


def test_weights_copied_without_the_transpose_are_caught():
    # the non-square layers refuse the (out, in) array, naming the key ...
    with pytest.raises(ValueError, match=r"'layers\.0\.weight' has shape \(8, 5\) in the state dict but "
                                         r"\(5, 8\) in the model"):
        models(transpose=False)
    # ... and the square one loads, but the values disagree
    theirs, ours = models()
    ours.layers[1].weight.data = ours.layers[1].weight.data.T.copy()
    assert {"log_p", "grad_x"} <= set(disagreeing(compare(theirs, ours)))
