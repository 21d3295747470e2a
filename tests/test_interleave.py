"""The column-to-row interleave of ferroptim.data.Parquet (_core.interleave_columns):
the same bytes as NumPy's ``out[rows, c] = column``, for every column type a Parquet
source accepts, scattered or not, and bad inputs refused before anything is written."""

import numpy as np
import pytest

import ferroptim as fo
from ferroptim import _core

COLUMN_DTYPES = [
    np.bool_,
    np.int8,
    np.int16,
    np.int32,
    np.int64,
    np.uint8,
    np.uint16,
    np.uint32,
    np.uint64,
    np.float16,
    np.float32,
    np.float64,
]


def _column(rng, dtype, n):
    """Values that exercise the cast: large integers (rounded in float32), extremes,
    float64 values outside float32's range, subnormals, infinities and NaN."""
    dt = np.dtype(dtype)
    if dt.kind == "b":
        return rng.integers(0, 2, n).astype(bool)
    if dt.kind in "iu":
        info = np.iinfo(dt)
        x = rng.integers(info.min, info.max, n, dtype=dt, endpoint=True)
        x[: min(n, 2)] = [info.min, info.max][: min(n, 2)]
        return x
    with np.errstate(over="ignore"):  # beyond float16's or float32's range: infinity
        x = (rng.standard_normal(n) * 10.0 ** rng.integers(-40, 40, n)).astype(dt)
    special = np.array([np.inf, -np.inf, np.nan, 0.0, -0.0], dt)
    k = min(n, len(special))
    x[:k] = special[:k]
    return x


def _numpy(cols, out, dest):
    """The NumPy interleave the Rust one replaces."""
    rows = np.arange(dest, dest + len(cols[0])) if isinstance(dest, int) else dest
    for c, col in enumerate(cols):
        out[rows, c] = col
    return out


def _same_bytes(a, b):
    assert a.dtype == b.dtype and a.shape == b.shape
    assert a.tobytes() == b.tobytes()


@pytest.mark.parametrize("out_dtype", [np.float32, np.float64])
@pytest.mark.parametrize("col_dtype", COLUMN_DTYPES, ids=lambda d: np.dtype(d).name)
def test_every_column_type_casts_as_numpy(out_dtype, col_dtype):
    rng = np.random.default_rng(0)
    cols = [_column(rng, col_dtype, 1001), _column(rng, col_dtype, 1001)]
    got = np.full((1001, 2), 7, out_dtype)
    with np.errstate(over="ignore"):  # float64 -> float32 overflows to inf, in both
        want = _numpy(cols, np.full((1001, 2), 7, out_dtype), 0)
    _core.interleave_columns(cols, got, 0)
    _same_bytes(got, want)


@pytest.mark.parametrize("out_dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "rows, width",
    [(1, 1), (7, 1), (4097, 3), (70_001, 5), (33_333, 64)],
)
@pytest.mark.parametrize("order", ["offset", "scatter"])
def test_mixed_columns_into_a_block_with_and_without_a_row_order(out_dtype, rows, width, order):
    # Sizes from one row to several tasks of the pool (odd last tasks), one column to 64.
    rng = np.random.default_rng(rows * width)
    cols = [_column(rng, COLUMN_DTYPES[c % len(COLUMN_DTYPES)], rows) for c in range(width)]
    block_rows = rows + 5
    if order == "offset":
        dest = 3
    else:  # a shuffle's scatter into a larger block, as Parquet's windows of row groups do
        dest = rng.permutation(block_rows)[:rows].astype(np.int64)
    got = np.full((block_rows, width), -1, out_dtype)
    with np.errstate(over="ignore"):
        want = _numpy(cols, np.full((block_rows, width), -1, out_dtype), dest)
    _core.interleave_columns(cols, got, dest)
    _same_bytes(got, want)


def test_dest_defaults_to_the_first_row_and_empty_columns_write_nothing():
    cols = [np.arange(3, dtype=np.int32), np.arange(3.0)]
    out = np.zeros((4, 2), np.float32)
    _core.interleave_columns(cols, out)
    assert out.tolist() == [[0, 0], [1, 1], [2, 2], [0, 0]]
    _core.interleave_columns([np.empty(0), np.empty(0, np.int8)], out, np.empty(0, np.int64))
    assert out.tolist() == [[0, 0], [1, 1], [2, 2], [0, 0]]


@pytest.mark.parametrize(
    "call, error, match",
    [
        (
            lambda o: ([np.ones(3), np.ones(2)], o, 0),
            ValueError,
            r"columns\[1\] has 2 values, columns\[0\] has 3",
        ),
        (lambda o: ([np.ones(3)] * 3, o, 0), ValueError, r"out has shape \(4, 2\), expected \(rows, 3\)"),
        (lambda o: ([np.ones(3)] * 2, o, 2), ValueError, r"rows 2\.\.2\+3 do not fit the block's 4 rows"),
        (lambda o: ([np.ones(6)[::2]] * 2, o, 0), ValueError, r"columns\[0\] is not a contiguous"),
        (lambda o: ([np.ones((3, 1))] * 2, o, 0), ValueError, r"columns\[0\] must be 1-D"),
        (lambda o: ([np.ones(3, ">f8")] * 2, o, 0), TypeError, r"columns\[0\] has dtype >f8"),
        (lambda o: ([np.array(["a", "b", "c"])] * 2, o, 0), TypeError, r"columns\[0\] has dtype <U1"),
        (lambda o: ([[1.0, 2.0, 3.0]] * 2, o, 0), TypeError, r"columns\[0\] must be a 1-D numpy.ndarray"),
        (lambda o: ([], o, 0), ValueError, "columns is empty"),
        (lambda o: (np.ones(3), o, 0), TypeError, "columns must be a list of 1-D arrays"),
        (lambda o: ([np.ones(3)] * 2, o[:, ::-1], 0), ValueError, "out is not a C-contiguous"),
        (lambda o: ([np.ones(3)] * 2, o.T, 0), ValueError, r"out has shape \(2, 4\)"),
        (lambda o: ([np.ones(3)] * 2, o.astype(np.int64), 0), TypeError, "out has dtype int64"),
        (
            lambda o: ([np.ones(3)] * 2, o, np.array([0, 1, 1])),
            ValueError,
            r"dest\[2\] = 1 names a block row",
        ),
        (lambda o: ([np.ones(3)] * 2, o, np.array([0, 4, 1])), ValueError, r"dest\[1\] = 4 is outside"),
        (lambda o: ([np.ones(3)] * 2, o, np.array([0, 1])), ValueError, "2 block rows given for 3 rows"),
        (lambda o: ([np.ones(3)] * 2, o, np.array([0, 1, 2], np.int32)), TypeError, "dest has dtype int32"),
        (lambda o: ([np.ones(3)] * 2, o, np.arange(6)[::2]), ValueError, "dest must be a 1-D contiguous"),
        (lambda o: ([np.ones(3)] * 2, o, -1), ValueError, "dest must be >= 0"),
        (lambda o: ([np.ones(3)] * 2, o, True), TypeError, "got bool"),
        (lambda o: ([np.ones(3)] * 2, o, 1.0), TypeError, "dest must be an int or a 1-D int64 array"),
        (
            lambda o: ([o[:3, 0].copy(), o.reshape(-1)[:3]], o, 0),
            ValueError,
            r"columns\[1\] shares memory with out",
        ),
    ],
)
def test_bad_inputs_are_refused_before_anything_is_written(call, error, match):
    out = np.full((4, 2), 5.0)
    args = call(out)
    with pytest.raises(error, match=match):
        _core.interleave_columns(*args)
    assert (out == 5.0).all()


def test_a_read_only_block_is_refused():
    out = np.zeros((3, 1))
    out.flags.writeable = False
    with pytest.raises(ValueError, match="out is read-only"):
        _core.interleave_columns([np.ones(3)], out)


@pytest.mark.parametrize("rows, released", [(200_000, True), (100, False)])
def test_the_gil_is_released_for_large_blocks_only(rows, released):
    # With a switch interval far longer than the test, a thread waiting for the GIL runs
    # during the call only if the call releases it.
    import sys
    import threading
    import time

    cols = [np.ones(rows, np.float32)] * 64
    out = np.empty((rows, 64), np.float32)
    dest = np.random.default_rng(0).permutation(rows).astype(np.int64)
    count, stop = [0], threading.Event()

    def spin():
        while not stop.is_set():
            count[0] += 1
            time.sleep(0)  # hands the GIL back, so the call's thread can take it again

    interval = sys.getswitchinterval()
    thread = threading.Thread(target=spin)
    thread.start()
    try:
        while count[0] == 0:  # the thread is running (and now waits for the GIL)
            stop.wait(0.001)
        sys.setswitchinterval(100.0)
        before = count[0]
        for _ in range(5):  # windows for the waiting thread to be scheduled in
            _core.interleave_columns(cols, out, dest)
        ran = count[0] - before
    finally:
        sys.setswitchinterval(interval)
        stop.set()
        thread.join()
    assert (ran > 0) == released
    assert (out == 1.0).all()


# -- in the Parquet source ----------------------------------------------------------------

pa = pytest.importorskip(
    "pyarrow", reason="the Parquet sources need pyarrow (pip install ferroptim[parquet])"
)
pq = pytest.importorskip("pyarrow.parquet", reason="pyarrow.parquet")


def _numpy_load(src, chunk):
    """Parquet._load as it was before the interleave moved to Rust (the reference)."""
    ids, perm_seed = chunk.key
    X = np.empty((chunk.rows, src.n_features), src.dtype)
    Y = np.empty((chunk.rows, src.n_labels), src.label_dtype)
    perm = src._perm(chunk.rows, perm_seed)
    if perm is not None:
        dest = np.empty(chunk.rows, np.int64)
        dest[perm] = np.arange(chunk.rows)
    r = 0
    for g in ids:
        table = src._read_group(g)
        n = table.num_rows
        bx = np.empty((n, src.n_features), src.dtype)
        for c, name in enumerate(src.features):
            bx[:, c] = table.column(name).to_numpy()
        by = np.empty((n, src.n_labels), Y.dtype)
        for c, name in enumerate(src.labels):
            by[:, c] = table.column(name).to_numpy()
        rows = np.arange(r, r + n) if perm is None else dest[r : r + n]
        X[rows], Y[rows] = bx, by
        r += n
    return X, Y[:, 0] if src.n_labels == 1 else Y


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
@pytest.mark.parametrize("shuffle", [True, False])
def test_parquet_windows_hold_the_bytes_of_the_numpy_interleave(tmp_path, dtype, shuffle):
    # Columns of every Arrow type a source accepts, row groups of odd sizes, float and
    # integer labels; float16 blocks go through NumPy, float32/float64 through Rust.
    rng = np.random.default_rng(1)
    m = 5003
    cols = {f"c{k}": _column(rng, t, m) for k, t in enumerate(COLUMN_DTYPES)}
    cols["y"] = rng.integers(0, 3, m)
    cols["z"] = rng.standard_normal(m)
    pq.write_table(pa.table(cols), tmp_path / "t.parquet", row_group_size=777)
    for labels in ("y", ["z", "y"]):
        src = fo.data.Parquet(tmp_path / "t.parquet", labels=labels, dtype=dtype, shuffle_buffer=3)
        chunks, _ = src._epoch_chunks(5, 1, shuffle, (0, 1))
        assert len(chunks) == 3
        for chunk in chunks:
            with np.errstate(over="ignore"):  # casts to float16 overflow, in both
                want = _numpy_load(src, chunk)
                got = src._load(chunk)
            for a, b in zip(got, want):
                _same_bytes(a, b)
