"""The column-to-row interleave of ferroptim.data.Parquet: NumPy (the code it replaced)
against Rust (``_core.interleave_columns``), alone and after the Parquet decode.

One window of ``--rows`` rows x ``--features`` float32 columns (an int64 label beside
them), written as Parquet (snappy, row groups of 128K rows) in a temporary folder and
read from the page cache:

- **decode**: ``ParquetFile.read_row_group`` of every row group and each column's
  ``to_numpy`` (the part the interleave follows);
- **interleave**: those columns into the window's row-major (rows, features) block of
  ``--dtype``, in storage order and scattered to a shuffle permutation's places, by
  NumPy (cache-sized blocks of rows, scattered row by row: Parquet's code before the
  Rust interleave) and by Rust on the thread pool;
- **decode + interleave + shuffle**: ``Parquet._load`` of the whole window, as
  ``MiniBatches`` calls it, with the NumPy and with the Rust interleave;
- **an epoch**: ``MiniBatches`` over the file with windows of 2 row groups (the next one
  decoded and interleaved on the reader thread while batches are taken), batches of 1024
  rows, no training, with each interleave.

Each time is the best of ``--rounds``, NumPy's and Rust's runs alternating. The machine's load average is printed with them.
Run: ``python benches/interleave.py`` (``--rows 800000 --features 64`` by default).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

ROW_GROUP = 128 * 1024


def _load() -> str:
    return "load average " + " ".join(f"{v:.2f}" for v in os.getloadavg())


def numpy_interleave(cols: list, X: np.ndarray, dest) -> None:
    """Parquet's interleave before Rust: cache-sized blocks of rows, each column written
    into the block, the block scattered row by row to its shuffled places."""
    n = len(cols[0])
    step = max(64, (1 << 18) // max(1, X.shape[1] * X.dtype.itemsize))
    scatter = not isinstance(dest, int)
    block = np.empty((step, X.shape[1]), X.dtype) if scatter else None
    for a in range(0, n, step):
        b = min(n, a + step)
        bx = X[dest + a : dest + b] if block is None else block[: b - a]
        for c, col in enumerate(cols):
            bx[:, c] = col[a:b]
        if block is not None:
            X[dest[a:b]] = bx


def best(fns: dict, rounds: int) -> dict:
    """The best time of each function over ``rounds`` rounds, the functions alternating
    within each round (so that a slow spell of a shared machine hits them alike)."""
    times: dict = {name: [] for name in fns}
    for _ in range(rounds):
        for name, f in fns.items():
            t = time.perf_counter()
            f()
            times[name].append(time.perf_counter() - t)
    return {name: min(v) for name, v in times.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=800_000)
    p.add_argument("--features", type=int, default=64)
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args()

    import pyarrow as pa
    import pyarrow.parquet as pq

    import ferroptim as fo
    from ferroptim import _core
    from ferroptim.data import _parquet

    rng = np.random.default_rng(0)
    m, k, dtype = args.rows, args.features, np.dtype(args.dtype)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "w.parquet"
        cols = {f"x{j}": rng.standard_normal(m, np.float32) for j in range(k)}
        cols["y"] = rng.integers(0, 10, m)
        pq.write_table(pa.table(cols), path, row_group_size=ROW_GROUP, compression="snappy")
        del cols
        src = fo.data.Parquet(path, labels="y", dtype=dtype, shuffle_buffer=64)
        (chunk,), _ = src._epoch_chunks(0, 0, True, (0, 1))
        perm = src._perm(chunk.rows, chunk.key[1])
        dest = np.empty(m, np.int64)
        dest[perm] = np.arange(m)
        features = src.features

        def decode():
            return [
                [src._column(t, name, g) for name in features]
                for g, t in ((g, src._read_group(g)) for g in chunk.key[0])
            ]

        groups = decode()
        X = np.empty((m, k), dtype)

        def interleave(fn, shuffled):
            def run():
                r = 0
                for cs in groups:
                    fn(cs, X, dest[r : r + len(cs[0])] if shuffled else r)
                    r += len(cs[0])

            return run

        results = best({"decode (read_row_group + to_numpy)": decode}, args.rounds)
        for shuffled in (False, True):
            what = "shuffled" if shuffled else "in order"
            results.update(
                best(
                    {
                        f"interleave {what}, NumPy": interleave(numpy_interleave, shuffled),
                        f"interleave {what}, Rust": interleave(_core.interleave_columns, shuffled),
                    },
                    args.rounds,
                )
            )
        epoch_src = fo.data.Parquet(path, labels="y", dtype=dtype, shuffle_buffer=2)
        rust = _parquet._interleave

        def using(fn, work):
            def run():
                _parquet._interleave = fn
                try:
                    work()
                finally:
                    _parquet._interleave = rust

            return run

        def epoch():
            n = sum(len(yb) for _, yb in fo.MiniBatches(epoch_src, batch_size=1024, seed=0))
            assert n == m

        for what, work in (
            ("decode + interleave + shuffle (Parquet._load)", lambda: src._load(chunk)),
            ("MiniBatches epoch, batches of 1024, shuffle_buffer=2", epoch),
        ):
            results.update(
                best(
                    {f"{what}, NumPy": using(numpy_interleave, work), f"{what}, Rust": using(rust, work)},
                    args.rounds,
                )
            )
        # The check: the Rust window holds the NumPy interleave's bytes.
        rust_window = src._load(chunk)[0]
        interleave(numpy_interleave, True)()
        assert rust_window.tobytes() == X.tobytes()

    print(
        f"{m} rows x {k} float32 columns into a {dtype.name} block; ferroptim "
        f"{fo.__version__}, {fo.get_num_threads()} threads, {os.cpu_count()} CPUs; "
        f"best of {args.rounds}; {_load()}"
    )
    for name, sec in results.items():
        print(f"  {name:<58} {sec:8.3f} s")


if __name__ == "__main__":
    main()
