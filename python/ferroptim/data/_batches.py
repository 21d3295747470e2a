"""Mini-batches of a data source: the epoch's chunks read ahead on a thread, cut into
batches (``MiniBatches(source, ...)`` builds one of these)."""

from __future__ import annotations

import queue
import secrets
import threading
from typing import Any, Generator, Iterator, Optional, Tuple

import numpy as np

from ..batches import BatchSize, MiniBatches, _index, _seed
from ._base import Chunk, Source

#: A run: rows of ``nb`` whole batches (the epoch's last one possibly short), their
#: labels, ``nb``, and where its rows come from: ``[(first row in the run, chunk, its row
#: in the chunk), ...]``.
Run = Tuple[np.ndarray, Optional[np.ndarray], int, list]


def _prefetched(source: Source, todo: list, depth: int) -> Generator[tuple, None, None]:
    """``(X, Y, chunk, first row)`` of each ``(chunk, lo, hi)`` of ``todo``, loaded on a
    background thread at most ``depth`` chunks ahead of the one the consumer took last
    (resident: that one and ``depth`` more). An error loading a chunk is raised when the
    consumer reaches that chunk (after the ones before it)."""
    q: queue.Queue = queue.Queue()
    slots = threading.Semaphore(depth)
    stop = threading.Event()

    def work() -> None:
        for chunk, lo, hi in todo:
            while not slots.acquire(timeout=0.05):
                if stop.is_set():
                    return
            if stop.is_set():
                return
            X: Any = None
            Y: Any = None
            try:
                X, Y = source._load(chunk)
                item: Any = (X[lo:hi], None if Y is None else Y[lo:hi], chunk, lo)
            except BaseException as e:  # noqa: BLE001 - handed to the consumer
                item = e
            q.put(item)
            if isinstance(item, BaseException) or stop.is_set():
                return
            item = X = Y = None  # the consumer holds the chunk now, not this thread

    thread = threading.Thread(target=work, name="ferroptim-data-reader", daemon=True)
    thread.start()
    try:
        for _ in todo:
            item = q.get()
            if isinstance(item, BaseException):
                raise item
            slots.release()  # the next chunk may load while this one trains
            yield item
            del item
    finally:
        stop.set()
        # A stream left unfinished may be garbage-collected on the reader thread itself
        # (its allocations can run the collector): it stops there, with nothing to join.
        if thread is not threading.current_thread():
            thread.join()


class _Cursor:
    """Where a stream of runs stands: ``epoch``, ``position`` (batches taken), and the run
    being taken from."""

    def __init__(self, batches: SourceBatches, epoch: int, position: int) -> None:
        self.epoch, self.position = epoch, position
        self.batch = batches._batch_size_at(epoch)
        self.num_batches = batches._num_batches(epoch)
        self._runs = batches._runs(epoch, position)
        self._head: Optional[Run] = None
        self.broken = False

    def next_run(self, max_batches: int) -> Optional[Run]:
        """Up to ``max_batches`` of the next batches as one run (None at the epoch's end)."""
        if self.position >= self.num_batches:
            return None
        if self._head is None:
            try:
                self._head = next(self._runs)
            except BaseException:
                self.broken = True  # the stream ended with the error: reopen to continue
                raise
        X, Y, nb, segs = self._head
        k = min(nb, max_batches)
        if k == nb:
            return self._head
        r = k * self.batch
        return X[:r], None if Y is None else Y[:r], k, [s for s in segs if s[0] < r]

    def advance(self, k: int) -> None:
        """Marks ``k`` batches of the run :meth:`next_run` gave as taken."""
        assert self._head is not None
        X, Y, nb, segs = self._head
        self.position += k
        if k >= nb:
            self._head = None
            return
        r = k * self.batch
        rest = []
        for i, (s, chunk, row) in enumerate(segs):
            end = segs[i + 1][0] if i + 1 < len(segs) else len(X)
            if end > r:
                rest.append((max(s, r) - r, chunk, row + max(0, r - s)))
        self._head = (X[r:], None if Y is None else Y[r:], nb - k, rest)

    def close(self) -> None:
        self._runs.close()


class _Pass:
    """One epoch's iterator of batches (what ``iter(batches)`` returns)."""

    def __init__(self, cursor: _Cursor) -> None:
        self._cursor = cursor

    @property
    def epoch(self) -> int:
        return self._cursor.epoch

    @property
    def position(self) -> int:
        return self._cursor.position

    @property
    def num_batches(self) -> int:
        return self._cursor.num_batches

    def __iter__(self) -> _Pass:
        return self

    def __next__(self) -> Tuple[np.ndarray, ...]:
        run = self._cursor.next_run(1)
        if run is None:
            self._cursor.close()
            raise StopIteration
        X, Y, _, _ = run
        self._cursor.advance(1)
        return (X,) if Y is None else (X, Y)

    def __length_hint__(self) -> int:
        return self.num_batches - self.position


class SourceBatches(MiniBatches):
    """Shuffled mini-batches of a :class:`ferroptim.data.Source`: what
    ``MiniBatches(source, batch_size=..., seed=...)`` returns.

    Each pass is one epoch: the source's chunks (row groups, blocks) in the order and
    mixing its shuffle draws from ``(seed, epoch)``, read ``prefetch`` chunks ahead on a
    background thread, cut into consecutive batches of ``batch_size`` rows (a batch may
    span two chunks). Batches are ``(Xb, Yb)`` for a source with labels, else ``(Xb,)``.
    Same seed, same batches, whatever the thread counts; ``state_dict`` /
    ``load_state_dict`` resume mid-epoch exactly (the chunks before the position are
    skipped without being read).

    Args:
        source: a :class:`ferroptim.data.Source`.
        batch_size, seed, drop_last: as in :class:`ferroptim.MiniBatches`.
        shuffle: ``False`` reads the rows in storage order.
        shard: ``(index, count)``: worker ``index``'s share of every epoch, as the source
            splits it (see :class:`~ferroptim.data.Sliced` and
            :class:`~ferroptim.data.Parquet`); every worker must pass the same ``seed``.
        prefetch: chunks read ahead (>= 1) of the one being cut into batches. Resident
            memory is about ``prefetch + 1`` chunks.
    """

    def __init__(
        self,
        source: Source,
        *,
        batch_size: BatchSize = 64,
        shuffle: bool = True,
        seed: Optional[int] = None,
        drop_last: bool = False,
        axis: int = 0,
        shard: Optional[Tuple[int, int]] = None,
        block_size: Optional[int] = None,
        buffer_blocks: int = 16,
        reuse_buffers: bool = False,
        prefetch: int = 1,
    ) -> None:
        if not isinstance(source, Source):
            raise TypeError(f"source must be a ferroptim.data source, got {type(source).__name__}")
        if axis != 0:
            raise ValueError(
                f"axis: a data source's batches are (rows, features); got axis={axis!r}, expected 0"
            )
        if block_size is not None or buffer_blocks != 16:
            raise ValueError(
                "block_size/buffer_blocks: a data source shuffles as it was built "
                "(Sliced(..., block_size=, buffer_blocks=), Parquet(..., shuffle_buffer=))"
            )
        if reuse_buffers:
            raise ValueError(
                "reuse_buffers: not available for a data source (its batches are views of fresh chunks)"
            )
        self._source = source
        self._shuffle = bool(shuffle)
        self._seed = secrets.randbits(64) if seed is None else _seed(seed)
        self._drop_last = bool(drop_last)
        self._prefetch = _index("prefetch", prefetch, 1)
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
            if seed is None and self._shuffle and count > 1:
                raise ValueError(
                    "shard needs an explicit seed shared by all workers, else their "
                    "permutations differ and the shards overlap"
                )
            self._shard = (index, count)
        if not (batch_size is None or callable(batch_size)):
            _index("batch_size", batch_size, 1, None)
        self._batch_size = batch_size
        self._plans: dict = {}
        self._lock = threading.RLock()
        self._epoch, self._start = 0, 0
        self._current: Optional[_Pass] = None
        self._fit_cursor: Optional[_Cursor] = None
        if not callable(batch_size):
            self._batch_size_at(0)  # drop_last with too large a batch fails here

    # -- the plan of an epoch -----------------------------------------------------------

    def _plan(self, epoch: int) -> tuple:
        plan = self._plans.get(epoch)
        if plan is None:
            plan = self._source._epoch_chunks(self._seed, epoch, self._shuffle, self._shard)
            self._plans = {epoch: plan}  # the latest one only: plans may be large
        return plan

    def _rows(self, epoch: int) -> int:
        return self._plan(epoch)[1]

    def _batch_size_at(self, epoch: int) -> int:
        if callable(self._batch_size):
            b = self._batch_size(epoch)
            name = f"batch_size({epoch})"
        else:
            b, name = self._batch_size, "batch_size"
        n = self._rows(epoch)
        if n == 0:
            raise ValueError(f"epoch {epoch} of this shard holds no rows")
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
        b, n = self._batch_size_at(epoch), self._rows(epoch)
        return n // b if self._drop_last else -(-n // b)

    def _runs(self, epoch: int, position: int) -> Generator[Run, None, None]:
        """The runs of batches of ``epoch`` from batch ``position`` on, read ahead."""
        b = self._batch_size_at(epoch)
        chunks, total = self._plan(epoch)
        end = min(total, self._num_batches(epoch) * b)
        start = position * b
        todo, acc = [], 0
        for c in chunks:
            lo, hi = acc, min(acc + c.rows, end)
            acc += c.rows
            if hi > start and hi > lo:
                todo.append((c, max(start - lo, 0), hi - lo))
            if acc >= end:
                break
        stream = _prefetched(self._source, todo, self._prefetch)
        try:
            yield from self._cut(stream, b)
        finally:
            stream.close()  # stops and joins the reader thread now, not at garbage collection

    @staticmethod
    def _cut(stream: Iterator[tuple], b: int) -> Iterator[Run]:
        """The runs of batches of ``b`` rows of the chunks of ``stream``."""
        pending: Optional[list] = None  # pieces of a batch that spans chunks
        for X, Y, chunk, lo in stream:
            i = 0
            if pending is not None:
                have = sum(len(p[0]) for p in pending)
                i = min(b - have, len(X))
                pending.append((X[:i], None if Y is None else Y[:i], chunk, lo))
                if have + i < b:
                    continue
                yield _joined(pending, 1)
                pending = None
            nb = (len(X) - i) // b
            if nb:
                segs = [(0, chunk, lo + i)]
                yield X[i : i + nb * b], None if Y is None else Y[i : i + nb * b], nb, segs
                i += nb * b
            if i < len(X):
                # A copy, so that the chunk's memory is freed when its batches are done.
                pending = [(X[i:].copy(), None if Y is None else Y[i:].copy(), chunk, lo + i)]
        if pending is not None:
            yield _joined(pending, 1)

    # -- iteration and state -----------------------------------------------------------

    def _in_progress(self) -> Optional[_Pass]:
        it = self._current
        return it if it is not None and it.position < it.num_batches else None

    def _start_epoch(self) -> _Pass:
        if self._current is not None:
            self._current._cursor.close()
        self._source._check()
        epoch, start = self._epoch, self._start
        it = _Pass(_Cursor(self, epoch, start))
        self._current, self._epoch, self._start = it, epoch + 1, 0
        return it

    def _cursor_at(self, epoch: int, position: int) -> _Cursor:
        """The stream fit trains from: kept between calls while it continues where the last
        call stopped, else opened at ``(epoch, position)``."""
        c = self._fit_cursor
        if c is None or c.broken or (c.epoch, c.position) != (epoch, position):
            if c is not None:
                c.close()
            if position == 0:
                self._source._check()
            c = self._fit_cursor = _Cursor(self, epoch, position)
        return c

    def __len__(self) -> int:
        """Batches per epoch: of the epoch in progress, else of the next one."""
        it = self._in_progress()
        return it.num_batches if it is not None else self._num_batches(self._epoch)

    @property
    def source(self) -> Source:
        """The data source."""
        return self._source

    @property
    def num_samples(self) -> int:
        """Rows in the source, before sharding."""
        return len(self._source)

    def indices(self, epoch: Optional[int] = None) -> np.ndarray:
        """Not available for a source: its order is one of chunks, see the source's docs."""
        raise TypeError("indices: a data source has no sample indices; its order is documented on the source")

    def state_dict(self) -> dict:
        """``{"seed", "epoch", "position", "num_samples"}``, as :meth:`MiniBatches.state_dict`."""
        with self._lock:
            it = self._in_progress()
            epoch, position = (it.epoch, it.position) if it is not None else (self._epoch, self._start)
        return {"seed": self._seed, "epoch": epoch, "position": position, "num_samples": self.num_samples}

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
                f"state_dict is for {state['num_samples']} samples, this source has {self.num_samples}"
            )
        if seed != self._seed:
            self._plans = {}
        old = self._seed
        self._seed = seed
        try:
            n = self._num_batches(epoch)
        finally:
            self._seed = old
            self._plans = {}
        if position > n:
            raise ValueError(f"position {position} is past the end of epoch {epoch} ({n} batches)")
        if position == n:
            epoch, position = epoch + 1, 0
        with self._lock:
            if self._current is not None:
                self._current._cursor.close()  # stops its reader thread
            self._seed, self._epoch, self._start = seed, epoch, position
            self._current = None

    def __getstate__(self) -> dict:
        raise TypeError("MiniBatches over a data source cannot be pickled; save its state_dict() instead")

    def __repr__(self) -> str:
        b = self._batch_size
        return (
            f"MiniBatches({self._source!r}, batch_size="
            f"{getattr(b, '__name__', b) if callable(b) else b}, shuffle={self._shuffle}, "
            f"seed={self._seed}, epoch={self.epoch})"
        )


def _joined(pieces: list, nb: int) -> Run:
    X = np.concatenate([p[0] for p in pieces])
    Y = None if pieces[0][1] is None else np.concatenate([p[1] for p in pieces])
    segs, s = [], 0
    for p in pieces:
        if len(p[0]):
            segs.append((s, p[2], p[3]))
        s += len(p[0])
    return X, Y, nb, segs


def where(source: Source, segs: list, row: int) -> str:
    """Where row ``row`` of a run comes from."""
    for s, chunk, first in reversed(segs):
        if row >= s:
            return source._where(chunk, first + row - s)
    return f"row {row}"


__all__ = ["SourceBatches", "Chunk"]
