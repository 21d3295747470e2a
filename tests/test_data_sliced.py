"""ferroptim.data.Sliced: any sliceable array (h5py and zarr arrays, memmaps, anything with
shape, dtype and slicing) in MiniBatches and MLP.fit, read in contiguous blocks — the block
shuffle of in-RAM arrays, resume, read-ahead, refusals. Needs neither pyarrow nor torch;
the h5py and zarr tests skip without them."""

import time

import numpy as np
import pytest

import ferroptim as fo
from ferroptim.data import DataError

# -- Sliced -------------------------------------------------------------------------------


@pytest.mark.parametrize("n_threads", [1, 3])
def test_sliced_h5py_matches_minibatches_block_shuffle(tmp_path, threads, n_threads):
    h5py = pytest.importorskip("h5py", reason="pip install ferroptim[hdf5]")
    fo.set_num_threads(n_threads)
    rng = np.random.default_rng(1)
    X, Y = rng.standard_normal((1003, 3)), rng.integers(0, 5, 1003)
    with h5py.File(tmp_path / "d.h5", "w") as f:
        f["X"], f["Y"] = X, Y
    with h5py.File(tmp_path / "d.h5", "r") as f:
        for shard in [None, (1, 2)]:
            src = fo.data.Sliced(f["X"], f["Y"], block_size=16, buffer_blocks=5)
            a = fo.MiniBatches(src, batch_size=37, seed=2, shard=shard)
            b = fo.MiniBatches(X, Y, batch_size=37, seed=2, shard=shard, block_size=16, buffer_blocks=5)
            for _ in range(2):
                la, lb = list(a), list(b)
                assert len(la) == len(lb) > 1
                for (xa, ya), (xb, yb) in zip(la, lb):
                    assert np.array_equal(xa, xb) and np.array_equal(ya, yb)
        X32 = np.concatenate(
            [b[0] for b in fo.MiniBatches(fo.data.Sliced(f["X"], dtype=np.float32), shuffle=False)]
        )
        assert X32.dtype == np.float32 and np.array_equal(X32, X.astype(np.float32))


def test_sliced_memmap_resume_equals_uninterrupted(tmp_path):
    X = np.lib.format.open_memmap(tmp_path / "x.npy", "w+", np.float32, (500, 2))
    X[:] = np.arange(1000).reshape(500, 2)
    X.flush()
    Xm = np.load(tmp_path / "x.npy", mmap_mode="r")
    src = fo.data.Sliced(Xm, block_size=8, buffer_blocks=3)
    full = fo.MiniBatches(src, batch_size=30, seed=5)
    ref = [b[0].copy() for b in full]
    assert np.array_equal(np.sort(np.concatenate(ref)[:, 0]), np.arange(0, 1000, 2))
    run = fo.MiniBatches(src, batch_size=30, seed=5)
    it = iter(run)
    head = [next(it)[0].copy() for _ in range(7)]
    again = fo.MiniBatches(src, batch_size=30, seed=5)
    again.load_state_dict(run.state_dict())
    got = head + [b[0] for b in again]
    assert len(got) == len(ref)
    for a, b in zip(got, ref):
        assert np.array_equal(a, b)


def test_fit_over_sliced_checks_rows_before_their_batches():
    X = np.ones((300, 2), np.float32)
    X[250, 1] = np.nan
    y = np.zeros(300)
    model = fo.nn.MLP([2, 1])
    with pytest.raises(DataError, match="row 250 of the arrays: the features hold NaN"):
        model.fit(fo.data.Sliced(X, y, block_size=100, buffer_blocks=1), optimizer=fo.SGD(model.params, lr=0.1),
                  batch_size=10, shuffle=False)  # fmt: skip
    assert model.position == 20  # the first two blocks' batches trained, not the third's
    with pytest.raises(ValueError, match=r"rows have shape \(2, 1\)"):
        fo.nn.MLP([2, 1]).fit(
            fo.data.Sliced(np.ones((10, 2, 1), np.float32), y[:10]), optimizer=fo.SGD(model.params)
        )


class _Sliceable:
    """Only shape, dtype and slicing, recording every read (like an h5py Dataset)."""

    def __init__(self, a):
        self._a, self.shape, self.dtype, self.reads = a, a.shape, a.dtype, []

    def __getitem__(self, key):
        assert isinstance(key, slice) and key.step is None, key
        self.reads.append((key.start, key.stop))
        return self._a[key].copy()


def test_sliced_reads_contiguous_blocks_only():
    X = _Sliceable(np.arange(2000.0).reshape(1000, 2))
    src = fo.data.Sliced(X, block_size=50, buffer_blocks=4)
    batches = fo.MiniBatches(src, batch_size=32, seed=1)
    ids = np.concatenate([xb[:, 0] for (xb,) in batches]) / 2
    assert np.array_equal(np.sort(ids), np.arange(1000))
    assert all(stop - start <= 50 and start % 50 == 0 for start, stop in X.reads)
    assert sum(stop - start for start, stop in X.reads) <= 2 * 1000  # blocks at most twice


def test_fit_reads_the_next_window_while_the_current_one_trains_and_no_further():
    # Windows of 100 rows (2 blocks of 50), read one slice each in storage order. While
    # fit trains window 0's first batches, the reader thread reads window 1 and stops
    # there: resident memory is the window training and one more.
    X = _Sliceable(np.arange(1000.0).reshape(500, 2).astype(np.float32))
    src = fo.data.Sliced(X, np.zeros(500, np.float32), block_size=50, buffer_blocks=2)
    seen = []

    def look(logs):
        if logs["position"] == 2:  # two batches of window 0 trained, eight to go
            for _ in range(3000):  # the reader thread runs while this one sleeps
                if len(X.reads) >= 2:
                    break
                time.sleep(0.01)
            time.sleep(0.2)  # time enough for it to read further, were it to
            seen.append(list(X.reads))

    model = fo.nn.MLP([2, 1], output="identity")
    model.fit(src, optimizer=fo.SGD(model.params, lr=1e-4), batch_size=10, shuffle=False,
              steps_per_execution=2, batch_callbacks=[look])  # fmt: skip
    assert seen == [[(0, 100), (100, 200)]]
    assert X.reads == [(a, a + 100) for a in range(0, 500, 100)]


def test_sliced_refuses_what_it_cannot_slice():
    with pytest.raises(TypeError, match="shape, .dtype and slicing"):
        fo.data.Sliced([[1.0, 2.0]])
    with pytest.raises(ValueError, match="Y has 3 rows, X has 2"):
        fo.data.Sliced(np.zeros((2, 2)), np.zeros(3))
    with pytest.raises(TypeError, match="pass it alone"):
        fo.MiniBatches(fo.data.Sliced(np.zeros((2, 2))), np.zeros(2))


def test_fit_on_sliced_with_a_wrapper_optimizer(tmp_path):
    rng = np.random.default_rng(2)
    X = rng.standard_normal((400, 3)).astype(np.float32)
    y = X @ np.array([1.0, -2.0, 0.5], np.float32)
    src = fo.data.Sliced(X, y, block_size=32, buffer_blocks=2)
    m1 = fo.nn.MLP([3, 1], output="identity")
    m1.fit(src, optimizer=fo.Lookahead(fo.SGD(m1.params, lr=0.05)), batch_size=20, epochs=2, seed=1)
    m2 = fo.nn.MLP([3, 1], output="identity")
    opt2 = fo.Lookahead(fo.SGD(m2.params, lr=0.05))
    order = fo.MiniBatches(X, y, batch_size=20, seed=1, block_size=32, buffer_blocks=2)
    for _ in range(2):
        for xb, yb in order:
            opt2.step(m2.loss_and_grad(xb, yb)[1])
    for k in m1.params:
        assert np.array_equal(m1.params[k], m2.params[k])


def test_sliced_zarr_matches_the_same_arrays_in_ram(tmp_path):
    zarr = pytest.importorskip("zarr", reason="the zarr comparison needs zarr")
    rng = np.random.default_rng(3)
    X, Y = rng.standard_normal((777, 4)).astype(np.float32), rng.integers(0, 3, 777)
    zx = zarr.open_array(tmp_path / "x.zarr", mode="w", shape=X.shape, chunks=(64, 4), dtype=X.dtype)
    zy = zarr.open_array(tmp_path / "y.zarr", mode="w", shape=Y.shape, chunks=(64,), dtype=Y.dtype)
    zx[:], zy[:] = X, Y
    src = fo.data.Sliced(zx, zy, block_size=64, buffer_blocks=3)
    a = fo.MiniBatches(src, batch_size=50, seed=4)
    b = fo.MiniBatches(X, Y, batch_size=50, seed=4, block_size=64, buffer_blocks=3)
    la, lb = list(a), list(b)
    assert len(la) == len(lb) == 16
    for (xa, ya), (xb, yb) in zip(la, lb):
        assert np.array_equal(xa, xb) and np.array_equal(ya, yb)
    # and fit over it equals fit over the arrays in the same order
    m1, m2 = fo.nn.MLP([4, 8, 3], output="softmax", seed=1), fo.nn.MLP([4, 8, 3], output="softmax", seed=1)
    m1.fit(src, optimizer=fo.Adam(m1.params), batch_size=50, epochs=2, seed=4)
    order = fo.MiniBatches(X, Y, batch_size=50, seed=4, block_size=64, buffer_blocks=3)
    opt = fo.Adam(m2.params)
    for _ in range(2):
        for xb, yb in order:
            opt.step(m2.loss_and_grad(xb, yb)[1])
    for k in m1.params:
        assert np.array_equal(m1.params[k], m2.params[k]), k
