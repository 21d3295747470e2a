"""The inputs of :class:`~ferroptim.nn.MLP`: X, Y and the example weights checked and put in
the form the core reads (one copy at most), before anything is modified."""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from .. import _core
from ..data import _fit as _data


class _Inputs:
    """The input checks of :class:`~ferroptim.nn.MLP` (a mixin: it reads the model's
    ``dtype``, ``layer_sizes``, ``n_outputs`` and ``output``)."""

    dtype: np.dtype
    layer_sizes: list[int]
    output: str

    @property
    def n_outputs(self) -> int:
        raise NotImplementedError

    def _check_X(self, X: Any, name: str = "X", finite: bool = True) -> np.ndarray:
        X = _model_dtype(X, self.dtype, name)
        if X.ndim != 2 or X.shape[1] != self.layer_sizes[0]:
            raise ValueError(f"{name} has shape {X.shape}, expected (m, {self.layer_sizes[0]})")
        if X.shape[0] == 0:
            raise ValueError(f"{name} holds no examples")
        if finite and not _all_finite(X):
            raise ValueError(f"{name} contains NaN or infinity")
        return X

    def _check_Y(self, Y: Any, m: int, name: str = "Y", finite: bool = True) -> np.ndarray:
        """Y in the form the core reads: int64 labels (m,) or (m, k) of the model's dtype."""
        if not isinstance(Y, np.ndarray):
            Y = np.asarray(Y)
        k = self.n_outputs
        if Y.shape[:1] != (m,):
            raise ValueError(f"{name} has shape {Y.shape}, expected {m} examples (like X) along axis 0")
        if self.output == "softmax" and Y.ndim == 1:
            if Y.dtype.kind not in "iu":
                raise TypeError(f"{name}: softmax labels must be integers, got dtype {Y.dtype}")
            if finite:
                lo, hi = int(Y.min()), int(Y.max())
                if lo < 0 or hi >= k:
                    raise ValueError(f"{name} holds labels in [{lo}, {hi}], expected classes in [0, {k})")
            return np.ascontiguousarray(Y, dtype=np.int64)
        if Y.ndim == 1 and k == 1:
            Y = Y.reshape(m, 1)
        if Y.ndim != 2 or Y.shape[1] != k:
            expected = f"(m,) integer labels or (m, {k})" if self.output == "softmax" else f"(m, {k})"
            expected += " or (m,)" if k == 1 else ""
            raise ValueError(f"{name} has shape {Y.shape}, expected {expected}")
        if Y.dtype.kind not in "iufb":
            raise TypeError(f"{name} must hold numbers, got dtype {Y.dtype}")
        Y = np.ascontiguousarray(Y, dtype=self.dtype)
        if finite and not _all_finite(Y):
            raise ValueError(f"{name} contains NaN or infinity")
        if finite and self.output == "sigmoid":
            ylo, yhi = float(Y.min()), float(Y.max())
            if ylo < 0 or yhi > 1:
                raise ValueError(
                    f"{name} holds targets in [{ylo:g}, {yhi:g}]; output='sigmoid' (binary "
                    "cross-entropy) needs targets in [0, 1] (0/1 labels or probabilities)"
                )
        if finite and self.output == "exp" and (Y < 0).any():
            raise ValueError(
                f"{name} holds negative targets (min {float(Y.min()):g}); output='exp' with "
                "loss='poisson' needs targets >= 0 (counts or rates)"
            )
        if finite and self.output == "softmax":
            sums = Y.sum(axis=1, dtype=np.float64)
            if (Y < 0).any() or not np.allclose(sums, 1.0, rtol=0, atol=1e-3):
                raise ValueError(
                    f"{name}: softmax targets (m, k) must be one-hot or probability rows (>= 0, "
                    "summing to 1); pass integer labels (m,) for classes"
                )
        return Y

    def _fit_data(self, X: Any, Y: Any, transposed: bool, check: bool) -> tuple:
        """X and Y as fit trains on them: X unchanged (checked), Y in the core's form."""
        X = _model_dtype(X, self.dtype, "X")
        if not isinstance(Y, np.ndarray):
            Y = np.asarray(Y)
        n0, k = self.layer_sizes[0], self.n_outputs
        if transposed:
            if X.ndim != 2 or X.shape[0] != n0:
                raise ValueError(f"X has shape {X.shape}, expected ({n0}, m) with axis=1")
            m = X.shape[1]
            if Y.ndim == 2:
                if Y.shape[1] != m:
                    raise ValueError(f"Y has shape {Y.shape}, expected ({k}, {m}) or ({m},) with axis=1")
                Yt = self._check_Y(Y.T, m, finite=check)
                if Yt.dtype == np.int64 and Yt.ndim == 1:
                    return X, Yt, True, False
                # Keep the (k, m) layout the batches are gathered from.
                return self._finite_X(X, check), np.ascontiguousarray(Yt.T), False, k > 1
        else:
            if X.ndim != 2 or X.shape[1] != n0:
                raise ValueError(f"X has shape {X.shape}, expected (m, {n0})")
            m = X.shape[0]
        if m == 0:
            raise ValueError("X holds no examples")
        Yc = self._check_Y(Y, m, finite=check)
        labels = Yc.ndim == 1
        if transposed and not labels:
            Yc = np.ascontiguousarray(Yc.T)
        return self._finite_X(X, check), Yc, labels, transposed and not labels and k > 1

    def _check_weights(self, w: Any, m: int, name: str = "sample_weight", total: bool = True) -> np.ndarray:
        """``w`` as (m,) contiguous weights of the model's dtype: finite, >= 0 (and, with
        ``total``, not all 0)."""
        a = np.asarray(w)
        if a.dtype.kind not in "iuf":
            raise TypeError(f"{name} must hold numbers, got dtype {a.dtype}")
        if a.shape != (m,):
            raise ValueError(f"{name} has shape {a.shape}, expected ({m},): one weight per example")
        a = np.ascontiguousarray(a, dtype=self.dtype)
        if not _all_finite(a):
            raise ValueError(f"{name} contains NaN or infinity")
        if (a < 0).any():
            raise ValueError(f"{name} holds negative weights (min {float(a.min()):g}); expected >= 0")
        if total and not a.any():
            raise ValueError(f"{name} is all zero: at least one example needs a positive weight")
        return a

    def _fit_weights(
        self, Y: np.ndarray, labels: bool, y_layout_t: bool, sample_weight: Any, class_weight: Any
    ) -> Optional[np.ndarray]:
        """The per-example weights fit trains with: ``sample_weight`` times each example's
        ``class_weight`` (None when neither is given). ``Y`` as :meth:`_fit_data` returns it
        (``y_layout_t``: dense (k, m))."""
        m = Y.shape[1] if (y_layout_t and Y.ndim == 2) else Y.shape[0]
        w = None if sample_weight is None else self._check_weights(sample_weight, m)
        if class_weight is None:
            return w
        if self.output not in ("sigmoid", "softmax"):
            raise ValueError("class_weight needs a classifier (output='softmax' or 'sigmoid')")
        if labels:
            y = Y
        elif self.output == "softmax":
            y = np.argmax(Y, axis=0 if y_layout_t else 1)
        else:
            if self.n_outputs != 1:
                raise ValueError("class_weight with output='sigmoid' needs one output (0/1 labels)")
            y = Y.reshape(-1)
            if not np.isin(y, (0, 1)).all():
                raise ValueError("class_weight with output='sigmoid' needs 0/1 targets")
            y = y.astype(np.int64)
        k = max(self.n_outputs, 2)
        if isinstance(class_weight, str):
            if class_weight != "balanced":
                raise ValueError(
                    f"class_weight must be a dict {{label: weight}} or 'balanced', got {class_weight!r}"
                )
            counts = np.bincount(y, minlength=k).astype(np.float64)
            present = counts > 0
            per_class = np.ones(k)
            per_class[present] = len(y) / (present.sum() * counts[present])
        elif isinstance(class_weight, dict):
            per_class = np.ones(k)
            for label, cw in class_weight.items():
                if (
                    isinstance(label, (bool, np.bool_))
                    or not isinstance(label, (int, np.integer))
                    or not 0 <= label < k
                ):
                    raise ValueError(f"class_weight has label {label!r}; expected class indices in [0, {k})")
                if isinstance(cw, (bool, np.bool_)) or not isinstance(
                    cw, (int, float, np.integer, np.floating)
                ):
                    raise TypeError(f"class_weight[{label}] must be a number, got {type(cw).__name__}")
                if not (np.isfinite(cw) and cw >= 0):
                    raise ValueError(f"class_weight[{label}] must be a finite number >= 0, got {cw!r}")
                per_class[int(label)] = float(cw)
        else:
            raise TypeError(
                f"class_weight must be a dict {{label: weight}} or 'balanced', got {type(class_weight).__name__}"
            )
        cw_rows = per_class[y]
        total = cw_rows if w is None else cw_rows * w.astype(np.float64)
        return self._check_weights(total, m, "the weights (sample_weight times class_weight)")

    def _finite_X(self, X: np.ndarray, check: bool) -> np.ndarray:
        if check and not _all_finite(X):
            raise ValueError("X contains NaN or infinity")
        return X


def _all_finite(a: np.ndarray) -> bool:
    if a.dtype.kind != "f":
        return True
    if a.flags.c_contiguous and a.dtype in (np.float32, np.float64) and a.flags.aligned:
        return bool(_core.Network.all_finite(a))
    rows = max(1, (1 << 22) // max(1, a[:1].size))
    return all(bool(np.isfinite(a[i : i + rows]).all()) for i in range(0, a.shape[0], rows))


def _model_dtype(X: Any, dtype: np.dtype, name: str) -> np.ndarray:
    """X as an array of the model's ``dtype``: a frame converted column by column, any other
    real dtype (float64 given to a float32 model, integers, bools) with one ``astype`` copy
    that keeps X's memory layout; X itself when it already has ``dtype``.

    Raises:
        TypeError: complex, text, object or other non-numeric data, naming ``name``.
    """
    if not isinstance(X, np.ndarray):
        X = _data.as_array(X, dtype if _data.is_frame(X) else None)
    if X.dtype == dtype:
        return X
    if X.dtype.kind not in "fiub":
        raise TypeError(
            f"{name} has dtype {X.dtype}, expected real numbers (float, integer or bool) to "
            f"convert to the model's {dtype}"
        )
    return X.astype(dtype, order="K")
