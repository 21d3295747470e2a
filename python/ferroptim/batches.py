"""Shuffled mini-batch epochs over NumPy arrays, shuffled and gathered in Rust.

The lecture's recipe — shuffle the m examples, then cut them into mini-batches — as an
iterable: each pass over a :class:`MiniBatches` is one epoch with a fresh permutation.
"""

from __future__ import annotations

import mmap
import operator
import secrets
import threading
from typing import Any, Callable, Iterator, Optional, Tuple, Union

import numpy as np

from . import _core

__all__ = ["MiniBatches"]

BatchSize = Union[int, None, Callable[[int], Optional[int]]]


_U64_MAX = 2**64 - 1


def _index(name: str, value: Any, minimum: Optional[int] = 0, maximum: Optional[int] = _U64_MAX) -> int:
    """``value`` as an int in [minimum, maximum] (the core takes 64-bit counts)."""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be an integer, got bool")
    try:
        i = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}") from None
    if minimum is not None and i < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {i}")
    if maximum is not None and i > maximum:
        raise ValueError(f"{name} must be at most {maximum}, got {i}")
    return i


def _seed(value: Any) -> int:
    seed = _index("seed", value, maximum=None)
    if seed >= 1 << 64:
        raise ValueError(f"seed must be below 2**64, got {seed}")
    return seed


def _find_map(a: np.ndarray) -> tuple[mmap.mmap, Optional[int]] | None:
    """The memory map under `a`, if any, with the file offset its mapping starts at."""
    obj: Any = a
    while obj is not None:
        if isinstance(obj, np.memmap) and getattr(obj, "_mmap", None) is not None:
            offset = obj.offset - obj.offset % mmap.ALLOCATIONGRANULARITY
            return obj._mmap, offset  # type: ignore[attr-defined]  # NumPy's private handle, not in its stubs
        if isinstance(obj, mmap.mmap):
            return obj, None
        obj = getattr(obj, "base", None)
    return None


def _map_filename(a: np.ndarray) -> Optional[str]:
    """The name of the file under `a`'s ``np.memmap``, opened again to check its size."""
    obj: Any = a
    while obj is not None:
        if isinstance(obj, np.memmap):
            return obj.filename
        obj = getattr(obj, "base", None)
    return None


def _check_map(i: int, mm: mmap.mmap, map_start: Optional[int]) -> None:
    # A closed map or a page past the end of a shrunk file would crash the reader (SIGBUS).
    if mm.closed:
        raise ValueError(
            f"arrays[{i}] is a memory map that was closed; open the file again (np.load(path, mmap_mode='r'))"
        )
    if map_start is not None and mm.size() < map_start + len(mm):
        raise ValueError(
            f"arrays[{i}] is a memory map of a file that shrank to {mm.size()} bytes since it "
            f"was mapped (it needs {map_start + len(mm)}); reading it would crash"
        )


def _memmap_recipe(a: np.ndarray) -> tuple | None:
    """How to map ``a`` again, if it is a whole ``np.memmap`` of a named file."""
    if not (isinstance(a, np.memmap) and isinstance(a.base, mmap.mmap) and a.filename):
        return None
    order = "F" if a.flags.f_contiguous and not a.flags.c_contiguous else "C"
    mode = "r+" if a.mode == "w+" else a.mode  # never truncate the file on loading
    return ("memmap", a.filename, a.dtype, mode, a.offset, a.shape, order)


def _reopen_memmap(filename, dtype, mode, offset, shape, order) -> np.memmap:
    return np.memmap(filename, dtype=dtype, mode=mode, offset=offset, shape=shape, order=order)


class MiniBatches:
    """Shuffled mini-batches of one or more arrays: iterate once per epoch.

    Each pass (``for Xb, Yb in batches``) is one epoch: the samples are put in a fresh
    permutation — the same for every array, so rows stay aligned — and cut into batches of
    ``batch_size`` samples, the last one smaller unless ``drop_last``. Batches are gathered
    in Rust with all threads (``ferroptim.set_num_threads``), into new contiguous arrays
    that you may keep; the next batch is gathered in the background, with the GIL released,
    while you work on the current one.

    Args:
        *arrays: NumPy arrays (a pandas DataFrame or pyarrow Table is converted once,
            column by column, by :func:`ferroptim.data.as_array`; anything else goes
            through ``np.asarray``, which loads an h5py Dataset whole: wrap that in
            :class:`ferroptim.data.Sliced` instead) with the same
            number of samples along ``axis``: any dtype without Python objects, any
            trailing shape, any memory layout (strided views are read in place, never
            copied whole), including ``np.memmap`` / ``np.load(path, mmap_mode="r")``
            arrays larger than RAM. A single :mod:`ferroptim.data` source (Parquet,
            sliced h5py/zarr arrays) instead gives a
            :class:`ferroptim.data.SourceBatches` streaming it.
        batch_size: samples per batch: an int >= 1 (1 is stochastic gradient descent),
            ``None`` for the whole set in one batch (batch gradient descent), or a function
            ``epoch -> int or None`` (epochs count from 0) for a batch-size schedule.
        shuffle: permute the samples each epoch; ``False`` keeps storage order.
        seed: an int in [0, 2**64). The order of epoch ``e`` depends only on
            ``(seed, e, number of samples, block_size, buffer_blocks)``, by the algorithm
            documented in ``src/data/permutation.rs``. ``None`` draws a seed from the OS once;
            ``batches.seed`` and ``state_dict()`` record it.
        drop_last: drop the last batch when it has fewer than ``batch_size`` samples.
        axis: the sample axis of every array (negative counts from the end, per array):
            ``axis=1`` (or ``-1``) serves the lecture's column layout, X of shape (n_x, m).
            Batches keep the arrays' other dimensions: X (n_x, m) gives batches (n_x, b).
        shard: ``(index, count)`` for data-parallel training: worker ``index`` of ``count``
            gets positions ``index, index + count, index + 2 count, ...`` of every epoch's
            permutation, ``p = m // count`` of them (as torch's ``DistributedSampler``):
            equal, disjoint shards. The last ``m % count`` positions of each epoch are left
            out (like ``DistributedSampler(drop_last=True)``); with ``shuffle`` those are
            different samples each epoch. Interleaving makes worker ``index``'s k-th batch
            of size ``b`` exactly its part of the k-th batch of size ``b * count`` of the
            unsharded epoch, so ``count`` workers with batches of ``b`` train on the same
            global batches as one process with ``b * count``. Every worker must use the
            same ``seed``, so one is required.
        block_size: ``None`` for a uniform shuffle. An int switches to the locality-friendly
            block shuffle for data on disk: the samples are cut into blocks of
            ``block_size`` consecutive samples, the blocks are shuffled, and each window of
            ``buffer_blocks`` consecutive blocks (in that order) is shuffled sample by
            sample. A batch then reads from at most about ``buffer_blocks`` contiguous
            stretches of the file instead of ``batch_size`` random places. The price: two
            samples meet in a batch only if their blocks land in the same or adjacent
            windows, so neighbouring samples (e.g. a file sorted by label) stay correlated
            within an epoch. Make ``block_size * buffer_blocks`` much larger than
            ``batch_size``.
        buffer_blocks: blocks shuffled together by the block shuffle (>= 1).
        reuse_buffers: gather into a few buffers allocated once per epoch instead of new
            arrays per batch (no allocation, cache-warm memory). **Rule:** a batch's arrays
            are valid until the next batch is requested — in a ``for`` loop, until the end
            of the loop body — and are overwritten after that. Copy (``np.copy``) anything
            you keep longer, and do not use ``list(batches)``.

    Do not write into the source arrays during an epoch: a batch may be gathered before the
    previous one is returned.

    Example:
        >>> import numpy as np, ferroptim as fo
        >>> X, Y = np.arange(20.0).reshape(10, 2), np.arange(10)
        >>> batches = fo.MiniBatches(X, Y, batch_size=4, seed=0)
        >>> len(batches)
        3
        >>> [len(Yb) for Xb, Yb in batches]
        [4, 4, 2]
        >>> all(np.array_equal(Xb[:, 0], 2 * Yb) for Xb, Yb in batches)
        True
    """

    def __new__(cls, *arrays: Any, **options: Any) -> MiniBatches:
        """``MiniBatches(source, ...)`` over a :mod:`ferroptim.data` source builds a
        :class:`ferroptim.data.SourceBatches` (same interface)."""
        from .data import _base

        if arrays and isinstance(arrays[0], _base.Source):
            if len(arrays) != 1:
                raise TypeError("a data source holds its labels: pass it alone, MiniBatches(source, ...)")
            from .data._batches import SourceBatches

            return object.__new__(SourceBatches)
        return object.__new__(cls)

    def __init__(
        self,
        *arrays: Any,
        batch_size: BatchSize = 64,
        shuffle: bool = True,
        seed: Optional[int] = None,
        drop_last: bool = False,
        axis: int = 0,
        shard: Optional[Tuple[int, int]] = None,
        block_size: Optional[int] = None,
        buffer_blocks: int = 16,
        reuse_buffers: bool = False,
    ) -> None:
        from .data._frames import as_array

        arrays = tuple(a if isinstance(a, np.ndarray) else as_array(a) for a in arrays)
        self._maps = []
        for i, a in enumerate(arrays):
            found = _find_map(a)
            if found is not None:
                _check_map(i, *found)
                self._maps.append((i, *found))
        # Exports of each map: while they live, the map cannot be closed under a gather.
        pins = [memoryview(mm) for _, mm, _ in self._maps]
        # Checked before each gather: a file truncated under its map would end the process.
        sizes = [
            (i, mm, start + len(mm), _map_filename(arrays[i]))
            for i, mm, start in self._maps
            if start is not None
        ]
        axis = _index("axis", axis, None, None)
        if not -(2**62) <= axis < 2**62:
            raise ValueError(f"axis {axis} is out of range for arrays of {arrays[0].ndim} dimensions")
        self._core = _core.Batcher(list(arrays), axis, pins, sizes)
        # One pass starts at a time: two threads iterating must not both take one epoch.
        self._lock = threading.RLock()
        self._shuffle = bool(shuffle)
        self._seed = secrets.randbits(64) if seed is None else _seed(seed)
        self._drop_last = bool(drop_last)
        self._reuse = bool(reuse_buffers)

        m = self._core.num_samples
        if shard is None:
            self._shard = (0, 1)
        else:
            try:
                index, count = shard
            except (TypeError, ValueError):
                raise TypeError(f"shard must be a pair (index, count), got {shard!r}") from None
            index, count = _index("shard index", index), _index("shard count", count, 1)
            if index >= count:
                raise ValueError(f"shard index must be below the count, got ({index}, {count})")
            if count > m:
                raise ValueError(f"{m} samples cannot be split into {count} non-empty shards")
            if seed is None and self._shuffle and count > 1:
                raise ValueError(
                    "shard needs an explicit seed shared by all workers, else their "
                    "permutations differ and the shards overlap"
                )
            self._shard = (index, count)
        self._shard_size = m // self._shard[1]

        if block_size is not None:
            block_size = _index("block_size", block_size, 1)
            if not self._shuffle:
                raise ValueError("block_size selects a shuffle; it needs shuffle=True")
        self._block_size = block_size
        self._buffer_blocks = _index("buffer_blocks", buffer_blocks, 1)

        if not (batch_size is None or callable(batch_size)):
            _index("batch_size", batch_size, 1, None)
        self._batch_size = batch_size
        if not callable(batch_size):
            self._batch_size_at(0)  # drop_last with too large a batch fails here

        self._epoch = 0  # the epoch the next pass starts
        self._start = 0  # the batch it starts at (after load_state_dict)
        self._current: Any = None  # the latest pass's iterator
        # What pickle and copy.deepcopy rebuild the object from (the arrays are the ones
        # the Batcher holds anyway).
        self._arrays = arrays
        self._options = dict(
            batch_size=batch_size,
            shuffle=self._shuffle,
            seed=self._seed,
            drop_last=self._drop_last,
            axis=axis,
            shard=None if shard is None else self._shard,
            block_size=block_size,
            buffer_blocks=self._buffer_blocks,
            reuse_buffers=self._reuse,
        )

    def __getstate__(self) -> dict:
        """Pickled as its arrays, options and :meth:`state_dict`. An ``np.memmap`` (or
        ``np.load(..., mmap_mode=...)``) array is pickled as its file name, offset, dtype
        and shape and mapped again on loading, so its data is not copied into the pickle."""
        return {
            "arrays": [_memmap_recipe(a) or a for a in self._arrays],
            "options": self._options,
            "state": self.state_dict(),
        }

    def __setstate__(self, st: dict) -> None:
        arrays = [_reopen_memmap(*a[1:]) if isinstance(a, tuple) else a for a in st["arrays"]]
        type(self).__init__(self, *arrays, **st["options"])
        self.load_state_dict(st["state"])

    def _batch_size_at(self, epoch: int) -> int:
        if callable(self._batch_size):
            b = self._batch_size(epoch)
            name = f"batch_size({epoch})"
        else:
            b, name = self._batch_size, "batch_size"
        n = self._shard_size
        if b is None:
            return n
        b = _index(name, b, 1, None)
        if self._drop_last and b > n:
            raise ValueError(
                f"{name} is {b} but there are only {n} samples per epoch: with drop_last=True "
                "the epoch would have no batch"
            )
        return min(b, n)

    def _num_batches(self, epoch: int) -> int:
        b, n = self._batch_size_at(epoch), self._shard_size
        return n // b if self._drop_last else -(-n // b)

    def _order_args(self, epoch: int) -> dict:
        """Epoch ``epoch``'s order as the core's bindings take it (one dict)."""
        return dict(
            seed=self._seed,
            epoch=epoch,
            shuffle=self._shuffle,
            block_size=self._block_size,
            buffer_blocks=self._buffer_blocks,
            shard=self._shard,
        )

    def _in_progress(self) -> Any:
        it = self._current
        return it if it is not None and it.position < it.num_batches else None

    def __iter__(self) -> Iterator[Tuple[np.ndarray, ...]]:
        """Starts the next epoch (or resumes the one loaded by ``load_state_dict``).

        Thread-safe: passes started by several threads get consecutive epochs."""
        with self._lock:
            return self._start_epoch()

    def _start_epoch(self) -> Any:
        if self._epoch > _U64_MAX:
            raise ValueError(f"epoch {self._epoch} is past the last one, 2**64 - 1")
        for i, mm, map_start in self._maps:
            _check_map(i, mm, map_start)
        epoch, start = self._epoch, self._start
        batch_size = self._batch_size_at(epoch)
        self._current = None  # lets the previous pass hand its permutation's memory over
        it = self._core.epoch(
            self._order_args(epoch),
            batch_size=batch_size,
            drop_last=self._drop_last,
            start=start,
            reuse=self._reuse,
        )
        self._current, self._epoch, self._start = it, epoch + 1, 0
        return it

    def __len__(self) -> int:
        """Batches per epoch: of the epoch in progress, else of the next one."""
        it = self._in_progress()
        return it.num_batches if it is not None else self._num_batches(self._epoch)

    @property
    def seed(self) -> int:
        return self._seed

    @property
    def epoch(self) -> int:
        """The epoch in progress, else the next one (counting from 0)."""
        return self.state_dict()["epoch"]

    @property
    def num_samples(self) -> int:
        """Samples in the arrays (m), before sharding."""
        return self._core.num_samples

    def indices(self, epoch: Optional[int] = None) -> np.ndarray:
        """This shard's sample indices in epoch ``epoch`` (default: :attr:`epoch`), in the
        order batches take them: batch k holds ``indices[k*b:(k+1)*b]``."""
        e = self.epoch if epoch is None else _index("epoch", epoch)
        return self._core.indices(self._order_args(e))

    def state_dict(self) -> dict:
        """Where iteration stands: ``{"seed", "epoch", "position", "num_samples"}``.

        ``position`` is the number of batches of ``epoch`` already returned. Loading it into
        a MiniBatches over the same data makes the next pass continue with exactly the
        batches an uninterrupted run would have seen.
        """
        with self._lock:
            it = self._in_progress()
            epoch, position = (it.epoch, it.position) if it is not None else (self._epoch, self._start)
        return {
            "seed": self._seed,
            "epoch": epoch,
            "position": position,
            "num_samples": self.num_samples,
        }

    def load_state_dict(self, state: dict) -> None:
        """Restores a :meth:`state_dict`: the next pass resumes that epoch at that batch."""
        missing = {"seed", "epoch", "position"} - set(state)
        if missing:
            raise ValueError(f"state_dict is missing {sorted(missing)}")
        seed = _seed(state["seed"])
        epoch = _index("epoch", state["epoch"])
        position = _index("position", state["position"])
        if "num_samples" in state and _index("num_samples", state["num_samples"]) != self.num_samples:
            raise ValueError(
                f"state_dict is for {state['num_samples']} samples, these arrays have {self.num_samples}"
            )
        n = self._num_batches(epoch)
        if position > n:
            raise ValueError(f"position {position} is past the end of epoch {epoch} ({n} batches)")
        if position == n:
            epoch, position = epoch + 1, 0
        with self._lock:
            self._seed, self._epoch, self._start, self._current = seed, epoch, position, None

    def __repr__(self) -> str:
        b = self._batch_size
        return (
            f"MiniBatches({self.num_samples} samples, batch_size="
            f"{getattr(b, '__name__', b) if callable(b) else b}, shuffle={self._shuffle}, "
            f"seed={self._seed}, epoch={self.epoch})"
        )
