"""Units (nats, bits/dim) and exact partition functions by enumeration."""
import itertools
import math

import numpy as np
import pytest
from scipy.special import logsumexp

from tinydgm import evaluate


def test_bits_per_dim_round_trip():
    assert evaluate.bits_per_dim(784 * math.log(2), 784) == pytest.approx(1.0)
    assert evaluate.nats_from_bits_per_dim(evaluate.bits_per_dim(81.3, 784), 784) == pytest.approx(81.3)
    with pytest.raises(ValueError, match="n_dims must be >= 1, got 0"):
        evaluate.bits_per_dim(1.0, 0)


def test_binary_states_lists_every_vector_in_code_order():
    states = evaluate.binary_states(3)
    expected = np.array(list(itertools.product([0, 1], repeat=3)), dtype=float)
    np.testing.assert_array_equal(states, expected)
    np.testing.assert_array_equal(evaluate.binary_states(3, 2, 5), expected[2:5])


@pytest.mark.parametrize("chunk", [1, 7, 65536])
def test_log_partition_of_an_ising_model_matches_direct_sum(chunk):
    rng = np.random.default_rng(0)
    d = 10
    w = rng.normal(size=(d, d))
    w = (w + w.T) / 2
    b = rng.normal(size=d) * 5       # large fields: the running log-sum-exp must not overflow
    g = lambda x: 3 * np.einsum("ni,ij,nj->n", x, w, x) + x @ b
    states = np.array(list(itertools.product([0, 1], repeat=d)), dtype=float)
    expected = logsumexp(g(states))
    assert evaluate.log_partition_by_enumeration(g, d, chunk=chunk) == pytest.approx(expected, rel=1e-12)


def test_log_partition_rejects_too_many_dims():
    with pytest.raises(ValueError, match="n_dims must be in \\[0, 30\\].*got 31"):
        evaluate.log_partition_by_enumeration(lambda s: s.sum(1), 31)
