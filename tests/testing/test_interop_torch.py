"""tinydgm.interop: PyTorch functions as tinydgm functions (issue 19). Values through
NumPy, derivatives from PyTorch's autograd to any order; gradcheck, gradgradcheck,
jacobian, compare and the contracts accept them; td.tensor keeps a float64 torch tensor
float64 and refuses one that requires grad. Runs where torch is installed."""
import re
import subprocess
import sys

import numpy as np
import pytest

import tinydgm as td
from tinydgm import GradcheckError
from tinydgm.interop import from_torch, torch_transform
from tinydgm.models.autoregressive.made import MADE
from tinydgm.testing import (AutoregressiveError, FlowContractError, assert_autoregressive, assert_flow_transform,
                             compare)

torch = pytest.importorskip("torch")


def f64(a, requires_grad=True):
    return td.tensor(np.asarray(a, dtype=np.float64), dtype="float64", requires_grad=requires_grad)


def smooth(x):
    return torch.tanh(x @ torch.ones(3, 2, dtype=torch.float64) * 0.7).pow(3).sum(-1) + x.exp().sum(-1)


X = np.random.default_rng(0).standard_normal((4, 3))


def torch_derivatives(fn, x, order):
    """d^order/dx^order of sum(fn(x)), contracted with ones after the first (PyTorch)."""
    xt = torch.tensor(x, requires_grad=True)
    y = fn(xt).sum()
    for _ in range(order):
        y, = torch.autograd.grad(y, xt, create_graph=True)
        last = y
        y = y.sum()
    return last.detach().numpy()


# ----------------------------------------------------------------------------- the bridge

def test_values_and_derivatives_of_every_order_are_pytorchs():
    g = from_torch(smooth)
    x = f64(X)
    y = g(x)
    assert y.dtype == np.float64 and y.shape == (4,)
    np.testing.assert_array_equal(y.numpy(), smooth(torch.tensor(X)).numpy())
    d = g(x).sum()
    for order in (1, 2, 3):
        d, = td.grad(d, [x], create_graph=True)
        np.testing.assert_allclose(d.numpy(), torch_derivatives(smooth, X, order), rtol=1e-13, atol=1e-13)
        d = d.sum()


def test_gradcheck_gradgradcheck_and_jacobian_accept_a_torch_function():
    g = from_torch(smooth)
    assert td.gradcheck(g, [f64(X)]) and td.gradgradcheck(g, [f64(X)])
    J = td.jacobian(g, f64(X))
    J_torch = torch.autograd.functional.jacobian(smooth, torch.tensor(X)).numpy()
    np.testing.assert_allclose(J, J_torch, rtol=1e-14, atol=1e-14)


class WrongBackward(torch.autograd.Function):
    """x^3 with a backward of 3x (the planted bug, in PyTorch)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x ** 3

    @staticmethod
    def backward(ctx, gy):
        x, = ctx.saved_tensors
        return gy * 3 * x


def test_a_wrong_torch_backward_is_caught_and_located():
    x = f64([[0.5, 2.0]])
    with pytest.raises(GradcheckError, match=r"input 'x' \(shape \(1, 2\)\) is wrong at index") as info:
        td.gradcheck(lambda x: from_torch(WrongBackward.apply)(x), {"x": x})
    analytic, numeric = (float(v) for v in re.search(r"analytic (\S+), numeric (\S+),", str(info.value)).groups())
    assert analytic / numeric == pytest.approx(2.0 if "(0, 0)" in str(info.value) else 0.5, rel=1e-5)   # 3x / 3x^2


def test_parameters_of_a_torch_module_as_inputs():
    torch.manual_seed(0)
    linear = torch.nn.Linear(3, 2, dtype=torch.float64)
    g = from_torch(linear, params=["weight", "bias"])
    W, b = f64(linear.weight.detach().numpy()), f64(linear.bias.detach().numpy())
    y = td.tanh(g(f64(X), W, b)).sum()
    gW, gb = td.grad(y, [W, b])
    torch.tanh(linear(torch.tensor(X))).sum().backward()
    np.testing.assert_allclose(gW.numpy(), linear.weight.grad.numpy(), rtol=1e-14)
    np.testing.assert_allclose(gb.numpy(), linear.bias.grad.numpy(), rtol=1e-14)
    assert td.gradgradcheck(lambda x, W, b: td.tanh(g(x, W, b)), [f64(X), W, b])
    assert linear.weight.shape == (2, 3) and isinstance(linear.weight, torch.nn.Parameter)   # restored
    with pytest.raises(KeyError, match="no parameters \\['w'\\]"):
        from_torch(linear, params=["w"])


def test_td_tensor_of_torch_tensors():
    assert td.tensor(torch.ones(2, dtype=torch.float64)).dtype == np.float64       # used to become float32
    assert td.tensor(torch.ones(2)).dtype == np.float32
    assert td.tensor(torch.ones(2, dtype=torch.float64), dtype="float32").dtype == np.float32
    assert td.tensor(np.float64(1.0)).dtype == td.get_default_dtype()               # NumPy scalars unchanged
    with pytest.raises(TypeError, match="requires grad.*t.detach\\(\\).*from_torch"):
        td.tensor(torch.ones(2, requires_grad=True))


def test_importing_tinydgm_and_its_bridge_does_not_import_torch():
    code = ("import sys, tinydgm, tinydgm.interop, tinydgm.testing; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


# ----------------------------------------------------------------------------- compare and contracts

class TorchMADE(torch.nn.Module):
    """A PyTorch MADE with 0-based degrees and (out, in) masks (the user's model)."""

    def __init__(self, d, hidden, seed):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.m = [torch.randperm(d, generator=g)]
        for h in hidden:
            self.m.append(torch.randint(int(self.m[-1].min()), d - 1, (h,), generator=g))
        sizes = [d] + hidden + [d]
        self.linears = torch.nn.ModuleList(torch.nn.Linear(a, b, dtype=torch.float64) for a, b in zip(sizes, sizes[1:]))
        masks = [m1[:, None] >= m0[None, :] for m0, m1 in zip(self.m, self.m[1:])]
        self.masks = [m.double() for m in masks + [self.m[0][:, None] > self.m[-1][None, :]]]

    def forward(self, x):
        for i, (linear, mask) in enumerate(zip(self.linears, self.masks)):
            x = torch.nn.functional.linear(x, linear.weight * mask, linear.bias)
            x = torch.relu(x) if i < len(self.linears) - 1 else x
        return x

    def log_prob(self, x):
        return -torch.nn.functional.binary_cross_entropy_with_logits(self(x), x, reduction="none").sum(-1)


def mirrored(seed):
    theirs = TorchMADE(6, [16, 16], seed)
    ours = MADE.from_degrees([m.numpy() + 1 for m in theirs.m], dtype="float64")
    ours.load_weights([l.weight for l in theirs.linears], [l.bias for l in theirs.linears], layout="out_in",
                      masks=theirs.masks)
    return theirs, ours


BINARY = np.random.default_rng(0).integers(0, 2, (8, 6)).astype(np.float64)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_mirrored_torch_made_agrees_to_rounding(seed):
    theirs, ours = mirrored(seed)
    report = compare(ours.log_prob, from_torch(theirs.log_prob), {"x": BINARY})
    report.assert_close(rtol=1e-12, atol=1e-14)
    assert all(r["max_abs"] > 1e-3 for r in report.rows)
    assert_autoregressive(from_torch(theirs), BINARY, ours.ordering)
    # the mirrored tinydgm MADE samples and ensembles with their degrees
    np.testing.assert_array_equal(ours.ordering, theirs.m[0].numpy() + 1)


def test_planted_bugs_in_the_torch_made_are_caught():
    theirs, ours = mirrored(0)
    first = int(theirs.m[0].argmin())
    theirs.masks[-1][first] = 1.0                              # p(x_first) sees hidden units
    with pytest.raises(AutoregressiveError, match=f"output {first} \\(input {first} at position 1\\)"):
        assert_autoregressive(from_torch(theirs), BINARY, ours.ordering)
    assert "value" in {r["quantity"] for r in compare(ours.log_prob, from_torch(theirs.log_prob),
                                                       {"x": BINARY}).failures()}
    theirs, ours = mirrored(0)
    with torch.no_grad():
        theirs.linears[-1].bias[0] += 1e-6                      # one bias moved by 1e-6
    assert not compare(ours.log_prob, from_torch(theirs.log_prob), {"x": BINARY}).ok(rtol=1e-10)


class TorchCoupling(torch.nn.Module):
    def __init__(self, d, hidden, bug=None):
        super().__init__()
        self.k, self.bug = d // 2, bug
        self.net = torch.nn.Sequential(torch.nn.Linear(self.k, hidden, dtype=torch.float64), torch.nn.Tanh(),
                                       torch.nn.Linear(hidden, 2 * (d - self.k), dtype=torch.float64))

    def forward(self, x):
        a, b = x[:, :self.k], x[:, self.k:]
        s, t = self.net(a).chunk(2, dim=-1)
        s = torch.tanh(s)
        log_det = (2 * s).sum(-1) if self.bug == "log_det" else s.sum(-1)
        return torch.cat([a, b * torch.exp(s) + t], -1), log_det

    def inverse(self, z):
        a, b = z[:, :self.k], z[:, self.k:]
        s, t = self.net(a).chunk(2, dim=-1)
        s = torch.tanh(s)
        return torch.cat([a, (b - t) * torch.exp(s if self.bug == "inverse" else -s)], -1), -s.sum(-1)


def test_a_torch_coupling_passes_the_flow_contract_and_its_bugs_do_not():
    torch.manual_seed(0)
    x = np.random.default_rng(1).standard_normal((5, 4))
    assert_flow_transform(torch_transform(TorchCoupling(4, 8)), x)
    with pytest.raises(FlowContractError, match="TorchCoupling: inverse\\(forward\\(x\\)\\) != x"):
        assert_flow_transform(torch_transform(TorchCoupling(4, 8, bug="inverse")), x)
    with pytest.raises(FlowContractError, match="broke 2 of 4") as info:
        assert_flow_transform(torch_transform(TorchCoupling(4, 8, bug="log_det")), x, collect=True)
    assert "brute-force" in str(info.value) and "inverse log_det" in str(info.value)


def test_a_torch_function_that_differentiates_inside():
    """A score s(x) = d log p / dx computed with torch.autograd.grad inside fn: the bridge
    runs fn with gradients on, and its derivative is the Hessian (PyTorch's)."""
    def score(x):
        x = x if x.requires_grad else x.requires_grad_()
        log_p = -(x ** 4).sum(-1) / 4 + torch.sin(x).sum(-1)
        return torch.autograd.grad(log_p.sum(), x, create_graph=True)[0]

    x = f64(X)
    np.testing.assert_allclose(from_torch(score)(x).numpy(), -X ** 3 + np.cos(X), rtol=1e-14)
    assert td.gradcheck(from_torch(score), [x])
    g, = td.grad(from_torch(score)(x).sum(), [x])
    np.testing.assert_allclose(g.numpy(), -3 * X ** 2 - np.sin(X), rtol=1e-13)


def test_the_bridge_returns_to_the_inputs_device(device):
    x = f64(X).to(device)
    y = from_torch(smooth)(x)
    assert y.device == device
    g, = td.grad(y.sum(), [x])
    assert g.device == device
    np.testing.assert_allclose(g.numpy(), torch_derivatives(smooth, X, 1), rtol=1e-13)
