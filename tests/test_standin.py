"""tinydgm/standin: the strict CuPy stand-in. Each refusal CuPy makes is made (implicit
conversion to NumPy, NumPy functions and ufuncs on device arrays, NumPy operands, Numba
kernels, names and keywords CuPy 13 lacks), each thing CuPy allows is allowed (explicit
transfers, host indices and values, NumPy scalars, float()/int()), results stay on the
device (0-d arrays for reductions and single elements), and backend serves "cuda" by it
only while it is switched on."""
import copy
import os
import pickle
import subprocess
import sys

import numba
import numpy as np
import pytest

import tinydgm as td
from tinydgm import backend, standin
from tinydgm.standin import IMPLICIT, cupy as cp, cupyx

IMPLICIT_RE = r"Implicit conversion to a NumPy array is not allowed\. Please use `\.get\(\)`"


def device_array(values=None):
    return cp.asarray(np.arange(6.0).reshape(2, 3) if values is None else values)


# ----------------------------------------------------------------------------- refusals

@pytest.mark.parametrize("convert", [np.asarray, np.array, np.ascontiguousarray,
                                     lambda a: np.testing.assert_allclose(a, 0)])
def test_implicit_conversion_to_numpy_is_refused_with_cupys_message(convert):
    with pytest.raises(TypeError, match=IMPLICIT_RE):
        convert(device_array())
    assert IMPLICIT.startswith("Implicit conversion to a NumPy array is not allowed.")


@pytest.mark.parametrize("call", [lambda a: np.sum(a), lambda a: np.concatenate([a, a]), lambda a: np.mean(a),
                                  lambda a: np.where(a > 1, a, 0.0), lambda a: np.linalg.norm(a)],
                         ids=["sum", "concatenate", "mean", "where", "linalg.norm"])
def test_numpy_functions_on_device_arrays_are_refused(call):
    with pytest.raises(TypeError, match=IMPLICIT_RE + r".*numpy\.\w+ called on a device array"):
        call(device_array())


@pytest.mark.parametrize("call", [lambda a: np.exp(a), lambda a: np.add(a, 1.0), lambda a: np.maximum.reduce(a),
                                  lambda a: np.add.at(a, [0], 1.0), lambda a: np.ones(3) + a],
                         ids=["exp", "add", "maximum.reduce", "add.at", "host+device"])
def test_numpy_ufuncs_on_device_arrays_are_refused(call):
    with pytest.raises(TypeError, match=IMPLICIT_RE + r".*numpy ufunc \w+\.\w+ called"):
        call(device_array())


@pytest.mark.parametrize("call", [lambda a: a + np.ones(3), lambda a: a * np.ones((2, 3)), lambda a: cp.exp(np.ones(2)),
                                  lambda a: cp.concatenate([a, np.ones((1, 3))]), lambda a: a.dot(np.ones(3)),
                                  lambda a: cp.add(a, [1.0, 2.0, 3.0])],
                         ids=["a+host", "a*host", "exp(host)", "concatenate", "dot", "add(list)"])
def test_host_arrays_are_refused_as_operands(call):
    with pytest.raises(TypeError, match=r"Unsupported type <class '(numpy\.ndarray|list)'>"):
        call(device_array())


def test_numba_kernels_refuse_device_arrays():
    @numba.njit
    def total(x):
        return x.sum()
    assert total(np.ones(3)) == 3.0
    with pytest.raises(numba.core.errors.TypingError):
        total(device_array())


def test_a_device_array_has_no_index_and_no_hash():
    index = cp.asarray(1)
    with pytest.raises(TypeError):
        [10, 20, 30][index]                         # CuPy's ndarray has no __index__: int(index) first
    with pytest.raises(TypeError):
        range(index)
    assert [10, 20, 30][int(index)] == 20
    with pytest.raises(TypeError, match="unhashable"):
        hash(index)


# ----------------------------------------------------------------------------- CuPy's namespace and signatures

@pytest.mark.parametrize("name", ["errstate", "trapezoid", "seterr", "nditer", "vectorize_unknown", "lib.npyio"])
def test_names_cupy_lacks_are_absent(name):
    namespace = cp
    *parents, last = name.split(".")
    for part in parents:
        namespace = getattr(namespace, part)
    with pytest.raises(AttributeError, match=rf"has no attribute '{last}' \(CuPy stand-in"):
        getattr(namespace, last)
    assert not hasattr(cp, "errstate")              # what distributions.py checks before using it


def test_missing_names_say_when_numpy_has_them():
    with pytest.raises(AttributeError, match="numpy has numpy.trapezoid but CuPy 13 does not"):
        cp.trapezoid
    with pytest.raises(AttributeError, match="cupy.linalg' has no attribute 'eig'.*numpy has numpy.linalg.eig"):
        cp.linalg.eig
    assert callable(cp.linalg.eigh) and callable(cp.lib.stride_tricks.as_strided) and callable(cp.fft.rfft)


def test_ufunc_methods_exist_only_where_cupy_has_them():
    a = cp.zeros(4)
    cp.add.at(a, cp.asarray([0, 2, 0]), 1.0)                          # CuPy 13: a scatter
    cp.maximum.at(a, cp.asarray([3]), 5.0)
    np.testing.assert_array_equal(a.get(), [2.0, 0.0, 1.0, 5.0])
    with pytest.raises(NotImplementedError, match=r"`cupy_multiply.at` is not supported"):
        cp.multiply.at(a, cp.asarray([0]), 2.0)
    assert float(cp.add.reduce(a)) == 8.0 and float(cp.multiply.reduce(cp.asarray([2.0, 3.0]))) == 6.0
    with pytest.raises(NotImplementedError, match=r"`cupy_maximum.reduce` is not supported"):
        cp.maximum.reduce(a)
    with pytest.raises(NotImplementedError, match=r"`cupy_subtract.accumulate`"):
        cp.subtract.accumulate(a)
    np.testing.assert_array_equal(cp.multiply.outer(cp.arange(2), cp.arange(3)).get(), np.outer(range(2), range(3)))


def test_scatter_add_adds_repeated_indices_on_the_device():
    target = cp.zeros(4)
    cupyx.scatter_add(target, cp.asarray([0, 2, 0, 0]), cp.asarray([1.0, 2.0, 3.0, 4.0]))
    np.testing.assert_array_equal(target.get(), [8.0, 0.0, 2.0, 0.0])
    backend.scatter_add(cp, target, cp.asarray([1, 1]), 0.5)            # what the engine calls
    np.testing.assert_array_equal(target.get(), [8.0, 1.0, 2.0, 0.0])


@pytest.mark.parametrize("call, keyword", [
    (lambda a: a.min(initial=0), "initial"), (lambda a: a.sum(where=a > 0), "where"),
    (lambda a: cp.sum(a, initial=0.0), "initial"), (lambda a: cp.exp(a, where=a > 0), "where"),
    (lambda a: cp.linalg.svd(a, hermitian=False), "hermitian"), (lambda a: a.reshape((3, 2), copy=True), "copy"),
    (lambda a: cp.sort(a, stable=True), "stable")])
def test_keywords_cupy_does_not_take_are_refused(call, keyword):
    with pytest.raises(TypeError, match=rf"unexpected keyword argument '{keyword}'"):
        call(device_array())


def test_signatures_cupy_takes_are_accepted():
    a = device_array()
    assert a.sum(axis=0, keepdims=True).shape == (1, 3) and a.astype("float32", copy=False).dtype == np.float32
    assert cp.concatenate([a, a], axis=0).shape == (4, 3) and a.reshape(3, 2).shape == (3, 2)
    assert cp.matmul(a, a.T, out=cp.empty((2, 2))).shape == (2, 2)
    assert float(np.sum(a.get(), None, None, None, False, 10.0)) == 25.0       # NumPy's 6th: initial
    with pytest.raises(TypeError, match=r"sum\(\) takes 5 positional arguments on CuPy 13, 6 were given"):
        cp.sum(a, None, None, None, False, 10.0)


def test_random_has_cupys_generator_api():
    rng = cp.random.default_rng(0)
    assert cp.random.default_rng(rng) is rng
    for draw in (rng.random(3), rng.standard_normal((2, 2), dtype="float32"), rng.uniform(-1, 1, 4),
                 rng.integers(0, 5, 6), rng.binomial(3, 0.5, size=2)):
        assert type(draw) is standin.ndarray
    assert rng.standard_normal(dtype="float32").dtype == np.float32 and rng.random().shape == ()
    for missing in ("normal", "choice", "permutation", "shuffle"):
        assert not hasattr(rng, missing), missing
    with pytest.raises(TypeError, match="float32 or float64"):
        rng.random(3, dtype="int32")
    with pytest.raises(TypeError, match="unexpected keyword argument 'loc'"):
        rng.gamma(2.0, loc=1.0)
    with pytest.raises(AttributeError, match="cupy.random' has no attribute 'normal'"):
        cp.random.normal


# ----------------------------------------------------------------------------- what CuPy allows

def test_results_stay_on_the_device_as_0d_arrays():
    a = device_array()
    for value in (a.sum(), a.max(), a[1, 2], cp.mean(a), a.sum() * 2, cp.linalg.det(cp.eye(2)), cp.argmax(a)):
        assert type(value) is standin.ndarray and value.shape == (), repr(value)
    assert float(a.sum()) == 15.0 and int(a.argmax()) == 5 and a[1, 2].item() == 5.0
    assert bool(a[0, 0] == 0) and a.tolist() == [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]
    assert f"{a.sum():.1f}" == "15.0"
    rows = list(a)
    assert len(rows) == 2 and type(rows[0]) is standin.ndarray and rows[0].shape == (3,)
    with pytest.raises(TypeError, match="iteration over a 0-d array"):
        iter(a.sum())


def test_numpy_scalars_and_python_numbers_mix_with_device_arrays():
    a = device_array()
    for value in (np.float32(2) * a, a * np.float64(2), 2 * a, a / 2.0, -a + 1, a ** 2, np.int64(1) + a):
        assert type(value) is standin.ndarray and value.shape == (2, 3)
    np.testing.assert_array_equal((np.float64(2) * a).get(), 2 * np.arange(6.0).reshape(2, 3))
    assert bool((a == np.asarray(3.0))[1, 0])                     # a 0-d host array compares, as on CuPy


def test_host_data_reaches_the_device_only_by_copy():
    host = np.arange(4.0)
    a = cp.asarray(host)
    host[0] = 99.0                                          # a transfer copies: the device keeps 0
    assert a.get()[0] == 0.0 and cp.asarray(a) is a
    a[np.array([1, 2])] = np.array([7.0, 8.0])              # host indices and values: CuPy takes them
    a[[3]] = 9.0
    np.testing.assert_array_equal(a.get(), [0.0, 7.0, 8.0, 9.0])
    np.testing.assert_array_equal(a[np.array([True, False, True, False])].get(), [0.0, 8.0])
    back = backend.to_numpy(a)
    back[0] = -1.0                                          # and the way back is a copy too
    assert a.get()[0] == 0.0 and type(back) is np.ndarray


@pytest.mark.parametrize("values", [["a", "b"], [object(), None], np.array(["2020-01-01"], dtype="datetime64[D]")],
                         ids=["str", "object", "datetime"])
def test_only_booleans_and_numbers_reach_the_device(values):
    with pytest.raises(ValueError, match="Unsupported dtype"):
        cp.asarray(values)
    assert cp.asarray([True, False]).dtype == bool and cp.array([1 + 2j]).dtype == np.complex128


def test_in_place_operators_views_and_out_write_into_the_device_array():
    a = device_array()
    view = a[0]
    view += 10.0
    a[1] *= cp.asarray(2.0)
    cp.exp(cp.zeros(3), out=a[1])
    np.testing.assert_array_equal(a.get(), [[10.0, 11.0, 12.0], [1.0, 1.0, 1.0]])
    b = cp.zeros(3)
    assert cp.add(cp.ones(3), 1.0, out=b) is b and b.get().tolist() == [2.0, 2.0, 2.0]


def test_device_attributes_are_cupys():
    a = device_array()
    assert isinstance(a.data, standin.MemoryPointer)            # on CuPy, .data is a pointer, not values
    assert a.flags.c_contiguous and not a.T.flags.c_contiguous and a.device.id == 0
    with pytest.raises(AttributeError):
        a.flags.writeable                                       # CuPy has no writeable flag
    assert backend.get_array_module(a) is cp                    # not misled by a.data


def test_copy_deepcopy_and_pickle_keep_arrays_on_the_device():
    a = device_array()
    for other in (copy.copy(a), copy.deepcopy(a), pickle.loads(pickle.dumps(a))):
        assert type(other) is standin.ndarray and other is not a
        np.testing.assert_array_equal(other.get(), a.get())


# ----------------------------------------------------------------------------- the switch

def test_cuda_means_the_standin_only_while_it_is_on():
    assert not backend.cuda_standin_active()
    with backend.cuda_standin() as module:
        assert module is cp and backend.cuda_standin_active()
        assert backend.module_for_device("cuda") is cp
        x = td.tensor([1.0, 2.0], device="cuda")
        assert type(x.data) is standin.ndarray and x.device == "cuda"
        assert backend.device_of(x.data) == "cuda" and backend.get_array_module(x) is cp
        assert type(backend.rng(0, device="cuda")) is standin.Generator
        assert backend.to_numpy(x.data).tolist() == [1.0, 2.0] and x.to("cpu").device == "cpu"
        with backend.cuda_standin(False):
            assert not backend.cuda_standin_active()
    assert not backend.cuda_standin_active()
    assert td.cuda_available() is (backend.cupy is not None and backend.cuda_available())   # the stand-in is no GPU


def test_the_environment_switch_serves_cuda_by_the_standin(tmp_path):
    code = ("import tinydgm as td; from tinydgm import backend; "
            "x = td.tensor([1.0], device='cuda'); print(backend.cuda_standin_active(), type(x.data).__module__)")
    env = dict(os.environ, TINYDGM_CUDA_STANDIN="1")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = os.pathsep.join([root, env.get("PYTHONPATH", "")])
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True,
                         cwd=tmp_path).stdout
    assert out.split() == ["True", "tinydgm.standin"]


def test_device_tensors_refuse_numpy_through_the_engine_too():
    with backend.cuda_standin():
        x = td.tensor([[1.0, 2.0]], device="cuda", requires_grad=True)
        y = (x * x).sum()
        y.backward()
        assert x.grad.device == "cuda" and x.grad.numpy().tolist() == [[2.0, 4.0]]
        with pytest.raises(TypeError, match=IMPLICIT_RE):
            np.asarray(x.data)
        with pytest.raises(TypeError, match=IMPLICIT_RE):
            np.exp(y.data)


def test_info_says_when_cuda_is_the_standin(capsys):
    from tinydgm import cli
    with backend.cuda_standin():
        assert cli.main(["info"]) == 0
    out = capsys.readouterr().out
    assert "devices: cpu, cuda" in out and "cuda: the CuPy stand-in (tinydgm.standin" in out
    assert cli.main(["info"]) == 0
    assert "stand-in" not in capsys.readouterr().out


def test_host_side_samplers_name_the_generator_they_need():
    """The RBM family's noise is drawn on the CPU (kernels/uniforms.py): a device generator
    gets a clear error, not a failure deep in the sampler."""
    from tinydgm.kernels.uniforms import uniform
    from tinydgm.models import BernoulliRBM
    with pytest.raises(TypeError, match=r"uniform: rng must be a NumPy Generator .* got tinydgm.standin.Generator"):
        uniform(cp.random.default_rng(0), (2, 3))
    with backend.cuda_standin():
        rbm = BernoulliRBM(4, 2, rng=td.rng(0), dtype="float64").to("cuda")
        assert rbm.sample(3, rng=td.rng(1), k=2).device == "cuda"
        with pytest.raises(TypeError, match="rng must be a NumPy Generator"):
            rbm.sample(3, rng=td.rng(1, device="cuda"), k=2)
    with pytest.raises(TypeError, match=r"Argument 'out' has incorrect type \(expected cupy.ndarray, got ndarray\)"):
        cp.random.default_rng(0).random(out=np.empty(3))
