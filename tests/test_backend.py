"""tinydgm/backend.py: array modules, devices, default dtype, seeded randomness, and the
backend discipline (no module outside backend.py talks to numpy directly)."""
import ast
import importlib
import pathlib
import pkgutil
import types

import numpy as np
import pytest

import tinydgm as td
from tinydgm import backend

PACKAGE_DIR = pathlib.Path(td.__file__).resolve().parent
HAS_CUPY = backend.cupy is not None


# ----------------------------------------------------------------------------- array modules

def test_get_array_module_is_numpy_for_numpy_data():
    a = np.ones(3)
    assert backend.get_array_module(a) is np
    assert backend.get_array_module(td.tensor(a)) is np
    assert backend.get_array_module(a, td.tensor(a), 2.0) is np
    assert backend.get_array_module() is np
    assert td.get_array_module is backend.get_array_module
    assert backend.xp_of(a) is np


def test_module_for_device():
    assert backend.module_for_device("cpu") is np
    assert backend.module_for_device(None) is np


def test_module_for_cuda_without_cupy_says_how_to_install():
    if HAS_CUPY:
        pytest.skip("CuPy is installed: the install hint is not shown")
    with pytest.raises(RuntimeError) as info:
        backend.module_for_device("cuda")
    message = str(info.value)
    assert "CuPy" in message and "pip install" in message and "cuda12" in message
    with pytest.raises(RuntimeError, match="pip install"):
        backend.rng(0, device="cuda")
    with pytest.raises(RuntimeError, match="pip install"):
        backend.as_array([1.0], device="cuda")


def test_cuda_available_is_false_without_a_gpu():
    if HAS_CUPY and td.cuda_available():
        pytest.skip("CuPy sees a CUDA device on this machine")
    assert td.cuda_available() is False


def test_check_device():
    assert backend.check_device("cpu") == "cpu"
    assert backend.check_device("cuda") == "cuda"
    assert backend.check_device(None) == "cpu"
    with pytest.raises(ValueError) as info:
        backend.check_device("gpu")
    assert "'gpu'" in str(info.value) and "cpu" in str(info.value) and "cuda" in str(info.value)


def test_device_of_numpy_is_cpu():
    assert backend.device_of(np.ones(2)) == "cpu"
    assert backend.device_of(np.float32(1.0)) == "cpu"


# ----------------------------------------------------------------------------- conversions

def test_to_numpy_of_numpy_array_is_a_no_op():
    a = np.arange(4.0)
    assert backend.to_numpy(a) is a


def test_to_numpy_and_to_device_round_trip(device):
    a = np.arange(6.0).reshape(2, 3)
    on_device = backend.to_device(a, device)
    assert backend.device_of(on_device) == device
    back = backend.to_numpy(on_device)
    assert isinstance(back, np.ndarray)
    np.testing.assert_array_equal(back, a)


def test_as_array_gives_default_dtype_to_python_floats(device):
    assert backend.as_array(1.5, device=device).dtype == np.float32
    assert backend.as_array([1.0, 2.0], device=device).dtype == np.float32
    with td.default_dtype("float64"):
        assert backend.as_array(1.5, device=device).dtype == np.float64
        assert backend.as_array([[1.0], [2.5]], device=device).dtype == np.float64
    assert backend.as_array([1, 2], device=device).dtype.kind == "i"
    assert backend.as_array([1.0], dtype="float64", device=device).dtype == np.float64
    assert backend.as_array(np.ones(2, dtype=np.float64), device=device).dtype == np.float64


def test_as_array_keeps_device_of_the_data(device):
    a = backend.to_device(np.ones(2), device)
    assert backend.device_of(backend.as_array(a)) == device


def test_ensure_array_wraps_numpy_scalars():
    a = backend.ensure_array(np.float32(2.0))
    assert isinstance(a, np.ndarray) and a.shape == () and a.dtype == np.float32


def test_small_helpers():
    assert backend.is_floating(np.float32) and backend.is_floating("float64")
    assert not backend.is_floating(np.int64) and not backend.is_floating(bool)
    assert backend.is_array(np.ones(1)) and not backend.is_array([1.0]) and not backend.is_array(1.0)
    assert backend.broadcast_shapes((2, 1, 3), (4, 1)) == (2, 4, 3)
    z = backend.zeros((2, 3), "float32", like=np.ones(1))
    assert z.shape == (2, 3) and z.dtype == np.float32 and not z.any()
    np.testing.assert_array_equal(backend.ones_like(np.zeros((2, 2), dtype=np.float32)), np.ones((2, 2)))


def test_scatter_add_adds_repeated_indices():
    target = np.zeros(4)
    backend.scatter_add(np, target, np.array([0, 2, 0, 0]), np.array([1.0, 2.0, 3.0, 4.0]))
    np.testing.assert_array_equal(target, [8.0, 0.0, 2.0, 0.0])


# ----------------------------------------------------------------------------- default dtype

def test_set_default_dtype_accepts_float32_and_float64():
    backend.set_default_dtype("float64")
    assert td.get_default_dtype() == np.float64
    backend.set_default_dtype(np.float32)
    assert td.get_default_dtype() == np.float32


@pytest.mark.parametrize("bad", ["float16", "int32", np.int64, "complex128"])
def test_set_default_dtype_rejects_others(bad):
    with pytest.raises(ValueError, match="float32 or float64") as info:
        td.set_default_dtype(bad)
    assert str(np.dtype(bad)) in str(info.value)
    assert td.get_default_dtype() == np.float32          # unchanged


def test_default_dtype_context_restores_even_after_an_error():
    with td.default_dtype("float64"):
        assert td.get_default_dtype() == np.float64
    assert td.get_default_dtype() == np.float32
    with pytest.raises(KeyError):
        with td.default_dtype("float64"):
            raise KeyError("boom")
    assert td.get_default_dtype() == np.float32
    with pytest.raises(ValueError):
        with td.default_dtype("float16"):
            pass
    assert td.get_default_dtype() == np.float32


# ----------------------------------------------------------------------------- randomness

def test_rng_same_seed_same_draws_different_seed_different_draws(device):
    draw = lambda seed: backend.to_numpy(backend.rng(seed, device=device).standard_normal(16))  # noqa: E731
    np.testing.assert_array_equal(draw(7), draw(7))
    assert not np.array_equal(draw(7), draw(8))
    u1 = backend.to_numpy(backend.rng(3, device=device).uniform(size=5))
    u2 = backend.to_numpy(backend.rng(3, device=device).uniform(size=5))
    np.testing.assert_array_equal(u1, u2)


def test_rng_is_exported():
    assert td.rng is backend.rng
    assert isinstance(td.rng(0), np.random.Generator)


# ----------------------------------------------------------------------------- backend discipline

# Numba kernels in tinydgm/kernels/ are pure functions on NumPy arrays by design (numba
# compiles NumPy code; their vectorized xp twins serve CuPy), so that directory may import
# numpy. tinydgm/data/ may too: datasets are host-side NumPy arrays (files on disk, toy
# samples, minibatches), never tensor data; its Tensor transforms use engine ops.
# standin/ is the CuPy stand-in, a test backend built on NumPy by design (it is what
# backend.py hands out for "cuda" when the stand-in is active). Everything else must go
# through backend.py.
ALLOWED = ("backend.py", "standin/", "kernels/", "data/")
FORBIDDEN_MODULES = ("numpy", "scipy")


def _forbidden(module_name):
    return module_name is not None and module_name.split(".")[0] in FORBIDDEN_MODULES


def _library_files():
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        rel = path.relative_to(PACKAGE_DIR).as_posix()
        if rel == ALLOWED[0] or rel.startswith(ALLOWED[1:]):
            continue
        yield rel, path


def _numpy_uses(tree):
    """(line, what) for each way a module reaches numpy/scipy directly."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, f"import {a.name}") for a in node.names if _forbidden(a.name)]
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0 and _forbidden(node.module):
                found.append((node.lineno, f"from {node.module} import ..."))
            found += [(node.lineno, f"from {node.module or '.'} import {a.name}")
                      for a in node.names if a.name in FORBIDDEN_MODULES]
        elif isinstance(node, ast.Call):               # importlib.import_module("numpy"), __import__("numpy")
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if name in ("import_module", "__import__") and node.args \
                    and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str) \
                    and _forbidden(node.args[0].value):
                found.append((node.lineno, f"{name}({node.args[0].value!r})"))
        elif isinstance(node, ast.Attribute) and node.attr in FORBIDDEN_MODULES \
                and isinstance(node.value, ast.Name) and node.value.id == "backend":
            found.append((node.lineno, f"backend.{node.attr}"))  # numpy borrowed from backend
    return found


def test_backend_discipline_static():
    """No module outside backend.py (and kernels/) imports numpy or scipy."""
    files = list(_library_files())
    assert any(rel == "autodiff/core.py" for rel, _ in files)      # the walk sees the package
    violations = []
    for rel, path in files:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        violations += [f"tinydgm/{rel}:{line}: {what}" for line, what in _numpy_uses(tree)]
    assert not violations, ("code outside tinydgm/backend.py must reach numpy/cupy through "
                            "backend (xp = backend.xp_of(a)); found:\n  " + "\n  ".join(violations))


def test_discipline_checker_finds_every_form():
    """The checker itself: each way of reaching numpy is reported with its line."""
    source = "\n".join([
        "import numpy",
        "import numpy as np",
        "from numpy import exp",
        "from numpy.random import default_rng",
        "import scipy.special",
        "from tinydgm.backend import numpy",
        "xp = importlib.import_module('numpy')",
        "y = backend.numpy.exp(x)",
        "import numba, math",
        "from tinydgm import backend",
        "xp = backend.xp_of(x)",
        "z = t.numpy()",
    ])
    lines = sorted(line for line, _ in _numpy_uses(ast.parse(source)))
    assert lines == [1, 2, 3, 4, 5, 6, 7, 8]


def _library_modules():
    for info in pkgutil.walk_packages(td.__path__, "tinydgm."):
        name = info.name
        rel = name[len("tinydgm."):].replace(".", "/")
        if name.endswith("__main__") or rel == "backend" or any(
                rel == d.rstrip("/") or rel.startswith(d) for d in ALLOWED[1:]):
            continue
        yield name


def test_backend_discipline_module_globals():
    """At run time: no imported module outside backend.py holds numpy, scipy or a numpy
    function in its globals (this also catches ``np = getattr(backend, "numpy")``).

    A check that monkeypatches numpy's functions during a computation is not possible
    here: the library's legitimate ``xp.exp`` *is* ``numpy.exp`` on the CPU."""
    violations, checked = [], 0
    for name in _library_modules():
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:           # an optional dependency (numba, matplotlib)
            if err.name and not err.name.startswith("tinydgm"):
                continue
            raise
        checked += 1
        for attr, value in vars(module).items():
            if isinstance(value, types.ModuleType) and _forbidden(value.__name__):
                violations.append(f"{name}.{attr} is the module {value.__name__}")
            elif isinstance(value, np.ufunc) or (
                    isinstance(value, (types.FunctionType, types.BuiltinFunctionType))
                    and _forbidden(getattr(value, "__module__", None) or "")):
                violations.append(f"{name}.{attr} is numpy's {getattr(value, '__name__', value)!s}")
    assert checked >= 5
    assert not violations, "numpy reached outside backend.py:\n  " + "\n  ".join(violations)
