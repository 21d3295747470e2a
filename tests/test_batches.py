"""MiniBatches: shuffled mini-batch epochs, gathered in Rust."""

import doctest
import gc
import os
import subprocess
import sys
import time
import weakref
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ferroptim as fo
import ferroptim.batches

from conftest import wait_for_child

# --- the permutation, transcribed from the specification in src/data/permutation.rs -------------

M64 = (1 << 64) - 1
G = 0x9E3779B97F4A7C15


def mix(z):
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def sub(k, t):
    return mix((k + mix((t + 1) & M64)) & M64)


def lemire(x, r, redraw):
    while True:
        m = x * r
        if (m & M64) >= ((1 << 64) - r) % r:
            return m >> 64
        x = redraw(x)


def fisher_yates(items, seed):
    state = [seed]

    def draw(_=None):
        state[0] = (state[0] + G) & M64
        return mix(state[0])

    for j in range(len(items) - 1, 0, -1):
        k = lemire(draw(), j + 1, draw)
        items[j], items[k] = items[k], items[j]


def ref_shuffle(n, key):
    buckets = max(1, -(-n // (1 << 15)))
    lists = [[] for _ in range(buckets)]
    assign = sub(key, 0)
    for i in range(n):
        b = 0
        if buckets > 1:
            b = lemire(mix((assign + (i + 1) * G) & M64), buckets, lambda x: mix((x + G) & M64))
        lists[b].append(i)
    out = []
    for b, items in enumerate(lists):
        fisher_yates(items, sub(key, b + 1))
        out += items
    return out


def ref_permutation(n, seed, epoch, block=None, window=None):
    key = mix((seed + (epoch + 1) * G) & M64)
    if block is None:
        return ref_shuffle(n, key)
    blocks = -(-n // block)
    order = ref_shuffle(blocks, sub(key, M64))
    out = []
    for v in range(0, blocks, window):
        items = [i for j in order[v : v + window] for i in range(j * block, min(n, (j + 1) * block))]
        fisher_yates(items, sub(key, v // window + 1))
        out += items
    return out


@pytest.mark.parametrize(
    "n,seed,epoch,block",
    [
        (1, 0, 0, None),
        (10, 0, 0, None),
        (257, 2**64 - 1, 3, None),
        (40_000, 12345, 7, None),  # two buckets
        (1000, 5, 2, (7, 3)),
        (40_000, 9, 1, (100, 4)),
    ],
)
def test_the_permutation_follows_its_documented_algorithm(n, seed, epoch, block):
    kw = dict(block_size=block[0], buffer_blocks=block[1]) if block else {}
    mb = fo.MiniBatches(np.arange(n), seed=seed, **kw)
    expected = ref_permutation(n, seed, epoch, *(block or ()))
    np.testing.assert_array_equal(mb.indices(epoch), expected)
    assert mb.indices(epoch).dtype == np.int64


# --- epochs -------------------------------------------------------------------------------


def ids_of(batches):
    return [yb.copy() for (yb,) in batches]


@pytest.mark.parametrize("m,b", [(1, 1), (10, 3), (100, 7), (64, 64), (5, 100), (1000, None)])
def test_every_sample_appears_exactly_once_per_epoch(m, b):
    mb = fo.MiniBatches(np.arange(m), batch_size=b, seed=1)
    for epoch in range(3):
        got = ids_of(mb)
        assert len(got) == len(mb) == -(-m // (b or m))
        assert all(len(g) == (b or m) for g in got[:-1])
        np.testing.assert_array_equal(np.sort(np.concatenate(got)), np.arange(m))
        np.testing.assert_array_equal(np.concatenate(got), mb.indices(epoch))


def test_drop_last_drops_the_short_batch():
    mb = fo.MiniBatches(np.arange(10), batch_size=4, drop_last=True, seed=0)
    got = ids_of(mb)
    assert len(mb) == len(got) == 2 and all(len(g) == 4 for g in got)
    assert len(set(np.concatenate(got))) == 8


def test_batch_gradient_descent_and_stochastic_gradient_descent_are_the_two_ends():
    X = np.arange(30.0).reshape(10, 3)
    whole = list(fo.MiniBatches(X, batch_size=None, shuffle=False))
    assert len(whole) == 1
    np.testing.assert_array_equal(whole[0][0], X)
    single = list(fo.MiniBatches(X, batch_size=1, seed=0))
    assert len(single) == 10 and all(b[0].shape == (1, 3) for b in single)


def test_without_shuffle_batches_are_consecutive():
    got = ids_of(fo.MiniBatches(np.arange(10), batch_size=4, shuffle=False))
    assert [g.tolist() for g in got] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


def test_rows_stay_aligned_across_arrays():
    m = 1000
    X = np.arange(m * 3, dtype=np.float32).reshape(m, 3)
    Y = np.arange(m, dtype=np.int64) * 10
    w = np.arange(m, dtype=np.float16)
    for Xb, Yb, wb in fo.MiniBatches(X, Y, w, batch_size=64, seed=3):
        np.testing.assert_array_equal(Xb[:, 0], 3 * wb.astype(np.float32))
        np.testing.assert_array_equal(Yb, 10 * wb.astype(np.int64))
        assert Xb.dtype == np.float32 and Yb.dtype == np.int64 and wb.dtype == np.float16


def test_the_same_seed_gives_the_same_batches_and_epochs_and_seeds_differ():
    def run(seed):
        mb = fo.MiniBatches(np.arange(500), batch_size=50, seed=seed)
        return [np.concatenate(ids_of(mb)) for _ in range(3)]

    a, b, c = run(7), run(7), run(8)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[0], a[1]) and not np.array_equal(a[1], a[2])
    assert not np.array_equal(a[0], c[0])


def test_seed_none_draws_a_seed_and_records_it():
    a, b = fo.MiniBatches(np.arange(100)), fo.MiniBatches(np.arange(100))
    assert a.seed != b.seed and 0 <= a.seed < 2**64
    again = fo.MiniBatches(np.arange(100), seed=a.state_dict()["seed"])
    np.testing.assert_array_equal(np.concatenate(ids_of(a)), np.concatenate(ids_of(again)))


def test_batch_size_schedule_follows_the_epoch():
    mb = fo.MiniBatches(np.arange(64), batch_size=lambda epoch: 2 ** (epoch + 2), seed=0)
    for epoch in range(4):
        assert len(mb) == 64 // 2 ** (epoch + 2)
        got = ids_of(mb)
        assert {len(g) for g in got} == {2 ** (epoch + 2)}
        np.testing.assert_array_equal(np.sort(np.concatenate(got)), np.arange(64))
    big = fo.MiniBatches(np.arange(10), batch_size=lambda e: None if e else 4, seed=0)
    assert [len(g) for g in ids_of(big)] == [4, 4, 2]
    assert [len(g) for g in ids_of(big)] == [10]


# --- sharding -----------------------------------------------------------------------------


@pytest.mark.parametrize("m,count", [(12, 3), (10, 3), (1001, 4), (5, 5)])
def test_shards_are_disjoint_equal_and_cover_all_but_the_remainder(m, count):
    shards = [fo.MiniBatches(np.arange(m), batch_size=2, seed=11, shard=(i, count)) for i in range(count)]
    for epoch in range(3):
        got = [np.concatenate(ids_of(s)) for s in shards]
        assert {len(g) for g in got} == {m // count}
        union = np.concatenate(got)
        assert len(np.unique(union)) == len(union) == m - m % count
        # Shard i takes every count-th position from i; the left-out samples are the tail
        # of the epoch's permutation.
        full = fo.MiniBatches(np.arange(m), seed=11).indices(epoch)
        for i, g in enumerate(got):
            np.testing.assert_array_equal(g, full[i : m - m % count : count])
        assert len({len(s) for s in shards}) == 1


def test_sharded_batches_make_up_the_unsharded_global_batches():
    m, count, b = 1000, 4, 8
    X = np.arange(m)
    shards = [fo.MiniBatches(X, batch_size=b, seed=5, shard=(i, count)) for i in range(count)]
    whole = fo.MiniBatches(X, batch_size=b * count, seed=5)
    for _ in range(2):
        per_shard = [ids_of(s) for s in shards]
        for k, global_batch in enumerate(ids_of(whole)):
            parts = np.concatenate([ps[k] for ps in per_shard])
            np.testing.assert_array_equal(np.sort(parts), np.sort(global_batch))


# --- resuming -----------------------------------------------------------------------------


def test_resume_mid_epoch_gives_the_batches_an_uninterrupted_run_sees():
    X = np.arange(300.0).reshape(100, 3)
    Y = np.arange(100)
    straight = fo.MiniBatches(X, Y, batch_size=8, seed=5)
    expected = [[b[1].copy() for b in straight] for _ in range(3)]

    first = fo.MiniBatches(X, Y, batch_size=8, seed=5)
    list(first)
    it = iter(first)
    seen = [next(it)[1].copy() for _ in range(4)]
    state = first.state_dict()
    assert state == {"seed": 5, "epoch": 1, "position": 4, "num_samples": 100}

    resumed = fo.MiniBatches(X, Y, batch_size=8, seed=999)
    resumed.load_state_dict(state)
    assert resumed.state_dict() == state and len(resumed) == 13
    rest = [b[1].copy() for b in resumed]
    for a, b in zip(seen + rest, expected[1]):
        np.testing.assert_array_equal(a, b)
    assert resumed.state_dict() == {"seed": 5, "epoch": 2, "position": 0, "num_samples": 100}
    for a, b in zip([b[1] for b in resumed], expected[2]):
        np.testing.assert_array_equal(a, b)


def test_state_dict_at_an_epoch_boundary_points_at_the_next_epoch():
    mb = fo.MiniBatches(np.arange(10), batch_size=5, seed=0)
    it = iter(mb)
    next(it), next(it)  # both batches, without reaching StopIteration
    assert mb.state_dict()["epoch"] == 1 and mb.state_dict()["position"] == 0
    other = fo.MiniBatches(np.arange(10), batch_size=5, seed=0)
    other.load_state_dict({"seed": 0, "epoch": 0, "position": 2})  # == end of epoch 0
    assert other.state_dict()["epoch"] == 1


def test_breaking_out_of_an_epoch_starts_the_next_one_on_the_next_pass():
    mb = fo.MiniBatches(np.arange(100), batch_size=10, seed=2)
    for _ in mb:
        break
    assert mb.state_dict()["position"] == 1
    assert mb.epoch == 0
    got = np.concatenate(ids_of(mb))
    np.testing.assert_array_equal(got, mb.indices(1))


# --- layouts, dtypes, sources -------------------------------------------------------------

DTYPES = [
    np.int8,
    np.uint16,
    np.float16,
    np.float32,
    np.float64,
    np.complex128,
    np.bool_,
    ">f4",
    "S3",
    "U2",
    "datetime64[ms]",
    [("a", "<i2"), ("b", "<f8")],
]


def make(dtype, shape, rng):
    raw = rng.integers(0, 120, size=shape)
    dt = np.dtype(dtype)
    if dt.names:
        a = np.zeros(shape, dt)
        a["a"], a["b"] = raw, raw / 7
        return a
    return raw.astype(dt)


@settings(max_examples=60, deadline=None)
@given(
    m=st.integers(1, 60),
    trailing=st.lists(st.integers(0, 4), max_size=2),
    dtype=st.sampled_from(DTYPES),
    axis_pick=st.integers(0, 2),
    layout=st.sampled_from(["C", "F", "strided", "reversed"]),
    b=st.integers(1, 70),
    shuffle=st.booleans(),
    seed=st.integers(0, 2**64 - 1),
)
def test_any_dtype_shape_layout_and_axis_gathers_like_numpy_take(
    m, trailing, dtype, axis_pick, layout, b, shuffle, seed
):
    rng = np.random.default_rng(0)
    shape = [m, *trailing]
    axis = axis_pick % len(shape)
    shape[0], shape[axis] = shape[axis], shape[0]  # the sample axis holds m
    base = make(dtype, [s * 2 for s in shape] if layout == "strided" else shape, rng)
    a = {
        "C": base,
        "F": np.asfortranarray(base),
        "strided": base[tuple(slice(None, None, 2) for _ in shape)],
        "reversed": base[::-1],
    }[layout]
    mb = fo.MiniBatches(a, batch_size=b, seed=seed, shuffle=shuffle, axis=axis)
    idx = mb.indices(0)
    for k, (got,) in enumerate(mb):
        expected = np.take(a, idx[k * b : (k + 1) * b], axis=axis)
        assert got.dtype == a.dtype and got.shape == expected.shape
        assert got.flags.c_contiguous and got.flags.writeable and type(got) is np.ndarray
        np.testing.assert_array_equal(got, expected)


def test_column_layout_of_the_lecture():
    n_x, m = 5, 300
    X = np.arange(n_x * m, dtype=np.float64).reshape(n_x, m)
    Y = (np.arange(m) % 2).reshape(1, m)
    mb = fo.MiniBatches(X, Y, batch_size=64, axis=1, seed=0)
    idx = mb.indices(0)
    for k, (Xb, Yb) in enumerate(mb):
        assert Xb.shape[0] == n_x and Yb.shape[0] == 1
        np.testing.assert_array_equal(Xb, X[:, idx[64 * k : 64 * (k + 1)]])
        np.testing.assert_array_equal(Yb[0], idx[64 * k : 64 * (k + 1)] % 2)
    # axis=-1 pairs a (n_x, m) X with a 1-d y.
    for Xb, yb in fo.MiniBatches(X, np.arange(m), axis=-1, batch_size=50, seed=0):
        np.testing.assert_array_equal(Xb[0], yb)


@pytest.mark.parametrize("fortran", [False, True])
def test_memmap_sources_are_read_in_place(tmp_path, fortran):
    X = np.arange(4000 * 8, dtype=np.float32).reshape(4000, 8)
    if fortran:
        X = np.asfortranarray(X)
    np.save(tmp_path / "x.npy", X)
    Xm = np.load(tmp_path / "x.npy", mmap_mode="r")
    y = np.arange(4000)
    raw = np.memmap(tmp_path / "y.bin", dtype=np.int64, mode="w+", shape=(4000,))
    raw[:] = y
    raw.flush()
    ym = np.memmap(tmp_path / "y.bin", dtype=np.int64, mode="r", shape=(4000,))
    mb = fo.MiniBatches(Xm, ym[:], batch_size=512, seed=4, block_size=100, buffer_blocks=4)
    for Xb, yb in mb:
        assert type(Xb) is np.ndarray
        np.testing.assert_array_equal(Xb, X[yb])
    with pytest.raises(BufferError):
        Xm._mmap.close()  # pinned while MiniBatches may read it
    del mb
    gc.collect()
    Xm._mmap.close()


def test_block_shuffle_reads_a_few_blocks_per_window():
    m, block, window = 10_000, 50, 4
    mb = fo.MiniBatches(np.arange(m), batch_size=100, seed=0, block_size=block, buffer_blocks=window)
    idx = mb.indices(0)
    np.testing.assert_array_equal(np.sort(idx), np.arange(m))
    for w in idx.reshape(-1, block * window):
        assert len(np.unique(w // block)) == window
    assert not np.array_equal(idx, mb.indices(1))


def test_batches_may_be_kept_and_reuse_mode_recycles_buffers():
    X = np.arange(64_000, dtype=np.float64).reshape(4000, 16)  # 128 KiB batches: prefetched
    kept = list(fo.MiniBatches(X, batch_size=1024, seed=1))
    idx = fo.MiniBatches(X, batch_size=1024, seed=1).indices(0)
    for k, (Xb,) in enumerate(kept):
        np.testing.assert_array_equal(Xb, X[idx[1024 * k : 1024 * (k + 1)]])

    reused = fo.MiniBatches(X, batch_size=1024, seed=1, reuse_buffers=True)
    addresses = set()
    for epoch in range(2):
        idx = reused.indices(epoch)
        for k, (Xb,) in enumerate(reused):
            time.sleep(0.002)  # the next batches are gathered meanwhile, elsewhere
            np.testing.assert_array_equal(Xb, X[idx[1024 * k : 1024 * (k + 1)]])
            addresses.add(Xb.__array_interface__["data"][0])
    assert len(addresses) <= 2 * 3  # a few buffers per epoch, not one per batch


def test_results_do_not_depend_on_the_thread_count(threads):
    X = np.random.default_rng(0).standard_normal((70_000, 8)).astype(np.float32)
    runs = []
    for n in (1, 2, 3):
        fo.set_num_threads(n)
        mb = fo.MiniBatches(X, np.arange(70_000), batch_size=4096, seed=8)
        runs.append([(Xb.copy(), yb.copy()) for Xb, yb in mb])
    for run in runs[1:]:
        for (a, b), (c, d) in zip(runs[0], run):
            np.testing.assert_array_equal(a, c)
            np.testing.assert_array_equal(b, d)
    np.testing.assert_array_equal(runs[0][0][0], X[runs[0][0][1]])


# --- lifetimes ----------------------------------------------------------------------------


def test_an_abandoned_iterator_lets_go_cleanly():
    X = np.ones((20_000, 16), np.float32)
    alive = weakref.ref(X)
    mb = fo.MiniBatches(X, batch_size=2048, seed=0)
    it = iter(mb)
    first = next(it)  # the next batches are being gathered in the background
    del it, mb, X
    gc.collect()
    assert alive() is None  # nothing holds the source any more
    assert first[0].shape == (2048, 16) and np.all(first[0] == 1)


def test_an_iterator_keeps_its_sources_alive():
    X = np.arange(40_000.0).reshape(10_000, 4)
    expected = X.copy()
    mb = fo.MiniBatches(X, batch_size=1000, seed=0)
    idx = mb.indices(0)
    it = iter(mb)
    del X, mb
    gc.collect()
    for k, (Xb,) in enumerate(it):
        np.testing.assert_array_equal(Xb, expected[idx[1000 * k : 1000 * (k + 1)]])


def test_an_exception_in_the_loop_leaves_the_batches_usable():
    mb = fo.MiniBatches(np.ones((20_000, 16)), batch_size=2048, seed=0)
    with pytest.raises(KeyError):
        for _ in mb:
            raise KeyError("user code failed")
    assert sum(len(Xb) for (Xb,) in mb) == 20_000


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_finishes_an_epoch_started_in_the_parent():
    X = np.arange(20_000 * 16, dtype=np.float64).reshape(20_000, 16)
    mb = fo.MiniBatches(X, batch_size=2048, seed=3)
    idx = mb.indices(0)
    it = iter(mb)
    next(it)  # batches 1 and 2 are in flight on the parent's threads
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        ok = all(np.array_equal(Xb, X[idx[2048 * k : 2048 * (k + 1)]]) for k, (Xb,) in enumerate(it, 1))
        os._exit(0 if ok else 1)
    assert wait_for_child(pid) == 0
    assert sum(1 for _ in it) == len(mb) - 1  # the parent is unaffected


# --- bad input ----------------------------------------------------------------------------

BAD = [
    (
        lambda: fo.MiniBatches(np.zeros(5), np.zeros(6)),
        ValueError,
        r"arrays\[1\] has 6 samples .* arrays\[0\] has 5",
    ),
    (lambda: fo.MiniBatches(np.zeros((0, 3))), ValueError, r"no samples"),
    (lambda: fo.MiniBatches(), TypeError, r"at least one array"),
    (lambda: fo.MiniBatches(np.zeros(5), batch_size=0), ValueError, r"batch_size must be at least 1, got 0"),
    (lambda: fo.MiniBatches(np.zeros(5), batch_size=-3), ValueError, r"batch_size must be at least 1"),
    (
        lambda: fo.MiniBatches(np.zeros(5), batch_size=2.5),
        TypeError,
        r"batch_size must be an integer, got float",
    ),
    (
        lambda: fo.MiniBatches(np.zeros(5), batch_size=True),
        TypeError,
        r"batch_size must be an integer, got bool",
    ),
    (
        lambda: fo.MiniBatches(np.zeros(5), batch_size=8, drop_last=True),
        ValueError,
        r"the epoch would have no batch",
    ),
    (lambda: fo.MiniBatches(np.array([None, 1])), TypeError, r"arrays\[0\] has dtype object"),
    (lambda: fo.MiniBatches(np.float64(3.0)), ValueError, r"arrays\[0\] is 0-dimensional"),
    (
        lambda: fo.MiniBatches(np.zeros(5), axis=1),
        ValueError,
        r"axis 1 is out of range for arrays\[0\] of shape \(5,\)",
    ),
    (
        lambda: fo.MiniBatches(np.zeros((2, 5)), np.zeros(5), axis=1),
        ValueError,
        r"axis 1 is out of range for arrays\[1\]",
    ),
    (lambda: fo.MiniBatches(np.zeros(5), seed=-1), ValueError, r"seed must be at least 0"),
    (lambda: fo.MiniBatches(np.zeros(5), seed=2**64), ValueError, r"seed must be below 2\*\*64"),
    (lambda: fo.MiniBatches(np.zeros(5), seed=1.5), TypeError, r"seed must be an integer"),
    (lambda: fo.MiniBatches(np.zeros(5), shard=(0, 2)), ValueError, r"shard needs an explicit seed"),
    (lambda: fo.MiniBatches(np.zeros(5), seed=0, shard=(2, 2)), ValueError, r"shard index must be below"),
    (
        lambda: fo.MiniBatches(np.zeros(5), seed=0, shard=(0, 0)),
        ValueError,
        r"shard count must be at least 1",
    ),
    (
        lambda: fo.MiniBatches(np.zeros(5), seed=0, shard=(0, 6)),
        ValueError,
        r"5 samples cannot be split into 6",
    ),
    (lambda: fo.MiniBatches(np.zeros(5), seed=0, shard=3), TypeError, r"shard must be a pair"),
    (lambda: fo.MiniBatches(np.zeros(5), shuffle=False, block_size=2), ValueError, r"needs shuffle=True"),
    (lambda: fo.MiniBatches(np.zeros(5), block_size=0), ValueError, r"block_size must be at least 1"),
    (
        lambda: fo.MiniBatches(np.zeros(5), block_size=2, buffer_blocks=0),
        ValueError,
        r"buffer_blocks must be at least 1",
    ),
]


@pytest.mark.parametrize("make,exc,match", BAD)
def test_bad_input_is_refused_with_a_clear_error(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


def test_a_bad_scheduled_batch_size_is_refused_before_any_batch():
    mb = fo.MiniBatches(np.zeros(10), batch_size=lambda e: 4 if e == 0 else 0, seed=0)
    assert len(list(mb)) == 3
    with pytest.raises(ValueError, match=r"batch_size\(1\) must be at least 1, got 0"):
        iter(mb)
    with pytest.raises(ValueError, match=r"batch_size\(1\)"):
        len(mb)


def test_a_closed_memmap_is_refused(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((100, 4)))
    X = np.load(tmp_path / "x.npy", mmap_mode="r")
    X._mmap.close()  # NumPy allows it; reading X would now crash
    with pytest.raises(ValueError, match=r"arrays\[0\] is a memory map that was closed"):
        fo.MiniBatches(X)


def test_a_shrinking_memmap_is_refused_before_any_batch(tmp_path):
    path = tmp_path / "x.npy"
    np.save(path, np.zeros((1000, 8)))
    X = np.load(path, mmap_mode="r")
    mb = fo.MiniBatches(np.zeros(500), X[::2], batch_size=100, seed=0)  # a view of it
    assert len(list(mb)) == 5
    os.truncate(path, 4096)
    with pytest.raises(ValueError, match=r"arrays\[1\] is a memory map of a file that shrank to 4096"):
        iter(mb)
    with pytest.raises(ValueError, match=r"shrank"):
        fo.MiniBatches(X)


def test_an_array_reshaped_in_place_is_refused_at_the_next_batch():
    X = np.zeros((100, 4))
    mb = fo.MiniBatches(X, batch_size=10, seed=0)
    it = iter(mb)
    next(it)
    X.shape = (50, 8)
    with pytest.raises(ValueError, match=r"arrays\[0\] was resized or reshaped in place"):
        next(it)
    X.shape = (100, 4)
    assert len(list(it)) == 9


@pytest.mark.parametrize(
    "state,match",
    [
        ({"seed": 0, "epoch": 0}, r"missing \['position'\]"),
        ({"seed": 0, "epoch": 0, "position": 4}, r"position 4 is past the end of epoch 0 \(3 batches\)"),
        ({"seed": 0, "epoch": -1, "position": 0}, r"epoch must be at least 0"),
        ({"seed": 0, "epoch": 0, "position": 0, "num_samples": 11}, r"for 11 samples, these arrays have 10"),
    ],
)
def test_a_bad_state_dict_is_refused_and_nothing_changes(state, match):
    mb = fo.MiniBatches(np.arange(10), batch_size=4, seed=1)
    before = mb.state_dict()
    with pytest.raises(ValueError, match=match):
        mb.load_state_dict(state)
    assert mb.state_dict() == before


def test_docstrings_run():
    result = doctest.testmod(ferroptim.batches, verbose=False)
    assert result.attempted >= 3 and result.failed == 0
    assert "MiniBatches" in fo.__all__


@pytest.mark.slow
def test_the_benchmark_runs(tmp_path):
    script = Path(__file__).resolve().parent.parent / "benches" / "minibatch_compare.py"
    out = subprocess.run(
        [sys.executable, str(script), "--samples", "5000", "--repeats", "1", "--no-torch"],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    ).stdout
    assert "plain gather of the same rows" in out and "within 1.3x" in out
