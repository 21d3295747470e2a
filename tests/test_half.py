"""bfloat16 / float16 state and parameters: each kernel against a NumPy reference doing the
same float32 math and the same rounding, bit for bit; the refusals; state_dict round trips
with and without ml_dtypes."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import ferroptim as fo

from conftest import OPTIMIZERS
from optimizers import OPTIMIZER_DB
from reference import Reference
from test_parity import CASES, IDS

ml_dtypes = pytest.importorskip("ml_dtypes")
BF16 = np.dtype(ml_dtypes.bfloat16)
SECOND_MOMENT = {row.name for row in OPTIMIZER_DB if row.second_moment}
SHAPES = [(), (7,), (33, 17), (fo._core.PARALLEL_MIN_ELEMENTS + 4099,)]


def round_bf16(x: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bits by integer arithmetic: round to nearest even, NaN quiet."""
    b = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    rounded = ((b + (0x7FFF + ((b >> 16) & 1))) >> 16).astype(np.uint16)
    nan = (b & 0x7FFFFFFF) > 0x7F800000
    quiet = (((b >> 16) & 0x8000) | 0x7FC0).astype(np.uint16)
    return np.where(nan, quiet, rounded)


def to_16(x: np.ndarray, dtype) -> np.ndarray:
    """float32 rounded to `dtype` (float16 or bfloat16) as the kernels round."""
    return np.asarray(x, np.float32).astype(dtype)


def test_the_reference_rounding_is_ml_dtypes_rounding():
    rng = np.random.default_rng(0)
    bits = rng.integers(0, 2**32, size=200_000, dtype=np.uint64).astype(np.uint32)
    x = np.concatenate([bits.view(np.float32), np.float32([0, -0.0, np.inf, -np.inf, np.nan, 3e-39, 65520])])
    with np.errstate(invalid="ignore"):
        want = x.astype(BF16).view(np.uint16)
    np.testing.assert_array_equal(round_bf16(x), want)


class MixedReference:
    """Reference's formulas in float32 on widened copies: each step widens the 16-bit state
    (and parameter, without master weights), runs the float32 formula, and rounds the new
    state and parameter once, as the fused kernels do."""

    def __init__(self, kind, params, state_dtype, master, **h):
        self.kind, self.state_dtype, self.master = kind, state_dtype, master
        self.params = [p.copy() for p in params]
        self.f32 = Reference(kind, [p.astype(np.float32) for p in params], **h)
        if kind == "adagrad":  # the initial accumulator is rounded to the state's dtype too
            init = h.get("initial_accumulator_value", 0.0)
            for p, s in zip(self.f32.params, self.f32.state):
                s["sum"] = self._round_state(np.full_like(p, init))
        if kind == "rprop":  # so are the initial step sizes (lr)
            for p, s in zip(self.f32.params, self.f32.state):
                s["step_size"] = self._round_state(np.full_like(p, h.get("lr", 1e-2)))

    def _round_state(self, a):
        if self.state_dtype == np.float32:
            return a
        return to_16(a, self.state_dtype).astype(np.float32)

    def step(self, grads):
        for i, p in enumerate(self.params):
            if p.dtype != np.float32 and not self.master:
                self.f32.params[i][...] = p.astype(np.float32)
        self.f32.step([g.astype(np.float32) for g in grads])
        for s in self.f32.state:
            for k, v in s.items():
                if isinstance(v, np.ndarray):
                    s[k] = self._round_state(v)
        for p, q in zip(self.params, self.f32.params):
            p[...] = q if p.dtype == np.float32 else to_16(q, p.dtype)


# (parameter dtype, state dtype, master weights)
STORAGE = [
    (np.float32, BF16, False),
    (np.float32, np.float16, False),
    (BF16, np.float32, True),
    (BF16, BF16, True),
    (np.float16, BF16, True),
    (np.float16, np.float32, False),
]
STORAGE_IDS = [
    "f32-bf16state",
    "f32-f16state",
    "bf16-master",
    "bf16-bf16state-master",
    "f16-bf16state-master",
    "f16-direct",
]


def run_both(kind, h, param_dtype, state_dtype, master, steps, shapes=SHAPES, seed=0):
    rng = np.random.default_rng(seed)
    params = [rng.normal(size=s).astype(np.float32).astype(param_dtype) for s in shapes]
    ref = MixedReference(kind, params, state_dtype, master, **h)
    opt = OPTIMIZERS[kind](params, **h, state_dtype=np.dtype(state_dtype).name, master_weights=master)
    for _ in range(steps):
        grads = [rng.normal(size=s).astype(np.float32).astype(param_dtype) for s in shapes]
        opt.step(grads)
        ref.step(grads)
    return params, opt, ref


def assert_bits(a, b, msg):
    a, b = np.asarray(a), np.asarray(b)
    assert a.dtype == b.dtype, msg
    np.testing.assert_array_equal(a.view(f"u{a.dtype.itemsize}"), b.view(f"u{b.dtype.itemsize}"), err_msg=msg)


# float16 second moments are refused (test_float16_second_moments_are_refused).
MATRIX = [
    pytest.param(kind, h, st, id=f"{case_id}-{st_id}")
    for (kind, h), case_id in zip(CASES, IDS)
    for st, st_id in zip(STORAGE, STORAGE_IDS)
    if not (st[1] == np.float16 and kind in SECOND_MOMENT)
]


@pytest.mark.parametrize("kind,h,storage", MATRIX)
def test_matches_the_float32_reference_with_the_same_rounding(kind, h, storage, simd_level):
    param_dtype, state_dtype, master = storage
    params, opt, ref = run_both(kind, h, param_dtype, state_dtype, master, steps=12)
    for i, (p, r) in enumerate(zip(params, ref.params)):
        assert_bits(p, r, f"parameter {i}")
    state = opt.state
    for i, s in enumerate(ref.f32.state):
        assert state[i]["step"] == 12
        for name, v in s.items():
            if isinstance(v, float):
                assert state[i][name] == v
            elif name != "step":
                assert_bits(state[i][name], v.astype(state_dtype), f"{name} of {i}")
        if master:
            assert_bits(state[i]["master_param"], ref.f32.params[i].reshape(params[i].shape), f"master {i}")
        assert set(state[i]) == set(s) | ({"master_param"} if master else set())


@pytest.mark.parametrize("storage", [STORAGE[0], STORAGE[4]], ids=[STORAGE_IDS[0], STORAGE_IDS[4]])
def test_thread_count_does_not_change_a_bit(storage, threads):
    results = []
    for n in (1, 2, 3):
        fo.set_num_threads(n)
        params, opt, _ = run_both("adam", {}, *storage, steps=3, shapes=[(200_001,), (5, 7), (70_000,)])
        results.append(
            params + [v for s in opt.state.values() for v in s.values() if isinstance(v, np.ndarray)]
        )
    for other in results[1:]:
        for a, b in zip(results[0], other):
            assert_bits(a, b, "thread count")


@pytest.mark.parametrize("kind", sorted(SECOND_MOMENT))
def test_float16_second_moments_are_refused(kind):
    # The measurement behind it: Adam's (1 - beta2) * g * g is 1e-9 for a gradient of 1e-3,
    # zero in float16 (smallest subnormal 6e-8), so v stays 0 and the step is lr * m / eps;
    # and g = 300 gives 90 (float16's max is 65504) only while (1 - beta2) scales it first.
    assert np.float16((1 - 0.999) * 1e-3 * 1e-3) == 0
    w = np.zeros(3, np.float32)
    with pytest.raises(
        ValueError, match=r"state_dtype='float16' cannot hold the second moment '\w+'.*bfloat16"
    ):
        OPTIMIZERS[kind]([w], lr=0.1, state_dtype="float16")


def test_bfloat16_second_moments_of_huge_gradients_stay_finite():
    w = np.ones(2, np.float32)
    opt = fo.Adam([w], lr=0.1, state_dtype="bfloat16")
    for g in ([1e20, -1e20], [1.0, -1.0]):
        opt.step([np.array(g, np.float32)])
        assert all(
            np.isfinite(v.astype(np.float32)).all()
            for v in opt.state[0].values()
            if isinstance(v, np.ndarray)
        )
    assert np.isfinite(w).all() and w[0] < 1 < w[1]


def test_bad_options_are_refused_before_anything_changes():
    w = np.ones(3, np.float32)
    d = np.ones(3, np.float64)
    with pytest.raises(ValueError, match="state_dtype must be None or one of"):
        fo.Adam([w], state_dtype="int8")
    with pytest.raises(TypeError, match="state_dtype must be None, a dtype name or a dtype"):
        fo.Adam([w], state_dtype=3.5)
    with pytest.raises(TypeError, match="master_weights must be None, True or False"):
        fo.Adam([w], master_weights="yes")
    with pytest.raises(ValueError, match="float64 parameters keep float64 state"):
        fo.Adam([d], state_dtype="bfloat16")
    with pytest.raises(ValueError, match="state_dtype='float64' needs float64 parameters"):
        fo.Adam([w], state_dtype=np.float64)
    p = np.ones(3, BF16)
    opt = fo.Adam([p], lr=0.1)
    with pytest.raises(TypeError, match="gradient for params\\[0\\] has dtype float32, expected bfloat16"):
        opt.step([np.ones(3, np.float32)])
    assert opt.state[0] == {"step": 0}
    assert_bits(p, np.ones(3, BF16), "unchanged")


def test_defaults_state_float32_for_16_bit_parameters_with_master_weights():
    p, h, w = np.ones(3, BF16), np.ones(3, np.float16), np.ones(3, np.float32)
    opt = fo.Adam([p, h, w], lr=1e-3)
    opt.step([np.ones(3, BF16), np.ones(3, np.float16), np.ones(3, np.float32)])
    s = opt.state
    assert [s[i]["exp_avg"].dtype for i in range(3)] == [np.float32] * 3
    assert "master_param" in s[0] and "master_param" in s[1] and "master_param" not in s[2]
    # 1 - 1e-3 is 1 in both 16-bit formats; the master weights hold it.
    assert_bits(p, np.ones(3, BF16), "bfloat16 parameter")
    np.testing.assert_array_equal(s[0]["master_param"], np.float32(1) - np.float32(1e-3))


def test_16_bit_gradients_are_checked_and_clipped_like_float32_ones():
    g = np.array([3.0, 4.0], np.float16)
    a, b = np.zeros(2, np.float16), np.zeros(2, np.float32)
    fo.SGD([a], lr=1.0, max_grad_norm=1.0).step([g])
    fo.SGD([b], lr=1.0, max_grad_norm=1.0).step([g.astype(np.float32)])
    assert_bits(a, b.astype(np.float16), "clipped")
    opt = fo.Adam([np.zeros(2, BF16)], nan_policy="raise")
    with pytest.raises(FloatingPointError, match="contains NaN or infinity"):
        opt.step([np.array([1.0, np.inf], BF16)])
    assert opt.state[0] == {"step": 0}


def block_ml_dtypes(monkeypatch):
    monkeypatch.setitem(sys.modules, "ml_dtypes", None)  # `import ml_dtypes` raises ImportError


@pytest.mark.parametrize("with_ml_dtypes", [True, False], ids=["ml_dtypes", "no-ml_dtypes"])
@pytest.mark.parametrize(
    "storage", [STORAGE[0], STORAGE[3], STORAGE[4]], ids=[STORAGE_IDS[i] for i in (0, 3, 4)]
)
def test_resume_from_a_state_dict_is_bit_exact(storage, with_ml_dtypes, monkeypatch):
    param_dtype, state_dtype, master = storage
    rng = np.random.default_rng(1)
    grads = [
        [rng.normal(size=s).astype(np.float32).astype(param_dtype) for s in [(40,), (3, 5)]]
        for _ in range(10)
    ]
    params = [rng.normal(size=s).astype(np.float32).astype(param_dtype) for s in [(40,), (3, 5)]]
    name = np.dtype(state_dtype).name
    opt = fo.NAdam(params, lr=1e-2, state_dtype=name)
    for g in grads[:5]:
        opt.step(g)
    if not with_ml_dtypes:
        block_ml_dtypes(monkeypatch)
    sd = opt.state_dict()
    assert sd["state_dtype"] == name
    buf = sd["state"][0]["exp_avg"]
    if name == "bfloat16":
        assert buf.dtype == (BF16 if with_ml_dtypes else np.uint16)
    assert ("master_param" in sd["state"][0]) == master
    copies = [p.copy() for p in params]
    resumed = fo.NAdam(copies, lr=1e-2, state_dtype=name)
    resumed.load_state_dict(sd)
    for g in grads[5:]:
        opt.step(g)
        resumed.step(g)
    for a, b in zip(params, copies):
        assert_bits(a, b, "parameter")
    for i in range(2):
        for k, v in opt.state[i].items():
            if isinstance(v, np.ndarray):
                assert_bits(v, resumed.state[i][k], k)


def test_16_bit_state_loads_into_float32_state_exactly():
    w = np.ones(5, np.float32)
    opt = fo.Adam([w], lr=0.1, state_dtype="bfloat16")
    opt.step([np.linspace(-1, 1, 5, dtype=np.float32)])
    sd = opt.state_dict()
    bits = dict(
        sd,
        state={
            0: {k: (v.view(np.uint16) if isinstance(v, np.ndarray) else v) for k, v in sd["state"][0].items()}
        },
    )
    for saved in (sd, bits):
        other = fo.Adam([w.copy()], lr=0.1)
        other.load_state_dict(saved)
        np.testing.assert_array_equal(other.state[0]["exp_avg"], sd["state"][0]["exp_avg"].astype(np.float32))
    # and float32 state into bfloat16 state, rounded as the kernels round
    f32 = fo.Adam([w.copy()], lr=0.1)
    f32.step([np.linspace(-1, 1, 5, dtype=np.float32)])
    opt.load_state_dict(f32.state_dict())
    assert_bits(opt.state[0]["exp_avg_sq"], f32.state[0]["exp_avg_sq"].astype(BF16), "rounded")


@pytest.mark.slow
def test_ferroptim_imports_and_runs_without_ml_dtypes():
    code = (
        "import sys; sys.modules['ml_dtypes'] = None\n"
        "import numpy as np, ferroptim as fo\n"
        "w = np.ones(4, np.float32); opt = fo.Adam([w], lr=0.1, state_dtype='bfloat16')\n"
        "opt.step([np.ones(4, np.float32)])\n"
        "sd = opt.state_dict(); m = sd['state'][0]['exp_avg']\n"
        "assert m.dtype == np.uint16 and sd['state_dtype'] == 'bfloat16', (m.dtype, sd['state_dtype'])\n"
        "print(int(m[0]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert int(out.stdout) == int(np.float32(0.1).astype(BF16).view(np.uint16))


def load_convergence():
    path = Path(__file__).resolve().parent.parent / "benches" / "half_convergence.py"
    spec = importlib.util.spec_from_file_location("half_convergence", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(fo, "nn"), reason="needs ferroptim.nn")
def test_bfloat16_state_reaches_float32_state_accuracy_on_the_demo_tasks():
    """A short version of benches/half_convergence.py (whose full numbers are in the docs):
    the same runs with bfloat16 state end within the seed-to-seed spread of float32's."""
    conv = load_convergence()
    for run in (
        lambda s, d: conv.spirals(s, d, m=100_000, epochs=10),
        lambda s, d: conv.course(s, d, epochs=1000),
    ):
        acc = {d: np.array([run(s, d) for s in range(3)]) for d in ("float32", "bfloat16")}
        spread = max(acc["float32"].std(), 0.005)
        assert acc["float32"].mean() > 0.75
        assert abs(acc["bfloat16"].mean() - acc["float32"].mean()) < 2 * spread, acc
