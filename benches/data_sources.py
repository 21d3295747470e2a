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
     pyarrow is taken from this environment) or where torch is importable;
   - Ray Data: ``ray.data.read_parquet(path).iter_batches(batch_size=1024,
     batch_format="numpy", local_shuffle_buffer_size=8 * 128K)`` (the same buffer, in rows),
     the columns stacked as by hand, in a child process after ``ray.init`` and a warm-up
     batch (which start Ray's processes), a full epoch timed. Where ray does not import
     (``pip install "ray[data]"``; it is not among the test requirements) or does not
     start, the run says so and leaves the row out.
2. **fit on Parquet vs in-RAM arrays**: one epoch of the README's W2 (2-32-32-1, sigmoid,
   batch 512) and W4 (64-256-256-10, softmax, batch 1024) on ``--rows`` rows, Adam, from a
   Parquet file in the page cache and from the same rows as NumPy arrays; the better of
   ``--rounds`` alternating rounds.
3. **Peak resident memory** of one fit epoch over a larger Parquet file (``--rss-gb`` of
   uncompressed float32 features, default 1 GB), in a fresh process: its peak RSS
   (``VmHWM``), and its RSS right after its imports for comparison.
4. **The big run** (opt-in, ``--big-gb 10 --big-dir /tmp/big30``): a dataset of about
   that many GB on disk written under ``--big-dir`` as files of about 1 GB (64 float32
   features and an int64 label of 10 classes per row, snappy, row groups of 128K rows;
   random floats do not compress, so the files are as large as the data), then one
   ``fit`` epoch of the README's W3 (softmax regression 64 -> 10, Adam, batch 1024) with
   the source's default settings (``fo.data.Parquet(dir, labels="y")``) in a child
   process: its peak resident memory (its own ``VmHWM``; ``getrusage``'s maximum RSS of
   the children is printed too, an upper bound that includes this process's peak, which
   a child inherits when it starts), the epoch's time and the files' size. The files are
   deleted afterwards (``--big-keep`` keeps them, and a later run reuses them).

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


RAY_WORKER = r"""
import os, sys, time
import numpy as np
try:
    import ray
    import ray.data
except ImportError as e:
    print("ray does not import:", e)
    sys.exit(3)
path, batch, buffer_rows = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False, logging_level="ERROR")
ray.data.DataContext.get_current().enable_progress_bars = False

def epoch(limit=None):
    ds = ray.data.read_parquet(path)
    names = [c for c in ds.schema().names if c != "y"]
    n = 0
    for k, b in enumerate(ds.iter_batches(batch_size=batch, batch_format="numpy",
                                          local_shuffle_buffer_size=buffer_rows, local_shuffle_seed=0)):
        X, y = np.column_stack([b[c] for c in names]), b["y"]
        n += len(y)
        if limit is not None and k + 1 == limit:
            break
    return n

epoch(limit=1)  # starts Ray's worker processes
t = time.perf_counter()
n = epoch()
secs = time.perf_counter() - t
ray.shutdown()
print(n, n / secs)
"""


def ray_route(path: Path, rows: int) -> tuple[float | None, str]:
    """Ray Data's samples/s over one epoch in a child process, or None and why not."""
    try:
        r = subprocess.run(
            [sys.executable, "-c", RAY_WORKER, str(path), "1024", str(BUFFER * ROW_GROUP)],
            capture_output=True,
            text=True,
            timeout=1800,
        )
    except subprocess.TimeoutExpired:
        return None, "Ray Data did not finish an epoch in 30 minutes; row left out"
    if r.returncode == 3:
        return None, f'{r.stdout.strip()} (pip install "ray[data]"); row left out'
    if r.returncode != 0:
        last = (r.stderr.strip().splitlines() or ["?"])[-1]
        return None, f"Ray Data failed to start or run here ({last}); row left out"
    n, sps = r.stdout.strip().splitlines()[-1].split()
    if int(n) != rows:
        return None, f"Ray Data's epoch held {n} rows, not {rows}; row left out"
    return float(sps), ""


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


BIG_WORKER = r"""
import sys, time
import ferroptim as fo
import pyarrow  # noqa: F401  (counted in the RSS after imports)

def status_mib(key):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(key + ":")) / 1024

after_imports = status_mib("VmRSS")
src = fo.data.Parquet(sys.argv[1], labels="y")  # the source's defaults: shuffle_buffer=8, float32
model = fo.nn.MLP([src.n_features, 10], output="softmax", seed=0)  # the README's W3
t = time.perf_counter()
history = model.fit(src, optimizer=fo.Adam(model.params, lr=1e-3), batch_size=1024, seed=0)
secs = time.perf_counter() - t
print(len(src), src.num_row_groups, after_imports, status_mib("VmHWM"), secs, history.epoch_costs[-1])
"""

BIG_FILE_GB = 1.0


def big_run(directory: Path, gb: float, keep: bool) -> None:
    """Writes about ``gb`` GB of Parquet under ``directory`` (files of about 1 GB, whole
    row groups of 128K rows; files already there with the right row count are reused),
    trains one W3 epoch over it in a child process and prints its peak RSS, then deletes
    the files unless ``keep``."""
    import pyarrow.parquet as pq

    row_bytes = 64 * 4 + 8
    groups = max(1, round(gb * 1e9 / (row_bytes * ROW_GROUP)))
    per_file = max(1, round(BIG_FILE_GB * 1e9 / (row_bytes * ROW_GROUP)))
    parts = [(k, min(per_file, groups - a)) for k, a in enumerate(range(0, groups, per_file))]
    directory.mkdir(parents=True, exist_ok=True)
    paths = [directory / f"part-{k:04d}.parquet" for k, _ in parts]
    try:
        t = time.perf_counter()
        for path, (k, g) in zip(paths, parts):
            if path.exists() and pq.ParquetFile(path).metadata.num_rows == g * ROW_GROUP:
                continue
            write_parquet(path, g * ROW_GROUP, 64, 10, seed=1000 + k)
        size = sum(p.stat().st_size for p in paths)
        rows = groups * ROW_GROUP
        print(
            f"\nBig run: {len(paths)} files, {rows:,} rows x 64 float32 + int64 label "
            f"({rows * row_bytes / 1e9:.2f} GB uncompressed, {size / 1e9:.2f} GB on disk, "
            f"{size / 2**30:.2f} GiB) under {directory}; written in {time.perf_counter() - t:.0f} s"
        )
        print(f"  before the epoch: {_load()}")
        r = subprocess.run([sys.executable, "-c", BIG_WORKER, str(directory)], capture_output=True, text=True)
        if r.returncode != 0:
            print(f"  the fit epoch failed:\n{r.stderr}")
            return
        n, n_groups, base, peak, secs, cost = r.stdout.split()
        children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        print(
            f"  one fit epoch of W3 (softmax 64 -> 10, Adam, batch 1024), fo.data.Parquet(dir, "
            f'labels="y") with its defaults, over {int(n):,} rows in {n_groups} row groups: '
            f"{float(secs):.1f} s ({int(n) / float(secs):,.0f} rows/s), final epoch cost {float(cost):.4f}"
        )
        print(
            f"  peak resident memory of that process (VmHWM): {float(peak):.0f} MiB "
            f"(after its imports: {float(base):.0f} MiB; getrusage's maximum RSS of this "
            f"benchmark's children, {children:.0f} MiB, is an upper bound: it holds this "
            f"process's own peak too, inherited when the child starts); target < 1.5 GB: "
            f"{'met' if float(peak) * 2**20 < 1.5e9 else 'MISSED'}"
        )
        print(f"  after the epoch: {_load()}")
    finally:
        if not keep:
            for p in paths:
                p.unlink(missing_ok=True)
            if directory.exists() and not any(directory.iterdir()):
                directory.rmdir()
            print(f"  deleted the files under {directory}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--rss-gb", type=float, default=1.0)
    ap.add_argument("--torch-python", default=os.environ.get("TORCH_PYTHON"))
    ap.add_argument("--torch-batches", type=int, default=300)
    ap.add_argument("--quick", action="store_true", help="200K rows, 0.1 GB for the memory run, one round")
    ap.add_argument("--skip", nargs="*", default=[], choices=["data", "torch", "ray", "fit", "rss"])
    ap.add_argument("--big-gb", type=float, help="also the big run: about this many GB of Parquet (e.g. 10)")
    ap.add_argument("--big-dir", type=Path, help="where the big run writes its files (e.g. /tmp/big30)")
    ap.add_argument(
        "--big-keep", action="store_true", help="keep the big run's files (a later run reuses them)"
    )
    args = ap.parse_args()
    if args.big_gb is not None and (args.big_dir is None or args.big_gb <= 0):
        ap.error("--big-gb needs a positive size and --big-dir")
    if args.quick:
        args.rows, args.rss_gb, args.rounds, args.torch_batches = 200_000, 0.1, 1, 50
    import ferroptim as fo

    print(f"ferroptim {fo.__version__}, {fo.get_num_threads()} threads, {os.cpu_count()} CPUs; {_load()}")
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        w4, w2 = d / "w4.parquet", d / "w2.parquet"
        if not {"data", "fit"} <= set(args.skip):
            write_parquet(w4, args.rows, 64, 10)
        if "data" not in args.skip:
            sps = data_path(w4, args.rows)
            notes = []
            python = None if "torch" in args.skip else args.torch_python
            if python is None and "torch" not in args.skip:
                try:
                    import torch  # noqa: F401

                    python = sys.executable
                except ImportError:
                    pass
            if python:
                tr = torch_route(w4, python, args.torch_batches)
                if tr:
                    sps["torch DataLoader"] = tr
            elif "torch" not in args.skip:
                notes.append("torch DataLoader: torch does not import here (--torch-python); row left out")
            if "ray" not in args.skip:
                ray_sps, why = ray_route(w4, args.rows)
                if ray_sps is None:
                    notes.append(f"Ray Data: {why}")
                else:
                    sps["Ray Data"] = ray_sps
            print(f"\nData path, {args.rows} rows x 64 features, batches of 1024 (samples/s; {_load()}):")
            for k, v in sps.items():
                print(f"  {k:<18} {v:>12,.0f}   ferroptim is {sps['ferroptim'] / v:.2f}x")
            for note in notes:
                print(f"  {note}")
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
    if args.big_gb is not None:
        big_run(args.big_dir, args.big_gb, args.big_keep)
    print(
        f"\n{_load()}; peak RSS of this process {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB"
    )


if __name__ == "__main__":
    main()
