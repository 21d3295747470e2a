"""Reliability of the Python layer (issue 15): a call that raises changes nothing, no input
hangs the job, and what the docstrings promise holds. MPI cases run under `mpiexec -n 2`
with a timeout, so a regression fails instead of hanging."""

import copy
import math
import os
import pickle
import shutil
import signal
import stat
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

import ferroptim as fo
from ferroptim import distributed as dist

WORKER = Path(__file__).parent / "mpi" / "reliability.py"
MPIEXEC = shutil.which("mpiexec", path=str(Path(sys.executable).parent)) or shutil.which("mpiexec")


class OneRank:
    """A communicator of one rank, so the checkpoint functions run without MPI."""

    def Get_rank(self):
        return 0

    def Get_size(self):
        return 1

    def Barrier(self):
        pass

    def bcast(self, obj, root=0):
        return obj


SELF = OneRank()


def mpirun(mode, tmp_path, timeout=90):
    """Runs the worker on 2 ranks; a job that outlives `timeout` is killed and fails."""
    pytest.importorskip("mpi4py")
    if MPIEXEC is None:
        pytest.skip("no mpiexec")
    env = dict(os.environ, FERROPTIM_NUM_THREADS="1")
    proc = subprocess.Popen(
        [MPIEXEC, "-n", "2", sys.executable, str(WORKER), mode, str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        pytest.fail(f"mpiexec -n 2 {mode} hung (killed after {timeout} s)\n{stdout}\n{stderr}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def assert_state_dicts_equal(a, b):
    assert a["param_groups"] == b["param_groups"]
    for key in ("nan_policy", "max_grad_norm", "skipped_steps"):
        assert a.get(key) == b.get(key)
    assert a["state"].keys() == b["state"].keys()
    for k in a["state"]:
        assert a["state"][k].keys() == b["state"][k].keys()
        for name, v in a["state"][k].items():
            np.testing.assert_array_equal(v, b["state"][k][name])


def rng_arrays(seed, *shapes, dtype=np.float64):
    g = np.random.default_rng(seed)
    return [g.normal(size=s).astype(dtype) for s in shapes]


# -- 1. save_checkpoint and the file it replaces -------------------------------------------


def test_save_checkpoint_refuses_a_non_regular_target_and_leaves_it(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match="not a regular file"):
        dist.save_checkpoint(fifo, comm=SELF, params=[np.zeros(2)])
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    with pytest.raises(ValueError, match="not a regular file"):
        dist.save_checkpoint(tmp_path, comm=SELF, params=[np.zeros(2)])
    assert sorted(os.listdir(tmp_path)) == ["pipe"]


def test_save_checkpoint_keeps_the_mode_of_the_file_it_replaces(tmp_path):
    path = tmp_path / "ckpt.pkl"
    path.write_bytes(b"old")
    os.chmod(path, 0o640)
    dist.save_checkpoint(path, comm=SELF, params=[np.ones(2)])
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640
    old = os.umask(0o022)
    try:
        dist.save_checkpoint(tmp_path / "new.pkl", comm=SELF, params=[np.ones(2)])
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "new.pkl").st_mode) == 0o644
    w = np.zeros(2)
    dist.load_checkpoint(path, comm=SELF, params=[w])
    np.testing.assert_array_equal(w, np.ones(2))


def test_save_checkpoint_writes_through_a_symlink(tmp_path):
    real = tmp_path / "real.pkl"
    real.write_bytes(b"old")
    link = tmp_path / "link.pkl"
    link.symlink_to(real)
    dist.save_checkpoint(link, comm=SELF, params=[np.ones(2)])
    assert link.is_symlink() and pickle.loads(real.read_bytes())["params"][0].tolist() == [1.0, 1.0]


def test_save_checkpoint_removes_its_temporary_file_when_pickling_fails(tmp_path):
    opt = fo.SGD([np.zeros(2)], lr=lambda k: 0.1)  # a lambda cannot be pickled
    (tmp_path / "ckpt.pkl").write_bytes(b"previous checkpoint")
    with pytest.raises((pickle.PicklingError, AttributeError, TypeError)):
        dist.save_checkpoint(tmp_path / "ckpt.pkl", comm=SELF, optimizer=opt)
    assert os.listdir(tmp_path) == ["ckpt.pkl"]
    assert (tmp_path / "ckpt.pkl").read_bytes() == b"previous checkpoint"


# -- 3, 4, 5, 21: MPI ----------------------------------------------------------------------


@pytest.mark.slow
def test_sys_exit_with_a_nonzero_status_on_one_rank_ends_the_job(tmp_path):
    out = mpirun("sys-exit", tmp_path)
    assert out.returncode != 0
    assert "was not stopped" not in out.stdout


@pytest.mark.slow
def test_an_exception_in_another_thread_ends_the_job(tmp_path):
    out = mpirun("thread-error", tmp_path)
    assert out.returncode != 0
    assert "the loader thread of rank 1 fails on purpose" in out.stderr
    assert "was not stopped" not in out.stdout


@pytest.mark.slow
def test_exits_with_status_zero_and_caught_system_exits_do_not_abort(tmp_path):
    out = mpirun("normal-exits", tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("finished") == 2


@pytest.mark.slow
def test_checkpoint_errors_are_raised_on_every_rank(tmp_path):
    out = mpirun("checkpoint-errors", tmp_path)
    assert out.returncode == 0, out.stderr
    for r in (0, 1):
        assert f"rank {r}: save FileNotFoundError" in out.stdout
        assert f"rank {r}: load FileNotFoundError" in out.stdout
        assert f"rank {r}: save-device ValueError" in out.stdout
        assert f"rank {r}: loaded [0.0, 0.0, 0.0]" in out.stdout  # rank 0's values
    assert stat.S_ISFIFO(os.stat(tmp_path / "fifo").st_mode)


@pytest.mark.slow
def test_distributed_optimizer_covers_groups_added_after_wrapping(tmp_path):
    out = mpirun("add-param-group", tmp_path)
    assert out.returncode == 0, out.stderr
    r0, r1 = (np.load(tmp_path / f"add-{r}.npz") for r in (0, 1))
    # One process with rank 0's initial values and the mean of the ranks' gradients.
    p, q, r = [np.random.default_rng(0).normal(size=s) for s in (3,)], None, None
    g0 = np.random.default_rng(0)
    p = [g0.normal(size=3)]
    q = [g0.normal(size=2)]
    r = [g0.normal(size=(2, 2)).astype(np.float32)]
    opt = fo.Adam(p, lr=0.1)
    gs = [np.random.default_rng(10 + k) for k in (0, 1)]

    def mean(*shapes):
        out = []
        for s in shapes:
            a, b = (g.normal(size=s) for g in gs)
            out.append((a + b) / 2)
        return out

    opt.step(mean(3))
    opt.add_param_group({"params": q, "lr": 0.05})
    opt.step(mean(3, 2))
    opt.add_param_group({"params": r})
    for _ in range(2):
        g = []
        for s in (3, 2, (2, 2)):
            a, b = (x.normal(size=s) for x in gs)
            if s == (2, 2):
                a, b = a.astype(np.float32), b.astype(np.float32)
                g.append((a + b) / np.float32(2))
            else:
                g.append((a + b) / 2)
        opt.step(g)
    for res in (r0, r1):
        np.testing.assert_allclose(res["p"], p[0], rtol=1e-12)
        np.testing.assert_allclose(res["q"], q[0], rtol=1e-12)
        np.testing.assert_allclose(res["r"], r[0], rtol=1e-6)
    for k in ("p", "q", "r"):
        np.testing.assert_array_equal(r0[k], r1[k])


@pytest.mark.slow
def test_distributed_optimizer_composes_with_the_wrappers_in_both_orders(tmp_path):
    out = mpirun("compose", tmp_path)
    assert out.returncode == 0, out.stderr
    r0, r1 = (np.load(tmp_path / f"compose-{r}.npz") for r in (0, 1))

    def grads(t, r):
        g = np.random.default_rng(1000 * t + r)
        return [g.normal(size=4), g.normal(size=3).astype(np.float32)]

    for order in ("dist(acc)", "acc(dist)", "dist(look)", "look(dist)"):
        rng = np.random.default_rng(0)
        params = [rng.normal(size=4), rng.normal(size=3).astype(np.float32)]
        base = fo.Adam(params, lr=0.05)
        wrapper = (
            fo.GradientAccumulation(base, steps=2)
            if "acc" in order
            else fo.Lookahead(base, sync_period=2, slow_step_size=0.5)
        )
        for t in range(6):
            a, b = grads(t, 0), grads(t, 1)
            wrapper.step([(a[0] + b[0]) / 2, (a[1] + b[1]) / np.float32(2)])
        for res in (r0, r1):
            np.testing.assert_allclose(res[f"{order}-0"], params[0], rtol=1e-10, err_msg=order)
            np.testing.assert_allclose(res[f"{order}-1"], params[1], rtol=1e-5, err_msg=order)
        np.testing.assert_array_equal(r0[f"{order}-0"], r1[f"{order}-0"])
    for r in (0, 1):
        assert f"rank {r}: copies [0.75, 0.75] [0.75, 0.75] [1.0, 1.0]" in out.stdout


# -- 6. ParameterEMA refuses tied or overlapping parameters ----------------------------------


def test_parameter_ema_refuses_the_same_array_twice_and_overlapping_views():
    w = np.arange(6.0)
    with pytest.raises(ValueError, match=r"params\[1\] is the same array as params\[0\]"):
        fo.ParameterEMA([w, w])
    with pytest.raises(ValueError, match=r"'a' and 'b' share memory"):
        fo.ParameterEMA({"a": w[:4], "b": w[3:]})
    with pytest.raises(ValueError, match="share memory"):
        fo.ParameterEMA([{"params": [w]}, {"params": [w.reshape(2, 3)]}])
    # Views that share no element are fine, and swapping restores them exactly.
    a, b = w[:3], w[3:]
    ema = fo.ParameterEMA([a, b], decay=0.5)
    ema.update([np.zeros(3), np.ones(3)])
    with ema.swap():
        pass
    np.testing.assert_array_equal(w, np.arange(6.0))


# -- 7. the wrappers after add_param_group -----------------------------------------------


@pytest.mark.parametrize("kind", ["lookahead", "accumulation"])
def test_wrappers_take_in_a_group_added_to_the_inner_optimizer(kind):
    def wrap(opt):
        if kind == "lookahead":
            return fo.Lookahead(opt, sync_period=2, slow_step_size=0.5)
        return fo.GradientAccumulation(opt, steps=2)

    w1, w2 = rng_arrays(0, 3, 2)
    v1, v2 = w1.copy(), w2.copy()
    inner = fo.Adam([w1], lr=0.1)
    wrapper = wrap(inner)
    inner.add_param_group({"params": [w2], "lr": 0.2})
    reference = wrap(fo.Adam([{"params": [v1]}, {"params": [v2], "lr": 0.2}], lr=0.1))
    for t in range(5):
        g = rng_arrays(t + 1, 3, 2)
        wrapper.step(g)
        reference.step([x.copy() for x in g])
    np.testing.assert_array_equal(w1, v1)
    np.testing.assert_array_equal(w2, v2)
    assert not np.array_equal(w2, rng_arrays(0, 3, 2)[1])
    assert_state_dicts_equal(wrapper.state_dict()["optimizer"], reference.state_dict()["optimizer"])
    # A group added through the wrapper, after some steps, starts its slow weights / sums there.
    w3 = np.ones(2)
    wrapper.add_param_group({"params": [w3]})
    wrapper.step(rng_arrays(9, 3, 2, 2))
    wrapper.step(rng_arrays(10, 3, 2, 2))
    assert not np.array_equal(w3, np.ones(2))
    copy_ = wrap(fo.Adam([{"params": [w1.copy()]}, {"params": [w2.copy()]}, {"params": [w3.copy()]}]))
    copy_.load_state_dict(wrapper.state_dict())


def test_gradient_accumulation_names_the_parameter_count_it_expects():
    acc = fo.GradientAccumulation(fo.SGD([np.zeros(2)], lr=0.1), steps=2)
    acc.add_param_group({"params": [np.zeros(3)]})
    with pytest.raises(ValueError, match=r"expected 2 gradients \(one per parameter\), got 1"):
        acc.step([np.ones(2)])
    assert acc.count == 0


# -- 8. Lookahead.load_state_dict checks first -------------------------------------------


@pytest.mark.parametrize(
    "key, value, error",
    [
        ("sync_period", 0, ValueError),
        ("sync_period", "5", ValueError),
        ("sync_period", 2.0, ValueError),
        ("slow_step_size", float("nan"), ValueError),
        ("slow_step_size", 1.5, ValueError),
        ("slow_step_size", "0.5", TypeError),
        ("count", -1, ValueError),
    ],
)
def test_lookahead_load_state_dict_checks_everything_before_loading(key, value, error):
    w = np.zeros(2)
    la = fo.Lookahead(fo.Adam([w], lr=0.1), sync_period=3)
    la.step([np.ones(2)])
    source = fo.Lookahead(fo.Adam([np.ones(2)], lr=0.5), sync_period=3)
    for _ in range(2):
        source.step([np.ones(2)])
    sd = source.state_dict()
    sd[key] = value
    before = la.state_dict()
    with pytest.raises(error, match=key):
        la.load_state_dict(sd)
    assert_state_dicts_equal(la.optimizer.state_dict(), before["optimizer"])
    assert la.count == before["count"] and la.sync_period == 3 and la.slow_step_size == 0.5
    np.testing.assert_array_equal(la.slow_params[0], before["slow"][0])


def test_lookahead_refuses_a_nan_slow_step_size_and_a_zero_sync_period():
    opt = fo.SGD([np.zeros(2)], lr=0.1)
    with pytest.raises(ValueError, match="slow_step_size"):
        fo.Lookahead(opt, slow_step_size=float("nan"))
    with pytest.raises(ValueError, match="sync_period"):
        fo.Lookahead(opt, sync_period=0)


# -- 9, 11. Optimizer.load_state_dict ------------------------------------------------------


@pytest.mark.parametrize(
    "skipped, error", [(-1, ValueError), (2**70, ValueError), ("many", TypeError), (True, TypeError)]
)
def test_bad_skipped_steps_changes_nothing(skipped, error):
    w = np.zeros(3)
    opt = fo.Adam([w], lr=0.1)
    opt.step([np.ones(3)])
    other = fo.Adam([np.zeros(3)], lr=0.5)
    for _ in range(3):
        other.step([np.full(3, 2.0)])
    sd = other.state_dict()
    sd["skipped_steps"] = skipped
    before = opt.state_dict()
    with pytest.raises(error, match="skipped_steps"):
        opt.load_state_dict(sd)
    assert_state_dicts_equal(opt.state_dict(), before)
    assert opt.param_groups[0]["lr"] == 0.1


def test_load_state_dict_restores_max_grad_norm_and_nan_policy():
    saved = fo.SGD([np.zeros(2)], lr=0.1, nan_policy="skip", max_grad_norm=0.5)
    saved.step([np.array([np.nan, 1.0])])
    opt = fo.SGD([np.zeros(2)], lr=0.1)
    opt.load_state_dict(saved.state_dict())
    assert opt.nan_policy == "skip" and opt.max_grad_norm == 0.5 and opt.skipped_steps == 1
    w = opt.param_groups[0]["params"][0]
    opt.step([np.array([np.inf, 0.0])])  # skipped, as the saved policy says
    np.testing.assert_array_equal(w, np.zeros(2))
    for bad, error in [({"nan_policy": "ignore"}, ValueError), ({"max_grad_norm": -1.0}, ValueError)]:
        sd = dict(saved.state_dict(), **bad)
        fresh = fo.SGD([np.zeros(2)], lr=0.1)
        with pytest.raises(error, match=next(iter(bad))):
            fresh.load_state_dict(sd)
        assert fresh.nan_policy == "propagate" and fresh.max_grad_norm is None


def test_resuming_after_changing_max_grad_norm_equals_the_uninterrupted_run():
    def grads(t):
        return rng_arrays(t, 4, 3)

    a = rng_arrays(100, 4, 3)
    b = [x.copy() for x in a]
    run = fo.Adam(a, lr=0.1, max_grad_norm=10.0)
    first = fo.Adam(b, lr=0.1, max_grad_norm=10.0)
    for t in range(3):
        run.step(grads(t))
        first.step(grads(t))
    run.max_grad_norm = first.max_grad_norm = 0.1
    sd = first.state_dict()
    resumed = fo.Adam(b, lr=0.1, max_grad_norm=10.0)
    resumed.load_state_dict(sd)
    for t in range(3, 6):
        run.step(grads(t))
        resumed.step(grads(t))
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


# -- 10. load_checkpoint is all or nothing ------------------------------------------------


def test_load_checkpoint_changes_nothing_when_a_later_object_does_not_match(tmp_path):
    params = {"W": np.ones((2, 2)), "b": np.ones(2)}
    opt = fo.Adam(params, lr=0.1)
    opt.step({"W": np.ones((2, 2)), "b": np.ones(2)})
    batches = fo.MiniBatches(np.arange(10.0), batch_size=3, seed=0)
    next(iter(batches))
    dist.save_checkpoint(tmp_path / "c.pkl", comm=SELF, params=params, optimizer=opt, batches=batches)

    mine = {"W": np.zeros((2, 2)), "b": np.zeros(2)}
    my_opt = fo.Adam(mine, lr=0.5)
    my_opt.step({"W": np.full((2, 2), 3.0), "b": np.full(2, 3.0)})
    my_batches = fo.MiniBatches(np.arange(12.0), batch_size=3, seed=1)  # a different data set
    before = (copy.deepcopy(mine), my_opt.state_dict(), my_batches.state_dict())
    with pytest.raises(ValueError, match="samples"):
        dist.load_checkpoint(tmp_path / "c.pkl", comm=SELF, params=mine, optimizer=my_opt, batches=my_batches)
    for k in mine:
        np.testing.assert_array_equal(mine[k], before[0][k])
    assert_state_dicts_equal(my_opt.state_dict(), before[1])
    assert my_batches.state_dict() == before[2]
    # A plain-array entry that does not fit is found before anything is restored.
    with pytest.raises(ValueError, match="'params'"):
        dist.load_checkpoint(tmp_path / "c.pkl", comm=SELF, optimizer=my_opt, params=[np.zeros(3)])
    assert_state_dicts_equal(my_opt.state_dict(), before[1])


# -- 12. param_groups[i]["params"] cannot be edited -----------------------------------------


def test_editing_a_groups_params_raises_and_points_to_add_param_group():
    w, extra = np.zeros(2), np.zeros(3)
    opt = fo.SGD([w], lr=0.1)
    group = opt.param_groups[0]
    for edit in (
        lambda: group["params"].append(extra),
        lambda: group["params"].extend([extra]),
        lambda: group["params"].__setitem__(0, extra),
        lambda: group.__setitem__("params", [extra]),
        lambda: group.update(params=[extra]),
        lambda: group.pop("params"),
        lambda: group.__delitem__("params"),
    ):
        with pytest.raises(TypeError, match="add_param_group"):
            edit()
    group["lr"] = 0.5  # hyper-parameters stay editable
    # Whole groups replaced or appended by hand are refused at the next step.
    opt.param_groups[0] = {**dict(group), "params": [extra]}
    with pytest.raises(ValueError, match="add_param_group"):
        opt.step([np.ones(2)])
    opt.param_groups[0] = group
    opt.param_groups.append({"params": [extra], "lr": 0.1})
    with pytest.raises(ValueError, match="add_param_group"):
        opt.step([np.ones(2)])
    opt.param_groups.pop()
    opt.step([np.ones(2)])
    np.testing.assert_array_equal(w, np.full(2, -0.5))
    twin = fo.SGD([np.zeros(2)], lr=0.1)
    twin.load_state_dict(opt.state_dict())
    assert twin.param_groups[0]["lr"] == 0.5 and list(opt.param_groups[0]["params"]) == [w]


# -- 22 (parts). Mappings, empty inputs ------------------------------------------------------


def test_gradient_accumulation_accepts_a_mapping_as_optimizer_step_does():
    params = {"w": np.zeros(2)}
    acc = fo.GradientAccumulation(fo.SGD(params, lr=1.0), steps=2)
    assert acc.step(types.MappingProxyType({"w": np.ones(2)})) is False
    assert acc.step(types.MappingProxyType({"w": np.full(2, 3.0)})) is True
    np.testing.assert_array_equal(params["w"], np.full(2, -2.0))


def test_clip_grad_norm_of_nothing_is_positive_zero():
    total = fo.clip_grad_norm([], max_norm=1.0)
    assert total == 0.0 and math.copysign(1.0, total) == 1.0


@pytest.mark.parametrize("empty", [[], {}])
def test_an_empty_parameter_dict_is_refused_like_an_empty_list(empty):
    with pytest.raises(ValueError, match="empty parameter"):
        fo.Adam(empty)


# -- 23. pickle and copy.deepcopy -------------------------------------------------------------


def roundtrips(obj):
    return [copy.deepcopy(obj), pickle.loads(pickle.dumps(obj))]


@pytest.mark.parametrize("name", ["adam", "nadam", "accumulation", "lookahead"])
def test_optimizers_and_wrappers_pickle_and_deepcopy_with_their_parameters(name):
    params = {"W": np.ones((3, 2)), "b": np.ones(2, np.float32)}
    if name == "adam":
        opt = fo.Adam(
            params, lr=fo.schedules.ExponentialDecay(0.1, 0.9), max_grad_norm=1.0, nan_policy="skip"
        )
    elif name == "nadam":
        opt = fo.NAdam(params, lr=0.01)
    elif name == "accumulation":
        opt = fo.GradientAccumulation(fo.RMSprop(params, lr=0.01), steps=3)
    else:
        opt = fo.Lookahead(fo.SGD(params, lr=0.1, momentum=0.9), sync_period=3)

    def grads(t):
        g = np.random.default_rng(t)
        return {"W": g.normal(size=(3, 2)), "b": g.normal(size=2).astype(np.float32)}

    for t in range(4):
        opt.step(grads(t))
    copies = roundtrips((params, opt))
    for t in range(4, 9):
        opt.step(grads(t))
        for _, o in copies:
            o.step(grads(t))
    for p, _ in copies:
        for k in params:
            np.testing.assert_array_equal(p[k], params[k])
            assert p[k] is not params[k]


def test_pickles_name_every_optimizer_class_by_its_public_path_ferroptim_optim():
    # Pickles made before optim.py became a package name ``ferroptim.optim.Adam``; new pickles
    # must name that path too (not the inner module), and both load.
    for name in [*fo.optim.__all__, "_ParamGroup", "_ParamList"]:
        cls = getattr(fo.optim, name)
        assert pickle.dumps(cls, protocol=0) == f"cferroptim.optim\n{name}\np0\n.".encode()
        assert pickle.loads(f"cferroptim.optim\n{name}\n.".encode()) is cls


def test_pickles_name_the_network_classes_by_their_public_path_ferroptim_nn():
    # nn.py became a package (model, training loop); pickles made before and after name
    # ``ferroptim.nn.MLP`` / ``ferroptim.nn.History``, not the inner module, and both load.
    for name in fo.nn.__all__:
        cls = getattr(fo.nn, name)
        assert pickle.dumps(cls, protocol=0) == f"cferroptim.nn\n{name}\np0\n.".encode()
        assert pickle.loads(f"cferroptim.nn\n{name}\n.".encode()) is cls
    model = fo.nn.MLP([2, 3, 1], seed=0)
    assert b"cferroptim.nn\nMLP\n" in pickle.dumps(model, protocol=2)


def test_an_optimizer_pickled_under_the_path_ferroptim_optim_adam_loads_and_steps_on():
    w = np.array([1.0, -2.0, 3.0])
    opt = fo.Adam([w], lr=0.1, betas=[0.8, 0.9])
    opt.step([np.array([0.5, -1.0, 2.0])])
    old = pickle.dumps((w, opt, opt.param_groups), protocol=2)
    # protocol 2 names a class with the GLOBAL opcode: b"c" module "\n" name "\n"
    for name in (b"Adam", b"_ParamGroup", b"_ParamList"):
        assert b"cferroptim.optim\n" + name + b"\n" in old
    w2, opt2, groups2 = pickle.loads(old)
    assert type(opt2) is fo.Adam and opt2.param_groups[0]["params"][0] is w2
    assert type(groups2[0]) is type(opt.param_groups[0]) and groups2[0]["betas"] == (0.8, 0.9)
    for o in (opt, opt2):
        o.step([np.array([-0.25, 0.75, 1.0])])
    np.testing.assert_array_equal(w2, w)


def test_minibatches_ewa_and_parameter_ema_pickle_and_deepcopy(tmp_path):
    X = np.arange(40.0).reshape(20, 2)
    np.save(tmp_path / "y.npy", np.arange(20))
    y = np.load(tmp_path / "y.npy", mmap_mode="r")
    batches = fo.MiniBatches(X, y, batch_size=6, seed=3)
    it = iter(batches)
    next(it)
    assert len(pickle.dumps(batches)) < len(pickle.dumps(np.arange(20))) + 2000
    copies = roundtrips(batches)
    rest = [b[1].tolist() for b in it] + [b[1].tolist() for b in batches]
    for c in copies:
        assert isinstance(c.state_dict(), dict)
        assert [b[1].tolist() for b in c] + [b[1].tolist() for b in c] == rest

    e = fo.EWA(0.9)
    e.update(np.ones(3))
    copies = roundtrips(e)
    e.update(np.zeros(3))
    for c in copies:
        c.update(np.zeros(3))
        np.testing.assert_array_equal(c.value, e.value)
        assert c.t == e.t == 2

    w = np.ones(2)
    ema = fo.ParameterEMA([w], decay=0.5)
    w += 1
    ema.update()
    for ws, c in roundtrips(([w], ema)):
        ws[0] += 1
        c.update()
        np.testing.assert_array_equal(c.averages[0], [2.25, 2.25])
    np.testing.assert_array_equal(ema.averages[0], [1.5, 1.5])


def test_a_lambda_schedule_blocks_pickle_but_not_deepcopy():
    w = np.zeros(2)
    opt = fo.SGD([w], lr=lambda k: 0.1)
    with pytest.raises((pickle.PicklingError, AttributeError)):
        pickle.dumps(opt)
    w2, opt2 = copy.deepcopy(([w], opt))
    opt2.step([np.ones(2)])
    np.testing.assert_array_equal(w2[0], [-0.1, -0.1])
    np.testing.assert_array_equal(w, [0.0, 0.0])


# -- 24. ferroptim demo --out "" -------------------------------------------------------------


def test_demo_refuses_an_empty_out_path(tmp_path, monkeypatch, capsys):
    from ferroptim import __main__ as cli
    from ferroptim.demo import experiment

    ran = []
    monkeypatch.setattr(experiment, "Experiment", lambda *a: ran.append(a))
    monkeypatch.chdir(tmp_path)
    assert cli.main(["demo", "--out", ""]) == 2
    assert "--out" in capsys.readouterr().err
    assert ran == [] and os.listdir(tmp_path) == []


# -- issue 29: fo.nn.MLP's targets, pickling and messages; 16-bit state in pickles ---------


def _binary_problem(m=64, dtype=np.float32):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((m, 2)).astype(dtype)
    return X, (X[:, :1] > 0).astype(dtype)


@pytest.mark.parametrize("bad", [[0, 1, 2], [-1, 1]], ids=["0/1/2", "-1/+1"])
def test_issue29_5_sigmoid_targets_outside_0_1_are_refused_before_anything_changes(bad):
    X, _ = _binary_problem()
    Y = np.resize(np.asarray(bad, np.float32), X.shape[0])
    model = fo.nn.MLP([2, 4, 1], seed=0)
    opt = fo.Adam(model.params, lr=0.1)
    before = {k: v.copy() for k, v in model.params.items()}
    match = r"Y holds targets in \[-?\d+, \d+\]; output='sigmoid' \(binary cross-entropy\) needs targets in \[0, 1\]"
    with pytest.raises(ValueError, match=match):
        model.fit(X, Y, opt)
    with pytest.raises(ValueError, match=match):
        model.loss_and_grad(X, Y)
    with pytest.raises(ValueError, match=match):
        model.cost(X, Y)
    with pytest.raises(ValueError, match="validation_data Y holds targets"):
        model.fit(X, (Y > 0).astype(np.float32), opt, validation_data=(X, Y))
    for k, v in before.items():
        np.testing.assert_array_equal(model.params[k], v)
    assert (model.epoch, model.position) == (0, 0) and opt.state["W1"] == {"step": 0}
    # Probabilities are targets too; check_input=False skips the check as for labels.
    model.loss_and_grad(X, np.full_like(Y, 0.25))
    model.fit(X, Y, opt, check_input=False)


def _copies(obj, how):
    return pickle.loads(pickle.dumps(obj)) if how == "pickle" else copy.deepcopy(obj)


@pytest.mark.parametrize("how", ["pickle", "deepcopy"])
def test_issue29_6_mlp_pickles_and_deepcopies_and_stays_linked_to_its_optimizer(how):
    X, Y = _binary_problem(200, np.float64)
    model = fo.nn.MLP([2, 8, 1], hidden="tanh", dtype=np.float64, seed=3, alpha=0.01, init="glorot")
    opt = fo.Adam(model.params, lr=1e-2)
    model.fit(X, Y, opt, batch_size=16, epochs=2, max_steps=20)  # stops mid-epoch
    model.note = "kept"
    alone = _copies(model, how)
    m2, o2 = _copies((model, opt), how)
    for m in (alone, m2):
        assert repr(m) == repr(model) and m.note == "kept"
        assert (m.epoch, m.position, m.seed, m.init) == (model.epoch, model.position, model.seed, "glorot")
        np.testing.assert_array_equal(m.predict_proba(X), model.predict_proba(X))
        for k in model.params:
            assert m.params[k] is not model.params[k]
    old = m2.params["W1"][0, 0]
    m2.params["W1"][0, 0] = 123.0  # independent of the original
    assert model.params["W1"][0, 0] != 123.0
    m2.params["W1"][0, 0] = old
    # The copied optimizer updates the copied model: both continue as the original does.
    model.fit(X, Y, opt, batch_size=16, epochs=1)
    m2.fit(X, Y, o2, batch_size=16, epochs=1)
    for k in model.params:
        np.testing.assert_array_equal(m2.params[k], model.params[k])
    assert (m2.epoch, m2.position) == (model.epoch, model.position)


def test_issue29_10_mlp_names_what_is_wrong_up_front():
    X, Y = _binary_problem()
    model = fo.nn.MLP([2, 4, 1], seed=0)
    opt = fo.Adam(model.params, lr=0.1)
    sd = model.state_dict()
    with pytest.raises(
        ValueError, match=r"state_dict's epoch must be below 2\*\*64, got 18446744073709551616"
    ):
        model.load_state_dict(dict(sd, epoch=2**64))
    assert model.epoch == 0
    with pytest.raises(ValueError, match="model.epoch must be at least 0, got -1"):
        model.epoch = -1
    with pytest.raises(ValueError, match="model.position must be at least 0, got -1"):
        model.position = -1
    with pytest.raises(TypeError, match="model.alpha must be a number, got str"):
        model.alpha = "0.1"
    assert model.alpha == 0.0
    with pytest.raises(
        TypeError, match=r"callbacks must be a list of callables, got function \(pass \[callback\]"
    ):
        model.fit(X, Y, opt, callbacks=lambda e, logs: None)
    with pytest.raises(
        TypeError, match=r"model.params must be a dict \{'W1': array, 'b1': array, ...\}, got list"
    ):
        model.params = list(model.params.values())
    W1 = model.params["W1"]
    model.params["W1"] = W1.astype(np.float64)
    for call in (lambda: model.predict(X), lambda: model.fit(X, Y, fo.Adam(model.params, lr=0.1))):
        with pytest.raises(
            TypeError, match=r"model.params\['W1'\] has dtype float64, expected float32 like the model"
        ):
            call()
    model.params["W1"] = W1
    # An unaligned X is accepted by predict as by fit.
    raw = np.zeros(X.nbytes + 1, np.uint8)[1:].view(np.float32).reshape(X.shape)
    raw[...] = X
    assert not raw.flags.aligned
    np.testing.assert_array_equal(model.predict(raw), model.predict(X))
    assert model.cost(raw, Y) == model.cost(X, Y)
    model.fit(raw, Y, opt, epochs=1)


def test_issue29_11_bfloat16_state_pickled_with_ml_dtypes_loads_without_it(tmp_path):
    ml_dtypes = pytest.importorskip("ml_dtypes")
    w = np.linspace(-1, 1, 6, dtype=np.float32)
    opt = fo.Adam([w], lr=0.1, state_dtype="bfloat16")
    opt.step([np.linspace(1, 2, 6, dtype=np.float32)])
    path = tmp_path / "opt.pkl"
    path.write_bytes(pickle.dumps(opt))
    bits = opt.state_dict()["state"][0]["exp_avg"].view(np.uint16)
    code = (
        "import sys, pickle; sys.modules['ml_dtypes'] = None\n"
        "import numpy as np, ferroptim as fo\n"
        f"opt = pickle.loads(open({str(path)!r}, 'rb').read())\n"
        "m = opt.state_dict()['state'][0]['exp_avg']\n"
        "assert m.dtype == np.uint16, m.dtype\n"
        "print(' '.join(str(int(b)) for b in m))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert [int(b) for b in out.stdout.split()] == bits.tolist()
    # Where ml_dtypes is present the copy's state is bfloat16 again, bit for bit.
    again = pickle.loads(path.read_bytes())
    m = again.state_dict()["state"][0]["exp_avg"]
    assert m.dtype == np.dtype(ml_dtypes.bfloat16)
    np.testing.assert_array_equal(m.view(np.uint16), bits)
