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
from ferroptim.demo import net, report
from ferroptim.demo.train import Budget, Data, Decay, RunSpec, train

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


def with_arrays(out):
    """results.json with each run's full ``batch_costs``, ``update_seconds`` and ``params``
    put back from curves.npz."""
    results = json.loads((out / "results.json").read_text())
    with np.load(out / "curves.npz") as arrays:
        for r in results["runs"]:
            key = f"runs/{r['name']}/"
            r["batch_costs"] = arrays[key + "batch_costs"].tolist()
            r["update_seconds"] = arrays[key + "update_seconds"].tolist()
            names = [k[len(key) :] for k in arrays.files if k.startswith(key)]
            r["params"] = {
                n: arrays[key + n].tolist() for n in names if n not in ("batch_costs", "update_seconds")
            }
    return results


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    status, printed = run_demo(TINY + ["--out", str(out)])
    assert status == 0
    return out, with_arrays(out), printed


@pytest.mark.slow
def test_every_figure_and_the_report_are_written(tiny):
    out, results, printed = tiny
    text = (out / "report.md").read_text()
    for name in FIGURES:
        width, height = png_size(out / name)
        assert width >= 800 and height >= 350, (name, width, height)
        assert (out / name).stat().st_size > 30_000, name  # drawn, not blank
        assert f"]({name})" in text, name
    assert sorted(results["figures"]) == sorted(FIGURES)
    assert "| optimizer | lr | batch size | epochs |" in text
    assert text.count("\n| Adam |") >= 3  # in both tables
    assert f"--examples {EXAMPLES} --epochs {EPOCHS}" in text  # the command that repeats the run
    assert "held-out acc" in printed and "Report:" in printed
    # what decay did, computed from this run's numbers, in the console and the report
    summary = report.decay_summary(results["runs"])
    assert summary.startswith("Learning-rate decay (lr = lr0 / (1 + ")
    assert summary in printed and summary in text
    assert (out / "results.json").stat().st_size < 1_000_000


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
        # the rest of the family races on every surface too (paths thinned in results.json)
        assert set(s["runs"]) == set(four) | {
            "AdamW",
            "Adagrad",
            "Adadelta",
            "Adamax",
            "NAdam",
            "RAdam",
            "Lion",
            "Rprop",
            "LBFGS",
        }
        for r in s["runs"].values():
            assert len(r["path"]) == len(r["path_steps"]) <= report.PATH_POINTS and r["final_gap"] >= 0
            assert r["path_steps"][0] == 0 and r["path_steps"][-1] == s["steps"]
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
    fit, python = with_arrays(tmp_path / "fit"), with_arrays(tmp_path / "python")
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


def configured(options):
    """The budgets ``ferroptim demo options`` would train under: (batch-size comparison's,
    optimizer comparison's)."""
    import argparse

    from ferroptim import demo

    p = argparse.ArgumentParser()
    demo.add_arguments(p)
    _, _, budget, optimizer_budget, _, _ = demo._configure(p.parse_args(options))
    return budget, optimizer_budget


def test_the_optimizer_comparison_counts_updates_and_the_batch_size_comparison_seconds():
    from ferroptim.demo import OPTIMIZER_EPOCHS

    # by default the optimizer comparison's outcome does not depend on the machine's speed
    assert configured([]) == (Budget(seconds=3.0), Budget(epochs=OPTIMIZER_EPOCHS))
    # a budget given on the command line is every run's, unless the optimizer's is given too
    assert configured(["--seconds", "1"]) == (Budget(seconds=1.0), Budget(seconds=1.0))
    assert configured(["--epochs", "2"]) == (Budget(epochs=2.0), Budget(epochs=2.0))
    assert configured(["--seconds", "1", "--optimizer-epochs", "2"]) == (
        Budget(seconds=1.0),
        Budget(epochs=2.0),
    )
    # the lecture preset has one budget
    assert configured(["--preset", "lecture"]) == (Budget(epochs=5000), Budget(epochs=5000))


@pytest.mark.slow
def test_each_comparison_trains_under_its_own_budget_and_the_command_repeats_both(tmp_path):
    args = ["demo", "--examples", "5000", "--epochs", "1", "--optimizer-epochs", "2"]
    status, printed = run_demo(args + ["--batch-sizes", "512,64", "--out", str(tmp_path)])
    assert status == 0
    results = json.loads((tmp_path / "results.json").read_text())
    runs = {r["name"]: r for r in results["runs"]}
    # Adam at batch 512 trains once per budget, under two names (two sets of arrays)
    assert len(runs) == len(results["runs"]) == 2 + 8
    assert "Adam, batch 512, 2 epochs" in runs and "Adam, batch 512" in runs
    with np.load(tmp_path / "curves.npz") as arrays:
        assert {k.split("/")[1] for k in arrays.files if k.startswith("runs/")} == set(runs)
    batch = [runs[n] for n in results["comparisons"]["batch_size"]]
    optimizers = [runs[n] for n in results["comparisons"]["optimizer"]]
    assert [r["epochs"] for r in batch] == [1, 1]
    assert [r["epochs"] for r in optimizers] == [2] * 8
    assert results["budget"]["epochs"] == 1 and results["optimizer_budget"]["epochs"] == 2
    assert "--epochs 1 --optimizer-epochs 2" in results["command"]
    assert "1 epoch per run, 2 epochs per run of the optimizer comparison" in printed


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
    (["--optimizer-epochs", "0"], "--optimizer-epochs"),
    (["--optimizer-epochs", "inf"], "--optimizer-epochs"),
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


# -- what decay did, stated from the numbers -----------------------------------------------


def fake_run(optimizer, final_cost, decay, costs, acc=0.9):
    return {
        "name": f"{optimizer}{', lr decay' if decay else ''}",
        "optimizer": optimizer,
        "batch_size": 512,
        "decay": {"formula": "lr0 / (1 + 1·10t/T)"} if decay else None,
        "final_cost": final_cost,
        "heldout_accuracy": acc,
        "batch_costs": list(costs),
    }


FLAT = [0.1] * 100
FALLING = list(np.linspace(0.5, 0.1, 100))


def test_the_decay_sentence_says_where_decay_helped_from_the_numbers():
    runs = [
        fake_run("GD", 0.05, False, FLAT),
        fake_run("Adam", 0.02, False, FLAT),
        fake_run("GD", 0.03, True, FLAT),
        fake_run("Adam", 0.01, True, FLAT),
    ]
    text = report.decay_summary(runs)
    assert text.startswith(
        "Learning-rate decay (lr = lr0 / (1 + 1·10t/T)) lowered the final cost for GD and Adam,"
    )
    assert "0.0500 → 0.0300" in text and "0.0200 → 0.0100" in text
    assert "did not" not in text


def test_the_decay_sentence_says_where_and_why_decay_did_not_help():
    runs = [
        fake_run("GD", 0.05, False, FLAT),
        fake_run("Adam", 0.02, False, FLAT),
        fake_run("RMSprop", 0.02, False, FLAT),
        fake_run("GD", 0.03, True, FLAT),
        fake_run("Adam", 0.04, True, FALLING),  # worse, and still descending at the end
        fake_run("RMSprop", 0.03, True, FLAT),  # worse, levelled off
    ]
    text = report.decay_summary(runs)
    assert "lowered the final cost for GD (cost 0.0500 → 0.0300" in text
    assert "It did not for Adam (cost 0.0200 → 0.0400" in text
    assert "still descending when the budget ended" in text  # Adam's reason, from its curve
    assert "RMSprop (cost 0.0200 → 0.0300" in text and "both had levelled off" in text
    none = report.decay_summary([runs[1], runs[4]])
    assert "did not lower the final cost for any optimizer" in none
    assert report.decay_summary([runs[0], runs[1]]) == ""  # nothing to compare


def test_late_drop_measures_the_last_tenth():
    assert report.late_drop(FLAT) == pytest.approx(0.0)
    assert report.late_drop([1.0] * 80 + [0.8] * 10 + [0.4] * 10) == pytest.approx(0.5)
    assert report.late_drop([1.0] * 10) is None


@pytest.mark.slow  # a million updates of the demo's recorder: about 10 s
def test_results_json_stays_under_a_megabyte_with_a_million_updates(tmp_path):
    rng = np.random.default_rng(0)
    n = 1_000_000
    costs = rng.uniform(0, 1, n)
    runs = [
        {
            "name": f"run {i}",
            "batch_costs": costs,
            "update_seconds": np.linspace(0, 3, n),
            "params": {"W1": np.ones((32, 2))},
        }
        for i in range(12)
    ]
    path = np.cumsum(rng.normal(size=(3001, 2)), axis=0)
    surfaces = [
        {"key": k, "steps": 3000, "runs": {f"opt {j}": {"path": path, "lr": 0.1} for j in range(11)}}
        for k in ("saddle", "plateau", "rosenbrock")
    ]
    light, arrays = report.split_arrays({"runs": runs, "surfaces": surfaces})
    report.write_json(light, tmp_path / "results.json")
    assert (tmp_path / "results.json").stat().st_size < 1_000_000
    assert "batch_costs" in runs[0] and len(surfaces[0]["runs"]["opt 0"]["path"]) == 3001  # input kept
    np.savez_compressed(tmp_path / "curves.npz", **arrays)
    with np.load(tmp_path / "curves.npz") as back:
        np.testing.assert_array_equal(back["runs/run 3/batch_costs"], costs.astype(np.float32))
        np.testing.assert_array_equal(back["surfaces/plateau/opt 2/path"], path)
        assert back["runs/run 0/W1"].shape == (32, 2)
    c = light["runs"][0]["cost_curve"]
    assert len(c["mean"]) == report.CURVE_POINTS and c["update"][0] == 0
    width = c["update"][1]
    assert c["mean"][0] == pytest.approx(costs[:width].mean(), rel=1e-5)
    assert c["min"][0] == pytest.approx(costs[:width].min(), rel=1e-5, abs=1e-6)
    thin = light["surfaces"][0]["runs"]["opt 0"]
    assert len(thin["path"]) == report.PATH_POINTS and thin["path_steps"][-1] == 3000
    assert thin["path"][-1] == pytest.approx(path[-1].tolist(), rel=1e-5)


def test_a_decay_per_run_shrinks_the_rate_over_the_run_whatever_its_length():
    X, Y = datasets.spirals(4_000, 0)
    data = Data(X, Y, *datasets.spirals(1_000, 1))
    decay = Decay(rate=1.0, every=0.1, per="run")
    assert decay.shrink == 11 and decay.describe() == "lr0 / (1 + 1·10t/T)"
    for epochs in (2, 7):
        r = train(
            RunSpec("GD", 0.5, 64, decay), data, [2, 8, 1], Budget(epochs=epochs), seed=0, checkpoints=2
        )
        assert r["decay"]["run_updates"] == r["updates"] == epochs * 63
        s = decay.schedule(0.5, 63, r["updates"])
        assert s(r["updates"]) == pytest.approx(0.5 / 11)
    timed = train(
        RunSpec("Adam", 3e-3, 64, decay), data, [2, 8, 1], Budget(seconds=0.2), seed=0, checkpoints=2
    )
    assert timed["decay"]["run_updates"] >= 1  # estimated from the timed calibration
    with pytest.raises(ValueError, match="run_updates"):
        decay.schedule(0.5, 63)


# -- the command line's small things ---------------------------------------------------------


def test_version_prints_the_package_version(capsys):
    import ferroptim

    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out.strip() == f"ferroptim {ferroptim.__version__}"


def test_bench_help_outside_a_checkout_prints_help(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["bench", "--help"]) == 0
    out = capsys.readouterr()
    assert out.out.startswith("usage: ferroptim bench") and "benches/compare.py" in out.out
    assert out.err == ""


def test_demo_help_says_how_long_it_takes_and_which_extra_it_needs(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["demo", "--help"])
    assert stop.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "about a minute" in text and "pip install 'ferroptim[demo]'" in text


def test_rprops_sign_steps_leave_the_saddle_at_once_and_lbfgs_follows_rosenbrocks_valley():
    from ferroptim.demo import surfaces

    saddle, _, rosenbrock = surfaces.SURFACES
    # the push in y is 1e-6: gradient descent waits for the curvature to grow it, Rprop's
    # step ignores its size and grows while its sign holds
    rprop, gd = surfaces.best_path(saddle, "Rprop"), surfaces.best_path(saddle, "GD")
    assert rprop["steps_to_target"] is not None and rprop["steps_to_target"] <= 10
    assert gd["steps_to_target"] is None or gd["steps_to_target"] > 10 * rprop["steps_to_target"]
    # LBFGS's curvature model: Rosenbrock's minimum in a few dozen gradient evaluations,
    # against Adam's hundreds of steps
    lbfgs, adam = surfaces.best_path(rosenbrock, "LBFGS"), surfaces.best_path(rosenbrock, "Adam")
    assert lbfgs["steps_to_target"] is not None and adam["steps_to_target"] is not None
    assert lbfgs["steps_to_target"] * 10 < adam["steps_to_target"]
    # and its model takes the saddle for a minimum (docs/tutorial/local-optima.md says so)
    assert surfaces.best_path(saddle, "LBFGS")["steps_to_target"] is None


def test_an_lbfgs_path_counts_gradient_evaluations_and_stays_put_while_its_line_search_runs():
    from ferroptim.demo import surfaces

    rosenbrock = surfaces.SURFACES[2]
    calls = []
    counted = surfaces.Surface(
        **{
            **rosenbrock.__dict__,
            "grad": lambda x, y: calls.append((x, y)) or rosenbrock.grad(x, y),
            "steps": 30,
        }
    )
    run = surfaces.run_path(counted, "LBFGS", 1.0)
    path = run["path"]
    assert path.shape == (31, 2) and np.all(np.isfinite(path))
    # one gradient per distinct point evaluated (the evaluation a step repeats where the
    # last line search ended is not counted), and a step of the path for each
    assert len(set(calls)) == len(calls) >= 30
    moves = np.nonzero(np.any(path[1:] != path[:-1], axis=1))[0] + 1
    assert 0 < len(moves) < 30  # the iterate holds still while its line search evaluates
    for k in moves:  # each new iterate is a point the line search evaluated
        assert tuple(path[k]) in set(calls)
