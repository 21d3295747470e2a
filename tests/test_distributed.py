"""Data-parallel training on 2 MPI ranks of this machine (mpi4py and MPICH from PyPI)."""

import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("mpi4py")
MPIEXEC = shutil.which("mpiexec", path=str(Path(sys.executable).parent)) or shutil.which("mpiexec")
pytestmark = [pytest.mark.skipif(MPIEXEC is None, reason="no mpiexec"), pytest.mark.slow]
WORKER = Path(__file__).parent / "mpi" / "worker.py"


def mpirun(mode, tmp_path, timeout=120):
    return subprocess.run(
        [MPIEXEC, "-n", "2", sys.executable, str(WORKER), mode, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_broadcast_and_allreduce(tmp_path):
    out = mpirun("collectives", tmp_path)
    assert out.returncode == 0, out.stderr
    r0, r1 = (np.load(tmp_path / f"collectives-{r}.npz") for r in (0, 1))
    for r in (r0, r1):
        np.testing.assert_array_equal(r["W"], np.zeros((3, 2), np.float32))  # rank 0's values
        np.testing.assert_array_equal(r["b"], np.full(2, 10.0))
        np.testing.assert_array_equal(r["g0"], np.full((3, 2), 1.5, np.float32))  # (1 + 2) / 2
        np.testing.assert_array_equal(r["g1"], np.arange(2.0) * 1.5)
        assert r["W"].dtype == np.float32


def test_distributed_optimizer_equals_one_process_on_the_mean_gradient(tmp_path):
    import ferroptim as fo

    out = mpirun("optimizer", tmp_path)
    assert out.returncode == 0, out.stderr
    r0, r1 = (np.load(tmp_path / f"optimizer-{r}.npz") for r in (0, 1))
    rng = np.random.default_rng(0)  # rank 0's initial values, broadcast to rank 1
    params = [rng.normal(size=(4, 3)), rng.normal(size=3).astype(np.float32)]
    opt = fo.Adam(params, lr=0.05)
    for t in range(5):
        g = [np.random.default_rng(100 * t + r) for r in (0, 1)]
        a = [(g[0].normal(size=(4, 3)), g[0].normal(size=3).astype(np.float32))]
        b = [(g[1].normal(size=(4, 3)), g[1].normal(size=3).astype(np.float32))]
        opt.step([(a[0][0] + b[0][0]) / 2, (a[0][1] + b[0][1]) / np.float32(2)])
    for r in (r0, r1):
        np.testing.assert_allclose(r["p0"], params[0], rtol=1e-12)
        np.testing.assert_allclose(r["p1"], params[1], rtol=1e-6)
        assert r["comm"] > 0
    np.testing.assert_array_equal(r0["p0"], r1["p0"])  # ranks stay identical


def test_an_exception_on_one_rank_ends_the_whole_job_promptly(tmp_path):
    t0 = time.monotonic()
    out = mpirun("abort", tmp_path, timeout=60)
    assert out.returncode != 0
    assert "rank 1 fails on purpose" in out.stderr
    assert "rank 0 was not stopped" not in out.stdout
    assert time.monotonic() - t0 < 60


def single_process_reference():
    """The same training in one process: batches of the global size, no sharding."""
    import ferroptim as fo

    sys.path.insert(0, str(WORKER.parent))
    from model import EPOCHS, GLOBAL_BATCH, SEED, data, init, loss_grads

    X, y = data()
    params = init(0)
    opt = fo.Adam(params, lr=0.01)
    batches = fo.MiniBatches(X, y, batch_size=GLOBAL_BATCH, seed=SEED)
    for _ in range(EPOCHS):
        for Xb, yb in batches:
            opt.step(loss_grads(params, Xb, yb))
    return params, len(X), EPOCHS


@pytest.mark.parametrize("mode", ["train", "resume"])
def test_two_ranks_with_global_batch_b_train_like_one_process_with_batch_b(mode, tmp_path):
    out = mpirun(mode, tmp_path)
    assert out.returncode == 0, out.stderr
    ranks = [np.load(tmp_path / f"{mode}-{r}.npz") for r in (0, 1)]
    params, m, epochs = single_process_reference()
    for r in ranks:
        for k, v in params.items():
            np.testing.assert_allclose(r[k], v, rtol=1e-9, atol=1e-12)
    for e in range(epochs):
        seen = np.concatenate([r[f"seen{e}"] for r in ranks])
        np.testing.assert_array_equal(np.sort(seen), np.arange(m))  # each example exactly once


def test_the_example_trains_checkpoints_and_resumes(tmp_path):
    script = Path(__file__).parent.parent / "examples" / "distributed_train.py"
    ckpt = tmp_path / "ckpt"
    run = [
        MPIEXEC,
        "-n",
        "2",
        sys.executable,
        str(script),
        "--examples",
        "4000",
        "--batch-size",
        "128",
        "--checkpoint",
        str(ckpt),
    ]
    out = subprocess.run(run + ["--epochs", "2"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("epoch ") == 2 and ckpt.exists()
    out = subprocess.run(run + ["--epochs", "3", "--resume"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("epoch ") == 1 and "epoch 3/3" in out.stdout
