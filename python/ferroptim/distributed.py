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
``MPI_Abort``, which ends every rank of the job at once (as ``python -m mpi4py`` does);
it also covers exceptions in other threads and ``sys.exit`` with a nonzero status (see
its docstring for what it does not cover). :func:`save_checkpoint` and
:func:`load_checkpoint` raise the same error on every rank when rank 0 fails.
"""

from __future__ import annotations

import os
import pickle
import sys
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Callable, Optional

import numpy as np

from . import _core
from ._files import write_atomically
from .optim import GradsLike, Optimizer
from .wrappers import _Wrapper

if TYPE_CHECKING:
    from mpi4py import MPI

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


def world(comm: Optional[MPI.Comm] = None) -> MPI.Comm:
    """The communicator to use: ``comm``, or ``MPI.COMM_WORLD``."""
    return comm if comm is not None else _mpi().COMM_WORLD


def _arrays(x: Any) -> list[np.ndarray]:
    if isinstance(x, np.ndarray):
        return [x]
    if isinstance(x, Mapping):
        return list(x.values())
    if isinstance(x, (Optimizer, _Wrapper)):
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


def broadcast_parameters(params: Any, root: int = 0, comm: Optional[MPI.Comm] = None) -> None:
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


def allreduce_gradients(grads: GradsLike, comm: Optional[MPI.Comm] = None, average: bool = True) -> None:
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
        optimizer: any ferroptim optimizer, or a :class:`~ferroptim.GradientAccumulation`
            or :class:`~ferroptim.Lookahead` around one. Both orders work:
            ``DistributedOptimizer(GradientAccumulation(opt, k))`` averages every
            micro-batch; ``GradientAccumulation(DistributedOptimizer(opt), k)`` averages
            only the accumulated mean, once per update (k times less communication, the
            same result up to rounding).
        comm: an mpi4py communicator (default ``MPI.COMM_WORLD``).
        broadcast: copy rank 0's parameters (and a Lookahead's slow weights) to every rank
            now, so all start equal; parameters added later with ``add_param_group`` are
            broadcast at the next step.
        abort_on_error: install :func:`abort_on_exception` so that an uncaught exception
            on any rank ends the whole job instead of hanging the others.

    The gradients are averaged in place in your arrays (after being checked against the
    parameters; non-contiguous ones are averaged in a contiguous copy). ``comm_seconds``
    accumulates the time spent packing, communicating and unpacking. ``add_param_group``
    (on this wrapper or the optimizer inside) must be called on every rank alike, like
    every other call that changes the model; the next step takes the new group in.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        comm: Optional[MPI.Comm] = None,
        broadcast: bool = True,
        abort_on_error: bool = True,
    ):
        import time

        self._clock = time.perf_counter
        self.optimizer = optimizer
        self.comm = world(comm)
        self._MPI = _mpi()
        self._packer = _Packer(optimizer._arrays())
        self._seen_version = optimizer._version
        self._broadcast = bool(broadcast)
        self._abort_on_error = bool(abort_on_error)
        self.comm_seconds = 0.0
        if abort_on_error:
            abort_on_exception(self.comm)
        if broadcast:
            broadcast_parameters(optimizer._sync_arrays(), comm=self.comm)

    def _follow_layout(self) -> None:
        if self._seen_version != self.optimizer._version:
            # A param group was added (on every rank): rank 0's values of everything that
            # must agree, then a packer for the new set of gradients.
            if self._broadcast:
                broadcast_parameters(self.optimizer._sync_arrays(), comm=self.comm)
            self._packer = _Packer(self.optimizer._arrays())
            self._seen_version = self.optimizer._version

    def step(self, grads: GradsLike) -> None:
        """Averages ``grads`` over all ranks (one Allreduce per dtype), then steps."""
        self._step(grads)

    def _step_checked(self, grads: list[np.ndarray], grad_scale: float = 1.0) -> bool:
        t0 = self._clock()
        MPI, comm = self._MPI, self.comm
        self._packer.run(
            grads,
            lambda buf: comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM),
            1.0 / comm.Get_size(),
        )
        self.comm_seconds += self._clock() - t0
        return self.optimizer._step_checked(grads, grad_scale)

    def state_dict(self) -> dict:
        """The wrapped optimizer's state (equal on every rank)."""
        return self.optimizer.state_dict()

    def load_state_dict(self, state_dict: dict) -> None:
        """Restores the wrapped optimizer's state."""
        self.optimizer.load_state_dict(state_dict)

    def __getstate__(self) -> dict:
        if self.comm != self._MPI.COMM_WORLD:
            raise TypeError(
                "a DistributedOptimizer over a communicator other than COMM_WORLD cannot be "
                "pickled or copied; pickle its .optimizer and wrap the copy again"
            )
        return {k: v for k, v in self.__dict__.items() if k not in ("comm", "_MPI", "_clock", "_packer")}

    def __setstate__(self, st: dict) -> None:
        import time

        self.__dict__.update(st)
        self._clock = time.perf_counter
        self._MPI = _mpi()
        self.comm = self._MPI.COMM_WORLD
        self._packer = _Packer(self.optimizer._arrays())
        if self._abort_on_error:
            abort_on_exception(self.comm)


# What abort_on_exception installed, and what it saw: the exit status passed to sys.exit
# (or exit()/quit()) in the main thread, and whether an uncaught exception already aborted.
_abort: dict = {"comm": None, "exit_status": None, "main_frame": None}


def _exit_status(code: Any) -> int:
    """The process exit status Python derives from ``SystemExit(code)``."""
    if code is None:
        return 0
    if isinstance(code, int) and not isinstance(code, bool):
        return code & 0xFF if code >= 0 else 1
    return 1


def _main_frame():
    """The outermost frame running the ``__main__`` module's top-level code, if any."""
    frame, main = sys._getframe(), None
    while frame is not None:
        if frame.f_code.co_name == "<module>" and frame.f_globals.get("__name__") == "__main__":
            main = frame
        frame = frame.f_back
    return main


def _main_returned(frame) -> bool:
    """Whether ``frame`` (the main module's) ran to its end rather than unwinding."""
    import dis

    for ins in dis.get_instructions(frame.f_code):
        if ins.offset == frame.f_lasti:
            return ins.opname.startswith("RETURN")
    return False


class _RecordingExit:
    """``sys.exit``/``exit``/``quit`` that first note the status (main thread only)."""

    def __init__(self, original: Callable[..., Any]):
        self._original = original
        self.__doc__ = getattr(original, "__doc__", None)

    def __call__(self, *args: Any) -> Any:
        import threading

        if threading.current_thread() is threading.main_thread():
            _abort["exit_status"] = _exit_status(args[0] if args else None)
        return self._original(*args)

    def __repr__(self) -> str:
        return repr(self._original)


# Seconds a failing rank waits between printing its error and aborting: the launcher
# forwards each rank's output through a pipe, and an abort that kills the ranks at once can
# cut the traceback off there.
_ABORT_GRACE_S = 0.25


def _abort_now(comm, status: int) -> None:
    """Flushes the error output, gives the launcher time to forward it, then aborts the job."""
    sys.stderr.flush()
    sys.stdout.flush()
    time.sleep(_ABORT_GRACE_S)
    comm.Abort(status)


def _abort_at_exit() -> None:
    status, frame, comm = _abort["exit_status"], _abort["main_frame"], _abort["comm"]
    if status and frame is not None and not _main_returned(frame):
        _abort_now(comm, status)


def abort_on_exception(comm: Optional[MPI.Comm] = None) -> None:
    """Makes a rank that fails abort the whole MPI job (``comm.Abort``), so no other rank
    waits forever in a collective. Covered:

    * an uncaught exception in the main thread (``sys.excepthook``): the traceback is
      printed, then, after 0.25 s for the launcher to forward it, ``Abort(1)``;
    * an uncaught exception in any other thread (``threading.excepthook``), the same;
    * the main module ending through ``sys.exit(status)``, ``exit(status)`` or
      ``quit(status)`` with a nonzero status: ``Abort(status)`` when the interpreter exits
      (``sys.exit(0)`` or ``sys.exit()`` exits normally).

    Not covered: ``raise SystemExit(n)`` written directly (its status is not visible; use
    ``sys.exit``), ``os._exit``, signals and crashes of the process (the MPI launcher
    usually ends the job then), and a rank that exits normally (status 0) while the others
    still wait for it. Installing it twice does nothing.
    """
    comm = world(comm)
    if getattr(sys.excepthook, "_ferroptim_abort", False):
        return
    import atexit
    import builtins
    import threading

    previous = sys.excepthook

    def hook(kind, value, tb):
        previous(kind, value, tb)
        _abort_now(comm, 1)

    previous_thread_hook = threading.excepthook

    def thread_hook(args):
        previous_thread_hook(args)
        if args.exc_type is SystemExit:  # ends only its thread, as Python intends
            return
        _abort_now(comm, 1)

    hook._ferroptim_abort = True  # type: ignore[attr-defined]
    sys.excepthook = hook
    threading.excepthook = thread_hook
    _abort["comm"] = comm
    _abort["main_frame"] = _main_frame()
    if not isinstance(sys.exit, _RecordingExit):
        sys.exit = _RecordingExit(sys.exit)
    for name in ("exit", "quit"):
        original = getattr(builtins, name, None)
        if original is not None and not isinstance(original, _RecordingExit):
            setattr(builtins, name, _RecordingExit(original))
    atexit.register(_abort_at_exit)


def _state(obj: Any) -> Any:
    """What a checkpoint keeps of ``obj``: its ``state_dict()``, or copies of its arrays."""
    if hasattr(obj, "state_dict"):
        return obj.state_dict()
    if isinstance(obj, Mapping):
        return {k: np.array(v, copy=True) for k, v in obj.items()}
    return [np.array(v, copy=True) for v in _arrays(obj)]


def _check_arrays_entry(obj: Any, state: Any, name: str) -> None:
    """Raises unless ``state`` can be copied into the arrays of ``obj`` (no load_state_dict)."""
    targets = _arrays(obj)
    if isinstance(obj, Mapping):
        if not isinstance(state, Mapping) or list(obj.keys()) != list(state.keys()):
            keys = list(state) if isinstance(state, Mapping) else type(state).__name__
            raise ValueError(f"checkpoint entry {name!r} has keys {keys}, expected {list(obj)}")
    sources = list(state.values()) if isinstance(state, Mapping) else list(state)
    if len(sources) != len(targets) or any(np.shape(a) != b.shape for a, b in zip(sources, targets)):
        raise ValueError(f"checkpoint entry {name!r} does not match the arrays given for it")


def _restore(obj: Any, state: Any, name: str) -> None:
    """Loads ``state`` into ``obj``: ``load_state_dict``, or a copy into its arrays in place
    (so an optimizer holding them keeps working)."""
    if hasattr(obj, "load_state_dict"):
        obj.load_state_dict(state)
        return
    _check_arrays_entry(obj, state, name)
    sources = list(state.values()) if isinstance(state, Mapping) else list(state)
    for dst, src in zip(_arrays(obj), sources):
        np.copyto(dst, src)


def _on_root(comm, work) -> Any:
    """Runs ``work()`` on rank 0 and returns its result on every rank; if it raised, every
    rank raises that error (rank 0 the original, the others a copy), so none waits."""
    result = error = None
    if comm.Get_rank() == 0:
        try:
            result = work()
        except Exception as e:  # re-raised below, on every rank
            error = e
    if comm.Get_size() > 1:
        portable = None
        if error is not None:
            try:
                portable = pickle.loads(pickle.dumps(error))
            except Exception:
                portable = RuntimeError(f"{type(error).__name__} on rank 0: {error}")
        ok, payload = comm.bcast((error is None, result if error is None else portable), root=0)
        if not ok and error is None:
            raise payload
        result = payload if ok else None
    if error is not None:
        raise error
    return result


def save_checkpoint(path: str | os.PathLike, comm: Optional[MPI.Comm] = None, **objects: Any) -> None:
    """Saves ``objects`` from rank 0 into one pickle file, atomically; every rank waits
    until it is written, and every rank raises the same error if it could not be. An
    object with ``state_dict()`` (optimizers, MiniBatches, EWAs...) is saved through it; a
    dict or list of arrays (the parameters) is copied.

    ``path`` must be a regular file or not exist yet (a device such as ``/dev/null`` or a
    directory is refused); an existing file keeps its permissions.

    Example: ``save_checkpoint("ckpt.pkl", params=params, optimizer=opt, batches=batches)``.
    """
    comm = world(comm)

    def write() -> None:
        state = {name: _state(obj) for name, obj in objects.items()}
        write_atomically(path, lambda f: pickle.dump(state, f, protocol=pickle.HIGHEST_PROTOCOL))

    _on_root(comm, write)


def load_checkpoint(path: str | os.PathLike, comm: Optional[MPI.Comm] = None, **objects: Any) -> None:
    """Reads a checkpoint on rank 0, sends it to every rank, and restores each named object
    (``objects`` as given to :func:`save_checkpoint`; arrays are filled in place).

    All or nothing: if the file cannot be read, every rank raises the same error; if any
    object refuses its entry (missing, different shapes, another optimizer...), the objects
    restored before it are put back as they were, and the error is raised."""
    comm = world(comm)

    def read() -> dict:
        with open(path, "rb") as f:
            state = pickle.load(f)
        if not isinstance(state, dict):
            raise ValueError(f"{os.fspath(path)!r} is not a ferroptim checkpoint (not a dict of entries)")
        return state

    state = _on_root(comm, read)
    missing = [name for name in objects if name not in state]
    if missing:
        raise KeyError(f"checkpoint {os.fspath(path)!r} has no state for {missing}")
    for name, obj in objects.items():
        if not hasattr(obj, "load_state_dict"):
            _check_arrays_entry(obj, state[name], name)
    done: list = []
    try:
        for name, obj in objects.items():
            before = _state(obj)
            _restore(obj, state[name], name)
            done.append((name, obj, before))
    except BaseException:
        for name, obj, before in reversed(done):
            _restore(obj, before, name)
        raise
