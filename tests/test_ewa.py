"""Exponentially weighted averages: ewa, moving_average, EWA and ParameterEMA against their
definitions, bit for bit where the arithmetic is the same."""

import doctest
import functools
import math
import pickle

import numpy as np
import pytest

import ferroptim as fo
import ferroptim.averages

PARALLEL = fo._core.PARALLEL_MIN_ELEMENTS


def ewa_reference(x, beta, bias_correction=True, axis=0):
    """The definition, one step at a time, in the array's dtype (scalars rounded once)."""
    x = np.moveaxis(np.asarray(x), axis, 0)
    dt = x.dtype.type
    b, m = dt(beta), dt(1 - beta)
    v = np.zeros(x.shape[1:], x.dtype)
    out = np.empty_like(x)
    for t in range(x.shape[0]):
        v = b * v + m * x[t]
        out[t] = v / dt(1 - beta ** (t + 1)) if bias_correction else v
    return np.moveaxis(out, 0, axis)


def moving_average_reference(x, window, axis=0):
    """Exact means (math.fsum) of each trailing window, rounded once to the dtype."""
    x = np.moveaxis(np.asarray(x), axis, 0)
    flat = x.reshape(x.shape[0], math.prod(x.shape[1:])).astype(np.float64)
    out = np.empty_like(flat)
    for t in range(flat.shape[0]):
        rows = flat[max(0, t - window + 1) : t + 1]
        out[t] = [math.fsum(col) / len(rows) for col in rows.T]
    return np.moveaxis(out.reshape(x.shape).astype(x.dtype), 0, axis)


@functools.cache
def _moving_average_case(shape, axis, dtype, window):
    """The input and its exact means, computed once for every SIMD level's run."""
    x = np.random.default_rng(2).normal(3.0, 1.0, size=shape).astype(dtype)
    x.flags.writeable = False
    return x, moving_average_reference(x, window, axis)


# (shape, axis): 1-D, the time axis first / middle / last, empty, and sizes that run on
# threads both as whole series and as column panels.
CASES = [
    ((1,), 0),
    ((37,), 0),
    ((37,), -1),
    ((9, 4), 0),
    ((4, 9), 1),
    ((3, 8, 5), 1),
    ((3, 8, 5), -1),
    ((0, 3), 0),
    ((3, 0), 0),
    ((300, 400), 0),
    ((20_000, 3), 1),
    ((PARALLEL + 7,), 0),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,axis", CASES)
def test_ewa_matches_the_definition_bit_for_bit(shape, axis, dtype, simd_level):
    x = np.random.default_rng(0).normal(20.0, 5.0, size=shape).astype(dtype)
    for beta, corrected in [(0.9, True), (0.98, False), (0.0, True), (0.999, True)]:
        out = fo.ewa(x, beta, bias_correction=corrected, axis=axis)
        assert out.dtype == dtype and out.shape == x.shape
        np.testing.assert_array_equal(out, ewa_reference(x, beta, corrected, axis))


def test_ewa_of_a_strided_view_and_of_a_list():
    x = np.arange(60.0).reshape(6, 10)
    view = x[::2, 1::3]
    np.testing.assert_array_equal(fo.ewa(view, 0.7), ewa_reference(np.ascontiguousarray(view), 0.7))
    np.testing.assert_array_equal(fo.ewa([1, 2, 3], 0.5), ewa_reference(np.array([1.0, 2.0, 3.0]), 0.5))


def test_dtypes_are_converted_as_np_mean_converts_them():
    assert fo.ewa(np.arange(4, dtype=np.int32), 0.5).dtype == np.float64
    assert fo.ewa(np.array([True, False]), 0.5).dtype == np.float64
    assert fo.ewa(np.ones(3, np.float16), 0.5).dtype == np.float32
    assert fo.moving_average(np.ones(3, ">f8"), 2).dtype == np.float64
    assert fo.ewa(np.ones(3, ">f4"), 0.5).dtype == np.float32
    assert fo.moving_average(np.ones(3, np.float32), 2).dtype == np.float32


def test_bias_correction_removes_the_start_up_lag_of_beta_0_98():
    # The lecture's temperatures: about 10 degrees, noisy.
    days = np.arange(365)
    theta = 10 + 5 * np.sin(days / 58) + np.random.default_rng(1).normal(0, 2, days.size)
    raw = fo.ewa(theta, 0.98, bias_correction=False)
    corrected = fo.ewa(theta, 0.98)
    # Started at 0, v_1 = 0.02 * theta_1: far below the data for the first weeks.
    assert raw[0] == pytest.approx(0.02 * theta[0])
    assert np.all(raw[:10] < 0.25 * theta[:10].mean())
    assert np.all(raw[:30] < theta[:30].min())
    # Corrected, v_1 / (1 - 0.98) = theta_1, and the first days stay within the data.
    assert corrected[0] == pytest.approx(theta[0])
    assert np.all((corrected[:30] > theta[:30].min()) & (corrected[:30] < theta[:30].max()))
    # The correction fades: after ~5 windows (250 days) the two agree.
    np.testing.assert_allclose(raw[250:], corrected[250:], rtol=1e-2)
    assert abs(raw[-1] - corrected[-1]) < 1e-3 * abs(corrected[-1])


def test_the_window_is_about_one_over_one_minus_beta():
    # A step from 0 to 1: the average has covered 1 - 1/e of it after about 1/(1-beta) steps.
    for beta, window in [(0.5, 2), (0.9, 10), (0.98, 50)]:
        assert fo.EWA(beta).window == pytest.approx(window)
        out = fo.ewa(np.ones(200), beta, bias_correction=False)
        assert out[window - 1] == pytest.approx(1 - beta**window)
        assert abs(out[window - 1] - (1 - 1 / math.e)) < 0.15


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,axis", CASES[:10])
def test_moving_average_matches_the_exact_mean(shape, axis, dtype, simd_level):
    for window in (1, 3, 10, 1000):
        x, want = _moving_average_case(shape, axis, dtype, window)
        out = fo.moving_average(x, window, axis=axis)
        assert out.dtype == dtype and out.shape == x.shape
        if dtype == np.float32:
            np.testing.assert_array_max_ulp(out, want, maxulp=1)
        else:
            np.testing.assert_allclose(out, want, rtol=1e-14, atol=0)


def test_moving_average_is_numpy_convolve_valid_after_the_first_window():
    x = np.random.default_rng(3).uniform(size=500)
    out = fo.moving_average(x, 20)
    np.testing.assert_allclose(out[19:], np.convolve(x, np.ones(20) / 20, "valid"), rtol=1e-12)
    np.testing.assert_allclose(out[:19], np.cumsum(x[:19]) / np.arange(1, 20), rtol=1e-12)


def test_moving_average_keeps_nan_and_infinity_in_their_windows():
    x = np.array([1.0, np.nan, 2.0, 3.0, np.inf, 4.0, -np.inf, 5.0, 6.0, 7.0])
    np.testing.assert_array_equal(
        fo.moving_average(x, 3),
        [1.0, np.nan, np.nan, np.nan, np.inf, np.inf, np.nan, -np.inf, -np.inf, 6.0],
    )


BAD_CALLS = [
    (lambda: fo.ewa(np.ones(3), 1.0), ValueError, r"beta must be in \[0, 1\), got 1.0"),
    (lambda: fo.ewa(np.ones(3), -0.5), ValueError, r"beta must be in \[0, 1\)"),
    (lambda: fo.ewa(np.ones(3), float("nan")), ValueError, r"beta must be in \[0, 1\)"),
    (lambda: fo.ewa(np.ones(3), "0.9"), TypeError, r"beta"),
    (lambda: fo.ewa(np.ones(3), 0.9, bias_correction=None), TypeError, r"bias_correction"),
    (
        lambda: fo.ewa(np.ones((2, 3)), 0.9, axis=2),
        ValueError,
        r"axis 2 is out of bounds for an array of 2 dimensions",
    ),
    (lambda: fo.ewa(np.ones((2, 3)), 0.9, axis=-3), ValueError, r"axis -3 is out of bounds"),
    (lambda: fo.ewa(np.float64(3.0), 0.9), ValueError, r"out of bounds for an array of 0 dimensions"),
    (lambda: fo.ewa(np.ones(3, complex), 0.9), TypeError, r"x must hold real numbers, got dtype complex128"),
    (lambda: fo.ewa(["a", "b"], 0.9), TypeError, r"x must hold real numbers"),
    (lambda: fo.moving_average(np.ones(3), 0), ValueError, r"window must be at least 1, got 0"),
    (lambda: fo.moving_average(np.ones(3), -2), ValueError, r"window must be at least 1, got -2"),
    (lambda: fo.moving_average(np.ones(3), 2.5), TypeError, r"window"),
    (lambda: fo.moving_average(np.ones(3), True), TypeError, r"window must be an integer"),
    (lambda: fo.moving_average(np.ones(3), 2, axis=1), ValueError, r"axis 1 is out of bounds"),
    (
        lambda: fo._core.ewa([1.0, 2.0], 0.5),
        TypeError,
        r"x must be a numpy.ndarray of float32 or float64, got list",
    ),
    (lambda: fo._core.moving_average(np.ones(2, np.int64), 2), TypeError, r"x has dtype int64"),
]


@pytest.mark.parametrize("call,exc,match", BAD_CALLS)
def test_bad_arguments_are_refused_with_a_clear_message(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


# -- the streaming EWA ------------------------------------------------------------------


def test_streaming_numbers_equal_the_series_average_bit_for_bit():
    series = np.random.default_rng(4).normal(size=50)
    for corrected in (True, False):
        avg = fo.EWA(0.9, bias_correction=corrected)
        assert avg.value is None
        values = [avg.update(float(x)) for x in series]
        assert all(type(v) is float for v in values)
        np.testing.assert_array_equal(values, fo.ewa(series, 0.9, bias_correction=corrected))
        assert avg.t == 50 and avg.value == values[-1]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_streaming_arrays_equal_the_series_average_bit_for_bit(dtype, simd_level):
    series = np.random.default_rng(5).normal(size=(30, 4, 3)).astype(dtype)
    avg = fo.EWA(0.8)
    out = np.array([avg.update(x) for x in series])
    assert out.dtype == dtype
    np.testing.assert_array_equal(out, fo.ewa(series, 0.8))
    later = avg.value
    later[...] = 0  # value is a copy
    assert not np.all(avg.value == 0)


def test_streaming_updates_must_keep_their_shape():
    avg = fo.EWA(0.5)
    avg.update(np.ones(3))
    with pytest.raises(ValueError, match=r"x has shape \(4,\), expected shape \(3,\)"):
        avg.update(np.ones(4))
    with pytest.raises(ValueError, match=r"x has shape \(\), expected shape \(3,\)"):
        avg.update(1.0)
    scalar = fo.EWA(0.5)
    scalar.update(1)
    with pytest.raises(ValueError, match=r"expected a number"):
        scalar.update(np.ones(2))
    with pytest.raises(TypeError, match="x must be a real number"):
        scalar.update("1.0")
    with pytest.raises(ValueError, match=r"beta must be in \[0, 1\), got 1"):
        fo.EWA(1)
    with pytest.raises(TypeError, match="bias_correction must be True or False"):
        fo.EWA(0.5, bias_correction="yes")


def test_streaming_state_dict_round_trip_continues_identically():
    series = np.random.default_rng(6).normal(size=(20, 5)).astype(np.float32)
    straight = fo.EWA(0.9)
    for x in series:
        straight.update(x)
    first = fo.EWA(0.9)
    for x in series[:7]:
        first.update(x)
    resumed = fo.EWA(0.1, bias_correction=False)
    resumed.load_state_dict(pickle.loads(pickle.dumps(first.state_dict())))
    for x in series[7:]:
        resumed.update(x)
    np.testing.assert_array_equal(resumed.value, straight.value)
    assert resumed.t == 20 and resumed.beta == 0.9 and resumed.bias_correction
    with pytest.raises(ValueError, match="v is None exactly when t is 0"):
        resumed.load_state_dict({"beta": 0.9, "bias_correction": True, "t": 3, "v": None})
    resumed.reset()
    assert resumed.value is None and resumed.t == 0


# -- ParameterEMA -----------------------------------------------------------------------


def test_parameter_ema_follows_its_formula_bit_for_bit(simd_level):
    rng = np.random.default_rng(7)
    params = {"W": rng.normal(size=(5, 3)).astype(np.float32), "b": rng.normal(size=PARALLEL + 3)}
    ema = fo.ParameterEMA(params, decay=0.99)
    ref = {k: v.copy() for k, v in params.items()}
    for _ in range(5):
        for k, p in params.items():
            p += rng.normal(size=p.shape).astype(p.dtype)
            dt = p.dtype.type
            ref[k] = dt(0.99) * ref[k] + dt(1 - 0.99) * p
        ema.update()
    assert ema.num_updates == 5
    for k in params:
        assert ema.averages[k].dtype == params[k].dtype
        np.testing.assert_array_equal(ema.averages[k], ref[k])


def test_debiased_parameter_ema_is_the_bias_corrected_ewa_of_the_parameters():
    rng = np.random.default_rng(8)
    history = rng.normal(size=(40, 6))
    w = np.full(6, 100.0)  # the starting point carries no weight once debiased
    ema = fo.ParameterEMA([w], decay=0.9, debias=True)
    plain = fo.ParameterEMA([w], decay=0.9)
    for t, p in enumerate(history):
        w[...] = p
        ema.update()
        plain.update()
        if t == 0:
            np.testing.assert_array_equal(ema.averages[0], p)
        np.testing.assert_allclose(ema.averages[0], fo.ewa(history[: t + 1], 0.9)[-1], rtol=1e-12, atol=1e-14)
    # Without debias the start keeps the weight 0.9**40.
    np.testing.assert_allclose(plain.averages[0] - ema.averages[0] * (1 - 0.9**40), 100 * 0.9**40, rtol=1e-9)


def test_parameter_ema_with_an_optimizer_copy_to_and_swap():
    params = {"w": np.zeros(3), "b": np.zeros(1, np.float32)}
    opt = fo.SGD(params, lr=0.5)
    ema = fo.ParameterEMA(params, decay=0.5)
    for g in (1.0, 2.0):
        opt.step({"w": np.full(3, g), "b": np.full(1, g, np.float32)})
        ema.update()
    # w: -0.5 then -1.5; average: 0.5 * (0.5 * 0 + 0.5 * -0.5) + 0.5 * -1.5 = -0.875
    np.testing.assert_array_equal(ema.averages["w"], [-0.875] * 3)
    with ema.swap():
        np.testing.assert_array_equal(params["w"], [-0.875] * 3)
        np.testing.assert_array_equal(ema.averages["w"], [-1.5] * 3)
    np.testing.assert_array_equal(params["w"], [-1.5] * 3)
    with pytest.raises(RuntimeError):
        with ema.swap():
            raise RuntimeError("evaluation failed")
    np.testing.assert_array_equal(params["w"], [-1.5] * 3)
    np.testing.assert_array_equal(ema.averages["w"], [-0.875] * 3)
    other = {"w": np.zeros(3), "b": np.zeros(1, np.float32)}
    ema.copy_to(other)
    np.testing.assert_array_equal(other["w"], [-0.875] * 3)
    ema.update({"b": params["b"], "w": params["w"]})  # a dict in any order
    ema.copy_to()
    np.testing.assert_array_equal(params["w"], [-1.1875] * 3)


def test_parameter_ema_state_dict_round_trip():
    rng = np.random.default_rng(9)
    w = rng.normal(size=(4, 4))
    ema = fo.ParameterEMA({"w": w}, decay=0.95, debias=True)
    for _ in range(3):
        w += 1
        ema.update()
    sd = pickle.loads(pickle.dumps(ema.state_dict()))
    other = fo.ParameterEMA({"w": w.copy()}, decay=0.5)
    other.load_state_dict(sd)
    for _ in range(4):
        w += 1
        ema.update()
        other.update({"w": w})
    np.testing.assert_array_equal(other.averages["w"], ema.averages["w"])
    assert (other.decay, other.debias, other.num_updates) == (0.95, True, 7)
    with pytest.raises(ValueError, match=r"must be a float array of shape \(4, 4\)"):
        other.load_state_dict({**sd, "averages": [np.zeros(3)]})
    with pytest.raises(ValueError, match="param_names differ"):
        other.load_state_dict({**sd, "param_names": ["v"]})


def test_parameter_ema_refuses_bad_input():
    w = np.zeros(3)
    with pytest.raises(ValueError, match=r"decay must be in \[0, 1\), got 1.0"):
        fo.ParameterEMA([w], decay=1.0)
    with pytest.raises(
        TypeError, match=r"parameter params\[0\] must be a float32 or float64 ndarray, got dtype int64"
    ):
        fo.ParameterEMA([np.zeros(3, np.int64)])
    with pytest.raises(TypeError, match="got a single ndarray"):
        fo.ParameterEMA(w)
    ema = fo.ParameterEMA({"w": w}, decay=0.9)
    before = ema.state_dict()
    bad = [
        ({"w": np.zeros(4)}, ValueError, r"'w' has shape \(4,\), expected \(3,\) like its average"),
        ({"w": np.zeros(3, np.float32)}, TypeError, r"'w' has dtype float32, expected float64"),
        ({"v": np.zeros(3)}, ValueError, r"missing \['w'\], unknown \['v'\]"),
        ([np.zeros(3), np.zeros(3)], ValueError, "expected 1 parameters, got 2"),
        (ema.averages, ValueError, r"'w' shares memory with the average of 'w'"),
    ]
    for params, exc, match in bad:
        with pytest.raises(exc, match=match):
            ema.update(params)
    assert ema.num_updates == 0
    np.testing.assert_array_equal(ema.state_dict()["averages"][0], before["averages"][0])
    with pytest.raises(ValueError, match=r"must be a float64 array of shape \(3,\)"):
        ema.copy_to({"w": np.zeros(2)})
    with pytest.raises(ValueError, match="averages of params\\[0\\] and params\\[1\\] share memory"):
        buf = np.zeros(4)
        fo._core.ema_update([buf[:3], buf[1:]], [np.zeros(3), np.zeros(3)], 0.5, ["params[0]", "params[1]"])


def test_strided_views_are_refused_by_the_core_and_copied_by_the_wrappers():
    w = np.zeros((4, 4))
    ema = fo.ParameterEMA([w], decay=0.5)
    view = np.arange(32.0).reshape(4, 8)[:, ::2]
    with pytest.raises(ValueError, match=r"params\[0\] is not a C-contiguous, aligned array"):
        ema.update([view])
    with pytest.raises(ValueError, match=r"x is not a C-contiguous, aligned array"):
        fo._core.ewa(view, 0.5)
    avg = fo.EWA(0.5, bias_correction=False)
    avg.update(view)
    np.testing.assert_array_equal(avg.value, 0.5 * view)


def test_results_do_not_depend_on_the_thread_count(threads):
    rng = np.random.default_rng(10)
    x = rng.normal(size=(200, 700)).astype(np.float32)
    results = []
    for n in (1, 2, 3):
        fo.set_num_threads(n)
        w = x.copy()
        ema = fo.ParameterEMA([w], decay=0.9)
        w += 1
        ema.update()
        results.append(
            [
                fo.ewa(x, 0.95),
                fo.ewa(x, 0.95, axis=1),
                fo.moving_average(x, 5),
                fo.moving_average(x, 5, axis=1),
                ema.averages[0],
            ]
        )
    for other in results[1:]:
        for a, b in zip(results[0], other):
            np.testing.assert_array_equal(a, b)


def test_docstring_examples_run():
    result = doctest.testmod(ferroptim.averages, verbose=False)
    assert result.attempted >= 8 and result.failed == 0
