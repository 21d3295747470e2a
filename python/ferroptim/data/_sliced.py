"""Any sliceable array (h5py, zarr, np.memmap) read in contiguous blocks."""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from .. import _core
from ..batches import _index
from ._base import Chunk, DataError, Source


def _check_sliceable(name: str, a: Any) -> tuple:
    try:
        shape, dtype = tuple(a.shape), np.dtype(a.dtype)
    except (AttributeError, TypeError):
        raise TypeError(
            f"{name} must have .shape, .dtype and slicing (an h5py Dataset, zarr array, "
            f"np.memmap, NumPy array), got {type(a).__name__}"
        ) from None
    if not hasattr(a, "__getitem__"):
        raise TypeError(f"{name} ({type(a).__name__}) cannot be sliced")
    if len(shape) == 0:
        raise ValueError(f"{name} is 0-dimensional; it has no row axis")
    if dtype.kind not in "biuf":
        raise TypeError(f"{name} has dtype {dtype}; expected numbers (bool, integer or float)")
    return shape, dtype


class Sliced(Source):
    """Rows of arrays that are read by slicing: an h5py ``Dataset``, a zarr array, an
    ``np.memmap`` — anything with ``shape``, ``dtype`` and ``a[i:j]`` — read in contiguous
    blocks, never whole.

    The order of an epoch is exactly that of ``MiniBatches(X, Y, block_size=block_size,
    buffer_blocks=buffer_blocks, seed=...)`` over the same data in RAM (the block shuffle
    of ``src/data/permutation.rs``: blocks of ``block_size`` consecutive rows shuffled,
    then the rows of each window of ``buffer_blocks`` blocks shuffled together), and so
    is ``shard``. Each chunk read is about ``block_size * buffer_blocks`` rows: the blocks
    they come from (at most about twice ``buffer_blocks``), one slice each, then gathered
    in the epoch's order.

    Args:
        X: the features, rows along axis 0 (any trailing shape; numbers).
        Y: the labels, as many rows, or None.
        block_size: rows per contiguous read (>= 1); ``None`` picks about 1 MiB of X
            per block.
        buffer_blocks: blocks mixed together by the shuffle (>= 1).
        dtype: convert X to this dtype as it is read (``None``: keep X's dtype); e.g.
            ``np.float32`` for a float32 model over a float64 file.

    Example:
        >>> import numpy as np, ferroptim as fo
        >>> X, Y = np.arange(20.0).reshape(10, 2), np.arange(10)   # or h5["X"], h5["Y"]
        >>> src = fo.data.Sliced(X, Y, block_size=2, buffer_blocks=2)
        >>> [len(Yb) for Xb, Yb in fo.MiniBatches(src, batch_size=4, seed=0)]
        [4, 4, 2]
        >>> all(np.array_equal(Xb[:, 0], 2 * Yb) for Xb, Yb in fo.MiniBatches(src, seed=0))
        True
    """

    def __init__(
        self,
        X: Any,
        Y: Any = None,
        *,
        block_size: Optional[int] = None,
        buffer_blocks: int = 64,
        dtype: Any = None,
    ) -> None:
        xshape, xdtype = _check_sliceable("X", X)
        self.dtype = xdtype if dtype is None else np.dtype(dtype)
        if self.dtype.kind not in "fiub":
            raise TypeError(f"dtype must be a numeric dtype, got {self.dtype}")
        self.n_features = int(np.prod(xshape[1:], dtype=np.int64))
        self._m = xshape[0]
        if self._m == 0:
            raise ValueError("X holds no rows")
        self.n_labels, self.label_dtype, self._yshape = 0, None, ()
        if Y is not None:
            yshape, ydtype = _check_sliceable("Y", Y)
            if yshape[0] != self._m:
                raise ValueError(f"Y has {yshape[0]} rows, X has {self._m}")
            self.n_labels = int(np.prod(yshape[1:], dtype=np.int64))
            self.label_dtype = np.dtype(np.int64) if ydtype.kind in "iub" else ydtype
            self._yshape = yshape[1:]
        self._X, self._Y, self._xshape = X, Y, xshape[1:]
        row_bytes = max(1, self.n_features * self.dtype.itemsize)
        self.block_size = (
            max(1, (1 << 20) // row_bytes) if block_size is None else _index("block_size", block_size, 1)
        )
        self.buffer_blocks = _index("buffer_blocks", buffer_blocks, 1)
        # The permutation core over m rows (a zero-stride placeholder: only its order is used).
        self._order = _core.Batcher([np.broadcast_to(np.zeros(1, np.uint8), (self._m,))], 0, [], [])

    def __len__(self) -> int:
        return self._m

    @property
    def row_shape(self) -> tuple:
        """The shape of one row of X (a batch is ``(rows, *row_shape)``)."""
        return tuple(self._xshape)

    def __repr__(self) -> str:
        return (
            f"Sliced({self._m} rows x {self.n_features} features, labels={self.n_labels}, "
            f"block_size={self.block_size}, buffer_blocks={self.buffer_blocks})"
        )

    def _epoch_chunks(self, seed: int, epoch: int, shuffle: bool, shard: tuple[int, int]) -> tuple:
        c, w, k = self.block_size, self.buffer_blocks, shard[1]
        if k > self._m:
            raise ValueError(f"{self._m} rows cannot be split into {k} non-empty shards")
        step = max(1, c * w // k)
        if not shuffle and k == 1:
            chunks = [
                Chunk(min(step, self._m - a), (a, min(a + step, self._m))) for a in range(0, self._m, step)
            ]
            return chunks, self._m
        idx = self._order.indices(
            dict(
                seed=seed,
                epoch=epoch,
                shuffle=shuffle,
                block_size=c if shuffle else None,
                buffer_blocks=w,
                shard=shard,
            )
        )
        return [Chunk(len(idx[a : a + step]), idx[a : a + step]) for a in range(0, len(idx), step)], len(idx)

    def _read(self, a: Any, lo: int, hi: int, out: np.ndarray, name: str) -> None:
        try:
            out[...] = np.asarray(a[lo:hi]).reshape(out.shape)
        except (OSError, ValueError, KeyError, RuntimeError) as e:
            raise DataError(f"reading rows [{lo}, {hi}) of {name} failed: {e}") from e

    def _load(self, chunk: Chunk) -> tuple:
        key = chunk.key
        ydtype = self.label_dtype
        if isinstance(key, tuple):
            lo, hi = key
            X = np.empty((hi - lo, *self._xshape), self.dtype)
            self._read(self._X, lo, hi, X, "X")
            Y = None
            if self._Y is not None:
                Y = np.empty((hi - lo, *self._yshape), ydtype)
                self._read(self._Y, lo, hi, Y, "Y")
            return X, Y
        idx = np.asarray(key, dtype=np.int64)
        c = self.block_size
        blocks = np.unique(idx // c)
        slot = np.searchsorted(blocks, idx // c) * c + idx % c
        bx = np.empty((len(blocks) * c, *self._xshape), self.dtype)
        by = None if self._Y is None else np.empty((len(blocks) * c, *self._yshape), ydtype)
        for s, j in enumerate(blocks.tolist()):
            lo, hi = j * c, min(self._m, (j + 1) * c)
            self._read(self._X, lo, hi, bx[s * c : s * c + hi - lo], "X")
            if by is not None:
                self._read(self._Y, lo, hi, by[s * c : s * c + hi - lo], "Y")
        return bx[slot], None if by is None else by[slot]

    def _where(self, chunk: Chunk, row: int) -> str:
        key = chunk.key
        r = key[0] + row if isinstance(key, tuple) else int(key[row])
        return f"row {r} of the arrays"
