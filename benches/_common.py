"""What the comparison scripts in benches/ share: the thread setup of every library, the
peers' imports, the machine's description, the load average and the He initialisation.

The scripts are run as files (``python benches/x.py``), so Python puts ``benches/`` first
on ``sys.path`` and ``from _common import ...`` finds this module.
"""

from __future__ import annotations

import os

import numpy as np

import ferroptim as fo
from ferroptim._machine import machine_info


def setup_threads(threads: int) -> list:
    """Sets every library's thread count before any peer is imported; returns what was set.

    XLA sizes its pool by the CPUs the process may run on, so when the machine has more
    CPUs than ``threads`` the process is pinned to the first ``threads`` of them."""
    notes = []
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if len(cpus) > threads:
        os.sched_setaffinity(0, cpus[:threads])
        notes.append(f"process pinned to CPUs {cpus[:threads]} (XLA's pool follows the affinity)")
    if threads == 1:
        os.environ["XLA_FLAGS"] = (
            os.environ.get("XLA_FLAGS", "")
            + " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
        )
    fo.set_num_threads(threads)
    return notes


def import_peers(threads: int, notes: list, wanted: tuple = ("torch", "jax", "sklearn")) -> dict:
    """The importable peers among ``wanted``, each set to ``threads`` threads, and NumPy's
    BLAS (threadpoolctl) too; appends a line to ``notes`` for each one missing."""
    peers = {}
    try:
        from threadpoolctl import threadpool_info, threadpool_limits

        peers["threadpool_limits"] = threadpool_limits(threads)
        peers["blas"] = ", ".join(
            f"{p['internal_api']} {p['version']} ({p['num_threads']} threads)"
            for p in threadpool_info()
            if p.get("user_api") == "blas"
        )
    except ImportError:
        notes.append("threadpoolctl not installed: NumPy's BLAS runs on its default threads")
        peers["blas"] = "BLAS threads not set (no threadpoolctl)"
    if "torch" in wanted:
        try:
            import torch

            torch.set_num_threads(threads)
            peers["torch"] = torch
        except ImportError:
            notes.append("torch not installed: torch skipped")
    if "jax" in wanted:
        try:
            import jax
            import optax

            jax.config.update("jax_platforms", "cpu")
            peers["jax"], peers["optax"] = jax, optax
        except ImportError:
            notes.append("jax or optax not installed: JAX skipped")
    if "sklearn" in wanted:
        try:
            from sklearn import neural_network

            peers["sklearn"] = neural_network
        except ImportError:
            notes.append("scikit-learn not installed: scikit-learn skipped")
    if not hasattr(fo, "nn"):
        notes.append("this ferroptim has no ferroptim.nn: fit skipped")
    return peers


def machine(peers: dict, threads: int) -> str:
    """CPU model, CPUs, memory, and the version and thread count of every library used (the
    facts from the package's one machine description, ``ferroptim._machine``)."""
    info = machine_info()
    mem = (info["memory_bytes"] or 0) / 2**30
    blas = peers.get("blas") or ", ".join(
        f"{p['internal_api']} {p['version']} ({p['num_threads']} threads)" for p in info["blas"] or []
    )
    parts = [
        f"{info['cpu']}, {info['logical_cpus']} CPUs, {mem:.0f} GiB",
        f"Python {info['python']}",
        f"ferroptim {fo.__version__} ({info['ferroptim_simd']}, {info['ferroptim_threads']} threads)",
        f"NumPy {np.__version__} ({blas or 'BLAS unknown: no threadpoolctl'})",
    ]
    if "torch" in peers:
        parts.append(f"torch {peers['torch'].__version__} ({peers['torch'].get_num_threads()} threads)")
    if "jax" in peers:
        import optax

        parts.append(f"jax {peers['jax'].__version__} + optax {optax.__version__} ({threads} CPUs)")
    if "sklearn" in peers:
        import sklearn

        parts.append(f"scikit-learn {sklearn.__version__}")
    return "; ".join(parts)


def load_average() -> tuple:
    """The 1, 5 and 15-minute load averages (NaN where the system has none)."""
    return os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3


def he_init(sizes: list, seed: int, dtype=np.float32) -> list:
    """``[(W_l (n_{l-1}, n_l), b_l (n_l,)), ...]`` of ``dtype``, ``W_l ~ N(0, 2 / n_{l-1})``, b = 0."""
    rng = np.random.default_rng(seed)
    return [
        ((rng.standard_normal((i, o)) * np.sqrt(2.0 / i)).astype(dtype), np.zeros(o, dtype))
        for i, o in zip(sizes[:-1], sizes[1:])
    ]


def batch_sizes(m: int, b: int) -> list:
    """The sizes of an epoch's batches: full ones, then the smaller last one."""
    return [b] * (m // b) + ([m % b] if m % b else [])


def fmt_s(s: float | None) -> str:
    """Seconds as ms below 0.1 s, else s."""
    if s is None:
        return "—"
    return f"{s * 1e3:.1f} ms" if s < 0.1 else f"{s:.3f} s" if s < 10 else f"{s:.1f} s"
