"""In-RAM pandas DataFrames and pyarrow Tables as arrays: converted once, column by column."""

from __future__ import annotations

from typing import Any

import numpy as np


def _is_frame(obj: Any) -> bool:
    mod = type(obj).__module__ or ""
    return (mod.startswith("pandas") and hasattr(obj, "columns") and hasattr(obj, "iloc")) or (
        mod.startswith("pyarrow") and hasattr(obj, "column_names") and hasattr(obj, "num_rows")
    )


def _columns(obj: Any) -> list:
    """``[(name, 1-D NumPy array)]`` of a DataFrame or a Table, refusing what is not numbers."""
    out = []
    if hasattr(obj, "iloc"):  # pandas
        for j, name in enumerate(obj.columns):
            s = obj.iloc[:, j]
            dt = s.dtype
            if isinstance(dt, np.dtype) and dt.kind in "biuf":
                out.append((name, s.to_numpy()))
                continue
            kind = getattr(dt, "kind", "O")
            if kind in "biuf":  # pandas' nullable Int64/Float64/boolean
                if s.isna().any():
                    raise ValueError(
                        f"column {name!r} holds missing values (pd.NA) at row {int(np.argmax(s.isna().to_numpy()))}; "
                        "fill them (df.fillna) or drop the rows first"
                    )
                out.append(
                    (name, s.to_numpy(dtype=np.dtype(kind + str(dt.itemsize)) if kind != "b" else bool))
                )
                continue
            raise TypeError(
                f"column {name!r} has dtype {dt} (text, categories or objects); ferroptim trains on numbers: "
                "encode it (pandas.get_dummies for one-hot columns, .cat.codes for integer codes) or drop it"
            )
        return out
    import pyarrow as pa

    for name in obj.column_names:
        col = obj.column(name)
        t = col.type
        if not (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)):
            raise TypeError(
                f"column {name!r} is {t}; ferroptim trains on numbers: encode it as numbers or drop it"
            )
        if col.null_count:
            raise ValueError(
                f"column {name!r} holds {col.null_count} nulls; fill them (pyarrow.compute.fill_null) first"
            )
        out.append((name, col.to_numpy()))
    return out


def as_array(obj: Any, dtype: Any = None) -> np.ndarray:
    """A pandas DataFrame or a pyarrow Table (or RecordBatch) as one C-contiguous 2-D
    array (rows, columns), filled column by column: one strided copy per column, cast to
    ``dtype`` as it is written — never a float64 copy of the whole frame. ``dtype=None``
    takes NumPy's common type of the columns. Anything else goes through ``np.asarray``
    (a Series or an Arrow column becomes its 1-D array).

    Raises:
        TypeError: a text, categorical or object column (named), with what to do.
        ValueError: a column holding missing values (pd.NA, Arrow nulls).
    """
    if not _is_frame(obj):
        mod = type(obj).__module__ or ""
        if mod.startswith(("pandas", "pyarrow")) and hasattr(obj, "to_numpy"):
            return np.asarray(obj.to_numpy())
        return np.asarray(obj)
    cols = _columns(obj)
    if not cols:
        raise ValueError("the frame has no columns")
    dt = np.result_type(*[c.dtype for _, c in cols]) if dtype is None else np.dtype(dtype)
    out = np.empty((len(cols[0][1]), len(cols)), dt)
    for j, (_, c) in enumerate(cols):
        out[:, j] = c
    return out
