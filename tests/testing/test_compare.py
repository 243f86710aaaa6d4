"""tinydgm.testing.compare: values, gradients and one Hessian-vector product of two
implementations, per output and per input, in float64 (issue 19). Two implementations of
the same function agree to rounding; a planted bug shows in exactly the rows it touches."""
import numpy as np
import pytest

import tinydgm as td
from tinydgm.testing import compare


def softplus_written_out(x, w):
    return td.log(1.0 + td.exp(x @ w)), (x * x).sum(axis=1)


def softplus_fused(x, w):
    return td.softplus(x @ w), (x ** 2).sum(axis=1)


class ExpWithConstantOutput(td.Function):
    """exp(x) whose backward multiplies by the cached output as a constant: right values and
    first derivatives, wrong second derivatives (the planted bug)."""

    def forward(self, x):
        self.y = np.exp(x)
        return self.y

    def backward(self, gy):
        return gy * td.Tensor(self.y)


def softplus_with_a_second_order_bug(x, w):
    return td.softplus(x @ w), ExpWithConstantOutput()(td.log(x * x)).sum(axis=1)


INPUTS = {"x": np.random.default_rng(0).standard_normal((4, 3)),
          "w": np.random.default_rng(1).standard_normal((3, 2))}


def test_two_implementations_agree_row_by_row():
    report = compare(softplus_written_out, softplus_fused, INPUTS)
    quantities = [(r["quantity"], r["output"], r["input"]) for r in report.rows]
    assert quantities == [("value", 0, "-"), ("gradient", 0, "x"), ("gradient", 0, "w"), ("hvp", 0, "x"),
                          ("hvp", 0, "w"), ("value", 1, "-"), ("gradient", 1, "x"), ("gradient", 1, "w"),
                          ("hvp", 1, "x"), ("hvp", 1, "w")]
    assert report.worst() < 1e-14
    report.assert_close(rtol=1e-12, atol=1e-14)
    # real signal in every row that should have one (output 1 does not depend on w)
    for r in report.rows:
        assert (r["max_abs"] > 1e-3) == (not (r["output"] == 1 and r["input"] == "w")), r
    table = str(report)
    assert table.splitlines()[0].split() == ["quantity", "output", "input", "max", "|a-b|", "max", "|a|", "rel"]
    assert len(table.splitlines()) == 11


def test_a_second_order_bug_shows_only_in_the_hvp_rows_it_touches():
    report = compare(softplus_fused, softplus_with_a_second_order_bug, INPUTS)
    bad = [(r["quantity"], r["output"], r["input"]) for r in report.failures()]
    assert bad == [("hvp", 1, "x")]
    with pytest.raises(AssertionError, match=r"differ in 1 of 10 rows") as info:
        report.assert_close()
    assert "<- differs" in str(info.value)


def test_a_value_bug_and_data_inputs():
    x = td.tensor(INPUTS["x"], dtype="float64")                     # requires_grad=False: data, not checked
    report = compare(lambda x, w: td.softplus(x @ w), lambda x, w: td.softplus(x @ w) + 1e-6,
                     {"x": x, "w": INPUTS["w"]})
    assert [r["input"] for r in report.rows] == ["-", "w", "w"]
    assert [r["quantity"] for r in report.failures()] == ["value"]
    assert report.worst("value") == pytest.approx(1e-6, rel=1e-6)


def test_grads_and_hvp_can_be_left_out_and_shapes_must_match():
    report = compare(softplus_fused, softplus_written_out, INPUTS, grads=False, hvp=False)
    assert {r["quantity"] for r in report.rows} == {"value"}
    with pytest.raises(ValueError, match=r"value of output 0 has shape \(4, 2\) on one side \(a\) and \(2, 4\)"):
        compare(lambda x, w: x @ w, lambda x, w: (x @ w).T, INPUTS)


def test_outputs_that_share_a_graph_each_get_their_gradients():
    """(z, log_det)-style outputs share their forward graph: the HVP of the first must not
    free it before the second's gradient (which would read as zeros)."""
    def twin(x, w):
        h = td.tanh(x @ w)
        return h, (h * h).sum(axis=1)

    def twin_written_out(x, w):
        h = 1.0 - 2.0 / (td.exp(2.0 * (x @ w)) + 1.0)
        return h, (h ** 2).sum(axis=1)

    report = compare(twin, twin_written_out, INPUTS)
    assert all(r["max_abs"] > 1e-3 for r in report.rows), report
    report.assert_close(rtol=1e-10, atol=1e-13)
