"""The machine a measurement ran on, described once: for the demo's results file
(:func:`ferroptim.demo.report.machine_info`) and the benchmark scripts' ``Machine:`` line
(benches/_common.py)."""

from __future__ import annotations

import os
import platform
import sys
from typing import Any, Optional

import numpy as np


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``'s ``model name``), else the platform's
    processor or machine type (``"x86_64"``)."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return cpu


def memory_bytes() -> Optional[int]:
    """The physical memory in bytes, or None where the OS does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def blas_info() -> Optional[list[dict[str, Any]]]:
    """NumPy's BLAS libraries as threadpoolctl reports them (``internal_api``, ``version``,
    ``num_threads`` each), or None without threadpoolctl."""
    try:
        import threadpoolctl
    except ImportError:
        return None
    return [
        {k: v for k, v in lib.items() if k in ("internal_api", "version", "num_threads")}
        for lib in threadpoolctl.threadpool_info()
        if lib.get("user_api") == "blas"
    ]


def machine_info(versions: Optional[dict[str, str]] = None) -> dict[str, Any]:
    """CPU, logical CPUs, memory (bytes), load average, OS, Python, and the versions of
    ferroptim, NumPy and ``versions`` (name -> version, added after them); ferroptim's
    thread count and SIMD level; NumPy's BLAS (None without threadpoolctl)."""
    import ferroptim

    return {
        "cpu": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "memory_bytes": memory_bytes(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "os": platform.platform(),
        "python": sys.version.split()[0],
        "versions": {"ferroptim": ferroptim.__version__, "numpy": np.__version__, **(versions or {})},
        "ferroptim_threads": ferroptim.get_num_threads(),
        "ferroptim_simd": ferroptim.simd_level(),
        "blas": blas_info(),
    }
