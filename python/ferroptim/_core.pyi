"""Type stub of the Rust extension module. Users import `ferroptim`, not `_core`."""

from typing import Any, Callable, Optional, Sequence, Union, final

import numpy as np

PARALLEL_MIN_ELEMENTS: int
HIDDEN_ACTIVATIONS: tuple[str, ...]

@final
class Engine:
    def __new__(
        cls,
        kind: str,
        params: Sequence[np.ndarray],
        names: Sequence[str],
        group_of: Sequence[int],
        n_groups: int,
        nan_policy: str = "propagate",
        keys: Sequence[Any] | None = None,
        max_grad_norm: float | None = None,
        state_dtype: str | None = None,
        master_weights: bool | None = None,
        param_lists: Sequence[Any] | None = None,
    ) -> Engine: ...
    def check_param_groups(self, groups: Sequence[Any]) -> None: ...
    def check_groups(self, groups: list[dict[str, Any]]) -> None: ...
    def step(
        self,
        grads: Sequence[np.ndarray] | dict[Any, np.ndarray],
        groups: list[dict[str, Any]],
        grad_scale: float = 1.0,
    ) -> bool: ...
    def state(self, i: int) -> dict[str, Any]: ...
    def set_states(self, states: list[dict[str, Any]]) -> None: ...
    @property
    def state_dtypes(self) -> list[str]: ...
    @property
    def master_weights(self) -> list[bool]: ...
    @property
    def scalar_state_names(self) -> list[str]: ...
    @property
    def nan_policy(self) -> str: ...
    max_grad_norm: float | None
    @property
    def last_grad_norm(self) -> float | None: ...
    def check_grads(self, grads: Sequence[np.ndarray] | dict[Any, np.ndarray]) -> list[np.ndarray]: ...
    skipped_steps: int
    parallel_min_elements: int
    def group_steps(self) -> list[int]: ...
    def learning_rates(self, groups: Any, n: int) -> Optional[list[list[float]]]: ...

@final
class Lbfgs:
    def __new__(cls, dtype: str, numel: int) -> Lbfgs: ...
    def step(
        self,
        params: list[np.ndarray],
        evaluate: Callable[[], tuple[float, list[np.ndarray]]],
        lr: float,
        max_iter: int,
        max_eval: int,
        tolerance_grad: float,
        tolerance_change: float,
        history_size: int,
        strong_wolfe: bool,
        maximize: bool,
    ) -> float: ...
    def state(self) -> dict[str, Any]: ...
    def set_state(self, state: dict[str, Any]) -> None: ...

def muon_step(
    param: np.ndarray,
    grad: np.ndarray,
    buf: np.ndarray,
    lr: float,
    weight_decay: float,
    momentum: float,
    nesterov: bool,
    ns_coefficients: Sequence[float],
    eps: float,
    ns_steps: int,
    adjust_lr_fn: str | None,
    ns_dtype: str,
) -> None: ...
def adafactor_step(
    param: np.ndarray,
    grad: np.ndarray,
    t: float,
    variance: np.ndarray | None,
    row_var: np.ndarray | None,
    col_var: np.ndarray | None,
    lr: float,
    beta2_decay: float,
    eps1: float,
    eps2: float,
    d: float,
    weight_decay: float,
    maximize: bool,
    foreach: bool,
) -> None: ...
def adafactor_steps(
    params: list[np.ndarray],
    grads: list[Any],
    ts: Sequence[float],
    variances: list[np.ndarray | None],
    row_vars: list[np.ndarray | None],
    col_vars: list[np.ndarray | None],
    names: list[str],
    groups: Sequence[tuple[int, Sequence[float]]],
) -> None: ...
def schedulefree_adamw_steps(
    params: list[np.ndarray],
    grads: list[Any],
    zs: list[np.ndarray],
    exp_avg_sqs: list[np.ndarray],
    names: list[str],
    groups: Sequence[tuple[int, Sequence[float]]],
) -> None: ...
def schedulefree_sgd_steps(
    params: list[np.ndarray],
    grads: list[Any],
    zs: list[np.ndarray],
    names: list[str],
    groups: Sequence[tuple[int, Sequence[float]]],
) -> None: ...
def schedulefree_interpolate(param: np.ndarray, z: np.ndarray, weight: float) -> None: ...

@final
class Network:
    def __new__(
        cls,
        sizes: Sequence[int],
        hidden: Sequence[str],
        output: str,
        alpha: float = 0.0,
        dropout: Sequence[float] = ...,
        huber_delta: float = 1.0,
        batch_norm: Optional[tuple[float, float]] = None,
    ) -> Network: ...
    alpha: float
    @property
    def dropout(self) -> list[float]: ...
    @property
    def batch_norm(self) -> Optional[tuple[float, float]]: ...
    def dropout_masks(self, rows: int, key: tuple[int, int, int]) -> list[np.ndarray]: ...
    def forward(
        self, params: Sequence[np.ndarray], x: np.ndarray, running: Sequence[np.ndarray] = ...
    ) -> np.ndarray: ...
    def loss_and_grad(
        self,
        params: Sequence[np.ndarray],
        x: np.ndarray,
        y: np.ndarray,
        grads: Sequence[np.ndarray],
        dropout_key: Optional[tuple[int, int, int]] = None,
        sample_weight: Optional[np.ndarray] = None,
        running: Sequence[np.ndarray] = ...,
        training: bool = False,
    ) -> float: ...
    def cost(
        self, params: Sequence[np.ndarray], x: np.ndarray, y: np.ndarray, running: Sequence[np.ndarray] = ...
    ) -> float: ...
    @staticmethod
    def all_finite(x: np.ndarray) -> bool: ...
    def fit_epoch(
        self,
        params: Sequence[np.ndarray],
        engine: Engine,
        groups: list[dict[str, Any]],
        batcher: Batcher,
        order: dict[str, Any],
        *,
        batch_size: int,
        drop_last: bool,
        start: int,
        stop: Optional[int],
        lrs: Optional[list[list[float]]],
        x_transposed: bool,
        y_transposed: bool,
        labels: bool,
        timing: bool,
        interrupt: Optional[Any] = None,
        dropout: Optional[tuple[int, int, int]] = None,
        weighted: bool = False,
        running: Sequence[np.ndarray] = ...,
    ) -> tuple[
        np.ndarray, int, bool, Optional[tuple[float, float, float, float]], Optional[BaseException]
    ]: ...

def grad_norm(arrays_: list[np.ndarray], norm_type: float) -> float: ...
def scale_(arrays_: list[np.ndarray], factor: float) -> None: ...
def clip_grad_norm_(
    arrays_: list[np.ndarray], max_norm: float, norm_type: float, error_if_nonfinite: bool
) -> float: ...
def divide_(arrays_: list[np.ndarray], divisor: float) -> None: ...
def clamp_(arrays_: list[np.ndarray], lo: float, hi: float) -> None: ...
def accumulate_(acc: list[np.ndarray], xs: list[np.ndarray], first: bool) -> None: ...
def lookahead_sync_(slow: list[np.ndarray], fast: list[np.ndarray], alpha: float) -> None: ...
def pack_(arrays_: list[np.ndarray], buffer: np.ndarray) -> None: ...
def unpack_(buffer: np.ndarray, arrays_: list[np.ndarray], scale: float) -> None: ...

@final
class Batcher:
    def __new__(
        cls,
        arrays: Sequence[np.ndarray],
        axis: int = 0,
        keep_alive: Sequence[Any] = ...,
        maps: Sequence[tuple[int, Any, int, Optional[str]]] = ...,
    ) -> Batcher: ...
    @property
    def num_samples(self) -> int: ...
    def indices(self, order: dict[str, Any]) -> np.ndarray: ...
    def epoch(
        self,
        order: dict[str, Any],
        *,
        batch_size: int,
        drop_last: bool,
        start: int,
        reuse: bool,
    ) -> EpochIter: ...

@final
class EpochIter:
    def __iter__(self) -> EpochIter: ...
    def __next__(self) -> tuple[np.ndarray, ...]: ...
    def __length_hint__(self) -> int: ...
    @property
    def epoch(self) -> int: ...
    @property
    def position(self) -> int: ...
    @property
    def num_batches(self) -> int: ...

def _plain_gather(
    arrays: Sequence[np.ndarray], indices: np.ndarray, batch_size: int, threads: int
) -> int: ...
def interleave_columns(
    columns: Sequence[np.ndarray], out: np.ndarray, dest: Union[int, np.ndarray, None] = None
) -> None: ...
def set_num_threads(n: int) -> None: ...
def get_num_threads() -> int: ...
def simd_level() -> str: ...
def set_simd_level(name: str) -> None: ...
def supported_simd_levels() -> list[str]: ...
def ewa(x: np.ndarray, beta: float, bias_correction: bool = True, axis: int = 0) -> np.ndarray: ...
def moving_average(x: np.ndarray, window: int, axis: int = 0) -> np.ndarray: ...
def ema_update(
    averages: Sequence[np.ndarray],
    values: Sequence[np.ndarray],
    decay: float,
    names: Sequence[str] | None = None,
) -> None: ...
