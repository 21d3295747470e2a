"""Parquet files and Arrow IPC / Feather files, read row group by row group with pyarrow."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np

from .. import _core
from ..batches import _index
from ._base import Chunk, DataError, Source

_PARQUET = (".parquet", ".pq", ".parq")
_IPC = (".arrow", ".feather", ".ipc", ".arrows")


def _pyarrow() -> Any:
    try:
        import pyarrow
        import pyarrow.compute  # noqa: F401
        import pyarrow.ipc  # noqa: F401
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        raise ImportError("ferroptim.data.Parquet needs pyarrow: pip install ferroptim[parquet]") from None
    return pyarrow


def _files(path_or_dataset: Any) -> tuple[list[str], Optional[str]]:
    """The files and, for a pyarrow Dataset, its format ("parquet" / "ipc")."""
    pa = _pyarrow()
    try:
        import pyarrow.dataset as ds
    except ImportError:  # pragma: no cover - part of every pyarrow wheel
        ds = None
    if ds is not None and isinstance(path_or_dataset, ds.Dataset):
        if not isinstance(path_or_dataset, ds.FileSystemDataset):
            raise TypeError("path_or_dataset: a pyarrow Dataset must be a FileSystemDataset (of files)")
        fmt = path_or_dataset.format
        kind = (
            "parquet"
            if isinstance(fmt, ds.ParquetFileFormat)
            else "ipc"
            if isinstance(fmt, ds.IpcFileFormat)
            else None
        )
        if kind is None:
            raise TypeError(
                f"path_or_dataset: a Dataset of {type(fmt).__name__} is not supported (Parquet or IPC/Feather)"
            )
        if not isinstance(path_or_dataset.filesystem, pa.fs.LocalFileSystem):
            raise TypeError("path_or_dataset: only Datasets on the local file system are supported")
        return list(path_or_dataset.files), kind
    if isinstance(path_or_dataset, (str, os.PathLike)):
        p = Path(path_or_dataset)
        if p.is_dir():
            files = sorted(
                str(f) for f in p.rglob("*") if f.is_file() and f.suffix.lower() in _PARQUET + _IPC
            )
            if not files:
                raise FileNotFoundError(f"{p} holds no .parquet, .arrow or .feather files")
            return files, None
        if not p.exists():
            raise FileNotFoundError(f"{p} does not exist")
        return [str(p)], None
    if isinstance(path_or_dataset, Sequence) and not isinstance(path_or_dataset, (bytes, bytearray)):
        files = [str(Path(f)) for f in path_or_dataset]
        if not files:
            raise ValueError("path_or_dataset is an empty list of files")
        for f in files:
            if not Path(f).is_file():
                raise FileNotFoundError(f"{f} does not exist")
        return files, None
    raise TypeError(
        "path_or_dataset must be a file, a folder, a list of files or a pyarrow.dataset.Dataset, "
        f"got {type(path_or_dataset).__name__}"
    )


def _kind(path: str, default: Optional[str]) -> str:
    if default is not None:
        return default
    return "ipc" if Path(path).suffix.lower() in _IPC else "parquet"


def _names(name: str, value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    try:
        names = list(value)
    except TypeError:
        raise TypeError(
            f"{name} must be a column name or a list of them, got {type(value).__name__}"
        ) from None
    for n in names:
        if not isinstance(n, str):
            raise TypeError(f"{name} must hold column names (str), got {n!r}")
    if len(set(names)) != len(names):
        raise ValueError(f"{name} names a column twice: {names}")
    return names


class Parquet(Source):
    """Rows of Parquet files (or Arrow IPC / Feather files), streamed row group by row
    group: resident memory is a few shuffle buffers, not the dataset.

    **The shuffle of epoch e** (``shuffle=True``): the row groups of all files (in the
    files' sorted order, then row-group order) are permuted by
    ``numpy.random.default_rng([seed, e]).permutation``; worker ``index`` of ``count``
    (``shard``) takes the permuted row groups at positions ``index, index + count, ...``;
    its sequence is cut into windows of ``shuffle_buffer`` consecutive row groups, and
    the rows of window ``v`` are permuted by ``default_rng([seed, e, index, v])``; the
    windows are read one after the other. Two rows meet in a batch only if their row
    groups share a window (or neighbouring windows), so rows stored together stay
    correlated within an epoch: a file sorted by label wants a large ``shuffle_buffer``
    (or a shuffled write). With several workers, each epoch uses as many rows on every
    worker as the smallest share holds (the rest of the others' last row groups is left
    out, as ``MiniBatches(shard=...)`` leaves out ``m % count`` samples).
    ``shuffle=False`` reads every row in storage order.

    Row groups are decoded by pyarrow on its own threads with the GIL released, one
    window ahead on a background thread; each decoded column is written into the batch's
    row-major array of ``dtype`` once (the cast and the column-to-row interleave in one
    copy, in Rust on the thread pool with the GIL released, in cache-sized tasks of rows
    scattered to their shuffled places).
    Resident memory: about two windows (the one being trained on and the next one,
    ``2 * shuffle_buffer`` row groups of ``n_features`` values of ``dtype``) plus
    pyarrow's buffers for one row group.

    Args:
        path_or_dataset: a file, a folder (every ``.parquet``/``.pq``/``.arrow``/
            ``.feather`` file under it, sorted by path), a list of files, or a
            ``pyarrow.dataset.Dataset`` of local Parquet or IPC files. Arrow IPC and
            Feather (v2) files are read through memory maps, a record batch per row group.
        features: the feature columns, in order; ``None``: every column but the labels.
        labels: the label column(s) or None (for ``predict``). One column gives ``Yb``
            of shape (rows,), several (rows, k); integer columns give int64 (class
            labels), others ``dtype``.
        dtype: the dtype of the feature batches (float32 or float64 for an MLP).
        shuffle_buffer: row groups mixed together (>= 1).
        fill_null: nulls are refused (an error naming the file, column and row group);
            a number here replaces them with it instead.

    Raises:
        DataError: a missing column, a column whose type differs between files, a
            string/categorical feature column, nulls (when reading, before the batch that
            holds them), a file that changed or disappeared after the source was opened.
        ImportError: pyarrow is not installed (``pip install ferroptim[parquet]``).
    """

    def __init__(
        self,
        path_or_dataset: Union[str, os.PathLike, Sequence, Any],
        features: Optional[Sequence[str]] = None,
        labels: Union[str, Sequence[str], None] = None,
        *,
        dtype: Any = np.float32,
        shuffle_buffer: int = 8,
        fill_null: Optional[float] = None,
    ) -> None:
        pa = _pyarrow()
        self._files, kind = _files(path_or_dataset)
        self._kinds = [_kind(f, kind) for f in self._files]
        self.dtype = np.dtype(dtype)
        if self.dtype.kind != "f":
            raise TypeError(f"dtype must be a floating dtype (float32 or float64), got {self.dtype}")
        self.shuffle_buffer = _index("shuffle_buffer", shuffle_buffer, 1)
        if (
            fill_null is not None
            and not isinstance(fill_null, (int, float, np.number))
            or isinstance(fill_null, bool)
        ):
            raise TypeError(f"fill_null must be a number or None, got {fill_null!r}")
        self.fill_null = fill_null
        label_names = _names("labels", labels)

        schemas: list = []
        self._groups: list[tuple[int, int, int]] = []
        self._stats: list[tuple[int, int]] = []
        for i, f in enumerate(self._files):
            st = os.stat(f)
            self._stats.append((st.st_size, st.st_mtime_ns))
            try:
                if self._kinds[i] == "parquet":
                    meta = pa.parquet.ParquetFile(f).metadata
                    schema = meta.schema.to_arrow_schema()
                    rows = [meta.row_group(j).num_rows for j in range(meta.num_row_groups)]
                else:
                    with pa.memory_map(f) as mm:
                        reader = pa.ipc.open_file(mm)
                        schema = reader.schema
                        rows = [reader.get_batch(j).num_rows for j in range(reader.num_record_batches)]
            except (pa.ArrowInvalid, OSError) as e:
                raise DataError(f"{f}: not a readable {self._kinds[i]} file: {e}") from e
            schemas.append(schema)
            self._groups.extend((i, j, n) for j, n in enumerate(rows) if n > 0)

        first = schemas[0]
        feature_names = (
            [n for n in first.names if n not in label_names]
            if features is None
            else _names("features", features)
        )
        if not feature_names:
            raise ValueError("features: no feature columns (every column is a label)")
        both = set(feature_names) & set(label_names)
        if both:
            raise ValueError(f"columns {sorted(both)} are both features and labels")
        self.features, self.labels = feature_names, label_names
        for i, schema in enumerate(schemas):
            for role, names in (("feature", feature_names), ("label", label_names)):
                for n in names:
                    if n not in schema.names:
                        raise DataError(
                            f"{self._files[i]}: no {role} column {n!r} (its columns: {schema.names})"
                        )
                    t = schema.field(n).type
                    t0 = first.field(n).type if n in first.names else t
                    if t != t0:
                        raise DataError(
                            f"{self._files[i]}: column {n!r} is {t}, but {t0} in {self._files[0]}: "
                            "the files' schemas differ"
                        )
                    _check_type(pa, self._files[i], n, t, role)
        self.n_features = len(feature_names)
        self.n_labels = len(label_names)
        self.label_dtype = None
        if label_names:
            types = [first.field(n).type for n in label_names]
            ints = all(pa.types.is_integer(t) or pa.types.is_boolean(t) for t in types)
            self.label_dtype = np.dtype(np.int64) if ints else self.dtype
        self._m = sum(n for _, _, n in self._groups)
        if self._m == 0:
            raise ValueError("the files hold no rows")

    def __len__(self) -> int:
        return self._m

    @property
    def files(self) -> list[str]:
        """The files read, in order."""
        return list(self._files)

    @property
    def num_row_groups(self) -> int:
        """Row groups (record batches for IPC files) in all files."""
        return len(self._groups)

    def __repr__(self) -> str:
        return (
            f"Parquet({len(self._files)} files, {len(self._groups)} row groups, {self._m} rows, "
            f"features={self.n_features}, labels={self.labels}, shuffle_buffer={self.shuffle_buffer})"
        )

    # -- the epoch's order ---------------------------------------------------------------

    def _epoch_chunks(self, seed: int, epoch: int, shuffle: bool, shard: tuple[int, int]) -> tuple:
        G = len(self._groups)
        index, count = shard
        if count > G:
            raise ValueError(f"{G} row groups cannot be shared among {count} workers (each needs one)")
        order = np.random.default_rng([seed, epoch]).permutation(G) if shuffle else np.arange(G)
        sizes = np.array([n for _, _, n in self._groups], dtype=np.int64)
        total = min(int(sizes[order[r::count]].sum()) for r in range(count))
        mine = order[index::count].tolist()
        B = self.shuffle_buffer
        chunks = []
        for v, a in enumerate(range(0, len(mine), B)):
            ids = tuple(mine[a : a + B])
            rows = int(sizes[list(ids)].sum())
            perm_seed = (seed, epoch, index, v) if shuffle else None
            chunks.append(Chunk(rows, (ids, perm_seed)))
        return chunks, total

    @staticmethod
    def _perm(rows: int, perm_seed: Optional[tuple]) -> Optional[np.ndarray]:
        return None if perm_seed is None else np.random.default_rng(list(perm_seed)).permutation(rows)

    # -- reading -------------------------------------------------------------------------

    def _check_file(self, i: int, what: str) -> None:
        f = self._files[i]
        try:
            st = os.stat(f)
        except FileNotFoundError:
            raise DataError(f"{f} disappeared since the source was opened ({what})") from None
        if (st.st_size, st.st_mtime_ns) != self._stats[i]:
            raise DataError(
                f"{f} changed since the source was opened (size or modification time; {what}): "
                "open the source again"
            )

    def _check(self) -> None:
        for i in range(len(self._files)):
            self._check_file(i, "found when the epoch started")

    def _read_group(self, g: int) -> Any:
        pa = _pyarrow()
        i, j, n = self._groups[g]
        f = self._files[i]
        self._check_file(i, f"row group {j} was about to be read")
        cols = self.features + self.labels
        try:
            if self._kinds[i] == "parquet":
                table = pa.parquet.ParquetFile(f, memory_map=True).read_row_group(
                    j, columns=cols, use_threads=True
                )
            else:
                with pa.memory_map(f) as mm:
                    batch = pa.ipc.open_file(mm).get_batch(j)
                    table = pa.Table.from_batches([batch]).select(cols)
        except (pa.ArrowInvalid, OSError) as e:
            raise DataError(f"{f}, row group {j}: reading failed: {e}") from e
        if table.num_rows != n:
            raise DataError(
                f"{f}, row group {j}: holds {table.num_rows} rows, {n} when opened: the file changed"
            )
        return table

    def _column(self, table: Any, name: str, g: int) -> np.ndarray:
        pa = _pyarrow()
        col = table.column(name)
        if col.null_count:
            if self.fill_null is None:
                i, j, _ = self._groups[g]
                first = _first_null(col)
                raise DataError(
                    f"{self._files[i]}, row group {j}, column {name!r}: {col.null_count} null values "
                    f"(the first at row {first} of the row group); pass fill_null= to replace them"
                )
            col = pa.compute.fill_null(col, pa.scalar(self.fill_null).cast(col.type))
        # Contiguous and aligned, as the interleave reads it (a copy only where Arrow's
        # buffer is neither, or the column is in several chunks).
        return np.require(col.to_numpy(), requirements=["C", "A"])

    def _load(self, chunk: Chunk) -> tuple:
        ids, perm_seed = chunk.key
        X = np.empty((chunk.rows, self.n_features), self.dtype)
        Y = None
        if self.n_labels:
            Y = np.empty((chunk.rows, self.n_labels), self.label_dtype)
        perm = self._perm(chunk.rows, perm_seed)
        if perm is not None:  # where each row read goes: out[dest[i]] = row i
            dest = np.empty(chunk.rows, np.int64)
            dest[perm] = np.arange(chunk.rows)
        r = 0
        for g in ids:
            table = self._read_group(g)
            n = table.num_rows
            cols = [self._column(table, name, g) for name in self.features]
            _interleave(cols, X, r if perm is None else dest[r : r + n])
            del cols
            if Y is not None:
                cols = [self._column(table, name, g) for name in self.labels]
                _interleave(cols, Y, r if perm is None else dest[r : r + n])
                del cols
            del table
            r += n
        if Y is not None and self.n_labels == 1:
            Y = Y[:, 0]
        return X, Y

    def _where(self, chunk: Chunk, row: int) -> str:
        ids, perm_seed = chunk.key
        perm = self._perm(chunk.rows, perm_seed)
        r = int(perm[row]) if perm is not None else row
        for g in ids:
            i, j, n = self._groups[g]
            if r < n:
                return f"{self._files[i]}, row group {j}, row {r}"
            r -= n
        return f"row {row} of the window"


def _interleave(cols: list, X: np.ndarray, dest: Union[int, np.ndarray]) -> None:
    """Writes the columns' rows into ``X``: row ``i`` to ``X[dest + i]`` (an int) or to
    ``X[dest[i]]`` (an int64 array), cast to ``X.dtype`` as ``X[:, c] = cols[c]`` casts.
    float32/float64 blocks: in Rust, on the thread pool, the GIL released for large
    blocks (``_core.interleave_columns``); other dtypes (int64 class labels, a float16
    block): with NumPy, through a cache-sized block of rows scattered to its places."""
    if X.dtype in (np.float32, np.float64):
        _core.interleave_columns(cols, X, dest)
        return
    n = len(cols[0])
    step = max(64, (1 << 18) // max(1, X.shape[1] * X.dtype.itemsize))
    block = np.empty((step, X.shape[1]), X.dtype)
    for a in range(0, n, step):
        b = min(n, a + step)
        bx = block[: b - a] if isinstance(dest, np.ndarray) else X[dest + a : dest + b]
        for c, col in enumerate(cols):
            bx[:, c] = col[a:b]
        if isinstance(dest, np.ndarray):
            X[dest[a:b]] = bx


def _first_null(col: Any) -> int:
    offset = 0
    for chunk in col.chunks:
        if chunk.null_count:
            valid = np.asarray(chunk.is_valid())
            return offset + int(np.argmin(valid))
        offset += len(chunk)
    return -1


def _check_type(pa: Any, f: str, name: str, t: Any, role: str) -> None:
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t):
        return
    if pa.types.is_dictionary(t) or pa.types.is_string(t) or pa.types.is_large_string(t):
        raise DataError(
            f"{f}: {role} column {name!r} is {t} (text or categories); ferroptim trains on numbers: "
            "encode it as numbers when writing the file (integer codes for a label; one-hot "
            "columns, e.g. pandas.get_dummies, for a feature), or leave it out of features="
        )
    raise DataError(f"{f}: {role} column {name!r} is {t}; expected integers, floats or booleans")
