"""The machine description has one home, ferroptim._machine: the demo's results file and the
benchmark scripts' Machine line both read it."""

import sys
from pathlib import Path

import numpy as np
import pytest

import ferroptim as fo
from ferroptim import _machine

BENCHES = Path(__file__).resolve().parent.parent / "benches"


def test_machine_info_describes_this_machine_and_ferroptim():
    info = _machine.machine_info({"extra": "1.2"})
    assert info["logical_cpus"] >= 1 and isinstance(info["cpu"], str) and info["cpu"]
    assert info["versions"] == {"ferroptim": fo.__version__, "numpy": np.__version__, "extra": "1.2"}
    assert info["ferroptim_threads"] == fo.get_num_threads() and info["ferroptim_simd"] == fo.simd_level()


def test_the_demo_and_the_benches_describe_the_machine_from_ferroptim_machine(monkeypatch):
    pytest.importorskip("matplotlib", reason="the demo's report needs the demo extra")
    from ferroptim.demo import report

    monkeypatch.setattr(_machine, "cpu_model", lambda: "Test CPU 9000")
    monkeypatch.syspath_prepend(str(BENCHES))
    monkeypatch.delitem(sys.modules, "_common", raising=False)
    import _common

    assert report.machine_info()["cpu"] == "Test CPU 9000"
    line = _common.machine({"blas": "some BLAS"}, 1)
    assert line.startswith("Test CPU 9000, ") and "(some BLAS)" in line
