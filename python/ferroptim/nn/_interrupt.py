"""Ctrl-C during :meth:`ferroptim.nn.MLP.fit`'s updates: held until an update is complete."""

from __future__ import annotations

import signal
import threading
from typing import Any


class _DeferredInterrupt:
    """Holds Ctrl-C during one update step of :meth:`MLP.fit` (a Rust call, or one update
    of the Python path) when Python's default SIGINT handler is installed: the handler in
    its place only sets ``pending``, which the Rust loop polls (it stops after a complete
    update); leaving, once the model's counters are updated, raises KeyboardInterrupt.
    Any other handler (``SIG_IGN``, a user's own) stays in place and runs as usual (in the
    Rust loop too, which stops after the current update if it raises). Main thread only:
    elsewhere signals are not delivered anyway."""

    def __init__(self) -> None:
        self.pending = False
        # The updates the Rust call applied, written by it before it returns: the caller
        # counts them even when a signal handler raises as the call returns.
        self.done = 0
        self._old: Any = None

    def __enter__(self) -> _DeferredInterrupt:
        if (
            threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGINT) is signal.default_int_handler
        ):
            self._old = signal.signal(signal.SIGINT, self._hold)
        return self

    def _hold(self, signum: int, frame: Any) -> None:
        self.pending = True

    def __exit__(self, *exc: Any) -> None:
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)
            self._old = None
        if self.pending and exc[0] is None:
            self.pending = False
            raise KeyboardInterrupt
