"""The threading policy (tinydgm/threads.py): one thread count for BLAS and Numba, set for the
process, inside a block, or from TINYDGM_NUM_THREADS."""
import os
import subprocess
import sys

import numba
import pytest

import tinydgm as td
from tinydgm import threads

from paths import REPO_ROOT as REPO

needs_two = pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="Numba has one thread here")


def _blas_threads():
    return {n for _, n in threads.thread_info()["blas"]}


@pytest.fixture
def restore_threads():
    numba_before, blas_before = numba.get_num_threads(), _blas_threads()
    yield
    td.set_num_threads(max(blas_before | {numba_before}))
    numba.set_num_threads(numba_before)


@needs_two
def test_set_num_threads_sets_blas_and_numba(restore_threads):
    pytest.importorskip("threadpoolctl")
    info = td.set_num_threads(1)
    assert info["numba"] == 1 and numba.get_num_threads() == 1 and td.get_num_threads() == 1
    assert _blas_threads() == {1}
    td.set_num_threads(2)
    assert numba.get_num_threads() == 2 and _blas_threads() == {2}


@needs_two
def test_num_threads_block_restores(restore_threads):
    pytest.importorskip("threadpoolctl")
    td.set_num_threads(2)
    with td.num_threads(1):
        assert numba.get_num_threads() == 1 and _blas_threads() == {1}
    assert numba.get_num_threads() == 2 and _blas_threads() == {2}


def test_more_threads_than_numba_has_is_capped(restore_threads):
    td.set_num_threads(numba.config.NUMBA_NUM_THREADS + 5)
    assert numba.get_num_threads() == numba.config.NUMBA_NUM_THREADS


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_bad_counts_raise(bad):
    with pytest.raises(ValueError, match="n must be a positive int"):
        td.set_num_threads(bad)
    with pytest.raises(ValueError, match="n must be a positive int"):
        with td.num_threads(bad):
            pass


def _run(env_value, code):
    env = dict(os.environ, TINYDGM_NUM_THREADS=env_value, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=str(REPO))


def test_environment_variable_applies_on_first_kernel_use():
    pytest.importorskip("threadpoolctl")
    out = _run("1", "import tinydgm.kernels, numba; from tinydgm import threads; "
                    "print(numba.get_num_threads(), sorted({n for _, n in threads.thread_info()['blas']}))")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["1", "[1]"]


def test_bad_environment_variable_is_a_clear_error():
    out = _run("many", "import tinydgm.kernels")
    assert out.returncode != 0 and "TINYDGM_NUM_THREADS must be a positive int" in out.stderr
