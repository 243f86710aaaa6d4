"""Every model answers the protocol's questions the same way (tinydgm/models/protocol.py):
loss -> finite 0-d Tensor with gradients for every parameter; log_prob (or its named bound)
-> Tensor (N,); sample -> Tensor (n, *event_shape) without graph on the model's device;
bits_per_dim = -log_prob / (D ln 2); one short epoch of train.fit raises the likelihood (or,
for a surrogate without one, moves every parameter); repr is a short summary. The models
come from the table in tests/models/protocol_cases.py, which must hold a case for every
exported model."""
import importlib
import math

import numpy as np
import pytest

import tinydgm as td
from tinydgm import models
from tinydgm.models.flows.base import Transform
from tinydgm.nn.module import REPR_LINES, Module
from tinydgm.train import fit

from protocol_cases import BATCH_SIZE, CASES, N, build, data_of

LOSS_CASES = [case for case in CASES if case.step == "loss"]
LIKELIHOOD_CASES = [case for case in CASES if case.likelihood is not None]


def _is_model(obj):
    """A public model: a Module class (not a flow Transform) with loss or train_step."""
    return isinstance(obj, type) and issubclass(obj, Module) and not issubclass(obj, Transform) and \
        (callable(getattr(obj, "loss", None)) or callable(getattr(obj, "train_step", None)))


def exported_models():
    """Every model class exported by a family package or by tinydgm.models, and every
    function tinydgm.models exports (the builders, such as toy_realnvp)."""
    names = {name for name in models.__all__ if name not in models._FAMILIES and
             (_is_model(getattr(models, name)) or not isinstance(getattr(models, name), type))}
    for family in models._FAMILIES:
        package = importlib.import_module(f"tinydgm.models.{family}")
        public = getattr(package, "__all__", None) or [name for name in dir(package) if not name.startswith("_")]
        names |= {name for name in public if _is_model(getattr(package, name))
                  and getattr(package, name).__module__.startswith(package.__name__)}
    return names


def test_every_exported_model_has_a_case():
    covered = {case.name.split(":")[0] for case in CASES} | {type(build(case)).__name__ for case in CASES}
    missing = sorted(exported_models() - covered)
    assert not missing, (f"no protocol case for {missing}: add a small Case to tests/models/protocol_cases.py "
                         "(its docstring says how)")


def test_the_coverage_check_sees_every_family():
    # the check above must not pass because it looks at nothing: it finds the models of every
    # family that has some, and not the flow transforms
    names = exported_models()
    assert {"NADE", "MADE", "PixelCNN", "BernoulliRBM", "DBM", "toy_realnvp", "DequantizedFlow"} <= names
    assert "AffineCoupling" not in names and "UniformDequantization" not in names


def _kwargs(case, seed=7):
    return dict(case.likelihood_kwargs, **({"rng": td.rng(seed)} if case.needs_rng else {}))


def _likelihood(model, case, x, seed=7):
    return getattr(model, case.likelihood)(x, **_kwargs(case, seed))


def _mean_likelihood(model, case, x):
    model.eval()
    try:
        with td.no_grad():
            return float(_likelihood(model, case, td.tensor(x, dtype="float64")).numpy().mean())
    finally:
        model.train()


# ----------------------------------------------------------------------------- loss

@pytest.mark.parametrize("case", LOSS_CASES, ids=repr)
def test_loss_is_a_finite_scalar_whose_gradient_reaches_every_parameter(case):
    model, x = build(case), data_of(case)
    model.rng = td.rng(3) if hasattr(model, "rng") and model.rng is None else getattr(model, "rng", None)
    loss = model.loss(td.tensor(x, dtype="float64"))
    assert isinstance(loss, td.Tensor) and loss.shape == () and math.isfinite(loss.item())
    loss.backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None]
    assert not missing, f"{case.name}: no gradient reaches {missing}"
    assert all(np.isfinite(p.grad.numpy()).all() for p in model.parameters())
    assert sum(float(np.abs(p.grad.numpy()).sum()) for p in model.parameters()) > 0


# ----------------------------------------------------------------------------- likelihood

@pytest.mark.parametrize("case", LIKELIHOOD_CASES, ids=repr)
def test_log_prob_or_its_named_bound_is_a_tensor_per_example(case):
    model, x = build(case), data_of(case)
    # a bound is never called log_prob, and an exact log-likelihood is
    assert (case.likelihood == "log_prob") == case.exact
    with td.no_grad():
        log_p = _likelihood(model, case, td.tensor(x, dtype="float64"))
    assert isinstance(log_p, td.Tensor) and log_p.shape == (N,)
    assert log_p.dtype == np.float64 and np.isfinite(log_p.numpy()).all()


@pytest.mark.parametrize("case", [c for c in LIKELIHOOD_CASES if c.bits], ids=repr)
def test_bits_per_dim_is_minus_log_prob_over_d_ln_2(case):
    model, x = build(case), data_of(case)
    n_dims = int(np.prod(case.event_shape))
    with td.no_grad():
        bits = model.bits_per_dim(td.tensor(x, dtype="float64"), **_kwargs(case))
        log_p = _likelihood(model, case, td.tensor(x, dtype="float64"))
    assert isinstance(bits, td.Tensor) and bits.shape == (N,)
    np.testing.assert_allclose(bits.numpy(), -log_p.numpy() / (n_dims * math.log(2)), rtol=1e-12)


def test_models_without_a_likelihood_have_no_log_prob():
    # the table's "no likelihood" must be true of the model, not a way to skip the checks
    for case in CASES:
        if case.likelihood is None:
            assert not hasattr(build(case), "log_prob"), case.name


# ----------------------------------------------------------------------------- sample

def test_only_models_without_a_distribution_skip_sampling():
    for case in CASES:
        if not case.samples:
            assert not hasattr(build(case), "sample"), case.name


@pytest.mark.parametrize("case", [c for c in CASES if c.samples], ids=repr)
def test_sample_is_a_tensor_of_the_event_shape_without_graph(case):
    model = build(case)
    param = model.parameters()[0]
    model.sample(2, rng=td.rng(10), **case.sample_kwargs)   # act-norm initialises itself on its first batch
    x = model.sample(5, rng=td.rng(11), **case.sample_kwargs)
    assert isinstance(x, td.Tensor), f"{case.name}.sample returned a {type(x).__name__}"
    assert x.shape == (5,) + tuple(case.event_shape)
    assert x.dtype == np.dtype(case.sample_dtype or param.dtype)
    assert x.device == param.device
    assert not x.requires_grad and x.creator is None
    assert np.isfinite(x.numpy().astype(np.float64)).all()
    kept = x.numpy().copy()
    again = model.sample(5, rng=td.rng(11), **case.sample_kwargs)       # the rng decides the draws
    np.testing.assert_array_equal(again.numpy(), kept)
    model.sample(5, rng=td.rng(12), **case.sample_kwargs)
    np.testing.assert_array_equal(x.numpy(), kept)          # no sampler buffer reused under the returned Tensor


# ----------------------------------------------------------------------------- train.fit

@pytest.mark.parametrize("case", LOSS_CASES, ids=repr)
def test_one_epoch_of_fit_trains_the_model(case):
    model, x = build(case), data_of(case)
    before_params = [p.numpy().copy() for p in model.parameters()]
    before = _mean_likelihood(model, case, x) if case.objective == "likelihood" else None
    history = fit(model, x, case.optimizer(model.parameters()), epochs=1, batch_size=BATCH_SIZE, seed=0,
                  progress=False)
    assert len(history["loss"]) == N // BATCH_SIZE and np.isfinite(history["loss"]).all()
    if case.objective == "likelihood":
        after = _mean_likelihood(model, case, x)
        assert after > before, f"{case.name}: mean {case.likelihood} {before:.4f} -> {after:.4f} after one epoch"
    else:
        unchanged = [name for (name, p), old in zip(model.named_parameters(), before_params)
                     if np.array_equal(p.numpy(), old)]
        assert not unchanged, f"{case.name}: fit left {unchanged} unchanged"


@pytest.mark.parametrize("case", [c for c in CASES if c.step == "train_step"], ids=repr)
def test_train_step_moves_both_players(case):
    model, x = build(case), data_of(case)
    before = {name: p.numpy().copy() for name, p in model.named_parameters()}
    for start in range(0, N, BATCH_SIZE):
        model.train_step(td.tensor(x[start:start + BATCH_SIZE], dtype="float64"), rng=td.rng(start))
    # every player (sub-module) moves; single parameters may not (a critic's output bias
    # cancels in the Wasserstein loss, so its gradient is exactly zero)
    moved = {name.split(".")[0] for name, p in model.named_parameters() if not np.array_equal(p.numpy(), before[name])}
    assert moved == {name for name, _ in model.named_children()}


# ----------------------------------------------------------------------------- repr

@pytest.mark.parametrize("case", CASES, ids=repr)
def test_repr_is_a_short_summary(case):
    model = build(case)
    text = repr(model)
    lines = text.splitlines()
    assert lines[0].startswith(type(model).__name__ + "(")
    assert f"{model.num_parameters():,} parameters, float64, cpu" in lines[0]
    assert len(lines) <= REPR_LINES
    assert "tensor(" not in text and "array(" not in text and "[[" not in text


def test_repr_of_a_large_model_stays_short():
    flow = models.image_realnvp((1, 28, 28), hidden_channels=8, n_blocks=1)      # hundreds of sub-modules
    lines = repr(flow).splitlines()
    assert len(flow.modules()) > 100 and len(lines) <= REPR_LINES
    assert lines[0].startswith("Flow(event_shape=(1, 28, 28)): ")


# ----------------------------------------------------------------------------- defaults

def test_made_784_500_works_out_of_the_box():
    # the paper's 784-500-784: hidden degrees drawn at random (a natural spread would need
    # 783 units), so the default constructor builds it and every method runs
    model = MADE_784_500 = models.MADE(784, [500], rng=td.rng(0))
    degrees = MADE_784_500.masks.degrees[1]
    assert degrees.min() >= 1 and degrees.max() <= 783 and len(set(degrees.tolist())) > 300
    x = (np.random.default_rng(0).random((3, 784)) < 0.3).astype(np.float32)
    with td.no_grad():
        assert model.log_prob(x).shape == (3,)
    assert model.sample(2, rng=td.rng(1)).shape == (2, 784)


@pytest.mark.cuda
@pytest.mark.parametrize("name", ["NADE", "MADE", "BernoulliRBM", "toy_realnvp"])
def test_samples_and_loss_stay_on_the_models_device(name):
    case = next(c for c in CASES if c.name == name)
    model = build(case).to("cuda")
    x = model.sample(5, rng=td.rng(11), **case.sample_kwargs)
    assert isinstance(x, td.Tensor) and x.device == "cuda" and x.shape == (5,) + tuple(case.event_shape)
    loss = model.loss(td.tensor(data_of(case), dtype="float64", device="cuda"))
    assert loss.device == "cuda" and math.isfinite(loss.item())
