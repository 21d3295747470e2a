"""Gradient checking as the course teaches it (issue 31, item 7): MLP.gradient_check."""

from __future__ import annotations

import numpy as np
import pytest

import ferroptim as fo
from ferroptim.nn import MLP


def _problem(output, m=12, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((m, 3))
    if output == "softmax":
        return X, rng.integers(0, 3, m)
    if output == "sigmoid":
        return X, (rng.random((m, 3)) > 0.5).astype(np.float64)
    if output == "exp":  # Poisson targets: counts
        return X, rng.poisson(1.0, (m, 3)).astype(np.float64)
    return X, rng.standard_normal((m, 3))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("hidden", fo.nn.HIDDEN)
@pytest.mark.parametrize("output", fo.nn.OUTPUTS)
def test_correct_gradients_pass(dtype, hidden, output):
    model = MLP([3, 5, 4, 3], hidden=hidden, output=output, dtype=dtype, seed=2, alpha=0.3)
    X, Y = _problem(output)
    before = {k: v.copy() for k, v in model.params.items()}
    # eps=1e-6: at the course's 1e-7 the rounding of J (1e-16 / eps) reaches ~2e-7 for small
    # sigmoid-unit gradients; 1e-6 balances it against the O(eps^2) truncation.
    diffs = model.gradient_check(X, Y, eps=1e-6)
    assert set(diffs) == set(model.params)
    assert max(diffs.values()) < 1e-7, diffs
    assert max(model.gradient_check(X, Y).values()) < 1e-6  # the default eps=1e-7
    for k in before:  # the model itself is not touched
        assert model.params[k].dtype == dtype
        np.testing.assert_array_equal(model.params[k], before[k])


def test_a_wrong_gradient_is_found(monkeypatch):
    model = MLP([3, 5, 3], hidden="tanh", output="softmax", seed=0)
    X, Y = _problem("softmax")
    right = MLP.loss_and_grad

    def wrong(self, X, Y):
        cost, grads = right(self, X, Y)
        grads["b1"][2] *= 1.5  # one element off by half
        return cost, grads

    monkeypatch.setattr(MLP, "loss_and_grad", wrong)
    diffs = model.gradient_check(X, Y)
    assert diffs["b1"] > 1e-2
    assert max(v for k, v in diffs.items() if k != "b1") < 1e-6


def test_the_relative_difference_is_the_courses_formula(monkeypatch):
    model = MLP([2, 1], output="identity", dtype=np.float64, seed=0)
    X, Y = np.array([[1.0, 2.0]]), np.array([[0.5]])
    g = {k: v.copy() for k, v in model.loss_and_grad(X, Y)[1].items()}
    right = MLP.loss_and_grad

    def doubled(self, X, Y):
        cost, grads = right(self, X, Y)
        for v in grads.values():
            v *= 2
        return cost, grads

    monkeypatch.setattr(MLP, "loss_and_grad", doubled)
    diffs = model.gradient_check(X, Y)
    # ||2g - g|| / (||2g|| + ||g||) = 1/3 whatever g is
    for k in g:
        assert diffs[k] == pytest.approx(1 / 3, rel=1e-6)


def test_bad_eps():
    model = MLP([2, 1])
    for eps in (0, -1e-7, 1.0, "1e-7"):
        with pytest.raises(ValueError, match="eps must be a number in"):
            model.gradient_check(np.zeros((2, 2)), np.zeros(2), eps=eps)
