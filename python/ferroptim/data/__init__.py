"""Data sources for data that does not fit in RAM, or lives in files: Parquet and Arrow
files (:class:`Parquet`), any sliceable array such as an h5py Dataset, a zarr array or a
memory map (:class:`Sliced`) — streamed in chunks, shuffled, resumable, in bounded
memory. Each is usable wherever arrays are: ``MiniBatches(source, ...)``,
``MLP.fit(source, optimizer=...)`` (the source holds the labels), ``validation_data=source``,
``predict``/``predict_proba(source)``.

In-RAM pandas DataFrames and pyarrow Tables given as arrays are converted once, column by
column (:func:`as_array`).
"""

from ._base import Chunk, DataError, Source
from ._batches import SourceBatches
from ._frames import as_array
from ._parquet import Parquet
from ._sliced import Sliced

__all__ = ["Source", "Parquet", "Sliced", "SourceBatches", "DataError", "Chunk", "as_array"]
