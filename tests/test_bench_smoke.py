"""benches/train_compare.py at --quick size: it runs with only NumPy and ferroptim, every
contender it can import trains (its cost falls), missing peers are named, and the README
table is printed. benches/nn_grid.py: the whole grid has every combination, its --quick
sample (at tiny sizes) covers every activation, output, dtype and batch with the rows its
rule states, and the summary names issue 27's targets. benches/adafactor_memory.py reports
Adam's and Adafactor's state per parameter. benches/data_sources.py: its big run reports
the peak memory of a fit epoch and deletes its files; a missing ray leaves its row out
with the reason. benches/compare.py --new times every optimizer past torch.optim's
element-wise ones. benches/torch_adapter.py --what loops trains W1-W4 in torch with
every optimizer. No time is asserted."""

import importlib.util
import json
import math
import os
import re
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


# --- benches/nn_grid.py -----------------------------------------------------------------------

GRID = SCRIPT.parent / "nn_grid.py"
# a tiny epoch per cell: the quick sample's cells at a few hundred rows and <= 4 batches
TINY = ["--budget", "0.002", "--min-rows", "64", "--max-rows", "512", "--max-updates", "4"]


def run_grid(*args, check=True):
    return subprocess.run(
        [sys.executable, str(GRID), *args], capture_output=True, text=True, check=check, timeout=600
    )


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    path = tmp_path_factory.mktemp("grid") / "grid.json"
    out = run_grid("--quick", "--no-jax", *TINY, "--markdown", "--json", str(path)).stdout
    return out, json.loads(path.read_text())


def test_the_whole_grid_has_every_combination():
    out = run_grid("--list").stdout
    # 4 hidden x 4 outputs x 2 dtypes x 5 shapes x 6 batches x 2 thread counts
    assert out.rstrip().endswith("1920 cells")
    assert "tanh/softmax100/float64/100-1024-100/ball/t1" in out
    assert "relu/identity/float32/8-64-64-8/b1/t2" in out and "leaky_relu/sigmoid/float32/3-16-1/b4096" in out


def test_quick_samples_every_activation_output_dtype_and_batch(grid):
    out, results = grid
    [run] = results["runs"]
    assert run["threads"] == 2 and "Threads: 2" in out
    cells = run["cells"]
    for key, values in [
        ("hidden", {"relu", "tanh", "sigmoid", "leaky_relu"}),
        ("output", {"sigmoid", "softmax10", "softmax100", "identity"}),
        ("dtype", {"float32", "float64"}),
        ("batch", {1, 32, 128, 512, 4096, None}),
    ]:
        assert {c[key] for c in cells} == values, key
    budget, lo, hi, max_updates = results["sizing"].values()
    for c in cells:
        sizes = [int(s) for s in c["shape"].split("-")]
        k = {"sigmoid": 1, "softmax10": 10, "softmax100": 100, "identity": sizes[-1]}[c["output"]]
        sizes[-1] = k
        flops = 6 * sum(i * o for i, o in zip(sizes[:-1], sizes[1:]))
        rows = int(min(max(budget / flops, lo), hi))
        if c["batch"] is not None:
            rows = max(min(rows, c["batch"] * max_updates), c["batch"])
        assert c["rows"] == rows, c
        r = c["result"]
        assert r["fit_s"] > 0 and len(r["times"]["fit"]) == results["rounds"] == 3
        assert r["gflops"] == pytest.approx(flops * rows / r["fit_s"] / 1e9)
        assert r["pct_gemm"] == pytest.approx(100 * r["gflops"] / run["gemm_before"][c["dtype"]])
        assert all(math.isfinite(r[k]["fit"]) for k in ("initial_cost", "warmup_cost", "final_cost"))
        big = flops * (rows if c["batch"] is None else c["batch"]) >= 4e6
        if c["hidden"] != "relu" and big:  # its relu twin ran too, for the 1.3x target
            twin = {**c, "hidden": "relu"}
            assert any(
                all(d[f] == twin[f] for f in ("hidden", "output", "dtype", "shape", "batch")) for d in cells
            )
    assert "sgemm" in out and "dgemm" in out and "load average before" in out and "load average after" in out
    assert "rows per cell: 0.002 GFLOP per epoch" in out


def test_grid_summary_names_the_targets(grid):
    out, results = grid
    s = results["summary"]
    assert {k.split(",")[0] for k in s["per_activation"]} == {"relu", "tanh", "sigmoid", "leaky_relu"}
    assert "| hidden, threads | cells | torch / fit min | median | max |" in out
    assert ">= 4 MFLOP per update (2 threads): >= 50% of the GEMM rate" in s["misses"]
    assert "there, tanh and sigmoid within 1.3x of relu's time" in s["misses"]
    has_torch = importlib.util.find_spec("torch") is not None
    assert ("torch not installed: torch skipped" in out) == (not has_torch)
    if has_torch:  # same data, weights and cost: the costs at the initial weights agree
        for c in results["runs"][0]["cells"]:
            cost = c["result"]["initial_cost"]
            assert cost["torch"] == pytest.approx(cost["fit"], rel=1e-4), c
            assert c["result"]["ratio"] == pytest.approx(c["result"]["torch_s"] / c["result"]["fit_s"])
        assert "every cell >= 1.5x torch or >= 70% of the GEMM rate" in s["misses"]


def test_grid_refuses_fewer_than_three_rounds():
    done = run_grid("--quick", "--rounds", "2", check=False)
    assert done.returncode == 2 and "--rounds must be >= 3" in done.stderr


def test_adafactor_memory_reports_the_state_each_optimizer_keeps():
    script = SCRIPT.parent / "adafactor_memory.py"
    args = ["--matrices", "2", "--rows", "50", "--cols", "40", "--rounds", "1"]
    out = subprocess.run(
        [sys.executable, str(script), *args], capture_output=True, text=True, check=True, timeout=600
    ).stdout
    per_parameter = {
        line[:22].strip(): float(line.split(" B ")[0].split()[-1])
        for line in out.splitlines()
        if " B " in line
    }
    assert per_parameter["ferroptim Adam"] == 8.0  # exp_avg and exp_avg_sq, float32
    # a row and a column average per matrix: (50 + 40) float32 values for 50 x 40 parameters
    assert per_parameter["ferroptim Adafactor"] == pytest.approx(4 * (50 + 40) / (50 * 40), abs=1e-4)
    assert "load average" in out


def test_compare_times_the_optimizers_past_torchs_elementwise_ones():
    script = SCRIPT.parent / "compare.py"
    args = ["--new", "--sets", "MLP 64-256-256-10", "--rounds", "1"]
    out = subprocess.run(
        [sys.executable, str(script), *args], capture_output=True, text=True, check=True, timeout=600
    ).stdout
    rows = [line.split() for line in out.splitlines() if line.startswith("MLP 64-256-256-10")]
    timed = {(r[2], r[3]) for r in rows}  # (optimizer, implementation's first word)
    for name in ("Adafactor", "ScheduleFreeAdamW", "ScheduleFreeSGD", "Muon", "LBFGS"):
        assert (name, "ferroptim") in timed, (name, out)
    # the lecture's four run beside them, and Muon's float32 iteration is timed too
    assert ("Adam", "ferroptim") in timed and ("Muon", "ferroptim") in timed
    assert any(r[2] == "Muon" and r[4] == "ns_dtype=float32" for r in rows)


# --- benches/data_sources.py --------------------------------------------------------------------

DATA = SCRIPT.parent / "data_sources.py"


def run_data(*args, env=None):
    return subprocess.run(
        [sys.executable, str(DATA), *args], capture_output=True, text=True, check=True, timeout=600, env=env
    ).stdout


def test_data_sources_big_run_reports_its_peak_memory_and_deletes_its_files(tmp_path):
    pytest.importorskip("pyarrow.parquet", reason="the Parquet benchmark needs pyarrow")
    big = tmp_path / "big"
    out = run_data("--skip", "data", "fit", "rss", "--big-gb", "0.07", "--big-dir", str(big))
    # 0.07 GB of 264-byte rows: 2 row groups of 128K rows
    assert "1 files, 262,144 rows x 64 float32" in out and "over 262,144 rows in 2 row groups" in out
    peak = float(out.split("(VmHWM): ")[1].split()[0])
    assert 0 < peak < 1.5e9 / 2**20 and "target < 1.5 GB: met" in out
    assert "load average" in out.split("before the epoch:")[1].splitlines()[0]
    assert not big.exists(), "the big run's files were left behind"


def test_data_sources_without_ray_leaves_its_row_out_and_says_why(tmp_path):
    pytest.importorskip("pyarrow.parquet", reason="the Parquet benchmark needs pyarrow")
    fake = tmp_path / "fake" / "ray"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError(\"No module named 'ray'\")\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(fake.parent), os.environ.get("PYTHONPATH", "")])}
    out = run_data("--quick", "--skip", "fit", "rss", "torch", env=env)
    assert "pyarrow by hand" in out and "ferroptim is" in out
    assert (
        "Ray Data: ray does not import: No module named 'ray' (pip install \"ray[data]\"); row left out"
        in out
    )
    assert not any(
        line.startswith("  Ray Data ") and line.rstrip().endswith("x") for line in out.splitlines()
    )


def test_torch_adapter_loops_train_every_workload_with_every_optimizer_on_the_same_batches():
    pytest.importorskip("torch", reason="benches/torch_adapter.py needs PyTorch")
    script = SCRIPT.parent / "torch_adapter.py"
    done = subprocess.run(
        [sys.executable, str(script), "--what", "loops", "--examples", "2048", "--loop-rounds", "3",
         "--threads", "1", "--markdown"],
        capture_output=True, text=True, check=True, timeout=600,
    )  # fmt: skip
    out = done.stdout
    assert "ferroptim.torch's Adam step on W1's six tensors alone" in out
    assert "load average before" in out and "load average after" in out
    rows = [line for line in out.splitlines() if line.startswith("| W")]
    assert [r.split(":")[0] for r in rows] == ["| W1", "| W2", "| W3", "| W4"]
    blocks = re.split(r"\n(?=W\d: )", out)[1:]
    assert len(blocks) == 4
    for block in blocks:
        costs = {line[2:19].strip(): float(line.split()[-1]) for line in block.splitlines()[2:5]}
        assert set(costs) == {"ferroptim.torch", "torch fused", "torch foreach"}
        # the same weights and batches: after four short epochs the costs agree to rounding
        assert max(costs.values()) == pytest.approx(min(costs.values()), rel=1e-3), block


def test_grid_dropout_and_batch_norm_rows(tmp_path):
    path = tmp_path / "grid.json"
    args = ["--quick", "--no-jax", *TINY, "--layers", "dropout", "batchnorm", "--hidden", "relu", "tanh"]
    out = run_grid(*args, "--json", str(path)).stdout
    results = json.loads(path.read_text())
    cells = results["runs"][0]["cells"]
    assert {c["layers"] for c in cells} == {"dropout", "batchnorm"}
    assert not any(c["layers"] == "batchnorm" and c["batch"] == 1 for c in cells)
    assert all(c["rows"] % c["batch"] != 1 for c in cells if c["layers"] == "batchnorm" and c["batch"])
    assert "+dropout/b" in out and "+batchnorm/b" in out
    misses = results["summary"]["misses"]
    if importlib.util.find_spec("torch") is not None:  # the same network: the same initial cost
        assert any(k.startswith("dropout rows >= 1.5x torch") for k in misses)
        assert any(k.startswith("batchnorm rows >= 1.5x torch") for k in misses)
        for c in cells:
            cost = c["result"]["initial_cost"]
            assert cost["torch"] == pytest.approx(cost["fit"], rel=1e-4), c
