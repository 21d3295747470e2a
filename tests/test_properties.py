"""Hypothesis: random shapes, dtypes and hyper-parameters against the NumPy reference."""

from types import SimpleNamespace

import numpy as np
from hypothesis import example, given, settings
from hypothesis import strategies as st

from conftest import OPTIMIZERS, snapshot
from optimizers import BY_NAME
from reference import Reference

shapes = st.lists(st.lists(st.integers(0, 9), min_size=0, max_size=3).map(tuple), min_size=1, max_size=4)
dtypes = st.sampled_from([np.float32, np.float64])
unit = st.floats(0.0, 0.999)
lr = st.floats(1e-5, 1.0)
decay = st.sampled_from([0.0, 1e-4, 0.1])
flag = st.booleans()
eps = st.sampled_from([1e-8, 1e-3])


# The shared strategies each row's draw_hyper takes (tests/optimizers.py).
S = SimpleNamespace(st=st, lr=lr, unit=unit, decay=decay, flag=flag, eps=eps)


@st.composite
def hyper(draw):
    kind = draw(st.sampled_from(sorted(OPTIMIZERS)))
    return kind, BY_NAME[kind].draw_hyper(draw, S)


@settings(max_examples=300, deadline=None)
@given(hyper(), shapes, dtypes, st.integers(0, 2**32 - 1))
# torch takes sqrt(1 - beta2**t) as Python's `** 0.5` (C's pow), one ulp from sqrt here.
@example(
    ("adamw", dict(lr=1.0, betas=(0.0, 0.6069143337725912), eps=1e-3, weight_decay=1e-4, maximize=True)),
    [()],
    np.float64,
    3681316420,
)
def test_random_configurations_match_the_reference(kh, shape_list, dtype, seed):
    kind, h = kh
    rng = np.random.default_rng(seed)
    params = [rng.normal(size=s).astype(dtype) for s in shape_list]
    ref = Reference(kind, params, **h)
    opt = OPTIMIZERS[kind](params, **h)
    for _ in range(4):
        grads = [rng.normal(size=s).astype(dtype) for s in shape_list]
        opt.step(grads)
        # Some draws overflow to inf (centered RMSprop with alpha = 0 divides by eps), in the
        # kernels as in the reference: compared like any other value, not a warning.
        with np.errstate(over="ignore", invalid="ignore"):
            ref.step(grads)
    for p, r in zip(params, ref.params):
        np.testing.assert_array_equal(p, r)


bad_value = st.sampled_from([-1.0, 1.0, 1.5, float("nan"), float("inf"), -1e-9])


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(["lr", "eps", "betas0", "betas1", "weight_decay"]), bad_value, dtypes)
def test_out_of_range_hyper_parameters_never_change_anything(name, value, dtype):
    allowed = {
        "lr": lambda v: np.isfinite(v) and v >= 0,
        "eps": lambda v: np.isfinite(v) and v > 0,
        "betas0": lambda v: 0 <= v < 1,
        "betas1": lambda v: 0 <= v < 1,
        "weight_decay": lambda v: np.isfinite(v) and v >= 0,
    }
    params = [np.ones((2, 3), dtype), np.ones(4, dtype)]
    opt = OPTIMIZERS["adam"](params)
    grads = [np.full((2, 3), 0.1, dtype), np.full(4, 0.1, dtype)]
    opt.step(grads)
    before = snapshot(opt, params)
    group = opt.param_groups[0]
    if name.startswith("betas"):
        b = list(group["betas"])
        b[int(name[-1])] = value
        group["betas"] = tuple(b)
    else:
        group[name] = value
    try:
        opt.step(grads)
        raised = False
    except ValueError:
        raised = True
    assert raised != allowed[name](value)
    if raised:
        after = snapshot(opt, params)
        for x, y in zip(before[0], after[0]):
            np.testing.assert_array_equal(x, y)
        assert after[1]["state"][0]["step"] == 1
