"""benches/train_compare.py at --quick size: it runs with only NumPy and ferroptim, every
contender it can import trains (its cost falls), missing peers are named, and the README
table is printed. No time is asserted."""

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

import ferroptim as fo

pytestmark = pytest.mark.slow  # every test runs the script in a subprocess

SCRIPT = Path(__file__).resolve().parent.parent / "benches" / "train_compare.py"


def run(*args, check=True):
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, check=check, timeout=600
    )


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    path = tmp_path_factory.mktemp("bench") / "results.json"
    out = run("--quick", "--markdown", "--json", str(path)).stdout
    return out, json.loads(path.read_text())


def test_every_workload_and_contender_trains(quick):
    out, results = quick
    assert [r["workload"] for r in results["results"]] == ["W1", "W2", "W3", "W4"]
    expected = {"lecture", "numpy_fo", "floor"} | ({"fit"} if hasattr(fo, "nn") else set())
    for r in results["results"]:
        c = r["contenders"]
        assert expected <= set(c), (r["workload"], set(c))
        for key, v in c.items():
            assert len(v["times"]) == results["rounds"] == 3
            assert v["seconds"] > 0 and v["updates"] == math.ceil(r["m"] / r["batch"])
            if key != "floor":
                assert math.isfinite(v["final_cost"]) and v["final_cost"] < v["warmup_cost"], (
                    r["workload"],
                    key,
                )
        # every contender starts from the same weights and sees the same data: the
        # first epochs' costs agree to a few percent, whatever the batch order
        assert c["lecture"]["warmup_cost"] == pytest.approx(c["numpy_fo"]["warmup_cost"], rel=0.05)
        if "fit" in c:
            assert c["fit"]["warmup_cost"] == pytest.approx(c["numpy_fo"]["warmup_cost"], rel=0.05)
            shares = r["fit_breakdown"]
            assert set(shares) == {"gather", "forward", "backward", "step", "other"}
            assert sum(shares.values()) == pytest.approx(1.0) and min(shares.values()) >= 0
    assert "| workload | lecture NumPy |" in out and "| W4: MLP 64-256-256-10" in out
    assert "sgemm floor" in out and "load average" in out and "Threads: 2" in out


def test_missing_peers_are_named(quick):
    out, results = quick
    for module, line in [
        ("torch", "torch not installed: torch skipped"),
        ("jax", "jax or optax not installed: JAX skipped"),
        ("sklearn", "scikit-learn not installed: scikit-learn skipped"),
    ]:
        assert (line in out) == (importlib.util.find_spec(module) is None)


def test_fewer_than_three_rounds_is_refused():
    done = run("--quick", "--rounds", "2", check=False)
    assert done.returncode == 2 and "--rounds must be >= 3" in done.stderr
