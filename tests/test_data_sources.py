"""ferroptim.data: Parquet/Arrow sources in MiniBatches and MLP.fit — order, resume,
sharding, bad data — and DataFrames/Tables as arrays (the Sliced source: test_data_sliced.py)."""

import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

import ferroptim as fo
from ferroptim.data import DataError

pa = pytest.importorskip(
    "pyarrow", reason="the Parquet sources need pyarrow (pip install ferroptim[parquet])"
)
pq = pytest.importorskip("pyarrow.parquet", reason="pyarrow.parquet")

M = 3000


def _table(m=M, seed=0, n=4):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((m, n)).astype(np.float32)
    y = (X[:, 0] + X[:, 1] > 0).astype(np.int64)
    cols = {"id": np.arange(m, dtype=np.int64)}
    cols.update({f"x{j}": X[:, j] for j in range(n)})
    cols["y"] = y
    return pa.table(cols), X, y


@pytest.fixture
def folder(tmp_path):
    """Two Parquet files of unequal row groups (rows 0-1799 and 1800-2999)."""
    t, X, y = _table()
    d = tmp_path / "train"
    d.mkdir()
    pq.write_table(t.slice(0, 1800), d / "a.parquet", row_group_size=300)
    pq.write_table(t.slice(1800), d / "b.parquet", row_group_size=250)
    return d, X, y


FEATURES = ["x0", "x1", "x2", "x3"]


def _ids(batches):
    return np.concatenate([xb[:, 0] for xb, *_ in batches]).astype(np.int64)


def _id_source(d, **kw):
    return fo.data.Parquet(d, features=["id"], labels="y", dtype=np.float64, **kw)


# -- Parquet order ------------------------------------------------------------------------


@pytest.mark.parametrize("n_threads", [1, 2, 3])
def test_parquet_epoch_has_every_row_once_whatever_the_threads(folder, threads, n_threads, request):
    d, _, _ = folder
    fo.set_num_threads(n_threads)
    cpus = pa.cpu_count()
    pa.set_cpu_count(n_threads)
    request.addfinalizer(lambda: pa.set_cpu_count(cpus))
    batches = fo.MiniBatches(_id_source(d, shuffle_buffer=3), batch_size=128, seed=4)
    assert len(batches) == -(-M // 128)
    epochs = [_ids(batches) for _ in range(2)]
    for ids in epochs:
        assert np.array_equal(np.sort(ids), np.arange(M))
    assert not np.array_equal(epochs[0], epochs[1])
    again = fo.MiniBatches(_id_source(d, shuffle_buffer=3), batch_size=128, seed=4)
    assert np.array_equal(_ids(again), epochs[0])  # same seed, same batches
    # The documented order: row groups permuted by default_rng([seed, epoch]), windows of
    # shuffle_buffer row groups permuted by default_rng([seed, epoch, 0, v]).
    starts = [0, 300, 600, 900, 1200, 1500, 1800, 2050, 2300, 2550, 2800]
    sizes = [300] * 6 + [250, 250, 250, 250, 200]
    order = np.random.default_rng([4, 1]).permutation(len(sizes))
    expected = []
    for v in range(0, len(order), 3):
        rows = np.concatenate([np.arange(starts[g], starts[g] + sizes[g]) for g in order[v : v + 3]])
        expected.append(rows[np.random.default_rng([4, 1, 0, v // 3]).permutation(len(rows))])
    assert np.array_equal(epochs[1], np.concatenate(expected))


def test_parquet_no_shuffle_is_storage_order_and_labels_align(folder):
    d, X, y = folder
    src = fo.data.Parquet(d, features=FEATURES, labels="y")
    assert len(src) == M and src.num_row_groups == 11 and src.n_features == 4
    got = list(fo.MiniBatches(src, batch_size=1000, shuffle=False))
    assert np.array_equal(np.concatenate([b[0] for b in got]), X)
    assert np.array_equal(np.concatenate([b[1] for b in got]), y)
    assert got[0][1].dtype == np.int64 and got[0][0].dtype == np.float32


def test_parquet_columns_reach_the_interleave_without_a_copy(folder, monkeypatch):
    # float32 columns in one chunk without nulls: the arrays handed to Rust's interleave
    # are Arrow's decoded value buffers themselves, for every row group read.
    import ferroptim.data._parquet as parquet_module
    from ferroptim import _core

    d, _, _ = folder
    src = fo.data.Parquet(d, features=FEATURES, labels="y", shuffle_buffer=2)
    decoded, handed = [], []
    read, interleave = parquet_module.Parquet._read_group, _core.interleave_columns

    def spy_read(self, g):
        table = read(self, g)
        decoded.append([table.column(n).chunk(0).buffers()[1].address for n in FEATURES])
        return table

    def spy_interleave(cols, X, dest):
        if X.dtype == np.float32:  # the features (the int64 labels take NumPy's path)
            handed.append([c.ctypes.data for c in cols])
        return interleave(cols, X, dest)

    monkeypatch.setattr(parquet_module.Parquet, "_read_group", spy_read)
    monkeypatch.setattr(_core, "interleave_columns", spy_interleave)
    assert sum(len(yb) for _, yb in fo.MiniBatches(src, batch_size=256, seed=0)) == M
    assert len(handed) == src.num_row_groups and handed == decoded


def test_parquet_features_none_list_of_files_dataset_and_ipc(folder, tmp_path):
    d, X, y = folder
    ds = pytest.importorskip("pyarrow.dataset")
    files = sorted(str(p) for p in d.iterdir())
    t, _, _ = _table()
    feather = tmp_path / "all.feather"
    with pa.ipc.new_file(feather, t.schema) as w:  # record batches of 700 rows
        for b in t.to_batches(max_chunksize=700):
            w.write_batch(b)
    sources = [
        fo.data.Parquet(files, labels="y"),
        fo.data.Parquet(ds.dataset(files, format="parquet"), labels="y"),
        fo.data.Parquet(feather, labels="y"),
    ]
    for src in sources:
        assert src.features == ["id"] + FEATURES
        Xs = np.concatenate([b[0] for b in fo.MiniBatches(src, batch_size=512, shuffle=False)])
        assert np.array_equal(Xs[:, 1:], X) and np.array_equal(Xs[:, 0], np.arange(M))
    assert sources[2].num_row_groups == 5


def test_parquet_shards_are_disjoint_and_equal(folder):
    d, _, _ = folder
    src = _id_source(d, shuffle_buffer=2)
    for epoch in range(3):
        parts = []
        for r in range(2):
            b = fo.MiniBatches(src, batch_size=50, seed=9, shard=(r, 2))
            b.load_state_dict({"seed": 9, "epoch": epoch, "position": 0})
            parts.append(_ids(b))
        assert len(parts[0]) == len(parts[1]) >= 0.4 * M  # the smaller share, on both
        both = np.concatenate(parts)
        assert len(np.unique(both)) == len(both)
    with pytest.raises(ValueError, match="explicit seed"):
        fo.MiniBatches(src, shard=(0, 2))


@pytest.mark.slow
def test_parquet_two_mpi_ranks_cover_the_epoch_once(tmp_path):
    pytest.importorskip("mpi4py")
    mpiexec = shutil.which("mpiexec", path=str(Path(sys.executable).parent)) or shutil.which("mpiexec")
    if mpiexec is None:
        pytest.skip("no mpiexec")
    t, _, _ = _table()
    pq.write_table(t, tmp_path / "eq.parquet", row_group_size=250)  # 12 equal row groups
    worker = Path(__file__).parent / "mpi" / "data_sources.py"
    env = dict(os.environ, FERROPTIM_NUM_THREADS="1")
    r = subprocess.run(
        [mpiexec, "-n", "2", sys.executable, str(worker), str(tmp_path / "eq.parquet"), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert r.returncode == 0, r.stderr
    ids = np.load(tmp_path / "ids.npz")
    for e in range(2):
        both = np.concatenate([ids[f"r0e{e}"], ids[f"r1e{e}"]])
        assert len(ids[f"r0e{e}"]) == len(ids[f"r1e{e}"])
        assert np.array_equal(np.sort(both), np.arange(M))


def test_parquet_resume_mid_epoch_equals_uninterrupted(folder):
    d, _, _ = folder
    full = fo.MiniBatches(_id_source(d, shuffle_buffer=2), batch_size=64, seed=3)
    first = [b[0].copy() for b in full]
    second = [b[0].copy() for b in full]
    run = fo.MiniBatches(_id_source(d, shuffle_buffer=2), batch_size=64, seed=3)
    list(run)
    it = iter(run)
    head = [next(it)[0].copy() for _ in range(17)]
    state = run.state_dict()
    assert state["epoch"] == 1 and state["position"] == 17
    resumed = fo.MiniBatches(_id_source(d, shuffle_buffer=2), batch_size=64, seed=0)
    resumed.load_state_dict(state)
    tail = [b[0] for b in resumed]
    assert len(first) == len(second) == 17 + len(tail)
    for a, b in zip(head + tail, second):
        assert np.array_equal(a, b)


# -- MLP.fit over a source ----------------------------------------------------------------


def _source_order(src, seed, epochs, batch_size):
    ids = fo.data.Parquet(
        src.files, features=["id"], labels="y", dtype=np.float64, shuffle_buffer=src.shuffle_buffer
    )
    b = fo.MiniBatches(ids, batch_size=batch_size, seed=seed)
    return [_ids(b) for _ in range(epochs)]


def test_fit_on_parquet_equals_fit_on_arrays_in_its_order(folder):
    d, X, y = folder
    src = fo.data.Parquet(d, features=FEATURES, labels="y", shuffle_buffer=3)
    model = fo.nn.MLP([4, 8, 2], output="softmax")
    opt = fo.Adam(model.params, lr=1e-2)
    h = model.fit(
        src, optimizer=opt, batch_size=64, epochs=2, seed=5, steps_per_execution=10, validation_data=src
    )
    ref = fo.nn.MLP([4, 8, 2], output="softmax")
    ref_opt = fo.Adam(ref.params, lr=1e-2)
    costs = []
    for order in _source_order(src, 5, 2, 64):
        costs.append(ref.fit(X[order], y[order], ref_opt, batch_size=64, shuffle=False).costs)
    for k in model.params:
        assert np.array_equal(model.params[k], ref.params[k]), k
    assert np.array_equal(h.costs, np.concatenate(costs))
    assert len(h.val_costs) == 2 and h.val_accuracy[-1] == ref.score(X, y)
    np.testing.assert_allclose(h.val_costs[-1], ref.cost(X, y), rtol=1e-5)
    assert np.array_equal(model.predict_proba(src), ref.predict_proba(X))
    assert np.array_equal(model.predict(src), ref.predict(X))


def test_fit_on_parquet_resumes_bit_for_bit(folder):
    d, _, _ = folder
    src = fo.data.Parquet(d, features=FEATURES, labels="y", shuffle_buffer=2)
    a = fo.nn.MLP([4, 6, 2], output="softmax")
    a_opt = fo.SGD(a.params, lr=0.1)
    a.fit(src, optimizer=a_opt, batch_size=50, epochs=2)
    b = fo.nn.MLP([4, 6, 2], output="softmax")
    b_opt = fo.SGD(b.params, lr=0.1)
    b.fit(src, optimizer=b_opt, batch_size=50, epochs=2, max_steps=23)
    assert (b.epoch, b.position) == (0, 23)
    state, opt_state = b.state_dict(), b_opt.state_dict()
    c = fo.nn.MLP([4, 6, 2], output="softmax")
    c.load_state_dict(state)
    c_opt = fo.SGD(c.params, lr=0.1)
    c_opt.load_state_dict(opt_state)
    c.fit(
        fo.data.Parquet(d, features=FEATURES, labels="y", shuffle_buffer=2),
        optimizer=c_opt,
        batch_size=50,
        epochs=2,
    )
    for k in a.params:
        assert np.array_equal(a.params[k], c.params[k]), k


def test_fit_refuses_a_source_that_does_not_fit_the_model(folder):
    d, _, _ = folder
    model = fo.nn.MLP([4, 3, 1])
    before = {k: v.copy() for k, v in model.params.items()}
    opt = fo.SGD(model.params, lr=0.1)
    cases = [
        (
            dict(src=fo.data.Parquet(d, features=FEATURES, labels="y", dtype=np.float64)),
            TypeError,
            "dtype float64",
        ),
        (dict(src=fo.data.Parquet(d, features=FEATURES[:3], labels="y")), ValueError, "3 features per row"),
        (dict(src=fo.data.Parquet(d, features=FEATURES)), ValueError, "no label columns"),
        (dict(src=fo.data.Parquet(d, features=FEATURES, labels=["y", "id"])), ValueError, "2 label columns"),
        (dict(src=fo.data.Parquet(d, features=FEATURES, labels="y"), Y=np.zeros(M)), TypeError, "without Y"),
    ]
    for kw, exc, msg in cases:
        with pytest.raises(exc, match=msg):
            model.fit(kw["src"], kw.get("Y"), opt, batch_size=10)
        assert (model.epoch, model.position) == (0, 0)
        assert all(np.array_equal(model.params[k], before[k]) for k in before)


# -- bad data -----------------------------------------------------------------------------


def test_missing_column_and_differing_schemas(tmp_path, folder):
    d, _, _ = folder
    with pytest.raises(DataError, match=r"a\.parquet: no feature column 'nope' \(its columns"):
        fo.data.Parquet(d, features=["nope"], labels="y")
    with pytest.raises(DataError, match="no label column 'label'"):
        fo.data.Parquet(d, labels="label")
    t, _, _ = _table(100)
    pq.write_table(t, tmp_path / "c.parquet")
    pq.write_table(t.set_column(1, "x0", t.column("x0").cast(pa.float64())), tmp_path / "d.parquet")
    with pytest.raises(DataError, match=r"d\.parquet: column 'x0' is double, but float in .*c\.parquet"):
        fo.data.Parquet([tmp_path / "c.parquet", tmp_path / "d.parquet"], labels="y")


def test_string_and_categorical_columns_are_refused(tmp_path):
    t, _, _ = _table(100)
    t = t.append_column("city", pa.array(["a", "b"] * 50))
    t = t.append_column("cat", pa.array(["u", "v"] * 50).dictionary_encode())
    pq.write_table(t, tmp_path / "s.parquet")
    with pytest.raises(DataError, match="feature column 'city' is string.*one-hot"):
        fo.data.Parquet(tmp_path / "s.parquet", labels="y")
    with pytest.raises(DataError, match="feature column 'cat' is dictionary"):
        fo.data.Parquet(tmp_path / "s.parquet", features=["x0", "cat"], labels="y")
    assert fo.data.Parquet(tmp_path / "s.parquet", features=FEATURES, labels="y").n_features == 4


def _with_null_in_group(tmp_path, group, row):
    t, X, y = _table(1000)
    x1 = t.column("x1").to_pylist()
    x1[group * 100 + row] = None
    t = t.set_column(2, "x1", pa.array(x1, pa.float32()))
    pq.write_table(t, tmp_path / "n.parquet", row_group_size=100)
    return tmp_path / "n.parquet", X, y


def test_nulls_are_refused_before_their_batch_and_fill_null_replaces_them(tmp_path):
    path, X, y = _with_null_in_group(tmp_path, group=6, row=42)
    src = fo.data.Parquet(path, features=FEATURES, labels="y", shuffle_buffer=2)
    model = fo.nn.MLP([4, 3, 2], output="softmax")
    opt = fo.SGD(model.params, lr=0.1)
    with pytest.raises(
        DataError, match=r"n\.parquet, row group 6, column 'x1': 1 null values \(the first at row 42"
    ):
        model.fit(src, optimizer=opt, batch_size=10, shuffle=False)
    # Row groups 0-5 (three windows, 60 batches) trained; the window holding group 6 did not.
    assert (model.epoch, model.position) == (0, 60)
    ref = fo.nn.MLP([4, 3, 2], output="softmax")
    ref.fit(X[:600], y[:600], fo.SGD(ref.params, lr=0.1), batch_size=10, shuffle=False)
    assert all(np.array_equal(model.params[k], ref.params[k]) for k in ref.params)
    filled = fo.data.Parquet(path, features=FEATURES, labels="y", fill_null=0.0)
    Xf = np.concatenate([b[0] for b in fo.MiniBatches(filled, batch_size=500, shuffle=False)])
    assert Xf[642, 1] == 0 and np.array_equal(np.delete(Xf, 642, 0), np.delete(X, 642, 0))


def test_labels_that_do_not_fit_the_output_name_the_row_group(tmp_path):
    t, X, y = _table(1000)
    y = y.copy()
    y[730] = 5
    t = t.set_column(t.schema.get_field_index("y"), "y", pa.array(y))
    pq.write_table(t, tmp_path / "l.parquet", row_group_size=100)
    src = fo.data.Parquet(tmp_path / "l.parquet", features=FEATURES, labels="y", shuffle_buffer=1)
    model = fo.nn.MLP([4, 3, 2], output="softmax")
    opt = fo.SGD(model.params, lr=0.1)
    before = {k: v.copy() for k, v in model.params.items()}
    order = np.random.default_rng([0, 0]).permutation(10)
    with pytest.raises(DataError, match=r"l\.parquet, row group 7, row 30: labels holds labels in \[0, 5\]"):
        model.fit(src, optimizer=opt, batch_size=100, seed=0)
    k = int(np.argmax(order == 7))
    assert model.position == k  # the batches before the bad row group's window trained
    ref = fo.nn.MLP([4, 3, 2], output="softmax")
    assert all(np.array_equal(ref.params[n], before[n]) for n in before)
    if k:
        ref.fit(src, optimizer=fo.SGD(ref.params, lr=0.1), batch_size=100, seed=0, max_steps=k)
    assert all(np.array_equal(model.params[n], ref.params[n]) for n in before)


def test_file_changed_or_gone_mid_epoch(folder):
    d, X, y = folder
    src = fo.data.Parquet(d, features=FEATURES, labels="y", shuffle_buffer=2)
    model = fo.nn.MLP([4, 3, 2], output="softmax")
    opt = fo.SGD(model.params, lr=0.1)
    model.fit(src, optimizer=opt, batch_size=100, shuffle=False, max_steps=3)
    b = d / "b.parquet"
    os.utime(b, ns=(b.stat().st_atime_ns, b.stat().st_mtime_ns + 10**9))
    with pytest.raises(DataError, match=r"b\.parquet changed since the source was opened"):
        model.fit(src, optimizer=opt, batch_size=100, shuffle=False)
    assert model.position == 18  # a.parquet's 1800 rows, b.parquet's none
    snapshot = {k: v.copy() for k, v in model.params.items()}
    b.unlink()
    with pytest.raises(DataError, match=r"b\.parquet disappeared"):
        model.fit(src, optimizer=opt, batch_size=100, shuffle=False)
    assert model.position == 18
    assert all(np.array_equal(model.params[k], snapshot[k]) for k in snapshot)


def test_parquet_without_pyarrow_says_which_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    with pytest.raises(ImportError, match=r"pip install ferroptim\[parquet\]"):
        fo.data.Parquet(tmp_path)


# -- DataFrames and Tables as arrays ------------------------------------------------------


def test_dataframes_and_tables_convert_column_by_column():
    pd = pytest.importorskip("pandas", reason="pandas")
    df = pd.DataFrame({"a": np.arange(6, dtype=np.float32), "b": np.arange(6, dtype=np.int16)})
    out = fo.data.as_array(df)
    assert out.dtype == np.float32 and out.flags.c_contiguous
    assert np.array_equal(out, np.stack([np.arange(6)] * 2, axis=1))
    assert fo.data.as_array(df, np.float64).dtype == np.float64
    (xb,) = next(iter(fo.MiniBatches(df, batch_size=6, shuffle=False)))
    assert xb.dtype == np.float32 and np.array_equal(xb, out)
    assert np.array_equal(fo.data.as_array(pa.Table.from_pandas(df, preserve_index=False)), out)
    with pytest.raises(TypeError, match=r"column 's' has dtype .*get_dummies"):
        fo.data.as_array(df.assign(s=["x"] * 6))
    with pytest.raises(ValueError, match="column 'n' holds missing values"):
        fo.data.as_array(df.assign(n=pd.array([1, None, 2, 3, 4, 5], dtype="Int64")))
    # fit converts a float64 frame to a float32 model's dtype, column by column.
    X = pd.DataFrame({"u": np.linspace(-1, 1, 40), "v": np.linspace(1, -1, 40)})
    y = (X["u"] > 0).astype(int)
    m1, m2 = fo.nn.MLP([2, 1]), fo.nn.MLP([2, 1])
    m1.fit(X, y.to_numpy(), fo.SGD(m1.params, lr=0.1), batch_size=8, seed=0)
    m2.fit(X.to_numpy(np.float32), y.to_numpy(), fo.SGD(m2.params, lr=0.1), batch_size=8, seed=0)
    assert all(np.array_equal(m1.params[k], m2.params[k]) for k in m1.params)


MEMORY_WORKER = r"""
import sys, numpy as np, pyarrow as pa, pyarrow.parquet as pq, ferroptim as fo
rows, f = 600_000, 32
X = np.random.default_rng(0).standard_normal((rows, f)).astype(np.float32)
pq.write_table(pa.table({**{f"x{j}": X[:, j] for j in range(f)}, "y": (X[:, 0] > 0).astype(np.int64)}),
               sys.argv[1], row_group_size=8192)
del X
def rss():
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * 4096 / 2**20
def hwm():  # this process's peak resident memory, MiB
    with open("/proc/self/status") as fh:
        return next(int(l.split()[1]) for l in fh if l.startswith("VmHWM")) / 1024
src = fo.data.Parquet(sys.argv[1], labels="y", shuffle_buffer=4)
model = fo.nn.MLP([f, 16, 1])
model.fit(src, optimizer=fo.SGD(model.params, lr=0.01), batch_size=256, epochs=1)  # warm-up
import gc; gc.collect()
base = rss()
with open("/proc/self/clear_refs", "w") as fh:
    fh.write("5")  # resets VmHWM to the current RSS
model.fit(src, optimizer=fo.SGD(model.params, lr=0.01), batch_size=256, epochs=1)
print(base, hwm())
"""


@pytest.mark.slow
def test_a_fit_epoch_over_parquet_stays_within_its_buffers(tmp_path):
    # 77 MB of features in row groups of 1 MiB, windows of 4 row groups: an epoch's peak
    # resident memory grows by a few windows and pyarrow's buffers, not by the data.
    if not Path("/proc/self/clear_refs").exists():
        pytest.skip("needs Linux's /proc/self/clear_refs")
    r = subprocess.run(
        [sys.executable, "-c", MEMORY_WORKER, str(tmp_path / "m.parquet")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    base, peak = (float(v) for v in r.stdout.split())
    assert peak - base < 0.4 * 77, (base, peak)


def test_the_reader_thread_stops_when_a_pass_is_abandoned():
    import gc
    import threading
    import time

    gc.collect()  # passes other tests abandoned
    time.sleep(0.2)
    before = sum(t.name == "ferroptim-data-reader" for t in threading.enumerate())

    def readers():
        time.sleep(0.1)
        return sum(t.name == "ferroptim-data-reader" for t in threading.enumerate()) - before

    src = fo.data.Sliced(np.zeros((10_000, 3)), np.zeros(10_000), block_size=100, buffer_blocks=2)
    b = fo.MiniBatches(src, batch_size=10, seed=0)
    it = iter(b)
    next(it)
    assert readers() == 1
    b.load_state_dict(b.state_dict())
    assert readers() == 0
    next(iter(b))
    next(iter(b))  # a new epoch closes the pass before it
    assert readers() == 1
    del it


def test_a_prefetch_stream_closed_on_its_own_reader_thread_does_not_join_itself():
    # An unfinished stream (a fit stopped by max_steps) may be garbage-collected on the
    # reader thread of another stream: closing it there must not try to join that thread.
    from ferroptim.data._batches import _prefetched

    taken, done, errors = threading.Event(), threading.Event(), []
    holder = {}

    class Source:
        def _load(self, chunk):
            if chunk == 1:
                taken.wait(10)
                try:
                    holder["stream"].close()
                except BaseException as e:  # noqa: BLE001 - recorded for the assertion
                    errors.append(e)
                done.set()
            return np.zeros((2, 1)), None

    stream = _prefetched(Source(), [(0, 0, 2), (1, 0, 2)], 2)
    holder["stream"] = stream
    next(stream)
    taken.set()
    assert done.wait(10)
    assert errors == []
    with pytest.raises(StopIteration):
        next(stream)


def test_validation_on_a_source_records_accuracy_only_for_a_classifier(tmp_path):
    # a Poisson regressor (output "exp") has no accuracy, on a source as on arrays
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 3)).astype(np.float32)
    y = rng.poisson(np.exp(0.3 * X[:, 0])).astype(np.float32)
    pq.write_table(pa.table({"a": X[:, 0], "b": X[:, 1], "c": X[:, 2], "y": y}), tmp_path / "p.parquet")
    src = fo.data.Parquet(tmp_path / "p.parquet", features=["a", "b", "c"], labels="y")
    model = fo.nn.MLP([3, 4, 1], output="exp")
    h = model.fit(src, optimizer=fo.Adam(model.params, lr=1e-2), batch_size=50, epochs=2, validation_data=src)
    assert len(h.val_costs) == 2 and len(h.val_accuracy) == 0
    arrays = model.fit(
        X, y[:, None], fo.Adam(model.params, lr=1e-2), batch_size=50, validation_data=(X, y[:, None])
    )
    assert len(arrays.val_costs) == 1 and len(arrays.val_accuracy) == 0
