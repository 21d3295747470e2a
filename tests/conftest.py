import os
import signal
import sys
import time

import numpy as np
import pytest

import ferroptim as fo

sys.path.insert(0, os.path.dirname(__file__))

# Every optimizer by name: the package's own registry (a new class joins every table-driven
# test by being defined).
OPTIMIZERS = dict(fo.optim.OPTIMIZERS)


def first_config_quick(cases, ids=None):
    """``(kind, h)`` optimizer cases as pytest params: each optimizer's first configuration
    runs in the quick loop (`make test-fast`), its further ones are marked ``slow`` and run in
    `make test`. ``ids`` defaults to ``f"{kind}-{h}"``."""
    seen: set = set()
    params = []
    for i, (kind, h) in enumerate(cases):
        marks = pytest.mark.slow if kind in seen else ()
        seen.add(kind)
        params.append(pytest.param(kind, h, marks=marks, id=ids[i] if ids else f"{kind}-{h}"))
    return params


@pytest.fixture(params=fo.supported_simd_levels())
def simd_level(request):
    """Runs a test once per SIMD level this CPU supports, restoring the level after."""
    before = fo.simd_level()
    fo.set_simd_level(request.param)
    yield request.param
    fo.set_simd_level(before)


@pytest.fixture
def threads():
    """Restores the thread count after a test that changes it."""
    before = fo.get_num_threads()
    yield
    fo.set_num_threads(before)


def snapshot(opt, params):
    """Copies of the parameters and the optimizer's full state, to check nothing changed."""
    return [np.array(p, copy=True) for p in params], opt.state_dict()


def assert_same_snapshot(a, b):
    (pa, sa), (pb, sb) = a, b
    for x, y in zip(pa, pb):
        np.testing.assert_array_equal(x, y)
        assert x.dtype == y.dtype
    assert sa["param_groups"] == sb["param_groups"]
    assert sa["skipped_steps"] == sb["skipped_steps"]
    assert sa["state"].keys() == sb["state"].keys()
    for k in sa["state"]:
        assert sa["state"][k].keys() == sb["state"][k].keys()
        for name, v in sa["state"][k].items():
            np.testing.assert_array_equal(v, sb["state"][k][name])


def wait_for_child(pid: int, seconds: float = 60) -> int:
    """The exit code of forked child `pid`; kills it and fails the test if it runs longer
    than `seconds` (it hung)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    pytest.fail("the forked child hung")


@pytest.fixture(autouse=True)
def _torch_on_one_thread():
    """torch, where a test module imported it, runs its operations on one thread.

    The comparisons use small tensors, but torch's thread pool made them 10-60x slower in a
    full run on a loaded 2-core machine (test_torch.py's 300-step cases: 0.1 s alone, 6-8 s
    each with other work on the cores); one thread gives the same numbers for these sizes."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.get_num_threads() != 1:
        torch.set_num_threads(1)
    yield


@pytest.fixture(autouse=True)
def _python_default_sigint():
    """Each test starts with Python's default SIGINT handler, as a fresh interpreter does.

    In a full `make test` run some earlier test left SIGINT ignored (SIG_IGN, seen in the
    process by gdb; the test that did it is not found yet), which made the Ctrl-C tests of
    test_nn.py wait forever for an interrupt that was dropped."""
    import threading

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
