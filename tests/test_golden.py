"""ferroptim against recorded torch.optim trajectories (tests/golden/), without torch.

scripts/make_golden.py recorded them from torch.optim for every CPU configuration of torch's
own optimizer tests (``optim_db``), float32 and float64. torch and ferroptim may order the
float operations of one step differently (torch's float32 ``(1 - beta) * g * g`` versus a
fused form), so the comparison allows float rounding, not bit equality: about 32 ulps of a parameter of
size 1 (rtol and atol 4e-6 in float32, 1e-14 in float64; the largest difference measured was
32 ulps, RMSprop near zero). The float64 cases are the sharp ones: a learning rate off by
1e-4 relative fails every one of them; in float32 a parameter of size 1 rounds away an error
that small in a step of 1e-3.
"""

import json
from pathlib import Path

import numpy as np
import pytest

import ferroptim as fo

from golden_inputs import SHAPES, STEPS, inputs
from optimizers import OPTIMIZER_DB

GOLDEN = Path(__file__).resolve().parent / "golden"
META = json.loads((GOLDEN / "torch_optim.json").read_text())
CASES = META["cases"]
TOLERANCE = {"float32": dict(rtol=4e-6, atol=4e-6), "float64": dict(rtol=1e-14, atol=1e-14)}


@pytest.fixture(scope="module")
def trajectories():
    with np.load(GOLDEN / "torch_optim.npz") as f:
        return {k: f[k] for k in f.files}


def test_the_golden_files_cover_every_optimizer_shared_with_torch_in_both_dtypes():
    assert META["steps"] == STEPS and {k: tuple(v) for k, v in META["shapes"].items()} == SHAPES
    shared = {row.torch for row in OPTIMIZER_DB if row.torch}
    covered = {(c["optimizer"], c["dtype"]) for c in CASES}
    assert covered == {(o, d) for o in shared for d in ("float32", "float64")}


@pytest.mark.parametrize("case", CASES, ids=[f"{c['key']}-{c['desc']}" for c in CASES])
def test_ferroptim_follows_the_torch_trajectory(case, trajectories):
    dtype = np.dtype(case["dtype"])
    params, grads = inputs(case["seed"], dtype)
    opt = getattr(fo, case["optimizer"])(params, **case["kwargs"])
    want = trajectories[case["key"]]
    assert want.dtype == dtype and want.shape[0] == STEPS
    for t in range(STEPS):
        opt.step({k: g[t] for k, g in grads.items()})
        got = np.concatenate([params[k].reshape(-1) for k in SHAPES])
        assert got.dtype == dtype
        np.testing.assert_allclose(
            got, want[t], **TOLERANCE[case["dtype"]], err_msg=f"{case['key']} ({case['desc']}) step {t + 1}"
        )
