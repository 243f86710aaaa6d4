"""The op catalogue: every differentiable op passes gradcheck and gradgradcheck on every
device, every public op has an entry, and the harness itself catches broken gradients."""
import numpy as np
import pytest

import tinydgm as td
from tinydgm.autodiff import catalog, functional
from tinydgm.autodiff.core import Function

ENTRIES = catalog.entries()

# The ops the engine must provide (the list); each needs an implementation and an entry.
REQUIRED = [
    "add", "sub", "mul", "div", "neg", "pow", "exp", "log", "log1p", "expm1", "sqrt", "square",
    "sin", "cos", "tanh", "abs", "sigmoid", "log_sigmoid", "softplus", "relu", "leaky_relu", "elu",
    "maximum", "minimum", "clip", "where", "binary_cross_entropy_with_logits", "log1mexp", "astype",
    "sum", "mean", "var", "max", "min", "logsumexp", "softmax", "log_softmax", "cumsum", "sum_to",
    "reshape", "transpose", "expand_dims", "squeeze", "broadcast_to", "concatenate", "stack",
    "split", "flip", "pad", "getitem", "matmul", "einsum", "conv2d", "conv_transpose2d",
    "avg_pool2d", "max_pool2d", "upsample_nearest2d",
]

# Public names of the op modules that are NOT differentiable ops, with the reason.
EXEMPTIONS = {
    "less": "comparison, boolean result",
    "less_equal": "comparison, boolean result",
    "greater": "comparison, boolean result",
    "greater_equal": "comparison, boolean result",
    "equal": "comparison, boolean result",
    "not_equal": "comparison, boolean result",
    "to_device": "needs two devices at once; covered by the device tests",
}


# ----------------------------------------------------------------------------- every op, every device

@pytest.mark.parametrize("entry", ENTRIES, ids=[e.name for e in ENTRIES])
def test_entry_gradcheck_and_gradgradcheck(entry, device):
    assert entry.available(), f"op {entry.op!r} is required but tinydgm.autodiff.functional lacks it"
    xs = catalog.make_inputs(entry, device)
    checked = [x for x in xs if x.requires_grad]
    assert checked, "an entry must have inputs that require grad"
    assert all(x.dtype == np.float64 and x.device == device for x in checked)
    assert td.gradcheck(entry.fn, xs, eps=entry.eps)
    assert td.gradgradcheck(entry.fn, xs, eps=entry.eps)


@pytest.mark.parametrize("entry", ENTRIES, ids=[e.name for e in ENTRIES])
def test_entry_same_values_on_every_device(entry, device):
    if not entry.available():
        pytest.fail(f"op {entry.op!r} is required but tinydgm.autodiff.functional lacks it")
    on_device = entry.fn(*catalog.make_inputs(entry, device))
    on_cpu = entry.fn(*catalog.make_inputs(entry, "cpu"))
    pairs = zip(*[[y] if isinstance(y, td.Tensor) else list(y) for y in (on_device, on_cpu)])
    for a, b in pairs:
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-12, atol=1e-12)


def test_check_all_reports_small_jacobian_errors(device):
    results = catalog.check_all(device=device)
    assert len(results) == len(ENTRIES)
    bad = [(r.name, r.status, r.message) for r in results if not r.passed]
    assert not bad
    for r in results:   # full Jacobians, engine vs central differences
        assert r.first_order_error < 1e-4, r
        assert r.second_order_error < 1e-4, r


# ----------------------------------------------------------------------------- coverage

def test_every_public_op_has_an_entry():
    covered = {e.op for e in ENTRIES}
    uncatalogued = [name for name in catalog.public_ops()
                    if name not in covered and name not in catalog.EXEMPT]
    assert not uncatalogued, f"ops without a catalogue entry: {uncatalogued}"


def test_exemptions_are_explicit_real_and_not_differentiable():
    assert set(catalog.EXEMPT) == set(EXEMPTIONS)
    public = set(catalog.public_ops())
    assert set(EXEMPTIONS) <= public
    assert all(catalog.EXEMPT[name] for name in EXEMPTIONS)
    x = td.tensor([1.0, 2.0], dtype="float64", requires_grad=True)
    for name in EXEMPTIONS:
        if name == "to_device":
            continue
        y = getattr(functional, name)(x, 1.5)
        assert y.dtype == np.bool_ and not y.requires_grad


@pytest.mark.parametrize("name", REQUIRED)
def test_required_op_exists_and_is_catalogued(name):
    assert callable(getattr(functional, name, None)), f"required op {name!r} is not implemented"
    assert name in catalog.public_ops(), f"{name!r} is not in its module's __all__"
    assert name in {e.op for e in ENTRIES}


def test_entries_are_uniquely_named_and_selectable():
    names = [e.name for e in ENTRIES]
    assert len(names) == len(set(names))
    matmuls = catalog.entries(["matmul"])
    assert len(matmuls) >= 4 and all(e.op == "matmul" for e in matmuls)
    assert [e.name for e in catalog.entries(["matmul[2d]"])] == ["matmul[2d]"]
    with pytest.raises(ValueError, match="unknown op.*nonsense"):
        catalog.entries(["nonsense"])


# ----------------------------------------------------------------------------- inputs in the smooth domain

def _inputs(name):
    return [x.numpy() for x in catalog.make_inputs(catalog.entries([name])[0])]


def test_inputs_are_in_the_smooth_domain():
    assert (_inputs("log")[0] > 0).all() and (_inputs("sqrt")[0] > 0).all()
    assert (_inputs("log1mexp")[0] < 0).all()
    for name in ("relu", "abs", "leaky_relu", "elu"):
        assert (np.abs(_inputs(name)[0]) >= 0.2).all()
    x, = _inputs("clip")
    assert (np.minimum(np.abs(x - 0.5), np.abs(x + 0.5)) >= 0.1).all()
    a, b = _inputs("maximum")
    assert (np.abs(a - b) >= 0.2).all()
    for name in ("max", "max_pool2d"):
        values = np.sort(_inputs(name)[0].ravel())
        assert (np.diff(values) > 0.04).all()


def test_inputs_are_reproducible():
    for a, b in zip(_inputs("conv2d"), _inputs("conv2d")):
        np.testing.assert_array_equal(a, b)


# ----------------------------------------------------------------------------- the harness catches bugs

class _WrongSquare(Function):
    """x^2 with the gradient 3x (wrong on purpose)."""

    def forward(self, x):
        return x * x

    def backward(self, gy):
        x, = self.inputs
        return gy * x * 3.0


def test_a_broken_op_fails_with_a_large_error(monkeypatch):
    monkeypatch.setattr(functional, "wrong_square", lambda x: _WrongSquare()(x), raising=False)
    entry = catalog.Entry("wrong_square", "wrong_square", lambda op, x: op(x), catalog._inputs(catalog.normal(3)))
    result = catalog.check_entry(entry)
    assert result.status == "failed" and not result.passed
    assert "gradcheck" in result.message
    assert result.first_order_error > 0.1


def test_a_missing_op_is_reported_not_raised():
    entry = catalog.Entry("not_an_op", "not_an_op", lambda op, x: op(x), catalog._inputs(catalog.normal(3)))
    result = catalog.check_entry(entry)
    assert result.status == "missing" and not result.passed
    with pytest.raises(catalog.MissingOpError, match="not_an_op"):
        entry.fn(td.tensor([1.0]))


def test_format_table_has_a_row_per_result():
    results = catalog.check_all(ops=["add", "exp"])
    table = catalog.format_table(results)
    assert table.count("\n") == 1 + len(results)
    assert "| add | passed |" in table and "| exp | passed |" in table


class _NanGrad(Function):
    """2x with a NaN gradient: gradcheck's tolerance comparisons are all False for NaN."""

    def forward(self, x):
        return x * 2

    def backward(self, gy):
        return gy * float("nan")


def test_nan_outputs_and_nan_gradients_fail(monkeypatch):
    monkeypatch.setattr(functional, "nan_grad", lambda x: _NanGrad()(x), raising=False)
    entry = catalog.Entry("nan_grad", "nan_grad", lambda op, x: op(x), catalog._inputs(catalog.normal(3)))
    assert catalog.check_entry(entry).status == "failed"
    log_of_negative = catalog.Entry("log", "log", lambda op, x: op(x), catalog._inputs(catalog.uniform(-2, -1, 3)))
    with np.errstate(invalid="ignore"):
        result = catalog.check_entry(log_of_negative)
    assert result.status == "failed" and "non-finite" in result.message
