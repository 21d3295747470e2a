"""Every optimizer and option against the NumPy transcription of its formula, bit for bit."""

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import ferroptim as fo

from conftest import OPTIMIZERS, first_config_quick
from optimizers import OPTIMIZER_DB
from reference import Reference

# 0-d, empty, odd lengths (vector tails) and one tensor large enough to run on threads.
SHAPES = [(), (0,), (1,), (7,), (33, 17), (2, 3, 5), (fo._core.PARALLEL_MIN_ELEMENTS + 4099,)]

CASES = [(row.name, h) for row in OPTIMIZER_DB for h in row.configs]
IDS = [f"{kind}-{'-'.join(f'{k}={v}' for k, v in h.items()) or 'defaults'}" for kind, h in CASES]


def run_both(kind, h, dtype, steps, shapes=SHAPES, seed=0):
    rng = np.random.default_rng(seed)
    params = [rng.normal(size=s).astype(dtype) for s in shapes]
    ref = Reference(kind, params, **h)
    opt = OPTIMIZERS[kind](params, **h)
    for _ in range(steps):
        grads = [rng.normal(size=s).astype(dtype) for s in shapes]
        opt.step(grads)
        ref.step(grads)
    return params, opt, ref


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind,h", first_config_quick(CASES, IDS))
def test_matches_reference_bit_for_bit(kind, h, dtype, simd_level):
    params, opt, ref = run_both(kind, h, dtype, steps=120)
    for i, (p, r) in enumerate(zip(params, ref.params)):
        assert p.dtype == dtype
        np.testing.assert_array_equal(p, r, err_msg=f"parameter {i}")
    state = opt.state
    for i, s in enumerate(ref.state):
        assert state[i]["step"] == s["step"] == 120
        for name, v in s.items():
            if isinstance(v, float):  # NAdam's mu_product, ASGD's eta and mu
                assert state[i][name] == v
            elif name != "step":
                assert state[i][name].dtype == dtype
                np.testing.assert_array_equal(state[i][name], v, err_msg=f"{name} of {i}")
        assert set(state[i]) == set(s)


@pytest.mark.parametrize("kind,h", [CASES[2], CASES[-3]], ids=[IDS[2], IDS[-3]])
def test_thread_count_does_not_change_a_bit(kind, h, threads):
    results = []
    for n in (1, 2, 3):
        fo.set_num_threads(n)
        assert fo.get_num_threads() == n
        params, _, _ = run_both(kind, h, np.float32, steps=5, shapes=[(300_001,), (5, 7), (90_000,)])
        results.append(params)
    for other in results[1:]:
        for a, b in zip(results[0], other):
            np.testing.assert_array_equal(a, b)


def test_mixed_dtypes_each_keep_their_own():
    p32, p64 = np.ones(5, np.float32), np.ones(5, np.float64)
    opt = fo.Adam([p32, p64], lr=0.1)
    opt.step([np.full(5, 0.5, np.float32), np.full(5, 0.5, np.float64)])
    assert p32.dtype == np.float32 and p64.dtype == np.float64
    assert opt.state[0]["exp_avg"].dtype == np.float32
    assert opt.state[1]["exp_avg"].dtype == np.float64
    np.testing.assert_allclose(p32, p64, rtol=1e-6)


def test_hyper_parameters_changed_between_steps_are_used():
    rng = np.random.default_rng(1)
    params = [rng.normal(size=10)]
    ref = Reference("adam", params, lr=1e-3)
    opt = fo.Adam(params, lr=1e-3)
    for t in range(30):
        lr = 1e-3 * (1 + t)
        amsgrad = t >= 10  # turning AMSGrad on mid-run starts its buffer at zero, as torch does
        opt.param_groups[0]["lr"] = lr
        opt.param_groups[0]["amsgrad"] = amsgrad
        g = [rng.normal(size=10)]
        opt.step(g)
        ref.step(g, lr=lr, amsgrad=amsgrad)
    np.testing.assert_array_equal(params[0], ref.params[0])


@pytest.mark.slow
def test_simd_level_from_the_environment():
    for level in fo.supported_simd_levels():
        out = subprocess.run(
            [sys.executable, "-c", "import ferroptim; print(ferroptim.simd_level())"],
            env={**os.environ, "FERROPTIM_SIMD": level},
            capture_output=True,
            text=True,
            check=True,
        )
        assert out.stdout.strip() == level


@pytest.mark.slow
def test_thread_count_from_the_environment():
    out = subprocess.run(
        [sys.executable, "-c", "import ferroptim; print(ferroptim.get_num_threads())"],
        env={**os.environ, "FERROPTIM_NUM_THREADS": "3"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "3"


def test_unknown_simd_level_is_refused():
    with pytest.raises(ValueError, match="sse9"):
        fo.set_simd_level("sse9")
    with pytest.raises(ValueError, match="at least 1"):
        fo.set_num_threads(0)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("qemu-x86_64") is None, reason="qemu-user is not installed")
def test_runs_on_a_cpu_without_avx():
    """The wheel carries no AVX outside the dispatched kernels: under an emulated Westmere
    CPU (SSE4.2, no AVX) it selects the scalar level and trains correctly."""
    script = (
        "import numpy as np, ferroptim as fo\n"
        "assert fo.supported_simd_levels() == ['scalar'], fo.supported_simd_levels()\n"
        "p = [np.ones(100_000, np.float32), np.ones((3, 4))]\n"
        "opt = fo.Adam(p, lr=0.1)\n"
        "opt.step([np.full(100_000, 0.5, np.float32), np.full((3, 4), 0.5)])\n"
        "assert np.allclose(p[0], 0.9) and np.allclose(p[1], 0.9)\n"
        "print(fo.simd_level())\n"
    )
    out = subprocess.run(
        ["qemu-x86_64", "-cpu", "Westmere", sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "scalar"
