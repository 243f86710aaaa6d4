"""tinydgm/nn/module.py and init.py: parameter discovery and naming, shared parameters,
children and modules, Sequential/ModuleList, state dicts and their errors, modes, dtype
and device moves, zero_grad, repr, Parameter; initialisation variances and seeding."""
import math
import re

import numpy as np
import pytest

import tinydgm as td
from tinydgm import backend, nn
from tinydgm.nn import init


class Block(nn.Module):
    def __init__(self, rng=None):
        super().__init__()
        self.fc = nn.Linear(3, 4, rng=rng)
        self.norm = nn.BatchNorm(4)
        self.act = nn.Tanh()

    def forward(self, x):
        return self.act(self.norm(self.fc(x)))


class Net(nn.Module):
    def __init__(self, rng=None):
        super().__init__()
        self.scale = nn.Parameter(td.tensor(np.ones(2)))
        self.block = Block(rng)
        self.head = nn.Linear(4, 2, bias=False, rng=rng)

    def forward(self, x):
        return self.head(self.block(x)) * self.scale


def net(seed=0):
    return Net(np.random.default_rng(seed))


# ----------------------------------------------------------------------------- discovery

def test_named_parameters_in_assignment_order_with_dotted_names():
    names = [name for name, _ in net().named_parameters()]
    assert names == ["scale", "block.fc.weight", "block.fc.bias", "block.norm.weight", "block.norm.bias",
                     "head.weight"]
    model = net()
    assert [p.shape for p in model.parameters()] == [(2,), (3, 4), (4,), (4,), (4,), (4, 2)]
    assert all(isinstance(p, nn.Parameter) and p.requires_grad for p in model.parameters())
    assert model.num_parameters() == 2 + 12 + 4 + 4 + 4 + 8


def test_plain_tensors_and_arrays_are_not_parameters():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(td.tensor([1.0]))
            self.t = td.tensor([2.0], requires_grad=True)     # not a Parameter: not trained
            self.a = np.zeros(3)                               # not a buffer either
    m = M()
    assert [n for n, _ in m.named_parameters()] == ["w"]
    assert list(m.state_dict()) == ["w"]


def test_shared_parameter_counted_once():
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = nn.Linear(3, 3)
            self.decoder = nn.Linear(3, 3)
            self.decoder.weight = self.encoder.weight         # tied weights
    m = Tied()
    names = [n for n, _ in m.named_parameters()]
    assert names == ["encoder.weight", "encoder.bias", "decoder.bias"]
    assert m.num_parameters() == 9 + 3 + 3
    x = td.tensor(np.ones((2, 3), dtype=np.float32))
    m.decoder(m.encoder(x)).sum().backward()
    assert m.encoder.weight.grad is m.decoder.weight.grad     # one leaf, one accumulated gradient


def test_children_and_modules():
    model = net()
    assert [type(c).__name__ for c in model.children()] == ["Block", "Linear"]
    assert [name for name, _ in model.named_modules()] == ["", "block", "block.fc", "block.norm",
                                                          "block.act", "head"]
    assert model.modules()[0] is model and model.modules()[2] is model.block.fc


def test_assigning_before_super_init_is_a_clear_error():
    class Bad(nn.Module):
        def __init__(self):
            self.fc = nn.Linear(2, 2)
    with pytest.raises(AttributeError, match=r"Bad: call super\(\).__init__\(\)"):
        Bad()


# ----------------------------------------------------------------------------- containers

def test_sequential_applies_layers_in_order():
    rng = np.random.default_rng(0)
    seq = nn.Sequential(nn.Linear(3, 5, rng=rng), nn.ReLU(), nn.Linear(5, 2, rng=rng))
    assert len(seq) == 3 and isinstance(seq[1], nn.ReLU) and [type(m) for m in seq][2] is nn.Linear
    assert [n for n, _ in seq.named_parameters()] == ["0.weight", "0.bias", "2.weight", "2.bias"]
    x = rng.standard_normal((4, 3)).astype(np.float32)
    w1, b1, w2, b2 = (p.numpy() for p in seq.parameters())
    expected = np.maximum(x @ w1 + b1, 0) @ w2 + b2
    np.testing.assert_allclose(seq(td.tensor(x)).numpy(), expected, rtol=1e-5, atol=1e-6)


def test_containers_reject_non_modules():
    with pytest.raises(TypeError, match="Sequential: item 1 is a function, not a Module"):
        nn.Sequential(nn.ReLU(), td.relu)
    with pytest.raises(TypeError, match="ModuleList: item 0 is a int, not a Module"):
        nn.ModuleList([3])


def test_module_list_registers_its_modules():
    layers = nn.ModuleList([nn.Linear(2, 2) for _ in range(3)])
    layers.append(nn.Linear(2, 1))
    assert len(layers) == 4 and layers[3].out_features == 1
    assert [n for n, _ in layers.named_parameters()][-2:] == ["3.weight", "3.bias"]
    with pytest.raises(NotImplementedError, match="ModuleList does not define forward"):
        layers(td.tensor(np.ones((1, 2))))


# ----------------------------------------------------------------------------- state dicts

def test_state_dict_round_trip_gives_equal_copies():
    source, target = net(0), net(1)
    source.block.norm(source.block.fc(td.tensor(np.random.default_rng(2).standard_normal((8, 3)))))
    state = source.state_dict()
    assert list(state) == ["scale", "block.fc.weight", "block.fc.bias", "block.norm.weight", "block.norm.bias",
                           "head.weight", "block.norm.running_mean", "block.norm.running_var"]
    assert all(isinstance(v, np.ndarray) for v in state.values())
    assert not np.array_equal(target.block.fc.weight.numpy(), state["block.fc.weight"])
    target.load_state_dict(state)
    for (name, value), (_, again) in zip(state.items(), target.state_dict().items()):
        np.testing.assert_array_equal(again, value, err_msg=name)
    # copies, not views: editing the dict does not touch either model, and training
    # the loaded model does not touch the dict
    state["block.fc.weight"][...] = 7.0
    state["block.norm.running_mean"][...] = 7.0
    assert not np.any(source.block.fc.weight.numpy() == 7.0)
    assert not np.any(target.block.fc.weight.numpy() == 7.0)
    assert not np.any(source.block.norm.running_mean == 7.0)
    assert not np.any(target.block.norm.running_mean == 7.0)
    fresh = source.state_dict()
    target.load_state_dict(fresh)
    target.block.fc.weight.data[...] = -1.0
    assert not np.any(fresh["block.fc.weight"] == -1.0)


def test_load_state_dict_keeps_dtype_and_parameter_objects():
    model = net()
    weight = model.head.weight
    state = {k: v.astype(np.float64) for k, v in net(3).state_dict().items()}
    model.load_state_dict(state)
    assert model.head.weight is weight                      # optimizers keep their references
    assert weight.dtype == np.float32 and model.block.norm.running_var.dtype == np.float32
    np.testing.assert_allclose(weight.numpy(), state["head.weight"], rtol=1e-6)


def test_load_state_dict_names_missing_and_unexpected_keys():
    model = net()
    state = model.state_dict()
    del state["block.fc.bias"], state["block.norm.running_var"]
    state["block.extra"] = np.zeros(1)
    with pytest.raises(KeyError) as info:
        model.load_state_dict(state)
    message = str(info.value)
    assert "missing keys ['block.fc.bias', 'block.norm.running_var']" in message
    assert "unexpected keys ['block.extra']" in message


def test_load_state_dict_names_each_mis_shaped_key_and_both_shapes():
    model = net()
    state = model.state_dict()
    state["head.weight"] = np.zeros((2, 4))
    state["block.norm.running_mean"] = np.zeros(5)
    with pytest.raises(ValueError) as info:
        model.load_state_dict(state)
    message = str(info.value)
    assert "'head.weight' has shape (2, 4) in the state dict but (4, 2) in the model" in message
    assert "'block.norm.running_mean' has shape (5,) in the state dict but (4,) in the model" in message
    assert not np.all(model.head.weight.numpy() == 0)       # nothing was loaded


def test_load_state_dict_non_strict_loads_what_matches():
    model, other = net(0), net(1)
    state = other.state_dict()
    del state["head.weight"]
    state["unknown"] = np.ones(3)
    before = model.head.weight.numpy().copy()
    model.load_state_dict(state, strict=False)
    np.testing.assert_array_equal(model.head.weight.numpy(), before)
    np.testing.assert_array_equal(model.block.fc.weight.numpy(), other.block.fc.weight.numpy())


# ----------------------------------------------------------------------------- modes, dtypes, devices

def test_train_and_eval_are_recursive_and_return_self():
    model = net()
    assert all(m.training for m in model.modules())
    assert model.eval() is model
    assert not any(m.training for m in model.modules())
    model.block.train()
    assert model.block.norm.training and not model.training
    model.train()
    assert all(m.training for m in model.modules())


def test_to_float64_casts_parameters_and_floating_buffers():
    model = net()
    act = nn.ActNorm(2)
    model.act = act                                           # a boolean buffer rides along
    weight = model.head.weight
    weight.grad = td.tensor(np.ones((4, 2)))
    assert model.to(dtype="float64") is model
    assert all(p.dtype == np.float64 for p in model.parameters())
    assert model.block.norm.running_mean.dtype == np.float64
    assert model.block.norm.running_var.dtype == np.float64
    assert act.initialized.dtype == np.bool_
    assert model.head.weight is weight and weight.grad is None
    y = model(td.tensor(np.ones((5, 3)), dtype="float64"))
    assert y.dtype == np.float64


@pytest.mark.skipif(backend.cupy is not None, reason="CuPy is installed: the install hint is not shown")
def test_to_cuda_without_cupy_says_how_to_install_it():
    with pytest.raises(RuntimeError, match=re.escape('device "cuda" requested but CuPy is not installed')) as info:
        net().to("cuda")
    assert "pip install" in str(info.value)


@pytest.mark.cuda
def test_to_cuda_and_back_moves_parameters_and_buffers():
    model = net().to("cuda")
    assert all(p.device == "cuda" for p in model.parameters())
    assert backend.device_of(model.block.norm.running_mean) == "cuda"
    y = model(td.tensor(np.ones((5, 3)), device="cuda"))
    assert y.device == "cuda"
    model.to("cpu")
    assert all(p.device == "cpu" for p in model.parameters())


def test_zero_grad_clears_every_gradient():
    model = net()
    model(td.tensor(np.ones((5, 3), dtype=np.float32))).sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    model.zero_grad()
    assert all(p.grad is None for p in model.parameters())


def test_repr_is_a_summary_and_the_tree():
    text = repr(net())          # scale is float64 (td.tensor of float64 data), the layers float32
    assert text == ("Net(): 34 parameters, float32, float64, cpu\n"
                    "  (block): Block()\n"
                    "    (fc): Linear(3, 4, bias=True)\n"
                    "    (norm): BatchNorm(4, axis=1, eps=1e-05, momentum=0.1)\n"
                    "    (act): Tanh()\n"
                    "  (head): Linear(4, 2, bias=False)")
    assert repr(nn.Tanh()) == "Tanh()"                                  # nothing to count


def test_repr_merges_identical_siblings_cuts_deep_trees_and_caps_lines():
    from tinydgm.nn.module import REPR_DEPTH, REPR_LINES
    deep = nn.Sequential(nn.Sequential(nn.Sequential(nn.Sequential(nn.Tanh()))))
    lines = repr(deep).splitlines()
    assert len(lines) == REPR_DEPTH + 1 and lines[-1] == "      (0): Sequential() ..."       # the Tanh is cut
    layers = nn.ModuleList([nn.Linear(2, 2, rng=np.random.default_rng(0)) for _ in range(5)] + [nn.Tanh()])
    assert repr(layers).splitlines()[1:] == ["  (0-4): 5 x Linear(2, 2, bias=True)", "  (5): Tanh()"]
    wide = nn.ModuleList([nn.Linear(1, k + 1) for k in range(100)])        # all different
    lines = repr(wide).splitlines()
    assert len(lines) == REPR_LINES and lines[-1] == f"  ... ({101 - REPR_LINES + 1} more lines)"


def test_base_module_forward_is_not_defined():
    with pytest.raises(NotImplementedError, match="Module does not define forward"):
        nn.Module()(1)


# ----------------------------------------------------------------------------- Parameter

def test_parameter_is_a_trainable_leaf():
    p = nn.Parameter(td.tensor([1.0, 2.0]))
    assert isinstance(p, td.Tensor) and p.requires_grad and p.is_leaf
    assert repr(p).startswith("Parameter(tensor([1. 2.]")
    (p * p).sum().backward()
    np.testing.assert_allclose(p.grad.numpy(), [2.0, 4.0])
    frozen = nn.Parameter(np.zeros(2, dtype=np.float32), requires_grad=False)
    assert not frozen.requires_grad
    with pytest.raises(TypeError, match="only floating tensors can require gradients"):
        nn.Parameter(np.zeros(2, dtype=np.int64))


def test_parameter_from_a_tensor_shares_its_array():
    t = td.tensor([1.0, 2.0])
    p = nn.Parameter(t)
    assert p.data is t.data


# ----------------------------------------------------------------------------- init

DRAWS = (400, 500)          # 200,000 draws: the sample variance is within ~0.5% (1 sigma)
VAR_RTOL = 0.03             # of the formula for these distributions; 3% is > 6 sigma
CONV = (64, 32, 5, 5)       # (C_out, C_in, kH, kW): fan_in = 800, fan_out = 1600


@pytest.mark.parametrize("scheme, layout, shape, variance", [
    ("lecun_uniform", "dense", DRAWS, 1 / (3 * 400)),                     # (2 b)^2 / 12, b = 1/sqrt(fan_in)
    ("lecun_uniform", "conv", CONV, 1 / (3 * 800)),
    ("xavier_uniform", "dense", DRAWS, 2 / (400 + 500)),                  # a^2 / 3, a = sqrt(6 / (in + out))
    ("xavier_uniform", "conv", CONV, 2 / (800 + 1600)),
    ("xavier_normal", "dense", DRAWS, 2 / (400 + 500)),
    ("kaiming_uniform", "dense", DRAWS, 2 / 400),                         # b^2 / 3, b = sqrt(6 / fan_in)
    ("kaiming_normal", "dense", DRAWS, 2 / 400),
    ("kaiming_normal", "conv", CONV, 2 / 800),
])
def test_init_variance_matches_the_formula(scheme, layout, shape, variance):
    w = getattr(init, scheme)(shape, layout, rng=np.random.default_rng(0))
    assert w.shape == shape and w.dtype == td.get_default_dtype()
    assert abs(w.mean()) < 5 * math.sqrt(variance / w.size)
    np.testing.assert_allclose(w.var(), variance, rtol=VAR_RTOL)
    if "uniform" in scheme:                                  # the bound itself: sqrt(3 variance)
        bound = math.sqrt(3 * variance)
        assert np.abs(w).max() <= bound * (1 + 1e-6) and np.abs(w).max() > 0.999 * bound


def test_xavier_gain_scales_the_standard_deviation():
    shape, rng = DRAWS, np.random.default_rng(0)
    w = init.xavier_normal(shape, gain=math.sqrt(2), rng=rng)
    np.testing.assert_allclose(w.var(), 2 * 2 / (400 + 500), rtol=VAR_RTOL)


def test_fans_and_their_errors():
    assert init.fans((3, 7)) == (3, 7)
    assert init.fans((16, 8, 3, 5), "conv") == (8 * 15, 16 * 15)
    with pytest.raises(ValueError, match=r"dense weight has 2 dimensions .* got shape \(2, 3, 4\)"):
        init.fans((2, 3, 4))
    with pytest.raises(ValueError, match=r"conv weight has 4 dimensions"):
        init.fans((2, 3), "conv")
    with pytest.raises(ValueError, match="layout must be"):
        init.fans((2, 3), "sparse")


def test_init_dtype_and_zeros():
    assert init.normal((2, 3), 1.0, dtype="float64").dtype == np.float64
    z = init.zeros((2, 3))
    assert z.dtype == np.float32 and not z.any()


def test_same_generator_seed_gives_the_same_weights():
    a = nn.Linear(5, 3, rng=np.random.default_rng(11))
    b = nn.Linear(5, 3, rng=np.random.default_rng(11))
    c = nn.Linear(5, 3, rng=np.random.default_rng(12))
    np.testing.assert_array_equal(a.weight.numpy(), b.weight.numpy())
    np.testing.assert_array_equal(a.bias.numpy(), b.bias.numpy())
    assert not np.array_equal(a.weight.numpy(), c.weight.numpy())


def test_td_seed_makes_default_initialisation_repeatable():
    td.seed(123)
    first = [p.numpy() for p in Net().parameters()]
    second = [p.numpy() for p in Net().parameters()]     # the generator moved on
    td.seed(123)
    again = [p.numpy() for p in Net().parameters()]
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[1], second[1])


def test_a_module_used_twice_is_listed_once():
    from tinydgm import nn as tnn

    class Twice(tnn.Module):
        def __init__(self):
            super().__init__()
            self.norm = tnn.BatchNorm(3)
            self.again = self.norm

    m = Twice()
    assert [name for name, _ in m.named_modules()] == ["", "norm"]
    keys = list(m.state_dict())
    assert "norm.running_mean" in keys and not any(k.startswith("again.") for k in keys)
