"""Data-parallel training over MPI, with mpi4py (``pip install 'ferroptim[mpi]'``).

Every rank holds a full copy of the parameters and computes gradients on its own shard of
each mini-batch; the gradients are averaged across ranks before every step, so all ranks
take the same step and stay equal. Transport is MPI's: this module only packs the
gradients of each dtype into one contiguous buffer (in Rust), calls one ``Allreduce`` per
dtype, and unpacks the mean.

Run a script on 2 processes of this machine with ``mpiexec -n 2 python train.py``; on
several hosts with a host file (``mpiexec -f hosts -n 8 python train.py``, see the README).

Failure: an uncaught exception on one rank would leave the others waiting forever in
their next collective. :class:`DistributedOptimizer` therefore installs
:func:`abort_on_exception` by default: the rank prints its traceback and calls
``MPI_Abort``, which ends every rank of the job at once (as ``python -m mpi4py`` does).
"""

from __future__ import annotations

import os
import pickle
import sys
import tempfile
from collections.abc import Mapping
from typing import Any

import numpy as np

from . import _core
from .optim import GradsLike, Optimizer
from .wrappers import _Wrapper

__all__ = [
    "world",
    "broadcast_parameters",
    "allreduce_gradients",
    "DistributedOptimizer",
    "abort_on_exception",
    "save_checkpoint",
    "load_checkpoint",
]


def _mpi():
    try:
        from mpi4py import MPI
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            "ferroptim.distributed needs mpi4py and an MPI library: "
            "pip install 'ferroptim[mpi]' (mpi4py and MPICH, both from PyPI)"
        ) from e
    return MPI


def world(comm=None):
    """The communicator to use: ``comm``, or ``MPI.COMM_WORLD``."""
    return comm if comm is not None else _mpi().COMM_WORLD


def _arrays(x: Any) -> list[np.ndarray]:
    if isinstance(x, np.ndarray):
        return [x]
    if isinstance(x, Mapping):
        return list(x.values())
    if isinstance(x, Optimizer):
        return x._arrays()
    return list(x)


class _Packer:
    """One contiguous buffer per dtype for a fixed list of arrays, reused call after call."""

    def __init__(self, arrays: list[np.ndarray]):
        self.groups: list[tuple[list[int], np.ndarray]] = []
        for dtype in (np.float32, np.float64):
            idx = [i for i, a in enumerate(arrays) if a.dtype == dtype]
            if idx:
                total = sum(arrays[i].size for i in idx)
                self.groups.append((idx, np.empty(total, dtype)))
        if sum(len(i) for i, _ in self.groups) != len(arrays):
            bad = next(a.dtype for a in arrays if a.dtype not in (np.float32, np.float64))
            raise TypeError(f"arrays must be float32 or float64, got {bad}")

    def run(self, arrays: list[np.ndarray], collective, scale: float = 1.0) -> None:
        """Packs each dtype's arrays, applies ``collective(buffer)``, unpacks times ``scale``."""
        for idx, buf in self.groups:
            group = [arrays[i] for i in idx]
            _core.pack_(group, buf)
            collective(buf)
            _core.unpack_(buf, group, scale)


def broadcast_parameters(params: Any, root: int = 0, comm=None) -> None:
    """Copies rank ``root``'s parameters into the same arrays on every rank, in place.

    Args:
        params: a list or dict of arrays, or an optimizer (its parameters), identical in
            shapes and dtypes on every rank.
        root: the rank whose values win.
        comm: an mpi4py communicator (default ``MPI.COMM_WORLD``).
    """
    comm = world(comm)
    arrays = _arrays(params)
    _Packer(arrays).run(arrays, lambda buf: comm.Bcast(buf, root=root))


def allreduce_gradients(grads: GradsLike, comm=None, average: bool = True) -> None:
    r"""Sums the gradients over all ranks in place, divided by the number of ranks if
    ``average``: ``g = (g_0 + ... + g_{n-1}) / n``.

    One ``Allreduce`` per dtype: the gradients are packed into one buffer in Rust first.

    Args:
        grads: a list or dict of writeable, C-contiguous float32/float64 arrays, the same
            shapes and order on every rank.
        comm: an mpi4py communicator (default ``MPI.COMM_WORLD``).
        average: divide by the number of ranks (the mean of the ranks' gradients).
    """
    comm = world(comm)
    MPI = _mpi()
    arrays = _arrays(grads)
    scale = 1.0 / comm.Get_size() if average else 1.0
    _Packer(arrays).run(arrays, lambda buf: comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM), scale)


class DistributedOptimizer(_Wrapper):
    r"""Wraps an optimizer for data-parallel training: ``step(grads)`` averages the
    gradients over all ranks, then steps, so the training loop does not change.

    With ``n`` ranks each holding gradients ``g_r`` of the mean loss over its shard of a
    global batch, every rank steps with ``(g_0 + ... + g_{n-1}) / n`` -- the gradient of the
    mean loss over the whole global batch when shards are equal-sized.

    Args:
        optimizer: any ferroptim optimizer (or wrapper exposing ``step`` and ``_arrays``).
        comm: an mpi4py communicator (default ``MPI.COMM_WORLD``).
        broadcast: copy rank 0's parameters to every rank now, so all start equal.
        abort_on_error: install :func:`abort_on_exception` so that an uncaught exception
            on any rank ends the whole job instead of hanging the others.

    The gradients are averaged in place in your arrays (after being checked against the
    parameters; non-contiguous ones are averaged in a contiguous copy). ``comm_seconds``
    accumulates the time spent packing, communicating and unpacking.
    """

    def __init__(self, optimizer: Optimizer, comm=None, broadcast: bool = True, abort_on_error: bool = True):
        import time

        self._clock = time.perf_counter
        self.optimizer = optimizer
        self.comm = world(comm)
        self._MPI = _mpi()
        self._packer = _Packer(optimizer._arrays())
        self.comm_seconds = 0.0
        if abort_on_error:
            abort_on_exception(self.comm)
        if broadcast:
            broadcast_parameters(optimizer, comm=self.comm)

    def step(self, grads: GradsLike) -> None:
        """Averages ``grads`` over all ranks (one Allreduce per dtype), then steps."""
        checked = self.optimizer._engine.check_grads(grads)
        t0 = self._clock()
        MPI, comm = self._MPI, self.comm
        self._packer.run(
            checked,
            lambda buf: comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM),
            1.0 / comm.Get_size(),
        )
        self.comm_seconds += self._clock() - t0
        self.optimizer.step(checked)

    def state_dict(self) -> dict:
        """The wrapped optimizer's state (equal on every rank)."""
        return self.optimizer.state_dict()

    def load_state_dict(self, state_dict: dict) -> None:
        """Restores the wrapped optimizer's state."""
        self.optimizer.load_state_dict(state_dict)


def abort_on_exception(comm=None) -> None:
    """Makes an uncaught exception on this rank print its traceback and abort the whole MPI
    job (``comm.Abort(1)``), so no other rank waits forever in a collective."""
    comm = world(comm)
    previous = sys.excepthook

    def hook(kind, value, tb):
        previous(kind, value, tb)
        sys.stderr.flush()
        comm.Abort(1)

    if getattr(sys.excepthook, "_ferroptim_abort", False):
        return
    hook._ferroptim_abort = True  # type: ignore[attr-defined]
    sys.excepthook = hook


def _state(obj: Any) -> Any:
    """What a checkpoint keeps of ``obj``: its ``state_dict()``, or copies of its arrays."""
    if hasattr(obj, "state_dict"):
        return obj.state_dict()
    if isinstance(obj, Mapping):
        return {k: np.array(v, copy=True) for k, v in obj.items()}
    return [np.array(v, copy=True) for v in _arrays(obj)]


def _restore(obj: Any, state: Any, name: str) -> None:
    """Loads ``state`` into ``obj``: ``load_state_dict``, or a copy into its arrays in place
    (so an optimizer holding them keeps working)."""
    if hasattr(obj, "load_state_dict"):
        obj.load_state_dict(state)
        return
    targets = _arrays(obj)
    sources = list(state.values()) if isinstance(state, Mapping) else list(state)
    if len(sources) != len(targets) or any(a.shape != b.shape for a, b in zip(sources, targets)):
        raise ValueError(f"checkpoint entry {name!r} does not match the arrays given for it")
    if isinstance(obj, Mapping) and list(obj.keys()) != list(state.keys()):
        raise ValueError(f"checkpoint entry {name!r} has keys {list(state)}, expected {list(obj)}")
    for dst, src in zip(targets, sources):
        np.copyto(dst, src)


def save_checkpoint(path: str | os.PathLike, comm=None, **objects: Any) -> None:
    """Saves ``objects`` from rank 0 into one pickle file, atomically; every rank waits
    until it is written. An object with ``state_dict()`` (optimizers, MiniBatches, EWAs...)
    is saved through it; a dict or list of arrays (the parameters) is copied.

    Example: ``save_checkpoint("ckpt.pkl", params=params, optimizer=opt, batches=batches)``.
    """
    comm = world(comm)
    if comm.Get_rank() == 0:
        state = {name: _state(obj) for name, obj in objects.items()}
        directory = os.path.dirname(os.path.abspath(path))
        fd, tmp = tempfile.mkstemp(dir=directory, suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            pickle.dump(state, f, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)
    comm.Barrier()


def load_checkpoint(path: str | os.PathLike, comm=None, **objects: Any) -> None:
    """Reads a checkpoint on rank 0, sends it to every rank, and restores each named object
    (``objects`` as given to :func:`save_checkpoint`; arrays are filled in place)."""
    comm = world(comm)
    state = None
    if comm.Get_rank() == 0:
        with open(path, "rb") as f:
            state = pickle.load(f)
    state = comm.bcast(state, root=0)
    missing = [name for name in objects if name not in state]
    if missing:
        raise KeyError(f"checkpoint {os.fspath(path)!r} has no state for {missing}")
    for name, obj in objects.items():
        _restore(obj, state[name], name)
