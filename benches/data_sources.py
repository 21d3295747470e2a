"""The data path of ferroptim.data.Parquet against the loops people write by hand.

Measured in one run, on Parquet files written here (float32 features, an int64 label,
snappy, row groups of 128K rows), with the same shuffle (8 row groups mixed per window):

1. **Data path alone** (samples/s, no training), a full epoch of batches of 1024 rows:
   - ferroptim: ``for Xb, Yb in fo.MiniBatches(fo.data.Parquet(...), batch_size=1024)``;
   - by hand: ``ParquetFile.iter_batches`` row group by row group, the columns stacked with
     ``np.column_stack``, a NumPy shuffle buffer of 8 row groups (concatenate, permute,
     cut into batches);
   - torch: a ``DataLoader(batch_size=1024)`` over an ``IterableDataset`` yielding the rows
     of that same shuffle buffer one by one (the usual way to write one), timed over its
     first ``--torch-batches`` batches; run with ``--torch-python`` (a Python with torch;
     pyarrow is taken from this environment) or where torch is importable.
2. **fit on Parquet vs in-RAM arrays**: one epoch of the README's W2 (2-32-32-1, sigmoid,
   batch 512) and W4 (64-256-256-10, softmax, batch 1024) on ``--rows`` rows, Adam, from a
   Parquet file in the page cache and from the same rows as NumPy arrays; the better of
   ``--rounds`` alternating rounds.
3. **Peak resident memory** of one fit epoch over a larger Parquet file (``--rss-gb`` of
   uncompressed float32 features, default 1 GB; the issue's 10 GB wants a bigger disk than
   this machine has to spare), in a fresh process: its peak RSS (``VmHWM``), and its RSS
   right after its imports for comparison.

Run: ``python benches/data_sources.py`` (``--quick`` for a smaller run). The machine's
load average is printed: on a shared machine the ratios are noisy.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROW_GROUP = 128 * 1024
BUFFER = 8


def _load() -> str:
    return "load average " + " ".join(f"{v:.2f}" for v in os.getloadavg())


def write_parquet(path: Path, rows: int, features: int, classes: int, seed: int = 0) -> None:
    """``rows`` rows of ``features`` float32 columns x0.. and an int64 label y, written a
    row group at a time (never the whole table in memory)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    w = rng.standard_normal((features, classes)).astype(np.float32)
    schema = pa.schema([(f"x{j}", pa.float32()) for j in range(features)] + [("y", pa.int64())])
    with pq.ParquetWriter(path, schema, compression="snappy", use_dictionary=False) as writer:
        for a in range(0, rows, ROW_GROUP):
            n = min(ROW_GROUP, rows - a)
            X = rng.standard_normal((n, features)).astype(np.float32)
            y = np.argmax(X @ w, axis=1) if classes > 1 else (X @ w[:, 0] > 0).astype(np.int64)
            cols = [pa.array(X[:, j]) for j in range(features)] + [pa.array(y.astype(np.int64))]
            writer.write_table(pa.Table.from_arrays(cols, schema=schema), row_group_size=ROW_GROUP)


def read_arrays(path: Path) -> tuple:
    import pyarrow.parquet as pq

    t = pq.read_table(path)
    names = [n for n in t.column_names if n != "y"]
    X = np.empty((t.num_rows, len(names)), np.float32)
    for j, n in enumerate(names):
        X[:, j] = t.column(n).to_numpy()
    return X, t.column("y").to_numpy()


def hand_written(path: Path, batch_size: int, seed: int):
    """The loop a person writes: iter_batches, column_stack, a NumPy shuffle buffer."""
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    pf = pq.ParquetFile(path)
    names = [n for n in pf.schema_arrow.names if n != "y"]
    groups = rng.permutation(pf.metadata.num_row_groups)
    for a in range(0, len(groups), BUFFER):
        xs, ys = [], []
        for batch in pf.iter_batches(batch_size=ROW_GROUP, row_groups=groups[a : a + BUFFER].tolist()):
            xs.append(np.column_stack([batch.column(n).to_numpy() for n in names]))
            ys.append(batch.column("y").to_numpy())
        X, y = np.concatenate(xs), np.concatenate(ys)
        p = rng.permutation(len(X))
        X, y = X[p], y[p]
        for b in range(0, len(X), batch_size):
            yield X[b : b + batch_size], y[b : b + batch_size]


def data_path(path: Path, rows: int) -> dict:
    import ferroptim as fo

    out = {}
    src = fo.data.Parquet(path, labels="y", shuffle_buffer=BUFFER)
    t = time.perf_counter()
    n = sum(len(yb) for _, yb in fo.MiniBatches(src, batch_size=1024, seed=0))
    out["ferroptim"] = n / (time.perf_counter() - t)
    t = time.perf_counter()
    n = sum(len(yb) for _, yb in hand_written(path, 1024, 0))
    out["pyarrow by hand"] = n / (time.perf_counter() - t)
    assert n == rows
    return out


TORCH_WORKER = r"""
import sys, time, numpy as np, torch
sys.path.append(sys.argv[3])  # pyarrow from the benchmark's environment
sys.path.insert(0, sys.argv[4])
from data_sources import hand_written
path, n_batches = sys.argv[1], int(sys.argv[2])

class Rows(torch.utils.data.IterableDataset):
    def __iter__(self):
        for X, y in hand_written(path, 1 << 16, 0):
            for i in range(len(X)):
                yield X[i], y[i]

loader = torch.utils.data.DataLoader(Rows(), batch_size=1024)
t, n = time.perf_counter(), 0
for k, (xb, yb) in enumerate(loader):
    n += len(yb)
    if k + 1 == n_batches:
        break
print(n / (time.perf_counter() - t))
"""


def torch_route(path: Path, python: str, n_batches: int) -> float | None:
    import pyarrow

    site = str(Path(pyarrow.__file__).parent.parent)
    r = subprocess.run(
        [python, "-c", TORCH_WORKER, str(path), str(n_batches), site, str(Path(__file__).parent)],
        capture_output=True,
        text=True,
    )
    if r.returncode != 0:
        print(f"  torch route failed: {r.stderr.strip().splitlines()[-1:]}")
        return None
    return float(r.stdout.strip().splitlines()[-1])


def fit_compare(path: Path, sizes: list, output: str, batch: int, rounds: int) -> tuple:
    import ferroptim as fo

    X, y = read_arrays(path)
    times: dict = {"arrays": [], "parquet": []}
    for _ in range(rounds):
        for kind in ("arrays", "parquet"):
            model = fo.nn.MLP(sizes, output=output)
            opt = fo.Adam(model.params, lr=1e-3)
            t = time.perf_counter()
            if kind == "arrays":
                model.fit(X, y, opt, batch_size=batch, seed=0)
            else:
                src = fo.data.Parquet(path, labels="y", shuffle_buffer=BUFFER)
                model.fit(src, optimizer=opt, batch_size=batch, seed=0)
            times[kind].append(time.perf_counter() - t)
    return min(times["arrays"]), min(times["parquet"])


RSS_WORKER = r"""
import sys, time, numpy as np, ferroptim as fo, pyarrow
def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20
after_imports = rss_mb()
src = fo.data.Parquet(sys.argv[1], labels="y")
model = fo.nn.MLP([src.n_features, 32, 1])
t = time.perf_counter()
model.fit(src, optimizer=fo.Adam(model.params, lr=1e-3), batch_size=1024, seed=0)
def hwm_mb():  # this process's own peak (ru_maxrss would include the parent's, inherited at fork)
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmHWM")) / 1024
print(after_imports, hwm_mb(), time.perf_counter() - t)
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--rss-gb", type=float, default=1.0)
    ap.add_argument("--torch-python", default=os.environ.get("TORCH_PYTHON"))
    ap.add_argument("--torch-batches", type=int, default=300)
    ap.add_argument("--quick", action="store_true", help="200K rows, 0.1 GB for the memory run, one round")
    ap.add_argument("--skip", nargs="*", default=[], choices=["data", "fit", "rss"])
    args = ap.parse_args()
    if args.quick:
        args.rows, args.rss_gb, args.rounds, args.torch_batches = 200_000, 0.1, 1, 50
    import ferroptim as fo

    print(f"ferroptim {fo.__version__}, {fo.get_num_threads()} threads, {os.cpu_count()} CPUs; {_load()}")
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        w4, w2 = d / "w4.parquet", d / "w2.parquet"
        write_parquet(w4, args.rows, 64, 10)
        if "data" not in args.skip:
            sps = data_path(w4, args.rows)
            python = args.torch_python
            if python is None:
                try:
                    import torch  # noqa: F401

                    python = sys.executable
                except ImportError:
                    pass
            if python:
                tr = torch_route(w4, python, args.torch_batches)
                if tr:
                    sps["torch DataLoader"] = tr
            print(f"\nData path, {args.rows} rows x 64 features, batches of 1024 (samples/s):")
            for k, v in sps.items():
                print(f"  {k:<18} {v:>12,.0f}   ferroptim is {sps['ferroptim'] / v:.2f}x")
        if "fit" not in args.skip:
            write_parquet(w2, args.rows, 2, 1)
            print(f"\nfit, one epoch of {args.rows} rows (best of {args.rounds}; {_load()}):")
            for name, path, sizes, out, b in [
                ("W2 2-32-32-1", w2, [2, 32, 32, 1], "sigmoid", 512),
                ("W4 64-256-256-10", w4, [64, 256, 256, 10], "softmax", 1024),
            ]:
                ta, tp = fit_compare(path, sizes, out, b, args.rounds)
                print(f"  {name:<18} arrays {ta:7.3f} s   Parquet {tp:7.3f} s   ratio {tp / ta:.2f}")
        if "rss" not in args.skip:
            big = d / "big.parquet"
            rows = int(args.rss_gb * 1e9 / (64 * 4))
            for p in (w2,):
                p.unlink(missing_ok=True)
            write_parquet(big, rows, 64, 1)
            r = subprocess.run([sys.executable, "-c", RSS_WORKER, str(big)], capture_output=True, text=True)
            if r.returncode != 0:
                print(r.stderr)
            else:
                base, peak, secs = (float(v) for v in r.stdout.split())
                print(
                    f"\nPeak RSS of a fit epoch over {rows} rows x 64 float32 ({rows * 256 / 1e9:.2f} GB "
                    f"uncompressed, {big.stat().st_size / 1e9:.2f} GB on disk): {peak:.0f} MiB "
                    f"(after imports: {base:.0f} MiB; epoch {secs:.1f} s)"
                )
    print(
        f"\n{_load()}; peak RSS of this process {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB"
    )


if __name__ == "__main__":
    main()
