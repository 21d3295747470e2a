"""The contract every data source meets (no imports of the rest of the package)."""

from __future__ import annotations

from typing import Any, NamedTuple, Optional, Sequence

import numpy as np


class DataError(ValueError):
    """Bad data found in a source: the message names the file, column and row group (or
    the rows) that hold it."""


class Chunk(NamedTuple):
    """One unit the reader loads at a time: ``rows`` known without reading, ``key`` what
    the source's ``_load`` needs."""

    rows: int
    key: Any


class Source:
    """Base class of the data sources in :mod:`ferroptim.data`.

    A source is ``len(source)`` rows of ``n_features`` features (dtype :attr:`dtype`)
    and, optionally, labels. It is read in chunks (row groups, blocks) whose order each
    epoch is drawn from ``(seed, epoch)``; :class:`ferroptim.MiniBatches` and
    :meth:`ferroptim.nn.MLP.fit` cut its rows into batches.
    """

    #: dtype of the feature matrix a batch holds
    dtype: np.dtype
    #: features per row
    n_features: int
    #: label columns per row (0: no labels)
    n_labels: int
    #: dtype of the labels (int64 for integer label columns), None without labels
    label_dtype: Optional[np.dtype]

    def __len__(self) -> int:
        raise NotImplementedError

    @property
    def has_labels(self) -> bool:
        """Whether batches carry labels (``(Xb, Yb)``) or only features (``(Xb,)``)."""
        return self.n_labels > 0

    def _epoch_chunks(
        self, seed: int, epoch: int, shuffle: bool, shard: tuple[int, int]
    ) -> tuple[Sequence[Chunk], int]:
        """The chunks of this shard's epoch in order, and how many of their rows the epoch
        uses (the rest of the last ones is dropped so that all shards have as many)."""
        raise NotImplementedError

    def _load(self, chunk: Chunk) -> tuple[np.ndarray, Optional[np.ndarray]]:
        """The rows of ``chunk`` in epoch order: X (rows, n_features) C-contiguous of
        :attr:`dtype`, and Y (rows,) or (rows, n_labels) or None. May run on a
        background thread."""
        raise NotImplementedError

    def _where(self, chunk: Chunk, row: int) -> str:
        """Where row ``row`` of a loaded chunk comes from, for error messages."""
        return f"row {row} of the chunk"

    def _check(self) -> None:
        """Raises DataError if the data changed since the source was opened."""
