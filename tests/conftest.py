"""Shared test setup: debug mode (every backward step checks its gradient's shape and
dtype), float32 default restored after each test, and the ``cuda`` marker."""
import os
import sys

import pytest
from hypothesis import settings

import tinydgm as td

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


def pytest_collection_modifyitems(config, items):
    if td.cuda_available():
        return
    skip = pytest.mark.skip(reason="needs CuPy and a CUDA device (none on this machine)")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


def pytest_configure(config):
    config.addinivalue_line("markers", "cuda: runs on the CUDA device through CuPy")


@pytest.fixture(params=["cpu", pytest.param("cuda", marks=pytest.mark.cuda)])
def device(request):
    """Run a test on every device: "cpu" always, "cuda" where CuPy sees a GPU."""
    return request.param
