"""MLP.fit, validation and predictions over a data source (called by ferroptim.nn)."""

from __future__ import annotations

from typing import Any, Callable, Iterator, Optional

import numpy as np

from .. import _core
from ._base import DataError, Source
from ._batches import SourceBatches, _prefetched, where
from ._frames import _is_frame as is_frame
from ._frames import as_array

__all__ = ["is_source", "is_frame", "as_array", "fit_batches", "source_updates", "forward", "evaluator"]

#: rows per forward call when predicting / validating over a source
EVAL_ROWS = 16384


def is_source(obj: Any) -> bool:
    """Whether ``obj`` is a :mod:`ferroptim.data` source."""
    return isinstance(obj, Source)


def _check_model_fit(model: Any, source: Source) -> None:
    if source.dtype != model.dtype:
        raise TypeError(
            f"the source gives features of dtype {source.dtype}, the model is {model.dtype}: "
            f"build the source with dtype=np.{model.dtype}"
        )
    shape = getattr(source, "row_shape", (source.n_features,))
    if shape != (source.n_features,):
        raise ValueError(
            f"the source's rows have shape {shape}; the model takes rows of ({model.layer_sizes[0]},)"
        )
    if source.n_features != model.layer_sizes[0]:
        raise ValueError(
            f"the source has {source.n_features} features per row, the model takes {model.layer_sizes[0]}"
        )


def fit_batches(
    model: Any,
    source: Source,
    Y: Any,
    *,
    axis: int,
    check: bool,
    batch_size: Any,
    shuffle: bool,
    seed: int,
    drop_last: bool,
) -> tuple:
    """The batches ``fit`` trains on, and whether its labels are class indices. Every
    check that needs no data read happens here, before training."""
    if Y is not None:
        raise TypeError("Y: a data source holds its labels; call fit(source, optimizer=...) without Y")
    if axis not in (0, -2):
        raise ValueError(f"axis: a data source gives rows; got axis={axis!r}, expected 0")
    if not source.has_labels:
        raise ValueError("the source has no label columns: build it with labels=... to train on it")
    _check_model_fit(model, source)
    k = model.n_outputs
    labels = model.output == "softmax" and source.n_labels == 1 and source.label_dtype == np.int64
    if not labels and source.n_labels != k:
        raise ValueError(
            f"the source has {source.n_labels} label columns, the model has {k} outputs"
            + (
                " (softmax: one integer label column, or one column per class)"
                if model.output == "softmax"
                else ""
            )
        )
    batches = SourceBatches(source, batch_size=batch_size, shuffle=shuffle, seed=seed, drop_last=drop_last)
    batches._check_input = check  # type: ignore[attr-defined]
    return batches, labels


def _first_bad(ok: Callable[[int, int], bool], n: int) -> int:
    """The smallest r with ``ok(0, r + 1)`` False (``ok(0, n)`` is False), by bisection."""
    lo, hi = 0, n  # ok(0, lo) holds, ok(0, hi) fails
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if ok(0, mid):
            lo = mid
        else:
            hi = mid
    return hi - 1


def _checked_run(
    model: Any, batches: SourceBatches, X: np.ndarray, Y: Any, segs: list, check: bool
) -> np.ndarray:
    src = batches.source
    if check:
        for a in range(0, len(X), EVAL_ROWS):  # in blocks: a bounded temporary
            finite = np.isfinite(X[a : a + EVAL_ROWS]).all(axis=1)
            if not finite.all():
                row = a + int(np.argmin(finite))
                raise DataError(f"{where(src, segs, row)}: the features hold NaN or infinity")
    try:
        return model._check_Y(Y, len(X), "labels", finite=check)
    except (TypeError, ValueError) as e:

        def ok(a: int, b: int) -> bool:
            try:
                model._check_Y(Y[a:b], b - a, "labels", finite=check)
                return True
            except (TypeError, ValueError):
                return False

        row = _first_bad(ok, len(X))
        raise DataError(f"{where(src, segs, row)}: {e}") from None


def source_updates(
    model: Any,
    optimizer: Any,
    params: list,
    count: int,
    *,
    batches: SourceBatches,
    labels: bool,
    timing: bool,
    learning_rates: Callable,
    deferred_interrupt: Callable,
) -> tuple:
    """``count`` updates from ``model.position`` of epoch ``model.epoch`` over a source: a
    Rust call per run of batches that lie in one chunk (or straddle two), each checked
    before it trains. Advances ``model.position`` by the updates applied."""
    check = getattr(batches, "_check_input", True)
    cursor = batches._cursor_at(model.epoch, model.position)
    b = cursor.batch
    costs_all, parts_all = [], None
    left = count
    while left > 0:
        run = cursor.next_run(left)
        if run is None:
            break
        X, Y, nb, segs = run
        Yc = _checked_run(model, batches, X, Y, segs, check)
        batcher = _core.Batcher([X, Yc], 0, [], [])
        lrs = learning_rates(optimizer, nb)
        with deferred_interrupt() as interrupt:
            try:
                costs, done, _, parts, err = model._core.fit_epoch(
                    params,
                    optimizer._engine,
                    optimizer.param_groups,
                    batcher,
                    dict(seed=0, epoch=0, shuffle=False, block_size=None, buffer_blocks=1, shard=(0, 1)),
                    batch_size=b,
                    drop_last=False,
                    start=0,
                    stop=nb,
                    lrs=lrs,
                    x_transposed=False,
                    y_transposed=False,
                    labels=labels,
                    timing=timing,
                    interrupt=interrupt,
                    dropout=model._dropout_key(model.epoch, model.position),
                    running=model._running_list(),
                )
            finally:  # also when a signal handler raises as the call returns
                model._position += interrupt.done
                cursor.advance(interrupt.done)
            costs_all.append(np.asarray(costs))
            if parts is not None:
                parts_all = np.asarray(parts) if parts_all is None else parts_all + np.asarray(parts)
            if err is not None:
                raise err
        left -= nb
    costs = np.concatenate(costs_all) if costs_all else np.empty(0)
    return costs, parts_all


def _pieces(source: Source) -> Iterator[tuple]:
    """The source's rows in storage order, ``EVAL_ROWS`` at a time, read ahead."""
    source._check()
    chunks, total = source._epoch_chunks(0, 0, False, (0, 1))
    todo = [(c, 0, c.rows) for c in chunks]
    for X, Y, _, _ in _prefetched(source, todo, 1):
        for a in range(0, len(X), EVAL_ROWS):
            yield X[a : a + EVAL_ROWS], None if Y is None else Y[a : a + EVAL_ROWS]


def forward(model: Any, source: Source) -> np.ndarray:
    """The model's outputs (m, n_L) for every row of ``source``, in storage order, computed
    ``EVAL_ROWS`` rows at a time (memory: the source's chunks plus the outputs)."""
    _check_model_fit(model, source)
    params = model._param_list()
    running = model._running_list()
    outs = [model._core.forward(params, np.ascontiguousarray(X), running) for X, _ in _pieces(source)]
    return np.concatenate(outs)


def evaluator(model: Any, source: Source) -> Callable[[], tuple]:
    """For ``validation_data=source``: a function giving ``(cost, accuracy or None)`` over
    all its rows: the mean data cost (the row-weighted mean of the costs of pieces of
    ``EVAL_ROWS`` rows, so it may differ from the cost of one array in the last bits)."""
    if not source.has_labels:
        raise ValueError("validation_data: the source has no label columns (labels=...)")
    _check_model_fit(model, source)

    def evaluate() -> tuple:
        params = model._param_list()
        total, n, correct = 0.0, 0, 0.0
        for X, Y in _pieces(source):
            X = np.ascontiguousarray(X)
            Yc = model._check_Y(Y, len(X), "validation labels")
            total += model._core.cost(params, X, Yc, model._running_list()) * len(X)
            if model._classifier:
                correct += model.score(X, Y) * len(X)
            n += len(X)
        acc: Optional[float] = correct / n if model._classifier else None
        return total / n, acc

    return evaluate
