"""Learning-rate schedules against formulas written from their definitions (the lecture,
Keras and torch.optim.lr_scheduler documentation), against torch itself where it is
installed, and driving optimizers."""

import doctest
import math
import pickle

import numpy as np
import pytest

import ferroptim as fo
import ferroptim.schedules
from ferroptim.schedules import (
    CosineDecay,
    CosineDecayRestarts,
    ExponentialDecay,
    InverseSqrtDecay,
    InverseTimeDecay,
    JoinSchedules,
    LinearSchedule,
    OneCycle,
    PiecewiseConstantDecay,
    PolynomialDecay,
    ReduceLROnPlateau,
)

from reference import Reference

STEPS = np.arange(0, 120)


def assert_matches(schedule, reference, steps=STEPS, rtol=1e-13):
    """The vectorised call, the scalar call and the reference agree at every step."""
    want = np.array([reference(int(k)) for k in steps])
    got = schedule(steps)
    assert isinstance(got, np.ndarray) and got.dtype == np.float64 and got.shape == steps.shape
    np.testing.assert_allclose(got, want, rtol=rtol, atol=1e-300)
    scalars = [schedule(int(k)) for k in steps]
    assert all(type(v) is float for v in scalars)
    np.testing.assert_allclose(scalars, want, rtol=rtol, atol=1e-300)


# -- the lecture's four ---------------------------------------------------------------


def test_the_lectures_decays_per_epoch():
    lr0, steps_per_epoch = 0.2, 10
    epoch = STEPS / steps_per_epoch
    # alpha0 / (1 + decay_rate * epoch), continuous and as a staircase
    assert_matches(
        InverseTimeDecay(lr0, 1.0, decay_steps=steps_per_epoch), lambda k: lr0 / (1 + 1.0 * k / 10)
    )
    assert_matches(
        InverseTimeDecay(lr0, 1.0, decay_steps=steps_per_epoch, staircase=True),
        lambda k: lr0 / (1 + 1.0 * (k // 10)),
    )
    # 0.95**epoch * alpha0
    assert_matches(ExponentialDecay(lr0, 0.95, decay_steps=steps_per_epoch), lambda k: lr0 * 0.95 ** (k / 10))
    # k / sqrt(epoch_num) * alpha0 with the lecture's 1-based epoch_num
    assert_matches(
        InverseSqrtDecay(lr0, 0.5, decay_steps=steps_per_epoch), lambda k: 0.5 / math.sqrt(1 + k / 10) * lr0
    )
    staircase = InverseTimeDecay(lr0, 1.0, decay_steps=steps_per_epoch, staircase=True)(STEPS)
    assert len(set(staircase)) == 12 and np.all(np.diff(staircase) <= 0)
    assert np.all(np.diff(InverseTimeDecay(lr0, 1.0, steps_per_epoch)(epoch * 10)) < 0)


# -- Keras definitions (keras.optimizers.schedules docs) --------------------------------


def test_keras_inverse_time_decay():
    # initial_learning_rate / (1 + decay_rate * step / decay_step)
    assert_matches(InverseTimeDecay(0.1, 0.5, decay_steps=7.0), lambda k: 0.1 / (1 + 0.5 * k / 7.0))


def test_keras_piecewise_constant_decay():
    def ref(k):
        return 1.0 if k <= 10 else 0.5 if k <= 30 else 0.1

    assert_matches(PiecewiseConstantDecay([10, 30], [1.0, 0.5, 0.1]), ref)


@pytest.mark.parametrize("cycle", [False, True])
def test_keras_polynomial_decay(cycle):
    lr0, end, power, decay_steps = 0.1, 0.001, 0.5, 25

    def ref(k):
        if cycle:
            d = decay_steps * (1 if k == 0 else math.ceil(k / decay_steps))
        else:
            k, d = min(k, decay_steps), decay_steps
        return (lr0 - end) * (1 - k / d) ** power + end

    assert_matches(PolynomialDecay(lr0, decay_steps, end_lr=end, power=power, cycle=cycle), ref)


def test_keras_cosine_decay_with_and_without_warmup():
    def ref(k, lr0=0.1, decay_steps=50, alpha=0.1, warmup_steps=0, target=None):
        if target is None:
            k = min(k, decay_steps)
            return lr0 * ((1 - alpha) * 0.5 * (1 + math.cos(math.pi * k / decay_steps)) + alpha)
        k = min(k, decay_steps + warmup_steps)
        if k < warmup_steps:
            return (target - lr0) * (k / warmup_steps) + lr0
        k -= warmup_steps
        return target * ((1 - alpha) * 0.5 * (1 + math.cos(math.pi * k / decay_steps)) + alpha)

    assert_matches(CosineDecay(0.1, 50, alpha=0.1), ref)
    assert_matches(
        CosineDecay(0.0, 50, alpha=0.1, warmup_steps=20, warmup_target=0.5),
        lambda k: ref(k, lr0=0.0, warmup_steps=20, target=0.5),
    )
    assert_matches(CosineDecay(0.1, 50, alpha=0.1, warmup_target=0.3), lambda k: ref(k, target=0.3))


@pytest.mark.parametrize("t_mul,m_mul,first", [(1.0, 1.0, 10), (2.0, 0.5, 5), (3.0, 0.9, 7), (1.5, 1.0, 4)])
def test_keras_cosine_decay_restarts(t_mul, m_mul, first):
    lr0, alpha = 0.1, 0.05

    def ref(k):
        # Walk the periods: exact restarts, no logarithm.
        i, start, length = 0, 0.0, float(first)
        while k >= start + length:
            i, start, length = i + 1, start + length, length * t_mul
        fraction = (k - start) / length
        cosine = 0.5 * m_mul**i * (1 + math.cos(math.pi * fraction))
        return lr0 * ((1 - alpha) * cosine + alpha)

    schedule = CosineDecayRestarts(lr0, first, t_mul=t_mul, m_mul=m_mul, alpha=alpha)
    assert_matches(schedule, ref, steps=np.arange(0, 400), rtol=1e-11)


def test_linear_schedule_warmup():
    assert_matches(LinearSchedule(0.0, 0.1, steps=30), lambda k: 0.0 + (0.1 - 0.0) * min(k, 30) / 30)
    assert_matches(LinearSchedule(0.5, 0.1, steps=7), lambda k: 0.5 + (0.1 - 0.5) * min(k, 7) / 7)


# -- torch.optim.lr_scheduler definitions (its docs), step k = the k-th scheduler.step() --


def test_torch_step_and_exponential_lr():
    lr0, gamma = 0.05, 0.7
    assert_matches(
        ExponentialDecay(lr0, gamma, decay_steps=15, staircase=True), lambda k: lr0 * gamma ** (k // 15)
    )
    assert_matches(ExponentialDecay(lr0, gamma), lambda k: lr0 * gamma**k)


def test_torch_cosine_annealing_lr():
    lr0, eta_min, t_max = 0.1, 0.001, 100
    assert_matches(
        CosineDecay(lr0, t_max, alpha=eta_min / lr0),
        lambda k: eta_min + (lr0 - eta_min) * (1 + math.cos(math.pi * k / t_max)) / 2,
        steps=np.arange(t_max + 1),
        rtol=1e-12,
    )


def test_torch_cosine_annealing_warm_restarts():
    lr0, eta_min, t_0, t_mult = 0.1, 0.002, 6, 2

    def ref(k):
        t_cur, t_i = k, t_0
        while t_cur >= t_i:
            t_cur, t_i = t_cur - t_i, t_i * t_mult
        return eta_min + (lr0 - eta_min) * (1 + math.cos(math.pi * t_cur / t_i)) / 2

    assert_matches(
        CosineDecayRestarts(lr0, t_0, t_mul=t_mult, alpha=eta_min / lr0),
        ref,
        steps=np.arange(300),
        rtol=1e-12,
    )


def test_torch_polynomial_and_linear_lr():
    lr0 = 0.1
    assert_matches(
        PolynomialDecay(lr0, 40, end_lr=0.0, power=2.0), lambda k: lr0 * (1 - min(40, k) / 40) ** 2.0
    )
    sf, ef, total = 0.1, 1.0, 25
    assert_matches(
        LinearSchedule(lr0 * sf, lr0 * ef, total),
        lambda k: lr0 * (sf + (ef - sf) * min(k, total) / total),
        rtol=1e-12,
    )


def test_torch_one_cycle_lr():
    max_lr, total, pct, div, final_div = 0.1, 100, 0.3, 25.0, 1e4

    def ref(k):
        initial = max_lr / div
        phases = [(pct * total - 1, initial, max_lr), (total - 1, max_lr, initial / final_div)]
        start = 0.0
        for i, (end, a, b) in enumerate(phases):
            if k <= end or i == len(phases) - 1:
                x = (k - start) / (end - start)
                return b + (a - b) / 2.0 * (math.cos(math.pi * x) + 1)
            start = end

    schedule = OneCycle(max_lr, total, pct, div, final_div)
    assert_matches(schedule, ref, steps=np.arange(total), rtol=1e-12)
    assert schedule(total - 1) == pytest.approx(max_lr / div / final_div)
    assert schedule(10 * total) == schedule(total - 1)


TORCH_CASES = [
    ("StepLR", dict(step_size=7, gamma=0.5), lambda lr: ExponentialDecay(lr, 0.5, 7, staircase=True)),
    ("ExponentialLR", dict(gamma=0.97), lambda lr: ExponentialDecay(lr, 0.97)),
    ("CosineAnnealingLR", dict(T_max=60, eta_min=0.001), lambda lr: CosineDecay(lr, 60, alpha=0.001 / lr)),
    (
        "CosineAnnealingWarmRestarts",
        dict(T_0=5, T_mult=2, eta_min=0.001),
        lambda lr: CosineDecayRestarts(lr, 5, t_mul=2, alpha=0.001 / lr),
    ),
    (
        "PolynomialLR",
        dict(total_iters=40, power=1.5),
        lambda lr: PolynomialDecay(lr, 40, end_lr=0.0, power=1.5),
    ),
    (
        "LinearLR",
        dict(start_factor=0.1, end_factor=1.0, total_iters=20),
        lambda lr: LinearSchedule(lr * 0.1, lr, 20),
    ),
    ("OneCycleLR", dict(max_lr=0.2, total_steps=60), lambda lr: OneCycle(0.2, 60)),
]


@pytest.mark.parametrize("name,kwargs,ours", TORCH_CASES, ids=[c[0] for c in TORCH_CASES])
def test_values_match_torch_itself(name, kwargs, ours):
    torch = pytest.importorskip("torch")
    lr0 = 0.1
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr0)
    scheduler = getattr(torch.optim.lr_scheduler, name)(opt, **kwargs)
    # OneCycleLR stops at total_steps; CosineAnnealingLR rises again after T_max, where
    # CosineDecay stays at its floor as Keras's does.
    steps = {"OneCycleLR": 60, "CosineAnnealingLR": 61}.get(name, 120)
    torch_lrs = []
    for _ in range(steps):
        torch_lrs.append(opt.param_groups[0]["lr"])  # the rate of this update
        opt.step()
        scheduler.step()
    np.testing.assert_allclose(ours(lr0)(np.arange(steps)), torch_lrs, rtol=1e-10, atol=1e-15)


# -- chaining ---------------------------------------------------------------------------


def test_join_schedules_restarts_each_count_at_its_boundary():
    warmup = LinearSchedule(0.0, 0.1, steps=10)
    decay = ExponentialDecay(0.1, 0.9)
    constant = lambda k: [0.05, 0.04, 0.03][min(k, 2)]  # noqa: E731 - a plain callable, int steps
    joined = JoinSchedules([warmup, decay, constant], boundaries=[10, 50])

    def ref(k):
        if k < 10:
            return warmup(k)
        if k < 50:
            return decay(k - 10)
        return constant(k - 50)

    assert_matches(joined, ref)
    assert joined(10) == 0.1 and joined(50) == 0.05 and joined(52) == 0.03


# -- calling conventions and bad input --------------------------------------------------


def test_steps_may_be_any_real_array_and_results_keep_its_shape():
    s = CosineDecay(1.0, 10)
    grid = np.arange(12).reshape(3, 4)
    assert s(grid).shape == (3, 4)
    assert type(s(np.int64(3))) is float and type(s(np.array(3))) is float
    assert s(2.5) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.25)))
    np.testing.assert_array_equal(s([0, 1]), [s(0), s(1)])
    assert s(np.array([], dtype=int)).shape == (0,)


BAD_SCHEDULES = [
    (lambda: ExponentialDecay(0.1, 0.9, decay_steps=0), ValueError, r"decay_steps must be > 0, got 0"),
    (lambda: InverseTimeDecay(0.1, 0.5, decay_steps=-2), ValueError, r"decay_steps must be > 0"),
    (lambda: InverseSqrtDecay(0.1, 1.0, decay_steps=0), ValueError, r"decay_steps must be > 0"),
    (lambda: PolynomialDecay(0.1, 0), ValueError, r"decay_steps must be > 0"),
    (lambda: CosineDecay(0.1, 0), ValueError, r"decay_steps must be > 0"),
    (lambda: CosineDecayRestarts(0.1, 0), ValueError, r"first_decay_steps must be > 0"),
    (lambda: LinearSchedule(0.0, 0.1, 0), ValueError, r"steps must be > 0"),
    (lambda: ExponentialDecay(-0.1, 0.9), ValueError, r"initial_lr must be >= 0, got -0.1"),
    (lambda: ExponentialDecay(float("nan"), 0.9), ValueError, r"initial_lr must be >= 0, got nan"),
    (lambda: ExponentialDecay(0.1, 0.0), ValueError, r"decay_rate must be > 0"),
    (lambda: InverseTimeDecay(0.1, -1.0), ValueError, r"decay_rate must be >= 0"),
    (lambda: ExponentialDecay("0.1", 0.9), TypeError, r"initial_lr must be a number, got str"),
    (lambda: ExponentialDecay(0.1, 0.9, staircase=1), TypeError, r"staircase must be True or False"),
    (
        lambda: PiecewiseConstantDecay([10, 5], [1.0, 0.5, 0.1]),
        ValueError,
        r"boundaries must be strictly increasing, got 10 then 5 at index 1",
    ),
    (lambda: PiecewiseConstantDecay([10, 10], [1.0, 0.5, 0.1]), ValueError, r"strictly increasing"),
    (
        lambda: PiecewiseConstantDecay([10], [1.0]),
        ValueError,
        r"values must have one more entry than boundaries",
    ),
    (lambda: PiecewiseConstantDecay([10], [1.0, -0.5]), ValueError, r"values\[1\] must be >= 0"),
    (lambda: PolynomialDecay(0.1, 10, power=0.0), ValueError, r"power must be > 0"),
    (lambda: CosineDecay(0.1, 10, alpha=1.5), ValueError, r"alpha must be in \[0, 1\], got 1.5"),
    (lambda: CosineDecay(0.1, 10, warmup_steps=5), ValueError, r"warmup_steps=5 needs warmup_target"),
    (lambda: CosineDecayRestarts(0.1, 10, t_mul=0.5), ValueError, r"t_mul must be >= 1"),
    (lambda: OneCycle(0.1, 1), ValueError, r"total_steps must be >= 2"),
    (lambda: OneCycle(0.1, 10.0), TypeError, r"total_steps must be an integer"),
    (lambda: OneCycle(0.1, 100, pct_start=1.0), ValueError, r"pct_start must be in \(0, 1\), got 1.0"),
    (lambda: OneCycle(0.1, 3, pct_start=0.3), ValueError, r"pct_start \* total_steps must be > 1"),
    (lambda: OneCycle(0.0, 100), ValueError, r"max_lr must be > 0"),
    (lambda: JoinSchedules([LinearSchedule(0, 1, 2)], [5]), ValueError, r"one entry fewer than schedules"),
    (lambda: JoinSchedules([LinearSchedule(0, 1, 2)] * 3, [5, 3]), ValueError, r"strictly increasing"),
    (lambda: JoinSchedules([LinearSchedule(0, 1, 2)] * 2, [0]), ValueError, r"boundaries\[0\] must be > 0"),
    (
        lambda: JoinSchedules([LinearSchedule(0, 1, 2), 0.1], [5]),
        TypeError,
        r"schedules\[1\] must be callable",
    ),
    (lambda: JoinSchedules([], []), ValueError, r"schedules must not be empty"),
]


@pytest.mark.parametrize("make,exc,match", BAD_SCHEDULES)
def test_bad_arguments_are_refused_at_construction(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


@pytest.mark.parametrize(
    "step,exc,match",
    [
        (-1, ValueError, r"step must be a finite number >= 0, got -1"),
        (float("nan"), ValueError, r"got nan"),
        (np.array([0, 3, -2]), ValueError, r"got -2.0"),
        (np.array([0.0, np.inf]), ValueError, r"got inf"),
        ("3", TypeError, r"step must be a number or an array of numbers, got str"),
        (True, TypeError, r"got bool"),
        (None, TypeError, r"got NoneType"),
    ],
)
def test_bad_steps_are_refused(step, exc, match):
    for schedule in (
        ExponentialDecay(0.1, 0.9),
        JoinSchedules([LinearSchedule(0, 1, 2), OneCycle(1.0, 10)], [2]),
    ):
        with pytest.raises(exc, match=match):
            schedule(step)


def test_schedules_print_their_arguments_and_pickle():
    s = PolynomialDecay(0.1, 100, power=2.0)
    assert (
        repr(s) == "PolynomialDecay(initial_lr=0.1, decay_steps=100.0, end_lr=0.0001, power=2.0, cycle=False)"
    )
    joined = JoinSchedules([LinearSchedule(0.0, 0.1, 5), s], [5])
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(joined))(STEPS), joined(STEPS))


# -- optimizers driven by a schedule ----------------------------------------------------

SCHEDULE = JoinSchedules(
    [LinearSchedule(0.01, 0.1, 5), PiecewiseConstantDecay([7, 12], [0.1, 0.05, 0.02])], [5]
)


@pytest.mark.parametrize(
    "kind,h", [("sgd", dict(momentum=0.9)), ("adam", dict()), ("momentum", dict(beta=0.8))]
)
def test_an_optimizer_uses_the_scheduled_rate_at_every_step(kind, h):
    rng = np.random.default_rng(0)
    params = [rng.normal(size=(3, 4)), rng.normal(size=5).astype(np.float32)]
    ref = Reference(kind, params, lr=0.0, **h)
    opt = {"sgd": fo.SGD, "adam": fo.Adam, "momentum": fo.Momentum}[kind](params, lr=SCHEDULE, **h)
    for k in range(25):
        grads = [rng.normal(size=p.shape).astype(p.dtype) for p in params]
        opt.step(grads)
        ref.step(grads, lr=SCHEDULE(k))
        for p, r in zip(params, ref.params):
            np.testing.assert_array_equal(p, r, err_msg=f"update {k}")


def test_after_a_state_dict_round_trip_the_schedule_goes_on_from_the_right_step():
    def grads(t):
        rng = np.random.default_rng(100 + t)
        return {"w": rng.normal(size=6), "b": rng.normal(size=2)}

    def fresh():
        return {"w": np.linspace(-1, 1, 6), "b": np.zeros(2)}

    straight = fresh()
    opt = fo.Adam(straight, lr=SCHEDULE)
    for t in range(20):
        opt.step(grads(t))

    first = fresh()
    opt1 = fo.Adam(first, lr=SCHEDULE)
    for t in range(9):
        opt1.step(grads(t))
    sd = pickle.loads(pickle.dumps(opt1.state_dict()))
    resumed = {k: v.copy() for k, v in first.items()}
    calls = []

    def spy(k):
        calls.append(k)
        return 1.0

    opt2 = fo.Adam(resumed, lr=spy)
    opt2.load_state_dict(sd)  # brings back the schedule and the update count
    assert isinstance(opt2.param_groups[0]["lr"], JoinSchedules)
    for t in range(9, 20):
        opt2.step(grads(t))
    for k in straight:
        np.testing.assert_array_equal(resumed[k], straight[k])
    assert calls == [0]  # only the constructor's validation called the replaced rate


# -- ReduceLROnPlateau ------------------------------------------------------------------


def make_optimizer(lrs=(1.0,)):
    return fo.SGD([{"params": [np.zeros(1)], "lr": lr} for lr in lrs])


def test_plateau_reduces_after_patience_and_cools_down():
    opt = make_optimizer()
    plateau = ReduceLROnPlateau(opt, factor=0.5, patience=2, cooldown=1, threshold=0.1)
    seen = []
    # 1.0 is the best; 0.95 is not better by 10%; so 3 bad steps reduce, then 1 cooldown.
    for metric in [1.0, 0.95, 0.95, 0.95, 0.95, 0.95, 0.95, 0.95, 0.5]:
        plateau.step(metric)
        seen.append(opt.lr)
    assert seen == [1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.5, 0.25, 0.25]
    assert plateau.best == 0.5 and plateau.get_last_lr() == [0.25]


def test_plateau_max_mode_abs_threshold_min_lr_and_eps():
    opt = make_optimizer((1.0, 0.01))
    plateau = ReduceLROnPlateau(
        opt,
        mode="max",
        factor=0.1,
        patience=0,
        threshold=0.05,
        threshold_mode="abs",
        min_lr=[0.05, 0.0],
        eps=0.002,
    )
    plateau.step(0.5)  # better than -inf
    plateau.step(0.54)  # not better by 0.05: reduce; group 1's change 0.009 > eps
    assert plateau.get_last_lr() == [0.1, 0.001]
    plateau.step(0.56)  # better by more than 0.05? 0.56 > 0.5 + 0.05: yes
    plateau.step(0.56)  # reduce: group 0 hits its floor; group 1's change 0.0009 < eps
    assert plateau.get_last_lr() == [0.05, 0.001]


def test_smoothing_the_metric_ignores_noise():
    rng = np.random.default_rng(1)
    # A loss that keeps improving slowly, under mini-batch noise.
    losses = 1.0 / np.sqrt(1 + np.arange(200)) + rng.normal(0, 0.05, 200)
    raw_opt, smooth_opt = make_optimizer(), make_optimizer()
    raw = ReduceLROnPlateau(raw_opt, factor=0.5, patience=5)
    smooth = ReduceLROnPlateau(smooth_opt, factor=0.5, patience=5, smoothing=0.9)
    for loss in losses:
        raw.step(loss)
        smooth.step(loss)
    assert smooth_opt.lr >= 4 * raw_opt.lr  # at least two fewer reductions
    assert smooth.smoothing.t == 200 and smooth.best == min(fo.ewa(losses, 0.9))


def test_plateau_state_dict_round_trip():
    metrics = [3.0, 2.0, 2.5, 2.4, 2.6, 1.0, 1.1, 1.2, 1.3, 1.4, 1.5]
    opt = make_optimizer()
    straight = ReduceLROnPlateau(opt, factor=0.5, patience=1, smoothing=fo.EWA(0.5))
    lrs = []
    for m in metrics:
        straight.step(m)
        lrs.append(opt.lr)
    opt1 = make_optimizer()
    first = ReduceLROnPlateau(opt1, factor=0.5, patience=1, smoothing=fo.EWA(0.5))
    for m in metrics[:4]:
        first.step(m)
    opt2 = make_optimizer()
    opt2.load_state_dict(opt1.state_dict())
    second = ReduceLROnPlateau(opt2, smoothing=0.1)
    second.load_state_dict(pickle.loads(pickle.dumps(first.state_dict())))
    resumed = []
    for m in metrics[4:]:
        second.step(m)
        resumed.append(opt2.lr)
    assert resumed == lrs[4:]
    assert second.state_dict() == straight.state_dict()


def test_plateau_refuses_bad_input():
    opt = make_optimizer((1.0, 0.5))
    for kwargs, exc, match in [
        (dict(mode="lowest"), ValueError, r"mode must be 'min' or 'max'"),
        (dict(threshold_mode="relative"), ValueError, r"threshold_mode must be 'rel' or 'abs'"),
        (dict(factor=1.0), ValueError, r"factor must be in \[0, 1\), got 1.0"),
        (dict(patience=-1), ValueError, r"patience must be >= 0"),
        (dict(patience=1.5), TypeError, r"patience must be an integer"),
        (dict(min_lr=[0.1]), ValueError, r"min_lr has 1 entries, the optimizer 2 param groups"),
        (dict(min_lr=-1.0), ValueError, r"min_lr must be >= 0"),
        (dict(smoothing=1.0), ValueError, r"beta must be in \[0, 1\)"),
        (dict(smoothing="ewa"), TypeError, r"smoothing must be None, a beta in \[0, 1\) or an EWA"),
    ]:
        with pytest.raises(exc, match=match):
            ReduceLROnPlateau(opt, **kwargs)
    with pytest.raises(TypeError, match="must be a ferroptim optimizer"):
        ReduceLROnPlateau([np.zeros(1)])
    scheduled = fo.SGD([np.zeros(1)], lr=ExponentialDecay(0.1, 0.9))
    with pytest.raises(
        TypeError, match=r"param_groups\[0\]\['lr'\] is ExponentialDecay; ReduceLROnPlateau sets"
    ):
        ReduceLROnPlateau(scheduled)


def test_plateau_matches_torch_itself():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    metrics = list(np.round(rng.uniform(0.5, 1.5, 80) + np.linspace(1, 0, 80), 3))
    for kwargs in [
        dict(),
        dict(mode="max", factor=0.5, patience=2, threshold=0.01, cooldown=3, min_lr=1e-3),
        dict(factor=0.3, patience=1, threshold=0.05, threshold_mode="abs", eps=1e-3),
    ]:
        t_opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
        t_plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(t_opt, **kwargs)
        opt = make_optimizer()
        plateau = ReduceLROnPlateau(opt, **kwargs)
        for m in metrics:
            t_plateau.step(m)
            plateau.step(m)
            assert opt.lr == t_opt.param_groups[0]["lr"]
            assert plateau.num_bad_epochs == t_plateau.num_bad_epochs


def test_docstring_examples_run():
    result = doctest.testmod(ferroptim.schedules, verbose=False)
    assert result.attempted >= 15 and result.failed == 0
