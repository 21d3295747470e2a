"""`ferroptim demo` at a tiny, epoch-budgeted (so deterministic) size: the report folder is
complete, its numbers are sane, Adam beats plain GD, the lecture preset prints its table,
and bad options exit with one line instead of a traceback."""

import contextlib
import io
import json
import math
import struct
import subprocess
import sys

import numpy as np
import pytest

from ferroptim.__main__ import main
from ferroptim.demo import data as datasets
from ferroptim.demo import net
from ferroptim.demo.train import Budget, Data, RunSpec, train

FIGURES = [
    "cost_batch_size.png",
    "boundaries_batch_size.png",
    "cost_optimizers.png",
    "boundaries_optimizers.png",
    "ewa_temperature.png",
    "lr_schedules.png",
    "paths_saddle.png",
    "paths_plateau.png",
    "paths_rosenbrock.png",
]
EXAMPLES, EPOCHS = 20_000, 50
TINY = [
    "demo",
    "--examples",
    str(EXAMPLES),
    "--epochs",
    str(EPOCHS),
    "--batch-sizes",
    "all,4096,512,64",
    "--batch-size",
    "512",
    "--seed",
    "0",
]


def run_demo(args):
    """main(args) with its standard output captured: (exit status, output)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = main(args)
    return status, out.getvalue()


def png_size(path):
    """(width, height) from a PNG's header; fails if the file is not a PNG."""
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", path
    return struct.unpack(">II", head[16:24])


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    status, printed = run_demo(TINY + ["--out", str(out)])
    assert status == 0
    return out, json.loads((out / "results.json").read_text()), printed


@pytest.mark.slow
def test_every_figure_and_the_report_are_written(tiny):
    out, results, printed = tiny
    report = (out / "report.md").read_text()
    for name in FIGURES:
        width, height = png_size(out / name)
        assert width >= 800 and height >= 350, (name, width, height)
        assert (out / name).stat().st_size > 30_000, name  # drawn, not blank
        assert f"]({name})" in report, name
    assert sorted(results["figures"]) == sorted(FIGURES)
    assert "| optimizer | lr | batch size | epochs |" in report
    assert report.count("\n| Adam |") >= 3  # in both tables
    assert f"--examples {EXAMPLES} --epochs {EPOCHS}" in report  # the command that repeats the run
    assert "held-out acc" in printed and "Report:" in printed


@pytest.mark.slow
def test_every_run_trained_its_budget_and_its_cost_fell(tiny):
    _, results, _ = tiny
    runs = results["runs"]
    assert len(runs) == 4 + 8 - 1  # Adam at batch 512 is in both comparisons, trained once
    assert [r["batch_size"] for r in runs[:4]] == [None, 4096, 512, 64]
    for r in runs:
        costs = np.array(r["batch_costs"], dtype=float)
        assert len(costs) == r["updates"] == EPOCHS * r["updates_per_epoch"], r["name"]
        assert r["updates_per_epoch"] == math.ceil(EXAMPLES / (r["batch_size"] or EXAMPLES))
        assert r["epochs"] == EPOCHS
        assert np.all(np.isfinite(costs)) and np.all(costs > 0), r["name"]
        assert np.all(np.diff(r["update_seconds"]) >= 0)
        assert r["final_cost"] < r["initial_cost"], r["name"]
        assert costs[-10:].mean() < costs[:10].mean(), r["name"]
        assert 0 <= r["train_accuracy"] <= 1 and 0 <= r["heldout_accuracy"] <= 1
        assert r["train_seconds"] > 0 and r["seconds_per_epoch"] > 0
        marks = r["checkpoints"]
        assert marks[0]["updates"] == 0 and marks[-1]["updates"] == r["updates"]
        assert all(math.isfinite(c["heldout_cost"]) for c in marks)
        assert len(r["params"]) == 6 and np.all(np.isfinite(np.array(r["params"]["W2"])))
    decayed = [r for r in runs if r["decay"]]
    assert {r["optimizer"] for r in decayed} == {"GD", "Momentum", "RMSprop", "Adam"}
    assert all("InverseTimeDecay" in r["code"] for r in decayed)


@pytest.mark.slow
def test_adam_beats_plain_gd_at_the_same_budget(tiny):
    _, results, _ = tiny
    by_name = {r["name"]: r for r in results["runs"]}
    adam, gd = by_name["Adam, batch 512"], by_name["GD, batch 512"]
    assert adam["updates"] == gd["updates"]
    assert adam["heldout_accuracy"] > gd["heldout_accuracy"] + 0.03
    assert adam["final_cost"] < gd["final_cost"]


@pytest.mark.slow
def test_surfaces_gd_is_the_slowest_to_leave_the_saddle_and_the_plateau(tiny):
    _, results, _ = tiny
    surfaces = {s["key"]: s for s in results["surfaces"]}
    assert set(surfaces) == {"saddle", "plateau", "rosenbrock"}
    four = ("GD", "Momentum", "RMSprop", "Adam")
    for key in ("saddle", "plateau"):
        runs = surfaces[key]["runs"]
        steps = {name: runs[name]["steps_to_target"] for name in four}
        assert all(isinstance(k, int) for k in steps.values()), steps
        assert all(steps[name] < steps["GD"] for name in four[1:]), steps
    for s in surfaces.values():
        # the rest of the family races on every surface too
        assert set(s["runs"]) == set(four) | {
            "AdamW",
            "Adagrad",
            "Adadelta",
            "Adamax",
            "NAdam",
            "RAdam",
            "Lion",
        }
        for r in s["runs"].values():
            assert len(r["path"]) == s["steps"] + 1 and r["final_gap"] >= 0
            assert any(p["lr"] == r["lr"] for p in r["sweep"])


@pytest.mark.slow
def test_results_record_the_machine_data_and_lecture_figures(tiny):
    _, results, _ = tiny
    machine = results["machine"]
    assert machine["logical_cpus"] >= 1 and machine["versions"]["numpy"] == np.__version__
    assert results["data"]["m"] == EXAMPLES and results["data"]["m_heldout"] == 2000
    assert results["network"]["sizes"] == [2, 32, 32, 1]
    ewa = results["ewa_temperature"]
    assert set(ewa) == {"0.5", "0.9", "0.98"}
    # without bias correction the average starts far below the first temperature (~40 F)
    assert ewa["0.98"]["uncorrected"][0] < 2 < 30 < ewa["0.98"]["corrected"][0]
    assert len(results["lr_schedules"]["lecture (per epoch)"]) == 4


@pytest.mark.slow
def test_lecture_preset_prints_its_accuracy_table(tmp_path):
    status, printed = run_demo(["demo", "--preset", "lecture", "--epochs", "300", "--out", str(tmp_path)])
    assert status == 0
    rows = [
        line.split() for line in printed.splitlines() if line.split()[:1] in (["GD"], ["Momentum"], ["Adam"])
    ]
    assert [r[0] for r in rows] == ["GD", "Momentum", "Adam"] * 2
    assert all(r[-5].endswith("%") and r[-6].endswith("%") for r in rows)  # train and held-out accuracy
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["network"]["sizes"] == [2, 5, 2, 1] and results["data"]["m"] == 300
    assert [r["batch_size"] for r in results["runs"]] == [64] * 6
    assert all(r["updates"] == 300 * 5 for r in results["runs"])  # 300 / 64 -> 5 batches per epoch
    assert all(r["final_cost"] < r["initial_cost"] for r in results["runs"])
    assert (tmp_path / "cost_optimizers.png").exists() and not (tmp_path / "cost_batch_size.png").exists()


@pytest.mark.slow
def test_lecture_preset_gives_the_same_numbers_through_fit_as_through_the_python_loop(tmp_path):
    args = ["demo", "--preset", "lecture", "--epochs", "300"]
    status_fit, printed_fit = run_demo(args + ["--out", str(tmp_path / "fit")])
    status_py, printed_py = run_demo(args + ["--loop", "python", "--out", str(tmp_path / "python")])
    assert status_fit == status_py == 0

    def table(printed):
        return [line for line in printed.splitlines() if line.split()[:1] in (["GD"], ["Momentum"], ["Adam"])]

    rows = table(printed_fit)
    assert len(rows) == 6
    # every column but the last two (training time and time per epoch)
    assert [r.split()[:-4] for r in rows] == [r.split()[:-4] for r in table(printed_py)]
    fit = json.loads((tmp_path / "fit" / "results.json").read_text())
    python = json.loads((tmp_path / "python" / "results.json").read_text())
    assert fit["loop"] == "fit" and python["loop"] == "python"
    for a, b in zip(fit["runs"], python["runs"]):
        assert a["name"] == b["name"] and a["updates"] == b["updates"] == 1500
        assert a["batch_costs"] == b["batch_costs"]  # bit for bit
        assert a["params"] == b["params"]
        for key in ("final_cost", "train_accuracy", "heldout_cost", "heldout_accuracy"):
            assert a[key] == b[key], (a["name"], key)
        assert [c["updates"] for c in a["checkpoints"]] == [c["updates"] for c in b["checkpoints"]]
        # fit made every update, fractions of an epoch up to a checkpoint included
        assert a["updates_by_fit"] == a["updates"] and b["updates_by_fit"] == 0


def test_a_seconds_budget_is_trained_wholly_by_fit():
    X, Y = datasets.spirals(20_000, 0)
    Xt, Yt = datasets.spirals(2_000, 1)
    data = Data(X, Y, Xt, Yt)
    for batch in (None, 64, 1):
        r = train(RunSpec("Adam", 3e-3, batch), data, [2, 8, 1], Budget(seconds=0.2), seed=0)
        assert len(r["batch_costs"]) == len(r["update_seconds"]) == r["updates"] == r["updates_by_fit"]
        assert np.all(np.diff(r["update_seconds"]) >= 0)
        assert r["train_seconds"] >= 0.2  # the loop stops once the budget is spent, not before
        assert r["epochs"] == pytest.approx(r["updates"] / r["updates_per_epoch"], rel=0.01, abs=1e-3)


BAD = [
    (["--examples", "0"], "--examples"),
    (["--examples", "many"], "invalid int"),
    (["--seconds", "-1"], "--seconds"),
    (["--epochs", "0"], "--epochs"),
    (["--epochs", "nan"], "--epochs"),
    (["--seconds", "1", "--epochs", "1"], "not allowed with"),
    (["--batch-sizes", "512,zero"], "--batch-sizes"),
    (["--batch-sizes", "0"], "--batch-sizes"),
    (["--batch-size", "0"], "--batch-size"),
    (["--preset", "lecture", "--batch-sizes", "64"], "--batch-sizes"),
    (["--preset", "nope"], "invalid choice"),
    (["--seed", "-1"], "--seed"),
]


@pytest.mark.parametrize("options,message", BAD)
def test_bad_options_exit_non_zero_with_one_line(options, message, tmp_path, capsys):
    try:
        status = main(["demo", *options, "--out", str(tmp_path / "report")])
    except SystemExit as e:  # argparse's own errors
        status = e.code
    err = capsys.readouterr().err.strip()
    assert status == 2
    assert message in err.splitlines()[-1] and "Traceback" not in err
    assert not (tmp_path / "report").exists() or not any((tmp_path / "report").iterdir())


@pytest.mark.slow
def test_an_unwritable_out_folder_is_a_clean_error_in_a_real_process(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    cmd = [sys.executable, "-m", "ferroptim", "demo", "--examples", "100", "--out", str(blocker / "report")]
    out = subprocess.run(cmd, capture_output=True, text=True)
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "--out" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.slow
def test_missing_matplotlib_is_a_message_not_a_traceback(tmp_path):
    code = (
        "import sys; sys.modules['matplotlib'] = None; from ferroptim.__main__ import main; "
        f"sys.exit(main(['demo', '--examples', '100', '--out', {str(tmp_path)!r}]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 1
    assert "pip install 'ferroptim[demo]'" in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "results.json").exists()


def test_bench_outside_a_checkout_explains_where_the_script_is(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["bench"]) == 2
    assert "benches/compare.py" in capsys.readouterr().err


def test_the_networks_gradients_match_finite_differences():
    params = {k: v.astype(np.float64) for k, v in net.init_params([2, 5, 3, 1], seed=1).items()}
    for k in params:
        if k.startswith("b"):
            params[k] += np.random.default_rng(2).normal(scale=0.1, size=params[k].shape)
    rng = np.random.default_rng(3)
    X = rng.normal(size=(16, 2))
    Y = (rng.uniform(size=(16, 1)) < 0.5).astype(np.float64)
    _, grads = net.forward_backward(params, X, Y)
    h = 1e-6
    for name, p in params.items():
        numeric = np.zeros_like(p)
        for i in np.ndindex(p.shape):
            old = p[i]
            p[i] = old + h
            up = net.forward_backward(params, X, Y)[0]
            p[i] = old - h
            down = net.forward_backward(params, X, Y)[0]
            p[i] = old
            numeric[i] = (up - down) / (2 * h)
        np.testing.assert_allclose(grads[name], numeric, rtol=1e-5, atol=1e-8, err_msg=name)
