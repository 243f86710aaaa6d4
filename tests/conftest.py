"""Shared test setup: debug mode (every backward step checks its gradient's shape and
dtype), float32 default restored after each test, and the devices.

The ``device`` fixture runs a test on "cpu", on "cuda" (a real GPU through CuPy; skipped
without one) and on "cuda-standin": the device "cuda" served by tinydgm.standin, the strict
CuPy stand-in on NumPy, so that the CUDA path runs on every machine. A test marked
``cuda`` without the fixture runs on the GPU where there is one, else on the stand-in
(``-m standin`` selects the stand-in runs, ``-m cuda`` the GPU ones)."""
import os
import sys

import pytest
from hypothesis import settings

import tinydgm as td
from tinydgm import backend

# The shared helpers (contracts.py, flow_contracts.py, paths.py) import by name from every
# test folder.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

# Property tests draw the same examples on every run (a red CI must be reproducible);
# HYPOTHESIS_PROFILE=explore draws new ones.
settings.register_profile("ci", derandomize=True, deadline=None)
settings.register_profile("explore", deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(autouse=True)
def _engine_debug_mode():
    td.set_debug(True)
    dtype = td.get_default_dtype()
    yield
    td.set_default_dtype(dtype)


_DEVICE_FIXTURES = {"device", "cuda_device"}


def _on_gpu(item):
    """True for a test that needs the real GPU: the "cuda" parameter of a device fixture (a
    test marked ``cuda`` without one falls back to the stand-in instead)."""
    params = getattr(getattr(item, "callspec", None), "params", {})
    return any(params.get(name) == "cuda" for name in _DEVICE_FIXTURES)


def pytest_collection_modifyitems(config, items):
    if td.cuda_available():
        return
    skip = pytest.mark.skip(reason="needs CuPy and a CUDA device (none on this machine)")
    for item in items:
        if _on_gpu(item):
            item.add_marker(skip)
        elif "cuda" in item.keywords and not _DEVICE_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.standin)


def pytest_configure(config):
    config.addinivalue_line("markers", "cuda: runs on the CUDA device through CuPy")
    config.addinivalue_line("markers", "standin: runs the CUDA path on the CuPy stand-in (tinydgm.standin)")


@pytest.fixture(autouse=True, scope="session")
def _standin_only_where_a_test_asks():
    """TINYDGM_CUDA_STANDIN=1 in the environment would make every "cuda" the stand-in
    (and the tests of the missing-CuPy hint fail): the suite switches it per test."""
    with backend.cuda_standin(False):
        yield


@pytest.fixture(autouse=True)
def _cuda_marked_tests_use_the_standin_without_a_gpu(request):
    """A test marked ``cuda`` that names "cuda" itself runs on the stand-in without a GPU."""
    if "standin" in request.keywords and not _DEVICE_FIXTURES & set(request.fixturenames):
        with backend.cuda_standin():
            yield
    else:
        yield


def _serve(param):
    """The device name a test sees for a fixture parameter, with the stand-in switched on
    for "cuda-standin"."""
    if param == "cuda-standin":
        with backend.cuda_standin():
            yield "cuda"
    else:
        yield param


_CUDA_PARAMS = [pytest.param("cuda", marks=pytest.mark.cuda), pytest.param("cuda-standin", marks=pytest.mark.standin)]


@pytest.fixture(params=["cpu"] + _CUDA_PARAMS)
def device(request):
    """Run a test on every device: "cpu" always, "cuda" where CuPy sees a GPU, and "cuda"
    served by the CuPy stand-in (the test sees the device name "cuda")."""
    yield from _serve(request.param)


@pytest.fixture(params=_CUDA_PARAMS)
def cuda_device(request):
    """The ``device`` fixture without "cpu": for tests that compare a device run with the
    CPU's."""
    yield from _serve(request.param)
