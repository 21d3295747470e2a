"""ferroptim's LBFGS and Muon against recorded torch trajectories (tests/golden/torch_closures.*,
recorded by ``scripts/make_golden.py --closures``), without torch.

Tolerances (the reasons are in tests/test_lbfgs.py and tests/test_muon.py): LBFGS float64
rtol 1e-9 at every step; float32 rtol/atol 2e-4 over the first 24 iterations (torch reduces its
dot products in float32 in its own order; the iterations amplify a one-ulp difference, on
Rosenbrock chaotically); Muon's bfloat16
Newton–Schulz iteration within 0.02 * adjusted_lr per step (a flipped bfloat16 rounding
inside torch's iteration moves an element of the update by up to 2**-7 of it).
"""

import json
from pathlib import Path

import golden_closures as gc
import numpy as np
import pytest

import ferroptim as fo

GOLDEN = Path(__file__).resolve().parent / "golden"
META = json.loads((GOLDEN / "torch_closures.json").read_text())
CASES = META["cases"]
LBFGS_TOLERANCE = {"float32": dict(rtol=2e-4, atol=2e-4), "float64": dict(rtol=1e-9, atol=1e-12)}


@pytest.fixture(scope="module")
def trajectories():
    with np.load(GOLDEN / "torch_closures.npz") as f:
        return {k: f[k] for k in f.files}


def test_the_golden_files_cover_both_optimizers_every_configuration_and_both_dtypes():
    keys = {c["key"] for c in CASES}
    want = {
        f"LBFGS.{p}.{i}.{d}"
        for p in gc.PROBLEMS
        for i in range(len(gc.LBFGS_CONFIGS))
        for d in ("float32", "float64")
    }
    want |= {
        f"Muon.{r}x{c}.{i}.{d}"
        for r, c in gc.MUON_SHAPES
        for i in range(len(gc.MUON_CONFIGS))
        for d in ("float32", "float64")
    }
    assert keys == want


@pytest.mark.parametrize("case", [c for c in CASES if c["optimizer"] == "LBFGS"], ids=lambda c: c["key"])
def test_lbfgs_follows_the_torch_trajectory(case, trajectories):
    dtype = np.dtype(case["dtype"])
    params = gc.lbfgs_init(case["problem"], dtype)
    objective = gc.PROBLEMS[case["problem"]]
    opt = fo.LBFGS(params, **case["kwargs"])
    want, losses = trajectories[case["key"]], trajectories[case["key"] + ".loss"]
    steps = (
        gc.LBFGS_STEPS
        if dtype == np.float64
        else min(gc.LBFGS_STEPS, max(1, 24 // case["kwargs"].get("max_iter", 20)))
    )
    for k in range(steps):
        loss = opt.step(lambda: objective(params))
        got = np.concatenate([p.ravel() for p in params])
        np.testing.assert_allclose(got, want[k], **LBFGS_TOLERANCE[dtype.name], err_msg=f"step {k + 1}")
        np.testing.assert_allclose(loss, losses[k], rtol=10 * LBFGS_TOLERANCE[dtype.name]["rtol"], atol=1e-12)


@pytest.mark.parametrize("case", [c for c in CASES if c["optimizer"] == "Muon"], ids=lambda c: c["key"])
def test_muon_follows_the_torch_trajectory(case, trajectories):
    dtype = np.dtype(case["dtype"])
    shape = tuple(case["shape"])
    init, grads = gc.muon_inputs(shape, dtype)
    p = init.copy()
    opt = fo.Muon([p], **case["kwargs"])
    lr = case["kwargs"]["lr"]
    A, B = shape
    ratio = (
        0.2 * np.sqrt(max(A, B))
        if case["kwargs"].get("adjust_lr_fn") == "match_rms_adamw"
        else np.sqrt(max(1, A / B))
    )
    want = trajectories[case["key"]]
    for k, g in enumerate(grads):
        opt.step([g])
        np.testing.assert_allclose(
            p, want[k], rtol=0, atol=0.02 * lr * ratio * (k + 1), err_msg=f"step {k + 1}"
        )
